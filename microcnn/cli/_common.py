"""What both command-line tools share: argument types, exit codes, one-line errors."""

import argparse
import os
import sys
import traceback

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A bad command line: printed as one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (no usage dump) and exit status 2."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def help_formatter(prog):
    """--help keeps the epilog's line breaks and aligns option help at column 30."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30)


def _number(convert, accept, expected):
    """An argparse type: `convert` the text, then require `accept(value)`; else say `expected`."""

    def parse_value(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse_value


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: 0 < v < float("inf"), "a positive number")
fraction = _number(float, lambda v: 0 < v < 1, "a fraction between 0 and 1")


def image_size(text):
    """"150" -> (150, 150); "120x160" or "120,160" -> (120, 160) as (height, width); "auto" as is."""
    if text.strip().lower() == "auto":
        return "auto"
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH in pixels, e.g. 150 or 120x160, got {text!r}")
    from ._metadata import MAX_IMAGE_SIDE

    if max(values) > MAX_IMAGE_SIDE:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_IMAGE_SIDE} pixels a side, got {text!r}")
    return (values[0], values[-1])


def channel_list(text):
    """"0,2" -> [0, 2]: distinct channel indices (from 0) in the order given."""
    try:
        values = [int(p) for p in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 0 or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected distinct channel numbers from 0, e.g. 0,2, got {text!r}")
    return values


MAX_THREADS = 4096


def set_threads(n):
    if n is not None:
        from .. import _core

        if n > MAX_THREADS:
            raise UsageError(f"--threads: expected a thread count from 1 to {MAX_THREADS}, got {n}")
        _core.set_num_threads(n)


def parse(parser, argv):
    """Parsed args, with --threads applied for the commands that have it; raises UsageError (argparse's own
    exits for --help/--version pass through)."""
    args = parser.parse_args(argv)
    set_threads(getattr(args, "threads", None))
    return args


def run(prog, body, argv, debug_flag="--debug", keep_going_without_stdout=False):
    """Runs body(argv) -> exit status; turns exceptions into one line on stderr and a status:
    UsageError 2, Ctrl-C 130, anything else 1 (with a traceback only under --debug). A reader of stdout that
    goes away ends the command quietly, or with keep_going_without_stdout (training) is ignored."""
    import signal

    from .. import distributed
    from . import _safety

    debug = debug_flag in (argv if argv is not None else sys.argv[1:])
    if threading_is_main() and signal.getsignal(signal.SIGINT) is not signal.default_int_handler \
            and getattr(signal.getsignal(signal.SIGINT), "__qualname__", "").startswith("quiet_interrupt"):
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the start-up handler's job is done
    if keep_going_without_stdout:
        _safety.tolerate_closed_stdout()
    try:
        return body(argv)
    except BrokenPipeError:
        _safety.TolerantStream(sys.stdout)._failed()  # nothing more reaches the reader, not even at exit
        return EXIT_OK
    except UsageError as e:
        if distributed.is_root():  # every MPI rank parsed the same command line
            print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:  # --help / --version
        return e.code if isinstance(e.code, int) else EXIT_OK
    except KeyboardInterrupt:
        print(f"{prog}: {distributed.error_prefix()}interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the one place every error becomes a message
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {distributed.error_prefix()}{describe_error(e)}", file=sys.stderr)
        distributed.abort_on_error(EXIT_ERROR)  # under MPI the other ranks would wait for this one
        return EXIT_ERROR


def threading_is_main():
    import threading

    return threading.current_thread() is threading.main_thread()


def describe_error(e):
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{os.fsdecode(e.filename)}: {e.strerror}"
    text = str(e) or type(e).__name__
    return text.splitlines()[0] if "\n" in text else text
