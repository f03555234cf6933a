"""Installed by `import microcnn` before anything else when a microcnn command-line tool is starting."""

import os
import signal
import sys


def quiet_interrupt_at_startup():
    """Ctrl-C before a command's main() runs (while Python and the libraries load): exit 130 with one line,
    not a KeyboardInterrupt traceback. `_common.run` puts Python's handler back."""
    if os.path.basename(sys.argv[0] if sys.argv else "").startswith("microcnn-") \
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        def stop(signum, frame):
            # Nothing is written yet, so nothing to clean up; and an exception raised here could be swallowed by
            # the import machinery's C code (seen: SystemExit lost, the tool ran on), so exit at once.
            sys.stderr.write(f"{os.path.basename(sys.argv[0])}: interrupted\n")
            sys.stderr.flush()
            os._exit(130)

        try:
            signal.signal(signal.SIGINT, stop)
        except ValueError:  # not the main thread
            pass
