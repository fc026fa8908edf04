"""Hardening, round 4 (issue 26): arm names, narrow terminals, an unwritable HOME, stopped processes
and wording. Each case starts the real CLI (on a pseudo-terminal where the width matters) or sends a
real signal to a real process."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from bnsearch.analysis import arm_label
from conftest import CONFIGS, ROOT, killed_on_exit, run_cli

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _read_all(fd: int, proc: subprocess.Popen, deadline: float) -> str:
    """Everything written to a pseudo-terminal until every writer closed it (or the deadline)."""
    chunks = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            if proc.poll() is not None and not select.select([fd], [], [], 0.2)[0]:
                break
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    return ANSI.sub("", b"".join(chunks).decode("utf-8", "replace")).replace("\r\n", "\n")


def _terminal(columns: int):
    """A pseudo-terminal `columns` wide: (master, slave) file descriptors."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    return master, slave


def run_tty(*args: str, columns: int, timeout: float = 300) -> tuple[int, str]:
    """The real CLI with stdout and stderr on a terminal `columns` wide: (exit code, what it showed)."""
    master, slave = _terminal(columns)
    proc = subprocess.Popen([sys.executable, "-m", "bnsearch", *args], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, env={**os.environ, "COLUMNS": str(columns)})
    os.close(slave)
    with killed_on_exit(proc):
        text = _read_all(master, proc, time.monotonic() + timeout)
        proc.wait(timeout=30)
    os.close(master)
    return proc.returncode, text


def _widest(text: str) -> int:
    return max((len(line.rstrip()) for line in text.splitlines()), default=0)


# --------------------------------------------------------------------------- 5: built-in arm names

def test_a_built_in_arm_name_cannot_be_redefined(write_config, tmp_path):
    # Before: [arms.bn-on] norm = "layernorm" trained LayerNorm, and the verdict called it "with BN".
    base = (CONFIGS / "smoke.toml").read_text().replace('name = "smoke"', 'name = "smoke"\narms = ["bn-on", "bn-off"]')
    db = tmp_path / "bn.db"
    cfg = write_config(base + '\n[arms.bn-on]\nnorm = "layernorm"\n', name="redefined.toml")
    r = run_cli("compare", str(cfg), "--storage", f"sqlite:///{db}", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "arms.bn-on" in r.stderr and "layernorm" in r.stderr and "choose another name" in r.stderr
    assert not db.exists() and not (tmp_path / "out").exists()  # refused before anything was stored
    # A table that repeats what the name means (a stored config writes one for every arm) is fine.
    same = write_config(base + '\n[arms.bn-on]\nnorm = "batchnorm"\n', name="same.toml")
    r = run_cli("space", str(same), cwd=tmp_path)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- 22, 29: terminal widths

def test_list_and_the_key_numbers_stay_readable_on_a_20_column_terminal(stored_smoke, tmp_path):
    # Before: `list` drew an empty grid, and the key numbers lost their arm columns.
    rows = json.loads(run_cli("list", "--storage", stored_smoke, "--json", cwd=tmp_path).stdout)
    rc, text = run_tty("list", "--storage", stored_smoke, columns=20)
    assert rc == 0, text
    assert _widest(text) <= 20, text
    for r in rows:
        assert f"{r['experiment']}/{r['arm']}" in text
        assert f"complete: {r['complete']}/{r['budget']}" in text and f"best: {r['best']:.4f}" in text

    rc, text = run_tty("summary", "--experiment", "smoke", "--storage", stored_smoke, columns=20)
    assert rc == 0, text
    assert _widest(text) <= 20, text
    key = text.split("Key numbers")[1]
    for arm in ("bn-on", "bn-off"):
        assert re.search(rf"^  {re.escape(arm_label(arm))}: \S", key, re.M), key
    # 32: the Δ column holds rate differences in points and score differences in score units
    title = " ".join(key.split("good fraction\n")[0].split())
    assert "rates in pts" in title and "Δ in pts" not in title, title


def test_list_fits_80_columns_with_a_panels_experiment_names(tmp_path):
    # Before: "bn-panel-attritio / n" and its kind were folded onto two lines, on every row.
    from bnsearch.panel import load_panel

    names = sorted((e.settings.name for e in load_panel(CONFIGS / "panel.toml").entries), key=len)[-3:]  # the longest
    url = f"sqlite:///{tmp_path / 'bn.db'}"
    for name in names:
        for arm in ("bn-off", "bn-on"):
            study = optuna.create_study(study_name=f"{name}/{arm}", storage=url)
            study.set_user_attr("config_hash", "0" * 16)
            study.set_user_attr("budget", 100)
    rc, text = run_tty("list", "--storage", url, columns=80)
    assert rc == 0, text
    assert _widest(text) <= 80, text
    lines = text.splitlines()
    for name in names:
        assert any(name in line for line in lines), (name, text)


# --------------------------------------------------------------------------- 29, 31: Ctrl-C

def test_ctrl_c_wraps_its_message_on_words_and_list_counts_interrupted_trials_apart(tmp_path):
    from test_parallel import SLOW_CONFIG

    cfg = tmp_path / "slow.toml"
    cfg.write_text(SLOW_CONFIG)
    db = tmp_path / "bn.db"
    url = f"sqlite:///{db}"
    master, slave = _terminal(80)
    proc = subprocess.Popen([sys.executable, "-m", "bnsearch", "study", str(cfg), "--bn", "on", "--jobs", "1",
                             "--storage", url], cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave, env={**os.environ, "COLUMNS": "80"}, start_new_session=True)
    os.close(slave)
    with killed_on_exit(proc):
        deadline = time.monotonic() + 120
        while True:  # until a trial trains (it has a heartbeat): that one is in flight when Ctrl-C comes
            assert proc.poll() is None and time.monotonic() < deadline, "no trial under way"
            with contextlib.suppress(sqlite3.OperationalError):  # no file or no tables yet
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60) as con:
                    if con.execute("SELECT COUNT(*) FROM trials JOIN trial_heartbeats USING (trial_id) "
                                   "WHERE state = 'RUNNING'").fetchone()[0]:
                        break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        text = _read_all(master, proc, time.monotonic() + 60)
        proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 130, text
    # Before: one soft-wrapped line, which the terminal cut mid-word at column 80 ("trials i|n flight").
    message = text[text.index("interrupted (Ctrl-C): "):]
    assert _widest(message) <= 80, message
    assert "trials in flight were failed and re-queued" in " ".join(message.split()), message

    trials = optuna.load_study(study_name="killme/bn-on", storage=url).get_trials()
    interrupted = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("error") == "interrupted (Ctrl-C)"]
    assert interrupted, [(t.number, t.state.name) for t in trials]
    # Before: these stayed "errored" for good, though their configurations were queued again.
    r = run_cli("list", "--storage", url, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    row = next(x for x in json.loads(r.stdout) if x["arm"] == "bn-on")
    assert row["errored"] == 0 and row["requeued"] == len(interrupted), row
    assert row["waiting"] >= len(interrupted)
    # The resume's own table said "errored" for them too (the live line as well: same counts).
    r = run_cli("study", str(cfg), "--bn", "on", "--jobs", "1", "--storage", url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if "┃" in line and "errored" in line)
    row = next(line for line in r.stdout.splitlines() if line.startswith("│ bn-on "))
    cells = lambda line: [c.strip() for c in line.replace("┃", "│").split("│")[1:-1]]  # noqa: E731
    assert dict(zip(cells(header), cells(row)))["errored"] == "0", r.stdout
    live = next(line for line in r.stdout.splitlines() if line.startswith("bn-on "))
    assert "errored" not in live and f"{len(interrupted)} re-queued" in live, live


# --------------------------------------------------------------------------- 26: PostgreSQL and SIGTERM

def _pg_bindir():
    import pg

    bindir = pg.find_bindir()
    if bindir is None:
        pytest.skip(f"no initdb/pg_ctl; {pg.INSTALL_HINT}")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without `runuser` to drop to the postgres user")
    return bindir


@contextlib.contextmanager
def _server_folder():
    """A TMPDIR for the servers of a child process (reachable by the `postgres` user), and afterwards
    whatever they left there stopped and deleted."""
    tmp = Path(tempfile.mkdtemp(prefix="bnsearch-sigterm-", dir="/tmp"))
    tmp.chmod(0o755)
    try:
        yield tmp
    finally:
        for pid_file in tmp.glob("bnsearch-pg-*/data/postmaster.pid"):
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)  # immediate shutdown
        shutil.rmtree(tmp, ignore_errors=True)


def _server_up(tmp: Path, proc: subprocess.Popen, timeout: float = 120) -> int:
    """The postmaster pid once a child's server in `tmp` accepts connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for pid_file in tmp.glob("bnsearch-pg-*/data/postmaster.pid"):
            lines = pid_file.read_text().splitlines()
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return int(lines[0])
        time.sleep(0.1)
    raise AssertionError("the server did not start")


def _gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


HOLD = """
import time
from pg import postgres  # noqa: F401


def test_hold(postgres):
    time.sleep(300)
"""


def test_sigterm_to_pytest_stops_the_test_postgres_server(tmp_path):
    # Before: SIGTERM (timeout, CI cancelling a job) ended pytest at once and the session's server, a
    # daemon, kept running with its folder for good.
    _pg_bindir()
    (tmp_path / "test_hold.py").write_text(HOLD)
    with _server_folder() as tmp:
        env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT / "tests")}
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_hold.py"],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with killed_on_exit(proc):
            postmaster = _server_up(tmp, proc)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=90)
        assert proc.returncode != 0, out
        assert _gone(postmaster), out
        assert not list(tmp.glob("bnsearch-pg-*")), out


@pytest.mark.slow
def test_sigterm_to_bench_e2e_stops_its_postgres_server():
    # Before: `timeout 600 python benchmarks/bench_e2e.py` left the server running for good.
    _pg_bindir()
    pytest.importorskip("psycopg2")
    with _server_folder() as tmp:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_e2e.py"), "--backends", "postgresql", "--trials", "4",
               "--repeats", "1", "--jobs", "1", "--epochs", "1", "--cache", "cold"]
        proc = subprocess.Popen(cmd, cwd=tmp, env={**os.environ, "TMPDIR": str(tmp)}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        with killed_on_exit(proc):
            postmaster = _server_up(tmp, proc)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 130, out
        assert _gone(postmaster), out
        assert not [p.name for p in tmp.iterdir()], out  # server, run and cache folders all deleted


# --------------------------------------------------------------------------- 32: wording

def test_analyze_words_ties_and_trials_needed_and_draws_quietly_under_an_unwritable_home(tmp_path):
    # Before: "scores higher in 50% of the pairs" beside "easier", silent on 30% ties; report.md's
    # tests table said "trials_needed | n/a | ... to show n/a"; and (24) with HOME not writable
    # matplotlib printed four lines ("mkdir -p failed ...", "Matplotlib created a temporary cache
    # directory ...") into the output of every command that draws.
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    n = 40
    lr = np.logspace(-4, 0, n)
    plain = np.linspace(0.5, 0.6, n)
    d = np.r_[np.full(20, 0.3), np.zeros(12), np.full(8, -0.01)]  # wins, ties, losses
    dist = {"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}
    for name, values in (("plain", plain), ("better", plain + d)):
        study = optuna.create_study(study_name=name, storage=url, direction="maximize")
        study.add_trials([optuna.trial.create_trial(params={"lr": float(x)}, distributions=dist, value=float(v))
                          for x, v in zip(lr, values)])
    home = tmp_path / "home-is-a-file"
    home.write_text("")  # nothing can be created under it, not even by root
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache"),
           "MPLCONFIGDIR": ""}
    before = set(Path(tempfile.gettempdir()).glob("bnsearch-matplotlib-*"))
    out = tmp_path / "out"
    r = run_cli("analyze", "--storage", url, "--study", "better", "--study", "plain", "--json", "--out", str(out),
                cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "matplotlib" not in r.stderr.lower() and "mkdir" not in r.stderr, r.stderr
    assert list(out.glob("*.png"))
    assert set(Path(tempfile.gettempdir()).glob("bnsearch-matplotlib-*")) == before  # its private folder is gone
    doc = json.loads(r.stdout)
    assert doc["outcome"] == "easier", doc["verdict"]
    pct = lambda x: f"{100 * x:.0f}%"  # noqa: E731
    assert (f"scores higher in {pct(np.mean(d > 0))} of the pairs, the same in {pct(np.mean(d == 0))} and lower "
            f"in {pct(np.mean(d < 0))}") in doc["verdict"], doc["verdict"]
    row = next(line for line in (out / "report.md").read_text().splitlines() if "| trials_needed |" in line)
    assert "to show n/a" not in row and "already answers" in row, row


def test_help_shows_no_bool_placeholders_and_whole_descriptions():
    from rich.text import Text

    import typer

    from bnsearch.cli import app

    r = run_cli("--help", env={"TERMINAL_WIDTH": "300"})
    assert r.returncode == 0, r.stderr
    assert "<bool>" not in r.stdout  # flags take no value
    lines = r.stdout.splitlines()
    for name, cmd in typer.main.get_command(app).commands.items():
        first = " ".join(Text.from_markup(cmd.help.split("\n\n")[0]).plain.split())
        assert any(first in line for line in lines), (name, first)  # one line: not cut at a docstring break
    r = run_cli("compare", "--help", env={"TERMINAL_WIDTH": "120"})
    assert r.returncode == 0 and "--full" in r.stdout and "<bool>" not in r.stdout, r.stdout
    # The time --help promises is the README's
    readme = (ROOT / "README.md").read_text()
    assert "about half a minute" in " ".join(readme.split())
    assert "about half a minute" in " ".join(run_cli("--help", env={"TERMINAL_WIDTH": "300"}).stdout.split())
