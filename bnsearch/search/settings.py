"""Numbers the search layer reads from the environment, and the retry limit. No imports from this package
but errors.py, so stale.py can read them without importing storage.py (which imports stale.py)."""

from __future__ import annotations

import math
import os

from .errors import SearchError

MAX_RETRY = 3  # re-runs of one configuration after crashes before it is left FAIL


def heartbeat_interval() -> int:
    # Seconds between heartbeats; a trial silent for 3 intervals is stale. Tests shorten it.
    # At most an hour: a dead worker's trial is only found after 3 silent intervals, and beyond the
    # timers' range (threading.TIMEOUT_MAX) waits raise OverflowError in every worker thread.
    return max(1, _env_number("BNSEARCH_HEARTBEAT", "10", int, "a whole number of seconds, e.g. 10", 3600))


def lock_timeout() -> float:
    # Seconds a SQLite connection waits for another process's write lock before failing. Every
    # transaction is milliseconds long, so only a stuck foreign process ever waits this long.
    # At most a day: far past any real wait, and SQLite's busy timeout is a C int of milliseconds
    # (about 24 days), which larger values overflow.
    return _env_number("BNSEARCH_LOCK_TIMEOUT", "60", float, "a number of seconds, e.g. 60", 86400)


def _env_number(name: str, default: str, kind: type, example: str, most: int):
    text = os.environ.get(name, default)
    try:
        value = kind(text)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError
    except (ValueError, OverflowError):
        raise SearchError(f"{name}={text[:40]!r} is not {example}; set it to one or unset it") from None
    if value > most:
        raise SearchError(f"{name}={text[:40]!r} is too large: at most {most} seconds; set it between 0 and "
                          f"{most} or unset it (default {default})") from None
    return value


def check_environment() -> None:
    """Read the BNSEARCH_* numbers once up front: a bad value is bad input (one line, exit 2), not a
    traceback from whichever process first needed it."""
    heartbeat_interval()
    lock_timeout()
