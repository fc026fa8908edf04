"""Packed trials in a search (`--pack`): real CLI runs on real SQLite files with tiny trainings, real
signals. A worker claims a pack of queued trials, trains them with train_packed and records every member
as its own trial; a stop or a crash mid-pack loses nothing."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from optuna.trial import TrialState

from bnsearch import search
from bnsearch.search import packing
from conftest import CONFIGS, killed_on_exit, run_cli

SMOKE = str(CONFIGS / "smoke.toml")


def _report_lines(stdout: str) -> list[str]:
    """The report compare prints (verdict, key numbers, answer), without the progress bars (timings)
    and the export line (the folder's name)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("bnsearch: "))
    return [line for line in lines[start:] if not line.startswith("wrote ")]


def test_compare_pack_8_matches_pack_off_trial_by_trial(tmp_path):
    """Same scores per trial up to rounding, same best configuration, same verdict; every packed
    trial keeps its own curve and attrs, says how it was packed, and the report says so too."""
    from concurrent.futures import ThreadPoolExecutor

    def compare(mode):  # the two runs side by side: one core each
        return run_cli("compare", SMOKE, "--pack", mode, "--jobs", "1", "--storage", f"sqlite:///{tmp_path / mode}.db",
                       "--out", str(tmp_path / mode), cwd=tmp_path)

    with ThreadPoolExecutor(2) as pool:
        runs = dict(zip(("8", "off"), pool.map(compare, ("8", "off"))))
    for r in runs.values():
        assert r.returncode == 0, r.stderr
    assert _report_lines(runs["8"].stdout) == _report_lines(runs["off"].stdout)

    def trials(mode):
        df = pd.read_csv(tmp_path / mode / "trials.csv")
        return df.sort_values(["arm", "number"]).reset_index(drop=True)

    packed, solo = trials("8"), trials("off")
    assert (packed.state == "COMPLETE").all() and len(packed) == len(solo) == 12
    assert packed[["arm", "number", "config_index", "seed"]].equals(solo[["arm", "number", "config_index", "seed"]])
    # Equal up to rounding (tests/test_packed.py bounds it per member, from the first step's 1e-5 on):
    # on iris's 30 validation and 30 test rows a last-bit difference can move one row across a decision
    # boundary, so a score may move by one row; the best configuration and the verdict may not.
    one_row = 1 / 30 + 1e-9
    assert (packed.score - solo.score).abs().max() <= one_row
    assert (packed.test_score - solo.test_score).abs().max() <= one_row
    def first_losses(mode):
        recs = [json.loads(line) for line in (tmp_path / mode / "trials.jsonl").read_text().splitlines()]
        return {(r["arm"], r["number"]): r["user_attrs"]["train_loss"][0] for r in recs}

    first_loss = {mode: first_losses(mode) for mode in ("8", "off")}
    assert first_loss["8"].keys() == first_loss["off"].keys()
    for key, loss in first_loss["8"].items():
        assert loss == pytest.approx(first_loss["off"][key], rel=1e-4), key
    best = lambda df: df.sort_values(["score", "config_index"], ascending=[False, True]).iloc[0]  # noqa: E731
    params = ["layers", "width", "activation", "init", "lr", "optimizer", "batch_size"]
    assert best(packed)[params].equals(best(solo)[params])

    records = [json.loads(line) for line in (tmp_path / "8" / "trials.jsonl").read_text().splitlines()]
    pack_members: dict[str, int] = {}
    for rec in records:
        ua = rec["user_attrs"]
        curve = [rec["intermediate_values"][str(e)] for e in range(1, ua["epochs_run"] + 1)]
        assert curve == ua["val_score"] and len(ua["train_loss"]) == ua["epochs_run"] == 3
        assert ua["seconds"] > 0 and ua["arm"] == rec["arm"] and ua["worker"] and ua["hardware"]
        pack_members[ua["pack_id"]] = pack_members.get(ua["pack_id"], 0) + 1
    for rec in records:  # pack_size is the number of trials that share the pack_id
        assert rec["user_attrs"]["pack_size"] == pack_members[rec["user_attrs"]["pack_id"]]
    # Both arms of a configuration trained side by side: BN on and off fused in one pack.
    by_pack = pd.DataFrame([{"pack": r["user_attrs"]["pack_id"], "arm": r["arm"]} for r in records])
    assert (by_pack.groupby("pack").arm.nunique() == 2).any()
    solo_records = [json.loads(line) for line in (tmp_path / "off" / "trials.jsonl").read_text().splitlines()]
    assert not any("pack_size" in r["user_attrs"] for r in solo_records)  # off: today's path, nothing added
    largest = max(pack_members.values())
    assert f"trained in packs of up to {largest}" in runs["8"].stderr
    assert "packs of" not in runs["off"].stderr


@pytest.mark.parametrize("command", [
    ["compare", SMOKE, "--pack", "0"],
    ["study", SMOKE, "--bn", "on", "--pack", "many"],
    ["worker", "--experiment", "smoke", "--pack", "-3"],
    ["compare", SMOKE, "--pack", str(packing.MAX_PACK + 1)],
])
def test_bad_pack_value_is_one_line_before_any_work(tmp_path, command):
    db = tmp_path / "bn.db"
    r = run_cli(*command, "--storage", f"sqlite:///{db}", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("error: --pack:") and "auto or off" in line and "Traceback" not in r.stderr
    assert not db.exists() and not (tmp_path / "results").exists()


def test_pack_size_policy(smoke):
    """off and unpaired arms: solo; K: K; auto: CPU_AUTO_PACK on a CPU, sized from free memory on CUDA
    (more memory, bigger packs, never past CUDA_MAX_PACK)."""
    from bnsearch.config import Param
    from bnsearch.data import load_prepared

    data = load_prepared(smoke.data, smoke.seed)
    assert packing.pack_size("off", "cpu", smoke, data) == 1
    assert packing.pack_size(8, "cpu", smoke, data) == 8
    assert packing.pack_size(8, "cpu", smoke.with_overrides(paired=False), data) == 1
    assert packing.pack_size("auto", "cpu", smoke, data) == (packing.CPU_AUTO_PACK or 1)
    one = packing.member_bytes(smoke, data)
    assert packing.pack_size("auto", "cuda", smoke, data, free_bytes=0) == 1
    small = packing.pack_size("auto", "cuda", smoke, data, free_bytes=40 * one)
    assert 1 < small < packing.CUDA_MAX_PACK
    assert packing.pack_size("auto", "cuda", smoke, data, free_bytes=10**15) == packing.CUDA_MAX_PACK
    wider = dataclasses.replace(smoke, space={**smoke.space, "width": Param("width", "fixed", value=1024)})
    assert packing.member_bytes(wider, data) > one


def test_one_heartbeat_thread_beats_every_unrecorded_member(smoke, sqlite_url, monkeypatch):
    """While a pack trains, every claimed member's heartbeat advances (one thread, one transaction per
    study and beat); a recorded member is no longer beaten."""
    from bnsearch.search._optuna_private import claim_many
    from bnsearch.search.worker import _Heartbeats

    monkeypatch.setenv("BNSEARCH_HEARTBEAT", "1")
    [arm] = search.prepare_experiment(smoke.with_overrides(trials=4), sqlite_url, ["bn-on"])
    held = claim_many(arm.study, 4, distributions=smoke.distributions())
    assert len(held) == 4
    db = Path(sqlite_url[len("sqlite:///"):])

    def beats():
        with sqlite3.connect(db) as con:
            rows = con.execute("SELECT trial_id, heartbeat FROM trial_heartbeats")
            return {tid: datetime.fromisoformat(b) for tid, b in rows}

    first = beats()
    done = search._optuna_private.trial_id(held[0])
    with _Heartbeats([(arm, t) for t in held]) as hb:
        hb.recorded(arm, [done])
        time.sleep(2.6)  # two beats; SQLite's clock has whole seconds
    after = beats()
    assert set(first) == set(after) == {search._optuna_private.trial_id(t) for t in held}
    assert after[done] == first[done]
    assert all(after[t] - first[t] >= timedelta(seconds=1) for t in after if t != done)


def test_finish_many_records_the_running_members_and_skips_a_stale_one(smoke, sqlite_url):
    """A pack's members are recorded in one transaction; one failed as stale meanwhile (re-queued) is
    left as it is, the others are recorded as finish records one trial."""
    from bnsearch.search._optuna_private import claim_many, finish_many, trial_id

    [arm] = search.prepare_experiment(smoke.with_overrides(trials=3), sqlite_url, ["bn-on"])
    held = claim_many(arm.study, 3, distributions=smoke.distributions())
    stale = trial_id(held[1])
    search._optuna_private.storage_of(arm.study).set_trial_state_values(stale, TrialState.FAIL)
    got = finish_many(arm.study, [(trial_id(t), 0.5 + i / 10, {"pack_size": 3}, {1: 0.4, 2: 0.5 + i / 10})
                                  for i, t in enumerate(held)])
    assert got[1] == TrialState.FAIL and all(isinstance(g, tuple) and g[0] == TrialState.COMPLETE for g in got[::2])
    trials = {t.number: t for t in arm.study.get_trials()}
    assert [trials[t.number].state for t in held] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[held[2].number].value == 0.7 and trials[held[2].number].intermediate_values == {1: 0.4, 2: 0.7}
    assert "pack_size" not in trials[held[1].number].user_attrs


KILL_CONFIG = """
# Packs of 4 long enough (~2-3 s on 2 busy cores) to be stopped mid-pack.
[experiment]
name = "packkill"
seed = 5

[data]
dataset = "digits"

[search]
trials = 8

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


def _start_mid_pack(cmd, db: Path, env, min_complete: int, running: int) -> subprocess.Popen:
    """Start `cmd` in its own process group; return once >= min_complete trials are COMPLETE and
    `running` trials are held (a pack in flight)."""
    proc = subprocess.Popen(cmd, cwd=db.parent, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while True:
            assert proc.poll() is None, f"finished before it could be stopped: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no pack under way within 120 s"
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60) as con:
                    n = dict(con.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall())
            except sqlite3.OperationalError:  # no file or no tables yet
                n = {}
            if n.get("COMPLETE", 0) >= min_complete and n.get("RUNNING", 0) >= running:
                time.sleep(0.3)  # into the training, past the claim
                return proc
            time.sleep(0.05)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        raise


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the owner check reads /proc")
def test_ctrl_c_and_kill_9_mid_pack_then_resume_finish_every_trial_once(tmp_path):
    """Ctrl-C mid-pack fails and re-queues all 4 members (exit 130, no traceback); a kill -9 mid-pack
    (no clean-up at all) leaves 4 RUNNING trials that the resume fails and re-queues at once (their
    owner is gone); the resume finishes every configuration exactly once, with its own params and seed."""
    from test_parallel import check_arm_exact

    cfg = tmp_path / "kill.toml"
    cfg.write_text(KILL_CONFIG)
    db = tmp_path / "bn.db"
    url = f"sqlite:///{db}"
    cmd = [sys.executable, "-m", "bnsearch", "study", str(cfg), "--bn", "on", "--pack", "4", "--jobs", "1",
           "--storage", url]
    env = {**os.environ, "BNSEARCH_HEARTBEAT": "10"}  # so only the owner check can release them this soon

    def snapshot():
        return {t.number: t for t in search.load_arm(url, "packkill", "bn-on").study.get_trials()}

    proc = _start_mid_pack(cmd, db, env, min_complete=0, running=4)
    held = {n for n, t in snapshot().items() if t.state == TrialState.RUNNING}
    os.killpg(proc.pid, signal.SIGINT)
    with killed_on_exit(proc):
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    after_int = snapshot()
    assert len(held) == 4
    for n in held:  # every member of the pack released, none left RUNNING
        t = after_int[n]
        assert t.state == TrialState.FAIL and t.user_attrs["error"] == "interrupted (Ctrl-C)"
        [retry] = [a for a in after_int.values() if a.state == TrialState.WAITING
                   and a.user_attrs["config_index"] == t.user_attrs["config_index"]]
        assert retry.params == t.params and retry.user_attrs["seed"] == t.user_attrs["seed"]

    proc = _start_mid_pack(cmd, db, env, min_complete=4, running=4)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    killed = {n: t for n, t in snapshot().items() if t.state == TrialState.RUNNING}
    assert len(killed) == 4, {n: t.state.name for n, t in snapshot().items()}

    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 60  # no stale wait: 3 silent heartbeats would be 30 s
    final = snapshot()
    for n in killed:
        assert final[n].state == TrialState.FAIL and final[n].user_attrs["error"] == "worker process died"
    check_arm_exact(url, "packkill", "bn-on", 8)  # every configuration COMPLETE exactly once, planned params and seed
    assert all(t.user_attrs["pack_size"] == 4 for t in final.values() if t.state == TrialState.COMPLETE)
