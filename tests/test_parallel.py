"""Parallel and distributed studies that lose nothing: real worker processes, real SQLite files,
real (tiny) trainings, real signals. Nothing here mocks Optuna, torch or the database."""

from __future__ import annotations

import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from optuna.trial import TrialState

from bnsearch import search
from bnsearch.search import ARMS, load_trials, prepare_experiment, run_arms
from conftest import CONFIGS, killed_on_exit, run_cli

pytestmark = pytest.mark.slow

TABLES = ("studies", "study_directions", "study_user_attributes", "study_system_attributes", "trials",
          "trial_params", "trial_values", "trial_intermediate_values", "trial_user_attributes",
          "trial_system_attributes", "trial_heartbeats")


def _db_path(url: str) -> Path:
    return Path(url[len("sqlite:///"):])


def dump_sqlite(db: Path) -> dict[str, list[tuple]]:
    """Every row of every Optuna table, in a stable order (WAL files make byte hashes useless)."""
    with sqlite3.connect(db, timeout=60) as con:
        return {t: sorted(map(repr, con.execute(f"SELECT * FROM {t}"))) for t in TABLES}


def states(db: Path) -> dict[str, int]:
    with sqlite3.connect(db, timeout=60) as con:
        return dict(con.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall())


def check_arm_exact(url: str, experiment: str, arm: str, budget: int) -> None:
    """Exact budget, unique numbers, every planned configuration exactly once, nothing left over."""
    df = load_trials(url, experiment, [arm])
    done = df[df.state == "COMPLETE"]
    assert len(done) == budget, df.state.value_counts().to_dict()
    assert df.number.is_unique
    assert sorted(done.config_index) == list(range(budget))
    assert not df.state.isin(["RUNNING", "WAITING"]).any(), df.state.value_counts().to_dict()
    assert done.score.notna().all()
    # Each COMPLETE trial ran the planned configuration with the planned seed.
    a = search.load_arm(url, experiment, arm)
    plan = search.sample_configs(a.settings, budget)
    for t in a.study.get_trials(states=(TrialState.COMPLETE,)):
        i = t.user_attrs["config_index"]
        assert {k: t.params[k] for k in plan[i]} == plan[i]
        assert t.user_attrs["seed"] == search.trial_seed(a.settings.seed, i)


# --------------------------------------------------------------------------- 4 workers, one SQLite file

@pytest.fixture(scope="module")
def four_workers(tmp_path_factory):
    """Both smoke arms, 10 paired trials each, run by 4 spawned worker processes on one SQLite file."""
    from bnsearch.config import load_config

    settings = load_config(CONFIGS / "smoke.toml").with_overrides(trials=10)
    url = f"sqlite:///{tmp_path_factory.mktemp('par') / 'bn.db'}"
    t0 = time.perf_counter()
    run_arms(settings, url, list(ARMS), jobs=4)
    return settings, url, time.perf_counter() - t0


def test_four_workers_meet_the_budget_exactly_on_sqlite(four_workers):
    settings, url, _ = four_workers
    for arm in ARMS:
        check_arm_exact(url, settings.name, arm, settings.trials)
    df = load_trials(url, settings.name)
    assert (df.state == "FAIL").sum() == 0  # a clean run: no claim ever raced
    with sqlite3.connect(_db_path(url)) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # trial numbers are unique per study in the raw table too
        dup = con.execute("SELECT study_id, number, COUNT(*) FROM trials GROUP BY study_id, number HAVING COUNT(*) > 1")
        assert dup.fetchall() == []


def test_scores_are_identical_with_one_and_four_workers(four_workers, tmp_path):
    """1 torch thread per worker and a per-configuration seed: parallelism changes nothing."""
    settings, url4, _ = four_workers
    url1 = f"sqlite:///{tmp_path / 'one.db'}"
    run_arms(settings, url1, list(ARMS), jobs=1)
    cols = ["arm", "config_index", "seed", "score", "test_score", "diverged", "epochs_run"]

    def frame(url):
        df = load_trials(url, settings.name)
        return df[df.state == "COMPLETE"][cols].sort_values(["arm", "config_index"]).reset_index(drop=True)

    one, four = frame(url1), frame(url4)
    assert len(one) == 2 * settings.trials
    assert one.equals(four), (one, four)


# --------------------------------------------------------------------------- kill -9 and resume

SLOW_CONFIG = """
# Trials long enough (~1-3 s on 2 busy cores) to be killed mid-training.
[experiment]
name = "killme"
seed = 3

[data]
dataset = "digits"

[search]
trials = 6

[search.space]
layers     = 3
width      = 512
activation = ["relu", "tanh"]
lr         = { low = 1e-3, high = 1e-2, log = true }
optimizer  = "adam"
batch_size = 32

[train]
epochs = 4
"""


def _snapshot(url, experiment, arm="bn-on"):
    study = search.load_arm(url, experiment, arm).study
    return {t.number: t for t in study.get_trials()}


def _start_mid_trial(cmd, db: Path, env, min_complete: int) -> subprocess.Popen:
    """Start `cmd` in its own process group; return once >= min_complete trials are COMPLETE and a
    RUNNING trial has a heartbeat (it is training, not just being claimed)."""
    proc = subprocess.Popen(cmd, cwd=db.parent, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while True:
            assert proc.poll() is None, f"finished before it could be stopped: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no trial under way within 120 s"
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60) as con:
                    done = con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
                    beating = con.execute("SELECT COUNT(*) FROM trials JOIN trial_heartbeats USING (trial_id) "
                                          "WHERE state = 'RUNNING'").fetchone()[0]
            except sqlite3.OperationalError:  # no file or no tables yet
                done = beating = 0
            if done >= min_complete and beating >= 1:
                return proc
            time.sleep(0.05)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        raise


def test_ctrl_c_then_sigkill_mid_trial_then_resume_loses_nothing(tmp_path):
    """`study --jobs 2` is interrupted (SIGINT to the whole process group, as Ctrl-C in a terminal
    does), resumed, killed with SIGKILL mid-trial (CLI and both workers, no cleanup at all), and
    resumed again: every finished trial is kept as it was, every interrupted or killed configuration
    is re-run with its own params and seed, and the budget is met exactly."""
    cfg = tmp_path / "slow.toml"
    # 10 trials, not 6: step 2 needs a trial left to kill mid-training after step 1, and a Ctrl-C that
    # lands late on a busy machine (CI) once left 5 of 6 done.
    cfg.write_text(SLOW_CONFIG.replace("trials = 6", "trials = 10"))
    db = tmp_path / "bn.db"
    url = f"sqlite:///{db}"
    cmd = [sys.executable, "-m", "bnsearch", "study", str(cfg), "--bn", "on", "--jobs", "2", "--storage", url]
    env = {**os.environ, "BNSEARCH_HEARTBEAT": "1"}

    # 1. Ctrl-C: the trials in flight are failed with the reason and re-queued; exit code 130.
    t0 = time.perf_counter()
    proc = _start_mid_trial(cmd, db, env, min_complete=1)
    t_int = time.perf_counter() - t0
    in_flight = {n for n, t in _snapshot(url, "killme").items() if t.state == TrialState.RUNNING}
    os.killpg(proc.pid, signal.SIGINT)
    with killed_on_exit(proc):
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    t_int_exit = time.perf_counter() - t0
    assert "interrupted" in err and "Traceback" not in err, err
    after_int = _snapshot(url, "killme")
    interrupted = {n: t for n, t in after_int.items() if t.user_attrs.get("error") == "interrupted (Ctrl-C)"}
    assert interrupted and set(interrupted) <= in_flight, (in_flight, {n: t.state for n, t in after_int.items()})
    for n, t in interrupted.items():
        assert t.state == TrialState.FAIL
        retry = [a for a in after_int.values() if a.state == TrialState.WAITING
                 and a.user_attrs.get("config_index") == t.user_attrs["config_index"]]
        assert len(retry) == 1 and retry[0].params == t.params

    # 2. SIGKILL of the resumed run while a trial trains.
    n_done = sum(t.state == TrialState.COMPLETE for t in after_int.values())
    proc = _start_mid_trial(cmd, db, env, min_complete=n_done + 1)
    t_kill = time.perf_counter() - t0
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and both workers, mid-trial, no cleanup
    proc.wait(timeout=30)
    proc.stderr.close()
    time.sleep(0.5)  # let the workers' exits settle before reading what they left
    before = _snapshot(url, "killme")
    complete = {n: t for n, t in before.items() if t.state == TrialState.COMPLETE}
    killed = {n: t for n, t in before.items() if t.state == TrialState.RUNNING}
    assert complete and killed, {n: t.state.name for n, t in before.items()}

    # 3. The same command again finishes the job.
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    t_end = time.perf_counter() - t0
    after = _snapshot(url, "killme")
    for n, t in complete.items():  # every trial finished before the kill is kept unchanged
        a = after[n]
        assert (a.state, a.value, a.params, a.user_attrs, a.datetime_start, a.datetime_complete) == \
               (t.state, t.value, t.params, t.user_attrs, t.datetime_start, t.datetime_complete)
    for n, t in {**interrupted, **killed}.items():  # failed, and the configuration re-run once
        assert after[n].state == TrialState.FAIL
        i = t.user_attrs["config_index"]
        reruns = [a for a in after.values() if a.user_attrs.get("config_index") == i and a.state == TrialState.COMPLETE]
        assert len(reruns) == 1 and reruns[0].number > n
        assert reruns[0].params == t.params and reruns[0].user_attrs["seed"] == t.user_attrs["seed"]
    check_arm_exact(url, "killme", "bn-on", 10)
    idx = lambda trials: sorted(t.user_attrs["config_index"] for t in trials.values())  # noqa: E731
    print(f"\nCtrl-C: {len(interrupted)} trial(s) failed+re-queued (config_index {idx(interrupted)}), exit 130; "
          f"SIGKILL: {len(complete)} COMPLETE kept unchanged, {len(killed)} killed mid-trial (config_index "
          f"{idx(killed)}); resume ran {sum(t.state == TrialState.COMPLETE for t in after.values()) - len(complete)} "
          f"more, {len(after)} trials in storage: "
          f"{ {s.name: sum(t.state == s for t in after.values()) for s in (TrialState.COMPLETE, TrialState.FAIL)} }; "
          f"SIGINT at {t_int:.1f} s, exited {t_int_exit:.1f} s, SIGKILL at {t_kill:.1f} s, resume done {t_end:.1f} s; "
          f"median trial {statistics.median(t.user_attrs['seconds'] for t in after.values() if t.state == TrialState.COMPLETE):.2f} s")


def test_worker_killed_before_its_first_heartbeat_is_requeued(smoke, sqlite_url):
    """A claim without any heartbeat (worker died right after claiming): fail_stale fails it once it is
    older than the grace period and re-enqueues it, so a plain `bnsearch worker` still meets the budget."""
    s = smoke.with_overrides(trials=2)
    [arm] = prepare_experiment(s, sqlite_url, ["bn-on"])
    orphan = search._pop_waiting(arm.study)  # RUNNING, never beats
    time.sleep(3 * search.heartbeat_interval() + 0.5)
    search.fail_stale(arm.study)
    trials = arm.study.get_trials()
    assert trials[orphan.number].state == TrialState.FAIL
    i = orphan.user_attrs["config_index"]
    assert [t.state for t in trials if t.user_attrs.get("config_index") == i].count(TrialState.WAITING) == 1
    search.run_worker(sqlite_url, s.name, ["bn-on"])  # the `bnsearch worker` loop, no re-planning
    check_arm_exact(sqlite_url, s.name, "bn-on", 2)


# --------------------------------------------------------------------------- bad input through the real CLI

def test_bad_input_is_one_line_exit_2_and_storage_untouched(smoke, tmp_path):
    db = tmp_path / "bn.db"
    url = f"sqlite:///{db}"
    run_arms(smoke.with_overrides(trials=2), url, list(ARMS), jobs=1)  # a pre-populated storage
    before_rows, before_df = dump_sqlite(db), load_trials(url, smoke.name)

    base = (CONFIGS / "smoke.toml").read_text()

    def cfg(name: str, *edits: tuple[str, str]) -> str:
        body = base.replace('name = "smoke"', f'name = "{name}"')  # its own experiment: no hash clash
        for old, new in edits:
            assert old in body, old
            body = body.replace(old, new)
        p = tmp_path / f"{name}.toml"
        p.write_text(body)
        return str(p)

    (tmp_path / "nolabel.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(30)))
    (tmp_path / "text.csv").write_text("a,b,label\n" + "".join(f"{i},x{i},{i % 2}\n" for i in range(150)))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # a folder below a file cannot be created, even by root
    csv_data = 'dataset = "csv"\npath = "{}"\ntarget = "label"'
    smoke_cfg = str(CONFIGS / "smoke.toml")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    rows = {
        "missing config file": (["study", str(tmp_path / "nope.toml"), "--bn", "on", "--storage", url],
                                "config file not found"),
        "unknown key": (["study", cfg("unk", ("trials = 6", "trials = 6\ntrails = 7")), "--bn", "on",
                         "--storage", url], "unknown key"),
        "range low > high": (["study", cfg("rng", ("high = 32", "high = 4")), "--bn", "on", "--storage", url],
                             "low must be < high"),
        "log range with low <= 0": (["study", cfg("lg", ("low = 1e-3, high = 1.0", "low = 0, high = 1.0")), "--bn",
                                     "on", "--storage", url], "low must be > 0"),
        "unknown data set": (["compare", cfg("ds", ('"iris"', '"mnist"')), "--storage", url,
                              "--out", str(tmp_path / "o1")], "unknown data set"),
        "csv without target column": (["study", cfg("csv1", ('dataset = "iris"', csv_data.format(tmp_path / "nolabel.csv"))),
                                       "--bn", "on", "--jobs", "2", "--storage", url], "no target column"),
        "csv text column over the one-hot cap": (["compare", cfg("csv2", ('dataset = "iris"', csv_data.format(tmp_path / "text.csv"))),
                                                  "--jobs", "1", "--storage", url, "--out", str(tmp_path / "o2")],
                                                 "categorical column 'b' has 150 levels"),
        "storage not a URL": (["study", smoke_cfg, "--bn", "on", "--storage", "notaurl"], "not a database URL"),
        "storage unreachable": (["study", smoke_cfg, "--bn", "on", "--storage",
                                 "postgresql+psycopg2://postgres@127.0.0.1:1/x"], "cannot open"),
        "worker: unknown experiment": (["worker", "--experiment", "nope", "--bn", "on", "--storage", url],
                                       "no study"),
        "compare --out unwritable": (["compare", smoke_cfg, "--trials", "3", "--storage", url,
                                      "--out", str(blocker / "out")], "--out"),
        "export --out unwritable": (["export", "--experiment", "smoke", "--storage", url,
                                     "--out", str(blocker / "out")], "--out"),
        "--trials 0": (["study", smoke_cfg, "--bn", "on", "--trials", "0", "--storage", url], "--trials"),
        "--jobs 0": (["study", smoke_cfg, "--bn", "on", "--trials", "3", "--jobs", "0", "--storage", url], "--jobs"),
        "--bn maybe": (["study", smoke_cfg, "--bn", "maybe", "--storage", url], "--bn"),
        "same experiment, other config": (["study", str(CONFIGS / "smoke.toml"), "--bn", "on", "--seed", "5",
                                           "--storage", url], "different config"),
        "summary: unknown experiment": (["summary", "--experiment", "nope", "--storage", url], "no experiment"),
    }
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(rows, pool.map(lambda a: run_cli(*a[0], cwd=cwd, timeout=120), rows.values())))
    problems = []
    for name, r in results.items():
        lines = r.stderr.strip().splitlines()
        ok = (r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in r.stderr
              and rows[name][1] in lines[0])
        if not ok:
            problems.append(f"{name}: rc={r.returncode} stderr={r.stderr.strip()[-400:]!r}")
    assert not problems, "\n".join(problems)
    assert dump_sqlite(db) == before_rows
    assert load_trials(url, smoke.name).equals(before_df)
    assert list(cwd.iterdir()) == []  # no default storage or results folder created on the side


# --------------------------------------------------------------------------- 8 workers, a 1000-trial queue

def test_eight_workers_drain_a_1000_trial_queue_each_configuration_exactly_once(smoke, sqlite_url):
    """Claims race hardest when trials are trivially short: 8 worker processes (7 spawned + the
    parent) against 1000 queued 1-epoch iris trials. Every configuration runs exactly once, none
    fails, none is left, and trial numbers stay unique."""
    s = smoke.with_overrides(trials=1000, epochs=1)
    run_arms(s, sqlite_url, ["bn-on"], jobs=8)
    check_arm_exact(sqlite_url, s.name, "bn-on", 1000)
    df = load_trials(sqlite_url, s.name, ["bn-on"])
    assert len(df) == 1000 and (df.state == "COMPLETE").all()
    with sqlite3.connect(_db_path(sqlite_url)) as con:
        assert con.execute("SELECT COUNT(DISTINCT number), COUNT(*) FROM trials").fetchone() == (1000, 1000)
        # every trial was claimed by one worker: one heartbeat row each, 1 intermediate value (1 epoch) each
        assert con.execute("SELECT COUNT(*) FROM trial_heartbeats").fetchone()[0] == 1000
        assert con.execute("SELECT COUNT(*) FROM trial_intermediate_values").fetchone()[0] == 1000
