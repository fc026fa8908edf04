"""Hardening, round 3: nothing mixed into a report, no secret anywhere, readers that never write,
no hang, one line for every failure. Real CLI processes against real storage (SQLite files, a
read-only mount, a PostgreSQL server), each case checked the way a user would meet it.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bnsearch import api
from bnsearch.config import load_config
from bnsearch.search import prepare_experiment
from conftest import CONFIGS, killed_on_exit, run_cli
from pg import pg_url, postgres  # noqa: F401  (fixtures)
from test_hardening import PASSWORD, _alive, _cmdline, _descendants, _workers_of, one_line_error, tmpfs
from test_parallel import SLOW_CONFIG, _start_mid_trial

SMOKE = str(CONFIGS / "smoke.toml")


def _side_files(db: Path) -> list[str]:
    return [p.name for p in db.parent.iterdir() if p.name.startswith(db.name) and p.name != db.name]


def _fingerprint(db: Path) -> tuple:
    st = db.stat()
    return db.read_bytes(), st.st_mtime_ns, _side_files(db)


# --------------------------------------------------------------------------- repeats by identity

def test_repeats_are_pooled_by_their_stored_identity_not_by_name(tmp_path):
    """`compare --repeats 2` stores smoke and its repeat smoke-rep1. An unrelated experiment named
    smoke-rep2 (other data, epochs and seed) and a repeat interrupted before any trial finished
    (smoke-rep3: all queued) are not pooled into smoke's report; a note on stderr says why."""
    db = tmp_path / "bn.db"
    url = f"sqlite:///{db}"
    r = run_cli("compare", SMOKE, "--trials", "2", "--repeats", "2", "--jobs", "1", "--storage", url,
                "--out", str(tmp_path / "first"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    other = tmp_path / "other.toml"
    other.write_text(Path(SMOKE).read_text().replace('name = "smoke"', 'name = "smoke-rep2"')
                     .replace('dataset = "iris"', 'dataset = "wine"').replace("epochs = 3", "epochs = 2")
                     .replace("seed = 0", "seed = 7"))
    r = run_cli("compare", str(other), "--trials", "2", "--jobs", "1", "--storage", url,
                "--out", str(tmp_path / "other"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    smoke = api.load_config(SMOKE).with_overrides(trials=2)
    prepare_experiment(smoke.with_overrides(name="smoke-rep3", seed=3), url, smoke.arm_names(),
                       repeat_of=("smoke", 3))  # interrupted at once: queued, nothing finished
    out = tmp_path / "out"
    r = run_cli("export", "--experiment", "smoke", "--storage", url, "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "note: 'smoke-rep3' is not counted as a repeat of 'smoke': it is unfinished" in r.stderr, r.stderr
    with open(out / "trials.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if not row.get("experiment", "").startswith("#")]
    assert {row["experiment"] for row in rows} == {"smoke", "smoke-rep1"}, {row["experiment"] for row in rows}
    assert len(rows) == 2 * 2 * 2  # 2 trials x 2 arms x 2 runs
    s = run_cli("summary", "--experiment", "smoke", "--storage", url, "--json", cwd=tmp_path)
    assert s.returncode == 0, s.stderr
    assert '"repeats": 2' in s.stdout
    notes = s.stderr
    assert "'smoke-rep2' is not counted as a repeat of 'smoke': it is a separate experiment" in notes, notes
    assert "'smoke-rep3' is not counted as a repeat of 'smoke': it is unfinished" in notes, notes
    assert "Traceback" not in notes

    # Storage written before repeats were stored as such (no repeat_of attrs): recognised by name, and
    # still only when config, data, seed and completeness agree.
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM study_user_attributes WHERE key IN ('repeat_of', 'repeat')")
    con.close()
    s = run_cli("summary", "--experiment", "smoke", "--storage", url, "--json", cwd=tmp_path)
    assert s.returncode == 0 and '"repeats": 2' in s.stdout, s.stderr
    assert "'smoke-rep2' is not counted as a repeat of 'smoke': its config or data differ" in s.stderr, s.stderr
    assert "'smoke-rep3' is not counted as a repeat of 'smoke': it is unfinished" in s.stderr, s.stderr


# --------------------------------------------------------------------------- secrets

def test_no_password_form_is_ever_printed(tmp_path):
    """A password with an unencoded '@' is refused without a half of it in the line; a `?password=`
    is masked in the error line and in the header `compare` prints first."""
    at = "postgresql+psycopg2://bob:p@ss-" + PASSWORD + "@127.0.0.1:1/db"
    query = f"postgresql+psycopg2://bob@127.0.0.1:1/db?sslmode=disable&password={PASSWORD}"
    rows = {
        "unencoded @: list": (["list", "--storage", at], "contains an unencoded '@'; percent-encode it as %40"),
        "unencoded @: compare": (["compare", SMOKE, "--storage", at, "--out", str(tmp_path / "o")], "%40"),
        "?password=: list": (["list", "--storage", query], "db?sslmode=disable&password=***"),
        "?password=: compare": (["compare", SMOKE, "--storage", query, "--out", str(tmp_path / "o")], "password=***"),
    }
    results = {k: run_cli(*a, cwd=tmp_path, timeout=60) for k, (a, _) in rows.items()}
    problems = [f"{k}: {p}" for k, r in results.items() if (p := one_line_error(r, 2, rows[k][1]))]
    assert not problems, "\n".join(problems)
    for k, r in results.items():
        assert "ss-" + PASSWORD not in r.stdout + r.stderr and PASSWORD not in r.stdout + r.stderr, k
    assert "password=***" in results["?password=: compare"].stdout  # the header, masked


@pytest.mark.slow
def test_password_as_a_query_option_never_reaches_output_or_exports(pg_url, tmp_path):
    """A real server, the password as `?password=` (trust auth accepts it): compare, list, summary
    and export print and write it nowhere (header, trials.csv's storage column, trials.jsonl)."""
    url = f"{pg_url}?password={PASSWORD}"
    out = tmp_path / "out"
    runs = [run_cli("compare", SMOKE, "--trials", "2", "--jobs", "1", "--storage", url, "--out", str(out),
                    cwd=tmp_path, timeout=240),
            run_cli("list", "--storage", url, cwd=tmp_path),
            run_cli("summary", "--experiment", "smoke", "--storage", url, cwd=tmp_path),
            run_cli("export", "--experiment", "smoke", "--storage", url, "--out", str(tmp_path / "ex"), cwd=tmp_path)]
    assert [r.returncode for r in runs] == [0, 0, 0, 0], [r.stderr[-500:] for r in runs]
    assert "password=***" in runs[0].stdout
    assert not [r.args for r in runs if PASSWORD in r.stdout + r.stderr]
    files = [p for d in (out, tmp_path / "ex") for p in d.rglob("*") if p.is_file()]
    assert files and not [p.name for p in files if PASSWORD.encode() in p.read_bytes()]
    assert "password=***" in (out / "trials.jsonl").read_text() + (out / "trials.csv").read_text()


# --------------------------------------------------------------------------- readers never write

def test_a_foreign_sqlite_file_is_refused_and_never_changed(tmp_path):
    app = tmp_path / "app.db"
    with sqlite3.connect(app) as con:
        con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        con.execute("INSERT INTO users VALUES (1, 'ann')")
    con.close()
    before = _fingerprint(app)
    url = f"sqlite:///{app}"
    out = tmp_path / "out"
    rows = {
        "compare": ["compare", SMOKE, "--trials", "2", "--storage", url, "--out", str(out)],
        "study": ["study", SMOKE, "--bn", "on", "--trials", "2", "--jobs", "1", "--storage", url],
        "list": ["list", "--storage", url],
        "summary": ["summary", "--experiment", "smoke", "--storage", url],
        "export": ["export", "--experiment", "smoke", "--storage", url, "--out", str(out)],
    }
    problems = [f"{k}: {p}" for k, a in rows.items()
                if (p := one_line_error(run_cli(*a, cwd=tmp_path, timeout=60), 2, "another application"))]
    assert not problems, "\n".join(problems)
    assert _fingerprint(app) == before
    assert not out.exists()


def test_readers_do_not_write_a_plain_optuna_file(tmp_path):
    """A finished experiment in a file in rollback-journal mode (as Optuna itself leaves one): list,
    summary and export leave it byte for byte as it was, in its journal mode, with no side files."""
    db = tmp_path / "bn.db"
    url = f"sqlite:///{db}"
    r = run_cli("compare", SMOKE, "--trials", "2", "--jobs", "1", "--storage", url, "--out", str(tmp_path / "o"),
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    con.close()
    before = _fingerprint(db)
    for args in (["list"], ["summary", "--experiment", "smoke"],
                 ["export", "--experiment", "smoke", "--out", str(tmp_path / "ex")]):
        r = run_cli(*args, "--storage", url, cwd=tmp_path)
        assert r.returncode == 0, (args, r.stderr)
        assert _fingerprint(db) == before, args
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()


@pytest.mark.slow
def test_read_only_storage_can_be_listed_summarised_and_exported(tmp_path):
    """The results of a run on a read-only mount (a colleague's share, a backup): every reader works
    and nothing appears next to the file."""
    with tmpfs("32m") as mnt:
        db = mnt / "bn.db"
        url = f"sqlite:///{db}"
        r = run_cli("compare", SMOKE, "--trials", "2", "--jobs", "1", "--storage", url,
                    "--out", str(tmp_path / "o"), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        ro = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True)
        if ro.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {ro.stderr.strip()}")
        before = _fingerprint(db)
        runs = {name: run_cli(*args, "--storage", url, cwd=tmp_path) for name, args in {
            "list": ["list"], "summary": ["summary", "--experiment", "smoke"],
            "export": ["export", "--experiment", "smoke", "--out", str(tmp_path / "ex")]}.items()}
        assert {k: r.returncode for k, r in runs.items()} == {"list": 0, "summary": 0, "export": 0}, \
            {k: r.stderr[-400:] for k, r in runs.items()}
        assert "smoke" in runs["list"].stdout
        assert _fingerprint(db) == before


# --------------------------------------------------------------------------- frozen worker, SIGHUP

def _no_process_left(pid: int, pids: list[int]) -> list[int]:
    deadline = time.monotonic() + 10
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _alive(pids)


def _compare_with_a_frozen_worker(tmp_path, freeze) -> tuple[str, int]:
    """Run `compare --jobs 2` on the slow config, SIGSTOP the worker `freeze(workers, db)` picks
    mid-run, and check that the command still ends cleanly: exit 0, no traceback, no process left,
    every trial of the budget COMPLETE. Returns (stderr, frozen pid)."""
    cfg = tmp_path / "slow.toml"
    cfg.write_text(SLOW_CONFIG.replace("epochs = 4", "epochs = 2"))
    db = tmp_path / "bn.db"
    cmd = [sys.executable, "-m", "bnsearch", "compare", str(cfg), "--jobs", "2", "--storage", f"sqlite:///{db}",
           "--out", str(tmp_path / "out")]
    proc = _start_mid_trial(cmd, db, {**os.environ, "BNSEARCH_HEARTBEAT": "1"}, min_complete=0)
    with killed_on_exit(proc):
        workers = _workers_of(proc.pid)
        assert workers, "no worker processes found"
        frozen = freeze(workers, db)
        everyone = _descendants(proc.pid)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("the command still waits for its frozen worker after 120 s")
        finally:
            if _alive([frozen]):
                os.kill(frozen, signal.SIGCONT)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert not _no_process_left(proc.pid, everyone + [frozen])
    with sqlite3.connect(db) as con:
        states = dict(con.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall())
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
    con.close()
    assert ok == "ok"
    assert states.get("COMPLETE") == 12 and not states.get("RUNNING") and not states.get("WAITING"), (states, err)
    assert (tmp_path / "out" / "trials.csv").exists()
    return err, frozen


@pytest.mark.slow
def test_a_frozen_worker_does_not_hang_compare(tmp_path):
    """A worker SIGSTOPped mid-trial: its trial goes stale and another worker re-runs it; the
    command then ends (the frozen worker is woken and stopped) instead of waiting for it forever."""
    def freeze(workers, db):
        os.kill(workers[0], signal.SIGSTOP)
        return workers[0]

    _compare_with_a_frozen_worker(tmp_path, freeze)


def _write_lock_holder(shm: Path) -> int | None:
    """The pid holding SQLite's WAL write lock on a database (byte 120 of its -shm file, a POSIX lock
    the kernel lists in /proc/locks), or None."""
    ino = os.stat(shm).st_ino
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if fields[1:4] == ["POSIX", "ADVISORY", "WRITE"] and int(fields[5].rsplit(":", 1)[1]) == ino \
                    and fields[6] == "120":
                return int(fields[4])
    return None


def _blocks_writers(db: Path) -> bool:
    """Whether another connection cannot take the write lock right now."""
    con = sqlite3.connect(db, timeout=0.2, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc)
    finally:
        con.close()


@pytest.mark.slow
def test_a_worker_frozen_holding_the_write_lock_does_not_hang_compare(tmp_path):
    """A worker SIGSTOPped inside a storage transaction keeps SQLite's write lock while stopped, so the
    other worker cannot even re-queue its trial (this hung `compare` for minutes). It is killed once
    it has been stopped past the stale limit with no trial finishing; the run then completes."""
    def freeze(workers, db):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # stop one just as it holds the lock
            for w in workers:
                os.kill(w, signal.SIGSTOP)
                if _write_lock_holder(Path(f"{db}-shm")) == w and _blocks_writers(db):
                    return w
                os.kill(w, signal.SIGCONT)
        pytest.fail("no worker was caught holding the write lock within 60 s")

    err, frozen = _compare_with_a_frozen_worker(tmp_path, freeze)
    assert f"worker process {frozen} was stopped" in err and "killed" in err, err


@pytest.mark.slow
def test_workers_interrupted_from_outside_fail_the_run_instead_of_reporting_part(tmp_path):
    """SIGINT sent to the workers alone (not to the command): each releases its trial and exits as
    after Ctrl-C, so no exit code says "failed". The command used to report on the trials done so
    far with exit 0; it now fails in one line, and the same command then completes the budget."""
    cfg = tmp_path / "slow.toml"
    cfg.write_text(SLOW_CONFIG.replace("epochs = 4", "epochs = 2"))
    db = tmp_path / "bn.db"
    args = ["compare", str(cfg), "--jobs", "2", "--storage", f"sqlite:///{db}", "--out", str(tmp_path / "out")]
    proc = _start_mid_trial([sys.executable, "-m", "bnsearch", *args], db, {**os.environ, "BNSEARCH_HEARTBEAT": "1"},
                            min_complete=1)
    with killed_on_exit(proc):
        for w in _workers_of(proc.pid):
            os.kill(w, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    r = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    assert one_line_error(r, 1, "not run") is None, one_line_error(r, 1, "not run")
    assert "rerun the same command" in err
    assert not (tmp_path / "out" / "trials.csv").exists()
    with sqlite3.connect(db) as con:
        assert not con.execute("SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0]
    con.close()
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0] == 12
    con.close()


@pytest.mark.slow
def test_every_worker_frozen_fails_in_one_line_naming_them(tmp_path):
    """Both workers SIGSTOPped: nobody can make progress, so the command fails within a bounded time
    in one line naming them, kills them and re-queues their trials."""
    cfg = tmp_path / "slow.toml"
    cfg.write_text(SLOW_CONFIG)
    db = tmp_path / "bn.db"
    cmd = [sys.executable, "-m", "bnsearch", "study", str(cfg), "--bn", "on", "--jobs", "2",
           "--storage", f"sqlite:///{db}"]
    proc = _start_mid_trial(cmd, db, {**os.environ, "BNSEARCH_HEARTBEAT": "1"}, min_complete=0)
    with killed_on_exit(proc):
        deadline = time.monotonic() + 30
        while len(workers := _workers_of(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        for w in workers:
            os.kill(w, signal.SIGSTOP)
        everyone = _descendants(proc.pid)
        t0 = time.monotonic()
        try:
            _, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the command waits for its frozen workers forever ({workers}, "
                        f"{[(p, _cmdline(p)[:80]) for p in _descendants(proc.pid)]})")
        finally:
            for w in _alive(workers):
                os.kill(w, signal.SIGCONT)
    assert time.monotonic() - t0 < 60
    assert one_line_error(subprocess.CompletedProcess(cmd, proc.returncode, "", err), 1,
                          f"stopped (SIGSTOP or a debugger)") is None, err
    assert all(str(w) in err for w in workers), err
    assert not _no_process_left(proc.pid, everyone)
    with sqlite3.connect(db) as con:
        running = con.execute("SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0]
    con.close()
    assert running == 0


@pytest.mark.slow
def test_sighup_is_a_clean_stop(tmp_path):
    """The terminal closes (SIGHUP to the command): one line, the trials in flight are released, the
    temporary copy of the CSV split is removed, and no process is left."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 20))
    (tmp_path / "data.csv").write_text("label," + ",".join(f"f{i}" for i in range(20)) + "\n" + "".join(
        f"{int(r[0] + r[1] > 0)}," + ",".join(f"{v:.5f}" for v in r) + "\n" for r in x))
    cfg = tmp_path / "slow.toml"
    cfg.write_text(SLOW_CONFIG.replace('dataset = "digits"', 'dataset = "csv"\npath = "data.csv"\ntarget = "label"'))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    db = tmp_path / "bn.db"
    cmd = [sys.executable, "-m", "bnsearch", "study", str(cfg), "--bn", "on", "--jobs", "2",
           "--storage", f"sqlite:///{db}"]
    env = {**os.environ, "BNSEARCH_HEARTBEAT": "1", "TMPDIR": str(tmp)}
    proc = _start_mid_trial(cmd, db, env, min_complete=0)
    with killed_on_exit(proc):
        everyone = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGHUP)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted by SIGHUP"), err
    assert not _no_process_left(proc.pid, everyone)
    with sqlite3.connect(db) as con:
        running = con.execute("SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0]
    con.close()
    assert running == 0
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("bnsearch-data-")]


# --------------------------------------------------------------------------- unbounded work, tracebacks

def test_repeats_times_trials_obey_the_trials_limit(tmp_path):
    out = tmp_path / "out"
    try:
        r = run_cli("compare", SMOKE, "--repeats", "100000", "--storage", f"sqlite:///{tmp_path / 'bn.db'}",
                    "--out", str(out), cwd=tmp_path, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("--repeats 100000 was accepted and ran")
    assert one_line_error(r, 2, "--repeats 100000 x 6 trials is 600,000 trials per arm, too many") is None, r.stderr
    assert not (tmp_path / "bn.db").exists() and not out.exists()


def test_bad_environment_numbers_are_one_line(tmp_path):
    for name in ("BNSEARCH_HEARTBEAT", "BNSEARCH_LOCK_TIMEOUT"):
        r = run_cli("list", "--storage", f"sqlite:///{tmp_path / 'bn.db'}", cwd=tmp_path, env={name: "abc"})
        assert one_line_error(r, 2, f"{name}='abc' is not a") is None, (name, r.stderr[-600:])


@pytest.mark.slow
def test_out_of_memory_in_workers_is_one_line_saying_what_to_change(tmp_path):
    """Two workers whose networks cannot be allocated (address space capped): one line saying memory
    ran out and what to change, not a traceback per worker and "rerun to resume"."""
    import resource

    cfg = tmp_path / "big.toml"
    cfg.write_text(Path(SMOKE).read_text().split("[search.space]")[0].replace("trials = 6", "trials = 2")
                   + '[search.space]\nlayers = 16\nwidth = 8192\nactivation = "relu"\n'
                   'lr = { low = 1e-3, high = 1e-2, log = true }\noptimizer = "adam"\nbatch_size = 16\n')
    limit = 3 << 30

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    r = subprocess.run([sys.executable, "-m", "bnsearch", "compare", str(cfg), "--jobs", "2", "--storage",
                        f"sqlite:///{tmp_path / 'bn.db'}", "--out", str(tmp_path / "out")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=180, preexec_fn=cap)
    assert one_line_error(r, 1, "ran out of memory") is None, r.stderr[-1500:]
    assert "fewer --jobs" in r.stderr and "rerun to resume" not in r.stderr


# --------------------------------------------------------------------------- storage diagnosis

def test_storage_that_cannot_be_a_database_is_named_for_what_it_is(tmp_path):
    folder = tmp_path / "somedir"
    folder.mkdir()
    out = str(tmp_path / "out")
    before = set(os.listdir("/dev"))
    rows = {
        "folder: list": (["list", "--storage", f"sqlite:///{folder}"], "is a folder, not a database file"),
        "folder: compare": (["compare", SMOKE, "--storage", f"sqlite:///{folder}", "--out", out],
                            f"give a file path, e.g. sqlite:///{folder}/bnsearch.db"),
        "in-memory: compare": (["compare", SMOKE, "--storage", "sqlite://", "--out", out],
                               "is an in-memory database"),
        "in-memory: list": (["list", "--storage", "sqlite:///:memory:"], "is an in-memory database"),
        "/dev/full: compare": (["compare", SMOKE, "--storage", "sqlite:////dev/full", "--out", out],
                               "/dev/full is not a regular file"),
        "/dev/full: list": (["list", "--storage", "sqlite:////dev/full"], "/dev/full is not a regular file"),
    }
    if importlib.util.find_spec("psycopg") is None:  # SQLAlchemy's default PostgreSQL driver is not here
        rows["postgresql://"] = (["list", "--storage", f"postgresql://bob:{PASSWORD}@127.0.0.1:1/db"],
                                 "use the installed psycopg2 driver (postgresql+psycopg2://bob:***@127.0.0.1:1/db)")
    results = {k: run_cli(*a, cwd=tmp_path, timeout=60) for k, (a, _) in rows.items()}
    problems = [f"{k}: {p}" for k, r in results.items() if (p := one_line_error(r, 2, rows[k][1]))]
    assert not problems, "\n".join(problems)
    assert "rerun" not in results["in-memory: compare"].stderr and "restore" not in results["folder: list"].stderr
    assert set(os.listdir("/dev")) <= before  # no journal file left in /dev
    assert list(folder.iterdir()) == [] and not Path(out).exists()


# A stop signal taken on the line of a storage call, right after SQLite ran the statement (where a
# SIGTERM from the parent's death once landed, inside load_arm): raised from SQLAlchemy's
# after_cursor_execute hook, which runs inside the same try as the driver's execute. The statement is
# the first trial's result being stored, so the trial is RUNNING and this worker's.
_STOP_INSIDE_A_STORAGE_CALL = r"""
import sys, threading, time
import sqlalchemy
from bnsearch.config import load_config
from bnsearch.search import lifecycle, prepare_experiment
from bnsearch.search.worker import _worker_entry

url, cfg = sys.argv[1], sys.argv[2]
settings = load_config(cfg)
prepare_experiment(settings, url, ["bn-on"])
fired = []

@sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "after_cursor_execute")
def stop_here(conn, cursor, statement, *args):
    if not fired and threading.current_thread() is threading.main_thread() \
            and statement.lstrip().upper().startswith("INSERT INTO TRIAL_INTERMEDIATE_VALUES"):
        fired.append(time.monotonic())
        lifecycle.received = "SIGTERM"
        raise lifecycle.Terminated()

_worker_entry(url, settings.name, ["bn-on"], "cpu")
print(f"{time.monotonic() - fired[0]:.2f}")
"""


def test_a_stop_inside_a_storage_call_still_releases_the_trial_at_once(tmp_path):
    """The interrupted call's cursor lives on in the traceback, and SQLite keeps a closed connection,
    with its write lock, until its statements are finalised: a release made inside the except block
    waited out the lock timeout on the worker's own lock, left the trial RUNNING, and a rerun failed
    on "database is locked" meanwhile."""
    db = tmp_path / "bn.db"
    script = tmp_path / "stop.py"
    script.write_text(_STOP_INSIDE_A_STORAGE_CALL)
    r = subprocess.run([sys.executable, str(script), f"sqlite:///{db}", str(CONFIGS / "smoke.toml")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={**os.environ, "BNSEARCH_LOCK_TIMEOUT": "20"})
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.split()[-1]) < 10, "the release waited for a lock (its own)"
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT t.number, t.state, a.value_json FROM trials t JOIN trial_user_attributes a "
                           "ON a.trial_id = t.trial_id AND a.key = 'error' ORDER BY t.number").fetchall()
        states = dict(con.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall())
    con.close()
    # Trial 0 was being recorded; the others its worker had claimed with it (CLAIM_AHEAD) were released too.
    assert rows == [(n, "FAIL", '"interrupted (Ctrl-C)"') for n in range(len(rows))] and rows, rows
    assert not states.get("RUNNING"), states
    # Re-queued: the smoke plan's configurations, the failed one's included, are all still to run.
    with sqlite3.connect(db) as con:
        budget = con.execute("SELECT COUNT(*) FROM trials WHERE state = 'WAITING'").fetchone()[0]
    con.close()
    assert budget == load_config(CONFIGS / "smoke.toml").trials, states
