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
            sys.stderr.write(f"{os.path.basename(sys.argv[0])}: interrupted\n")
            raise SystemExit(130)

        try:
            signal.signal(signal.SIGINT, stop)
        except ValueError:  # not the main thread
            pass
