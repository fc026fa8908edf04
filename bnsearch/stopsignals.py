"""The stop signals' mask while processes start, shared by the CLI's fork server (forkserver.py) and
the library's workers (search/worker.py). Standard library only: the entry point imports it first."""

from __future__ import annotations

import contextlib
import signal

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM} | ({signal.SIGHUP} if hasattr(signal, "SIGHUP") else set())


@contextlib.contextmanager
def stop_signals_blocked():
    """Block SIGINT/SIGTERM in this thread while starting processes. A child inherits the mask, so a
    Ctrl-C during its first second (interpreter start, unpickling, imports) stays pending until it
    calls unblock_stop_signals() instead of raising a traceback out of an import; a Ctrl-C to this
    thread meanwhile is delivered when the block ends."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    from multiprocessing import resource_tracker

    # Process.start() launches multiprocessing's resource tracker the first time, and that launch
    # ends by unblocking these very signals (CPython uses the same mask trick for it, bpo-33613).
    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def unblock_stop_signals() -> None:
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
