"""Opening Optuna storage with the settings measured to be reliable, and study naming.

See docs/design.md, Storage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import TrialState



ARMS = ("bn-on", "bn-off")
DEFAULT_STORAGE = "sqlite:///results/bnsearch.db"
MAX_RETRY = 3  # re-runs of one configuration after crashes before it is left FAIL
ACTIVE = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)


class SearchError(ValueError):
    """Bad usage or input at the storage/experiment level (exit code 2)."""


# --------------------------------------------------------------------------- storage

def heartbeat_interval() -> int:
    # Seconds between heartbeats; a trial silent for 3 intervals is stale. Tests shorten it.
    return max(1, int(os.environ.get("BNSEARCH_HEARTBEAT", "10")))


def storage_url(url: str | None = None) -> str:
    return url or os.environ.get("BNSEARCH_STORAGE") or DEFAULT_STORAGE


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):]
    return None if path in ("", ":memory:") else Path(path)


def _requeue(study, failed) -> None:
    from .stale import requeue  # stale.py needs this module's settings: import at call time

    requeue(study, failed)


def open_storage(url: str | None = None, *, create: bool = True) -> RDBStorage:
    """An RDBStorage with the settings measured to be reliable (docs/design.md, Storage)."""
    url = storage_url(url)
    if "://" not in url:
        raise SearchError(f"--storage: {url!r} is not a database URL; use e.g. sqlite:///results/bnsearch.db "
                          "or postgresql+psycopg2://user@host/db")
    engine_kwargs: dict[str, Any] = {}
    db = _sqlite_path(url)
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}
        if db is not None:
            if not create and not db.exists():
                raise SearchError(f"--storage: no database at {db}; run `bnsearch study` or `bnsearch compare` first, "
                                  "or pass the --storage you used")
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SearchError(f"--storage: cannot create folder {db.parent} ({exc.strerror})") from None
    else:
        engine_kwargs["pool_pre_ping"] = True
    hb = heartbeat_interval()
    try:
        storage = RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=hb, grace_period=3 * hb,
            heartbeat_stale_trial_callback=_requeue,
        )
    except (ImportError, ModuleNotFoundError) as exc:
        raise SearchError(f"--storage: driver missing for {url.split(':')[0]} ({exc}); "
                          "pip install 'bnsearch[postgres]' for PostgreSQL") from None
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.OperationalError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0][:200]
        raise SearchError(f"--storage: cannot open {url!r} ({msg}); check the URL and that the database is reachable") from None
    if url.startswith("sqlite"):
        _serialize_sqlite(storage.engine, wal=db is not None)
    return storage


def _serialize_sqlite(engine: sqlalchemy.engine.Engine, wal: bool) -> None:
    """Make every SQLite transaction take the write lock at BEGIN.

    pysqlite only sends BEGIN before the first write, so Optuna's read-check-write steps (claiming
    a WAITING trial, failing a stale one) run their read outside the transaction: two processes
    both saw the same WAITING trial and both ran it. BEGIN IMMEDIATE serialises them, the
    SQLAlchemy-documented recipe for pysqlite. WAL keeps the progress monitor's reads cheap, and
    with WAL, synchronous=NORMAL still survives a killed process (only a power cut can lose the last
    commits) while saving an fsync per commit: a trial makes about ten (measured: jobs=1 overhead
    for 48 trials fell from ~9 s to ~5 s).
    """
    def on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN itself
        if wal:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    sqlalchemy.event.listen(engine, "connect", on_connect)
    sqlalchemy.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    engine.dispose()  # connections made while Optuna created its tables predate the hooks


def study_name(experiment: str, arm: str) -> str:
    return f"{experiment}/{arm}"


def arm_of(bn: str | bool) -> str:
    if isinstance(bn, bool):
        return "bn-on" if bn else "bn-off"
    if bn not in ("on", "off"):
        raise SearchError(f"--bn: must be 'on' or 'off' (got {bn!r})")
    return f"bn-{bn}"

