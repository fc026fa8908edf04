"""`python -m bnsearch` and the `bnsearch` console script."""

import os
import signal


def run() -> None:
    # cli.main installs the stop-signal handlers only after the CLI's imports (~0.5 s): a Ctrl-C
    # before that printed a KeyboardInterrupt traceback from inside some library. Nothing has been
    # read or written yet, so stopping at once is all there is to do.
    def early_stop(_signum, _frame):
        os.write(2, b"interrupted (Ctrl-C) before anything started; nothing was written\n")
        os._exit(130)

    signal.signal(signal.SIGINT, early_stop)
    from .cli import main

    main()


if __name__ == "__main__":
    run()
