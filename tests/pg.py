"""A throwaway PostgreSQL server on loopback for the storage tests (docs/design.md, Speed).

`Postgres(...).start()` runs initdb into a fresh temporary folder, starts the server on a free
127.0.0.1 port with its socket in that folder, and `stop()` shuts it down and deletes the folder.
The server is a daemon that outlives the process that started it, so while one runs SIGTERM raises
KeyboardInterrupt in that process (as Ctrl-C does): its `finally: stop()` and pytest's teardown run.
PostgreSQL refuses to run as root, so as root the folder is handed to the `postgres` user and
initdb/pg_ctl run through `runuser -u postgres --`; otherwise they run as the current user.

The binaries are looked up in $BNSEARCH_PG_BIN, then on PATH, then in /usr/lib/postgresql/*/bin
(Debian's layout; `.ci/postgres.sh` installs them when missing).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

INSTALL_HINT = ("install the server binaries with `bash .ci/postgres.sh` (Debian: apt-get install -y postgresql) "
                "or point BNSEARCH_PG_BIN at the folder holding initdb and pg_ctl")


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    candidates = []
    if os.environ.get("BNSEARCH_PG_BIN"):
        candidates.append(Path(os.environ["BNSEARCH_PG_BIN"]))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
                      reverse=True)
    candidates += [Path(p) for p in versions]
    for d in candidates:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    return None


_live: set["Postgres"] = set()  # servers this process started and has not stopped
_owner: int | None = None  # the process that installed the SIGTERM handler (a fork inherits it)
_previous = None


def _on_sigterm(signum, frame):
    """SIGTERM (`timeout`, `kill`, CI cancelling a job) as Ctrl-C: the KeyboardInterrupt unwinds through
    the callers' `finally: pg.stop()` and pytest's fixture teardown. By default it ended the process on the
    spot, and the server, a daemon of its own, kept running with its folder for good."""
    if os.getpid() != _owner:  # a forked child owns no server: die as it would have
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    # Once: a second signal must not cut short the stop() the first one set off.
    signal.signal(signum, signal.SIG_IGN)
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def _stop_on_sigterm(pg: "Postgres") -> None:
    global _owner, _previous
    _live.add(pg)
    if _owner is None and threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        _owner, _previous = os.getpid(), signal.signal(signal.SIGTERM, _on_sigterm)


def _stopped(pg: "Postgres") -> None:
    global _owner
    _live.discard(pg)
    if not _live and _owner == os.getpid() and threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGTERM) in (_on_sigterm, signal.SIG_IGN):  # SIG_IGN: after the first one
            signal.signal(signal.SIGTERM, _previous)
        _owner = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """One PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 only."""

    def __init__(self, bindir: Path, max_connections: int = 50):
        self.bindir = bindir
        self.max_connections = max_connections
        self.as_root = os.geteuid() == 0
        self.base = Path(tempfile.mkdtemp(prefix="bnsearch-pg-"))  # under /tmp: reachable by `postgres`
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.port: int | None = None
        self.running = False

    # -- plumbing

    def _cmd(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        argv = [str(self.bindir / tool), *args]
        if self.as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.base)
        if r.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-2000:]}")
        return r

    def _options(self) -> str:
        return (f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 "
                f"-c max_connections={self.max_connections} -c fsync=off")

    # -- life cycle

    def start(self) -> "Postgres":
        _stop_on_sigterm(self)  # before initdb: a SIGTERM from here on still deletes the folder
        self.sock.mkdir()
        if self.as_root:
            shutil.chown(self.base, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
        self._cmd("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        last = None
        for _ in range(3):  # a free port can be taken between probing and binding: try another
            self.port = free_port()
            try:
                self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.base / "server.log"), "-o", self._options(),
                          "-w", "-t", "60", "start")
                self.running = True
                return self
            except RuntimeError as exc:
                last = exc
        raise RuntimeError(f"{last}\nserver log:\n{self.log()[-2000:]}")

    def restart(self) -> None:
        """A fast restart: every client connection is cut, the server is back within seconds."""
        self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.base / "server.log"), "-o", self._options(),
                  "-m", "fast", "-w", "-t", "60", "restart")

    def stop(self) -> None:
        try:
            if self.running or (self.data / "postmaster.pid").exists():
                self._cmd("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        finally:
            self.running = False
            shutil.rmtree(self.base, ignore_errors=True)
            _stopped(self)

    def log(self) -> str:
        p = self.base / "server.log"
        return p.read_text(errors="replace") if p.exists() else ""

    # -- databases

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str | None = None) -> str:
        import psycopg2

        name = name or f"bn_{uuid.uuid4().hex[:10]}"
        con = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            con.close()
        return self.url(name)

    def query(self, db_url: str, sql: str) -> list[tuple]:
        import psycopg2

        db = db_url.rsplit("/", 1)[1]
        con = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=db)
        try:
            with con.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            con.close()


def start_or_skip() -> Postgres:
    """A running server, or a loud skip when the binaries or the driver are missing."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("POSTGRESQL TESTS SKIPPED: no initdb/pg_ctl found (PATH, $BNSEARCH_PG_BIN, "
                    f"/usr/lib/postgresql/*/bin); {INSTALL_HINT}")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.skip("POSTGRESQL TESTS SKIPPED: psycopg2 is not installed; pip install -e '.[dev]'")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("POSTGRESQL TESTS SKIPPED: running as root without `runuser` to drop to the postgres user")
    pg = Postgres(bindir)
    try:
        pg.start()
    except BaseException:
        pg.stop()
        raise
    return pg


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the whole session; always stopped (and its folder deleted) at the end."""
    pg = start_or_skip()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def pg_url(postgres):
    """A fresh database on the session's server: postgresql+psycopg2://postgres@127.0.0.1:PORT/DB."""
    return postgres.create_database()


if __name__ == "__main__":  # manual check: start, print the URL, stop
    t0 = time.perf_counter()
    pg = Postgres(find_bindir()).start()
    try:
        print(pg.create_database("manual"), f"up in {time.perf_counter() - t0:.1f} s")
    finally:
        pg.stop()
