"""`python -m bnsearch` and the `bnsearch` console script."""

import os
import signal
import sys

from . import forkserver


# What an ASCII terminal (LC_ALL=C) shows for the report's few non-ASCII characters.
ASCII = {"δ": "delta", "Δ": "Delta", "≥": ">=", "≤": "<=", "±": "+/-", "−": "-", "–": "-", "—": "-",
         "τ": "tau", "²": "^2", "×": "x", "∞": "inf", "…": "...", "†": "+", "·": "-", "≈": "~", "→": "->",
         "ρ": "rho", "α": "alpha", "μ": "mu", "σ": "sigma", "¼": "1/4", "½": "1/2"}


def _ascii_fallback(err: UnicodeError):
    if not isinstance(err, UnicodeEncodeError):
        raise err
    return "".join(ASCII.get(c, "?") for c in err.object[err.start:err.end]), err.end


def ascii_safe_streams() -> None:
    """Under an ASCII locale every report crashed on its first "δ" (UnicodeEncodeError): write
    ASCII stand-ins there instead; a UTF-8 terminal is left as it is."""
    import codecs

    codecs.register_error("bnsearch-ascii", _ascii_fallback)
    for stream in (sys.stdout, sys.stderr):
        try:
            "δΔ≥".encode(stream.encoding or "ascii")
        except (UnicodeEncodeError, LookupError):
            try:
                stream.reconfigure(errors="bnsearch-ascii")
            except (AttributeError, ValueError):  # not a TextIOWrapper (captured by a caller): leave it
                pass


def run() -> None:
    # cli.main installs the stop-signal handlers only after the CLI's imports (~0.5 s): a Ctrl-C
    # before that printed a KeyboardInterrupt traceback from inside some library. Nothing has been
    # read or written yet, so stopping at once is all there is to do.
    def early_stop(signum, _frame):
        how = b"by SIGHUP (terminal closed)" if signum == getattr(signal, "SIGHUP", None) else b"(Ctrl-C)"
        os.write(2, b"interrupted " + how + b" before anything started; nothing was written\n")
        forkserver.stop_server()
        os._exit(130)

    ascii_safe_streams()
    signal.signal(signal.SIGINT, early_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, early_stop)
    # Workers' libraries load in the fork server while the CLI imports its own and plans (forkserver.py).
    forkserver.start_server(sys.argv[1:])
    from .cli import main

    main()


if __name__ == "__main__":
    run()
