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

from ..arms import DEFAULT_ARMS as ARMS  # noqa: F401  (the default pair, defined once)
from .errors import SearchError, StorageFailure  # noqa: F401  (re-exported: the package's errors)
from .settings import MAX_RETRY, check_environment, heartbeat_interval, lock_timeout  # noqa: F401
from .stale import requeue

DEFAULT_STORAGE = "sqlite:///results/bnsearch.db"
ACTIVE = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)


# --------------------------------------------------------------------------- storage

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


# Query options that carry a secret (libpq's password/sslpassword, and common spellings).
_SECRET_QUERY = re.compile(r"([?&;](?:[\w.-]*pass(?:word|wd)?|pwd|secret|token)=)[^&#;\s'\"]*", re.I)


def _userinfo(url: str) -> tuple[int, int] | None:
    """Where the password of `scheme://user:password@host...` lies in `url` (start, end), or None.
    The password ends at the LAST '@': an unencoded '@' inside it must not split it in two."""
    start = url.find("://")
    if start < 0:
        return None
    start += 3
    at = url.rfind("@")
    if at < start:
        return None
    colon = url.find(":", start, at)
    if colon < 0 or any(c in url[start:colon] for c in "/?#"):
        return None
    return colon + 1, at


def masked(url: str) -> str:
    """The URL with every password replaced by ***: in the user info (even with an unencoded '@'
    in it) and in query options such as `?password=`. The one masking used wherever a storage URL
    is shown or stored (messages, the CLI header, exported metadata)."""
    span = _userinfo(url)
    if span is not None and span[1] > span[0]:
        url = f"{url[:span[0]]}***{url[span[1]:]}"
    return _QUERY_OPTION.sub(_mask_option, url)


_QUERY_OPTION = re.compile(r"([?&;])([^=&#;?\s'\"]*)=([^&#;\s'\"]*)")


def _mask_option(m: re.Match) -> str:
    # The driver decodes option names, so `?pass%77ord=` is a password as much as `?password=`.
    key = unquote(m.group(2))
    return f"{m.group(1)}{m.group(2)}=***" if _SECRET_QUERY.match(f"?{key}=") and m.group(3) else m.group(0)


def _secrets(url: str) -> set[str]:
    out: set[str] = set()
    span = _userinfo(url)
    if span is not None and span[1] > span[0]:
        out.add(url[span[0]:span[1]])
    with contextlib.suppress(Exception):
        parsed = sqlalchemy.engine.make_url(url)
        if parsed.password:
            out.add(str(parsed.password))
        for key, value in parsed.query.items():
            if _SECRET_QUERY.match(f"?{key}="):
                out |= {value} if isinstance(value, str) else set(value)
    return {v for s in out if s for v in (s, quote(s, safe=""), unquote(s))}


def scrub(text: str, url: str | None = None) -> str:
    """Driver and SQLAlchemy error texts can echo the DSN: remove the password from them."""
    for secret in sorted(_secrets(url) if url else set(), key=len, reverse=True):
        text = text.replace(secret, "***")
    text = re.sub(r"(://[^/@:\s'\"]*:)[^\s'\"]*@", r"\1***@", text)
    text = _SECRET_QUERY.sub(r"\1***", text)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text, flags=re.I)


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    try:
        db = sqlalchemy.engine.make_url(url).database
    except Exception:
        return None
    return None if db in (None, "", ":memory:") else Path(db)


_reading = 0  # > 0 inside reading(): storage is opened read-only


@contextlib.contextmanager
def reading():
    """Inside this block open_storage(create=False) opens storage for reading only: `list`,
    `summary` and `export` must not change what they read (no tables added to a foreign file, no
    switch to WAL, no version row), and must work on a read-only file or folder."""
    global _reading
    _reading += 1
    try:
        yield
    finally:
        _reading -= 1


def _optuna_tables() -> set[str]:
    from optuna.storages._rdb import models

    return set(models.BaseModel.metadata.tables) | {"alembic_version"}


def open_storage(url: str | None = None, *, create: bool = True) -> RDBStorage:
    """An RDBStorage with the settings measured to be reliable (docs/design.md, Storage).

    Every way a storage can be unusable at open time (not a URL, a damaged or foreign file, an
    unreachable or silent server, a missing driver) is a SearchError whose one-line message names
    the storage with its password masked and says what to do; a damaged file is never written to.
    Inside reading() (and with create=False) nothing is written at all.
    """
    url = storage_url(url)
    shown = masked(url)
    read_only = _reading > 0 and not create
    if "://" not in url:
        raise SearchError(f"--storage: {url!r} is not a database URL; use e.g. sqlite:///results/bnsearch.db "
                          "or postgresql+psycopg2://user@host/db")
    span = _userinfo(url)
    if span is not None and "@" in url[span[0]:span[1]]:
        # Unencoded, the '@' splits the password: its second half would be taken for the host name
        # and echoed by the driver's error.
        raise SearchError(f"--storage: the password in {shown} contains an unencoded '@'; percent-encode it "
                          "as %40 (and ':' as %3A, '/' as %2F)")
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:
        raise SearchError(f"--storage: cannot parse {shown!r} as a database URL; use e.g. "
                          "sqlite:///results/bnsearch.db or postgresql+psycopg2://user@host/db") from None
    engine_kwargs: dict[str, Any] = {}
    db = _sqlite_path(url)
    tables: set[str] | None = None
    if url.startswith("sqlite"):
        unknown = sorted(set(parsed.query) - SQLITE_OPTIONS)
        if unknown:
            from urllib.parse import urlencode

            literal = f"{parsed.database or ''}?{urlencode(parsed.query, doseq=True)}"
            if masked(f"sqlite:///{literal}") != f"sqlite:///{literal}":
                # Spelling out the file name would print the secret, plainly and percent-encoded.
                fix = "for a file name with '?' in it percent-encode the '?' as %3F and '=' as %3D"
            else:
                fix = f"for a file named {literal!r} percent-encode it: sqlite:///{quote(literal, safe='/')}"
            raise SearchError(f"--storage: {shown!r}: everything after '?' is read as options ({', '.join(unknown)}), "
                              f"not as part of the file name; {fix}")
        if db is None or str(parsed.query.get("mode", "")) == "memory":
            raise SearchError(f"--storage: {shown} is an in-memory database: worker processes cannot share it and "
                              "nothing could be read back after the command; give a file, e.g. "
                              "sqlite:///results/bnsearch.db")
        engine_kwargs["connect_args"] = {"timeout": lock_timeout()}
        if db.is_dir():
            raise SearchError(f"--storage: {db} is a folder, not a database file; give a file path, e.g. "
                              f"sqlite:///{db / 'bnsearch.db'}")
        if db.exists() and not db.is_file():
            # SQLite would put its journal next to it (a file in /dev) and fail on the first write.
            raise SearchError(f"--storage: {db} is not a regular file (a device, pipe or socket); give the path of "
                              "a database file, e.g. sqlite:///results/bnsearch.db")
        if not create and not db.exists():
            raise SearchError(f"--storage: no database at {db}; run `bnsearch study` or `bnsearch compare` first, "
                              "or pass the --storage you used")
        if db.exists():
            _check_sqlite_file(db, shown)
            tables = _sqlite_tables(db)
            # Not one of Optuna's tables (a file half created by a concurrent first run has some).
            if tables and not tables & _optuna_tables():
                raise SearchError(f"--storage: {db} is an SQLite database of another application (tables: "
                                  f"{', '.join(sorted(tables)[:5])}{', …' if len(tables) > 5 else ''}), not an Optuna "
                                  "storage; nothing was written to it; pass another --storage, e.g. "
                                  "sqlite:///results/bnsearch.db")
        if read_only:
            if not tables or "studies" not in tables:
                raise SearchError(f"--storage: {db} holds no Optuna storage (an empty database); run `bnsearch "
                                  "compare` first, or pass the --storage you used")
            engine_kwargs["connect_args"] = {}
            engine_kwargs["creator"] = _read_only_connect(db)
        else:
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
                heartbeat_stale_trial_callback=requeue,
                # The schema version check parses Optuna's ~60 alembic migration scripts: ~20 ms per
                # open, and one report opens storage about ten times. Once per process is enough.
                skip_compatibility_check=url in _schema_checked,
                skip_table_creation=read_only,
            )
            break
        except (ImportError, ModuleNotFoundError) as exc:
            raise SearchError(_missing_driver(parsed, shown, exc)) from None
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
        _serialize_sqlite(storage.engine, wal=not read_only, read_only=read_only)
    _engines.add(storage.engine)
    _schema_checked.add(url)
    return storage


def _missing_driver(parsed, shown: str, exc: BaseException) -> str:
    """Which driver a URL asked for and how to get it. A bare `postgresql://` means whatever this
    SQLAlchemy's default PostgreSQL driver is (psycopg 3 since SQLAlchemy 2.1), which need not be
    the one installed."""
    import importlib.util

    name = parsed.drivername
    if name.startswith("postgresql"):
        have = [d for d, mod in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")) if importlib.util.find_spec(mod)]
        cause, wanted = exc, None
        for _ in range(5):  # Optuna re-raises the ImportError that names the module
            if cause is None or wanted:
                break
            wanted, cause = getattr(cause, "name", None), cause.__cause__ or cause.__context__
        wanted = (wanted or parsed.get_driver_name() or "the driver").split(".")[0]
        if have:
            alt = shown.replace(shown.split("://", 1)[0], f"postgresql+{have[0]}", 1)
            return (f"--storage: {shown} needs the PostgreSQL driver {wanted!r}, which is not installed; "
                    f"use the installed {have[0]} driver ({alt}), or pip install {wanted}")
        return (f"--storage: no PostgreSQL driver is installed for {shown}; pip install 'bnsearch[postgres]' "
                "(psycopg2) and use postgresql+psycopg2://…")
    return f"--storage: driver missing for {name} ({exc}); install the Python driver for it"


def _read_only_connect(db: Path):
    """Connections that cannot write. Where this process may not write the file or its folder
    (a read-only mount, another user's results) and no -wal shows a live writer, `immutable`
    reads without the -shm/-wal files SQLite could not create there; elsewhere the file is
    opened read-write but never written (a read-only connection would leave -wal/-shm files
    next to a WAL database, and nothing here issues a write)."""
    writable = os.access(db, os.W_OK) and os.access(db.parent, os.W_OK)
    live = Path(f"{db}-wal").exists()
    mode = "rw" if writable else "ro" if live else "ro&immutable=1"
    uri = f"file:{quote(str(db.resolve()))}?mode={mode}"
    timeout = lock_timeout()
    return lambda: sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)


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
        # `immutable` read can see a checkpoint half done ("invalid rootpage"). Read again; with a
        # -wal present, the locked way.
        time.sleep(0.05 * (attempt + 1))
    else:
        return  # still being written after ~10 s: a live database, not a damaged one
    if rows == ["file is not a database"]:
        raise SearchError(f"--storage: {db} is not an SQLite database (from {shown}); {fix}")
    if rows != ["ok"]:
        raise SearchError(f"--storage: {db} is damaged ({'; '.join(rows)[:160]}); {fix}")
    _checked_files.add(key)


def _sqlite_tables(db: Path) -> set[str]:
    """The table names of an intact SQLite file, read the way _quick_check reads it."""
    live = Path(f"{db}-wal").exists()
    uri = f"file:{quote(str(db))}?mode=ro{'' if live else '&immutable=1'}"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=lock_timeout())
        try:
            return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return {"studies"}  # unreadable now: let the open itself report why


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
    if db is not None and not _lockable(db):
        yield  # not a file of ours (a folder, a device, another application's database): open_storage refuses it
        return
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


def _lockable(db: Path) -> bool:
    """Whether `<db>-planlock` may be created next to `db`: nothing there yet, or an Optuna file."""
    if not db.exists():
        return True
    if not db.is_file():
        return False
    try:
        if db.stat().st_size == 0:
            return True
    except OSError:
        return False
    tables = _sqlite_tables(db)
    return not tables or bool(tables & _optuna_tables())


def plan_locked(fn):
    """Decorator for `fn(settings, url, ...)`: run it under plan_lock(url)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plan_lock(kwargs["url"] if "url" in kwargs else args[1] if len(args) > 1 else None):
            return fn(*args, **kwargs)
    return wrapper


def _serialize_sqlite(engine: sqlalchemy.engine.Engine, wal: bool, read_only: bool = False) -> None:
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
    # A reader takes no write lock: it must work on a read-only file and never blocks the writers.
    begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"
    sqlalchemy.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
    engine.dispose()  # connections made while Optuna created its tables predate the hooks


def study_name(experiment: str, arm: str) -> str:
    return f"{experiment}/{arm}"


def arm_of(bn: str | bool) -> str:
    if isinstance(bn, bool):
        return "bn-on" if bn else "bn-off"
    if bn not in ("on", "off"):
        raise SearchError(f"--bn: must be 'on' or 'off' (got {bn!r})")
    return f"bn-{bn}"

