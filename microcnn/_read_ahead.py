"""Run a generator one or more items ahead in a background thread (file reads release the GIL, so the
next batch is read from disk while the current one trains)."""

import queue
import threading


def read_ahead(iterable, depth=2):
    """Yields the items of `iterable` in order, produced up to `depth` items ahead by a worker thread.
    An exception in the worker is raised here; closing this generator stops the worker."""
    items = queue.Queue(depth)
    stop = threading.Event()

    def put(entry):
        while not stop.is_set():
            try:
                items.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in iterable:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(("error", e))

    worker = threading.Thread(target=work, name="microcnn-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = items.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        worker.join()
