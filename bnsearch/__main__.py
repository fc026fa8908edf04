"""`python -m bnsearch` and the `bnsearch` console script."""

import os
import signal
import sys

from . import forkserver


def run() -> None:
    # cli.main installs the stop-signal handlers only after the CLI's imports (~0.5 s): a Ctrl-C
    # before that printed a KeyboardInterrupt traceback from inside some library. Nothing has been
    # read or written yet, so stopping at once is all there is to do.
    def early_stop(signum, _frame):
        how = b"by SIGHUP (terminal closed)" if signum == getattr(signal, "SIGHUP", None) else b"(Ctrl-C)"
        os.write(2, b"interrupted " + how + b" before anything started; nothing was written\n")
        forkserver.stop_server()
        os._exit(130)

    signal.signal(signal.SIGINT, early_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, early_stop)
    # Workers' libraries load in the fork server while the CLI imports its own and plans (forkserver.py).
    forkserver.start_server(sys.argv[1:])
    from .cli import main

    main()


if __name__ == "__main__":
    run()
