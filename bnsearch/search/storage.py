"""Opening Optuna storage with the settings measured to be reliable, and study naming.

See docs/design.md, Storage."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sqlite3
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import TrialState



ARMS = ("bn-on", "bn-off")
DEFAULT_STORAGE = "sqlite:///results/bnsearch.db"
MAX_RETRY = 3  # re-runs of one configuration after crashes before it is left FAIL
ACTIVE = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)


class SearchError(ValueError):
    """Bad usage or input at the storage/experiment level (exit code 2)."""


class StorageFailure(RuntimeError):
    """A storage that failed while in use (disk full, lock held, server gone): one line naming the
    storage (credentials masked) and the fix, and the exit code the CLI uses for it."""

    def __init__(self, message: str, exit_code: int = 1, kind: str = "other", detail: str = ""):
        super().__init__(message)
        self.exit_code, self.kind, self.detail = exit_code, kind, detail


# --------------------------------------------------------------------------- storage

def heartbeat_interval() -> int:
    # Seconds between heartbeats; a trial silent for 3 intervals is stale. Tests shorten it.
    return max(1, int(os.environ.get("BNSEARCH_HEARTBEAT", "10")))


def lock_timeout() -> float:
    # Seconds a SQLite connection waits for another process's write lock before failing. Every
    # transaction is milliseconds long, so only a stuck foreign process ever waits this long.
    return float(os.environ.get("BNSEARCH_LOCK_TIMEOUT", "60"))


# PostgreSQL: a server that accepts TCP but never answers must not hang the CLI (docs/design.md, Storage).
PG_CONNECT_TIMEOUT_S = 10
PG_STATEMENT_TIMEOUT_MS = 120_000
# Query options pysqlite understands; anything else after '?' is a typo or part of a file name.
SQLITE_OPTIONS = {"timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements", "uri",
                  "mode", "cache", "nolock", "vfs", "immutable"}


def storage_url(url: str | None = None) -> str:
    """The storage URL in one normal form, so the parent and every worker open the same file:
    a percent-encoded SQLite path (`sqlite:///a%20b.db`) means the decoded name (`a b.db`) in all
    of them, as SQLAlchemy reads it."""
    return normalize_url(url or os.environ.get("BNSEARCH_STORAGE") or DEFAULT_STORAGE)


def normalize_url(url: str) -> str:
    if "://" not in url:
        return url  # open_storage explains what a URL looks like
    try:
        u = sqlalchemy.engine.make_url(url)
    except Exception:
        return url
    return u.render_as_string(hide_password=False) if u.drivername.startswith("sqlite") else url


def masked(url: str) -> str:
    """The URL with its password replaced by ***, for every message, log line and export."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(://[^/@:\s]*:)[^@\s]*@", r"\1***@", url)


def scrub(text: str, url: str | None = None) -> str:
    """Driver and SQLAlchemy error texts can echo the DSN: remove the password from them."""
    secrets: set[str] = set()
    if url:
        with contextlib.suppress(Exception):
            pw = sqlalchemy.engine.make_url(url).password
            if pw:
                secrets |= {str(pw), quote(str(pw), safe=""), unquote(str(pw))}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = re.sub(r"(://[^/@:\s'\"]*:)[^@\s'\"]*@", r"\1***@", text)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text, flags=re.I)


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    try:
        db = sqlalchemy.engine.make_url(url).database
    except Exception:
        return None
    return None if db in (None, "", ":memory:") else Path(db)


def _requeue(study, failed) -> None:
    from .stale import requeue  # stale.py needs this module's settings: import at call time

    requeue(study, failed)


def open_storage(url: str | None = None, *, create: bool = True) -> RDBStorage:
    """An RDBStorage with the settings measured to be reliable (docs/design.md, Storage).

    Every way a storage can be unusable at open time (not a URL, a damaged or foreign file, an
    unreachable or silent server, a missing driver) is a SearchError whose one-line message names
    the storage with its password masked and says what to do; a damaged file is never written to.
    """
    url = storage_url(url)
    shown = masked(url)
    if "://" not in url:
        raise SearchError(f"--storage: {url!r} is not a database URL; use e.g. sqlite:///results/bnsearch.db "
                          "or postgresql+psycopg2://user@host/db")
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:
        raise SearchError(f"--storage: cannot parse {shown!r} as a database URL; use e.g. "
                          "sqlite:///results/bnsearch.db or postgresql+psycopg2://user@host/db") from None
    engine_kwargs: dict[str, Any] = {}
    db = _sqlite_path(url)
    if url.startswith("sqlite"):
        unknown = sorted(set(parsed.query) - SQLITE_OPTIONS)
        if unknown:
            from urllib.parse import urlencode

            literal = f"{parsed.database or ''}?{urlencode(parsed.query, doseq=True)}"
            raise SearchError(
                f"--storage: {shown!r}: everything after '?' is read as options ({', '.join(unknown)}), not as part "
                f"of the file name; for a file named {literal!r} percent-encode it: "
                f"sqlite:///{quote(literal, safe='/')}")
        engine_kwargs["connect_args"] = {"timeout": lock_timeout()}
        if db is not None:
            if not create and not db.exists():
                raise SearchError(f"--storage: no database at {db}; run `bnsearch study` or `bnsearch compare` first, "
                                  "or pass the --storage you used")
            if db.exists():
                _check_sqlite_file(db, shown)
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SearchError(f"--storage: cannot create folder {db.parent} ({exc.strerror})") from None
    else:
        engine_kwargs["pool_pre_ping"] = True
        if parsed.drivername in ("postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
            # libpq options, unless the URL sets them itself: a silent server fails in seconds, and a
            # statement stuck on a lock cannot hold a worker forever.
            args = {"connect_timeout": PG_CONNECT_TIMEOUT_S, "keepalives": 1, "keepalives_idle": 30,
                    "keepalives_interval": 10, "keepalives_count": 3,
                    "options": f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS}"}
            engine_kwargs["connect_args"] = {k: v for k, v in args.items() if k not in parsed.query}
    hb = heartbeat_interval()
    for attempt in range(8):
        try:
            storage = RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=hb, grace_period=3 * hb,
                heartbeat_stale_trial_callback=_requeue,
                # The schema version check parses Optuna's ~60 alembic migration scripts: ~20 ms per
                # open, and one report opens storage about ten times. Once per process is enough.
                skip_compatibility_check=url in _schema_checked,
            )
            break
        except (ImportError, ModuleNotFoundError) as exc:
            raise SearchError(f"--storage: driver missing for {parsed.drivername} ({exc}); "
                              "pip install 'bnsearch[postgres]' for PostgreSQL") from None
        except Exception as exc:
            failure = storage_failure(exc, url)
            if failure is None:
                raise
            if failure.kind == "race" and attempt < 7:
                # Two processes creating the tables of a fresh file at once: the loser's INSERT of
                # the schema version clashes; the tables exist now, so opening again just works.
                time.sleep(0.2 * (attempt + 1))
                continue
            if failure.kind in ("unreachable", "other"):
                raise SearchError(_describe("unreachable", shown, failure.detail)) from None
            if failure.kind in ("corrupt", "race"):
                raise SearchError(str(failure)) from None
            raise failure from None
    if url.startswith("sqlite"):
        _serialize_sqlite(storage.engine, wal=db is not None)
    _engines.add(storage.engine)
    _schema_checked.add(url)
    return storage


_engines: weakref.WeakSet = weakref.WeakSet()
_schema_checked: set[str] = set()  # URLs whose schema version this process has checked


def close_all() -> None:
    """Close every pooled connection this process opened. The last SQLite connection to close
    checkpoints the -wal into the database file and removes it, so a finished command leaves one
    self-contained .db file (copying only that file then copies every trial)."""
    for engine in list(_engines):
        with contextlib.suppress(Exception):
            engine.dispose()


_checked_files: set[tuple[str, int, int]] = set()


def _check_sqlite_file(db: Path, shown: str) -> None:
    """Refuse a file that is not an intact SQLite database before anything writes to it (opening
    one in WAL mode and creating tables would modify a damaged or foreign file).

    The file is read through SQLite only, never with open(): closing any descriptor of a file drops
    every POSIX lock this process holds on it, including the SHARED lock a live WAL connection keeps.
    Another process closing its last connection then checkpoints and deletes the -wal under ours,
    and later commits are lost or the file is damaged (SQLite's "How To Corrupt", section 2.2;
    reproduced here: a worker reopening storage lost two thirds of 2,000 concurrent commits).
    SQLite's own descriptors are safe: it defers closing them while the process holds locks.
    """
    try:
        st = db.stat()
    except OSError as exc:
        raise SearchError(f"--storage: cannot read {db} ({exc.strerror}); check the path and its permissions") from None
    key = (str(db.resolve()), st.st_ino, st.st_size)
    if key in _checked_files or st.st_size == 0:
        return
    fix = ("nothing was written to it; restore it from a backup, or move it aside and rerun "
           "(`sqlite3 FILE .recover` can salvage rows)")
    for attempt in range(20):
        before = _file_state(db)
        rows = _quick_check(db, shown, live=before[2])
        if rows == ["ok"] or before[2] or _file_state(db) == before:
            break  # intact; or damaged, read under SQLite's locks or in a file nobody changed meanwhile
        # Another process wrote meanwhile (two commands creating one fresh file at once): an
        # `immutable` read can see a checkpoint half done ("invalid rootpage", measured once in
        # 12 concurrent starts). Read again; with a -wal present, the locked way.
        time.sleep(0.05 * (attempt + 1))
    else:
        return  # still being written after ~10 s: a live database, not a damaged one
    if rows == ["file is not a database"]:
        raise SearchError(f"--storage: {db} is not an SQLite database (from {shown}); {fix}")
    if rows != ["ok"]:
        raise SearchError(f"--storage: {db} is damaged ({'; '.join(rows)[:160]}); {fix}")
    _checked_files.add(key)


def _file_state(db: Path) -> tuple[int, int, bool]:
    try:
        st = db.stat()
    except OSError:
        return (-1, -1, False)
    return (st.st_size, st.st_mtime_ns, Path(f"{db}-wal").exists())


def _quick_check(db: Path, shown: str, live: bool) -> list[str]:
    # Without a -wal file nothing else is writing: `immutable` reads without creating -wal/-shm
    # files next to a file that may not even be ours.
    uri = f"file:{quote(str(db))}?mode=ro{'' if live else '&immutable=1'}"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=lock_timeout())
        try:
            return [r[0] for r in con.execute("PRAGMA quick_check(3)")]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        if "locked" in str(exc):
            raise StorageFailure(_describe("locked", shown, str(exc)), 1, "locked") from None
        if "unable to open" in str(exc):
            raise SearchError(f"--storage: cannot read {db} ({exc}); check the path and its permissions") from None
        return [str(exc)]


_KINDS = (  # (kind, exit code, substrings of the driver's message, lower case)
    ("full", 1, ("database or disk is full", "no space left on device", "disk full", "diskfull")),
    ("locked", 1, ("database is locked", "database table is locked")),
    ("corrupt", 2, ("file is not a database", "database disk image is malformed", "malformed database schema")),
    ("readonly", 2, ("attempt to write a readonly database", "unable to open database file", "readonly database")),
    ("race", 2, ("unique constraint failed: alembic_version", "unique constraint failed: version_info",
                 "already exists", "duplicate key value violates unique constraint \"alembic_version")),
    ("timeout", 1, ("canceling statement due to statement timeout",)),
    ("unreachable", 2, ("could not connect", "connection refused", "timeout expired", "could not translate host",
                        "server closed the connection", "connection to server", "terminating connection",
                        "password authentication failed", "does not exist", "no pg_hba.conf entry")),
)


def _describe(kind: str, shown: str, detail: str) -> str:
    detail = detail[:200]
    return {
        "full": f"storage {shown} is full ({detail}); free disk space, then rerun the same command to resume "
                "(finished trials are saved)",
        "locked": f"storage {shown} is locked by another process (waited {lock_timeout():g} s: {detail}); stop the "
                  "process holding it (e.g. an open sqlite3 shell), then rerun",
        "corrupt": f"storage {shown} is damaged ({detail}); nothing was written to it; restore it from a backup or "
                   "pass another --storage",
        "readonly": f"storage {shown} cannot be written ({detail}); check the file's and folder's permissions or "
                    "pass another --storage",
        "race": f"storage {shown} was being created by another process at the same time ({detail}); rerun the "
                "same command",
        "timeout": f"storage {shown} did not answer a query within {PG_STATEMENT_TIMEOUT_MS // 1000} s ({detail}); "
                   "check the server's load and locks, then rerun the same command to resume",
        "unreachable": f"--storage: cannot open {shown} ({detail}); check the URL and that the database is "
                       "reachable",
        "other": f"storage {shown} failed ({detail}); check it, then rerun the same command to resume",
    }[kind]


def storage_failure(exc: BaseException, url: str | None = None) -> StorageFailure | None:
    """The one-line StorageFailure for an exception raised by the database layer (looked for down
    the chain of causes: Optuna wraps SQLAlchemy errors, which wrap the driver's), or None when the
    exception is not a storage error. The password never appears in the message."""
    import optuna

    db_types: tuple[type, ...] = (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError,
                                  sqlite3.Error)
    with contextlib.suppress(Exception):
        import psycopg2
        db_types += (psycopg2.Error,)
    if isinstance(exc, StorageFailure):
        return exc
    chain, e = [], exc
    for _ in range(10):
        if e is None:
            break
        chain.append(e)
        e = e.__cause__ or e.__context__
    is_db = any(isinstance(e, db_types) for e in chain)
    is_enospc = any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in chain)
    if not (is_db or is_enospc):
        return None
    shown = masked(storage_url(url))
    texts = [str(getattr(e, "orig", None) or e) for e in chain]
    # The innermost driver message says what happened; SQLAlchemy's own lines add the SQL and a link.
    detail = scrub(next((t for t in reversed(texts) if t.strip()), type(exc).__name__), url).strip()
    detail = detail.splitlines()[0].strip() if detail else type(exc).__name__
    low = " ".join(texts).lower()
    if is_enospc:
        return StorageFailure(_describe("full", shown, detail), 1, "full", detail)
    for kind, code, needles in _KINDS:
        if any(n in low for n in needles):
            return StorageFailure(_describe(kind, shown, detail), code, kind, detail)
    return StorageFailure(_describe("other", shown, detail), 1, "other", detail)


PLAN_LOCK_KEY = 0x626E736561726368  # "bnsearch": PostgreSQL advisory lock id for writing plans


@contextlib.contextmanager
def plan_lock(url: str | None):
    """Only one process at a time writes an experiment's plan to this storage.

    Two `compare` started together each saw the queue half-filled by the other and enqueued the rest
    again (measured: 93 trials for 60 configurations). SQLite: an flock on `<db>-planlock` next to the
    file; PostgreSQL: a session advisory lock; other storages (and systems without flock): none."""
    url = storage_url(url)
    db = _sqlite_path(url)
    if db is not None:
        try:
            import fcntl
        except ImportError:
            yield
            return
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            f = open(f"{db}-planlock", "a")
        except OSError:
            yield  # an unwritable folder: open_storage says so in its own words
            return
        with f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return
    if url.startswith("postgresql"):
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool,
                                          connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({PLAN_LOCK_KEY})")
                try:
                    yield
                finally:
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({PLAN_LOCK_KEY})")
        finally:
            engine.dispose()
        return
    yield


def plan_locked(fn):
    """Decorator for `fn(settings, url, ...)`: run it under plan_lock(url)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plan_lock(kwargs["url"] if "url" in kwargs else args[1] if len(args) > 1 else None):
            return fn(*args, **kwargs)
    return wrapper


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

