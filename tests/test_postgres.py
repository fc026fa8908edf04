"""Shared studies on a real PostgreSQL server (started and stopped by tests/pg.py): several worker
processes, exact budgets, and a database restart in the middle of a run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bnsearch.search import ARMS, load_trials, run_arms
from conftest import CONFIGS, killed_on_exit
from pg import pg_url, postgres  # noqa: F401  (fixtures)
from test_parallel import check_arm_exact

pytestmark = pytest.mark.slow


def test_four_workers_meet_the_budget_exactly_on_postgres(smoke, pg_url):
    s = smoke.with_overrides(trials=10)
    run_arms(s, pg_url, list(ARMS), jobs=4)
    for arm in ARMS:
        check_arm_exact(pg_url, s.name, arm, s.trials)
    df = load_trials(pg_url, s.name)
    assert (df.state == "FAIL").sum() == 0


def _counts(postgres, url) -> dict[str, int]:
    return dict(postgres.query(url, "SELECT state, COUNT(*) FROM trials GROUP BY state"))


def test_workers_survive_a_postgres_restart(postgres, pg_url, tmp_path):
    """`pg_ctl restart -m fast` cuts every connection mid-run; the workers back off, reconnect and
    finish the budget, and the dead connections' trials are re-run, not lost."""
    cfg = tmp_path / "restart.toml"
    cfg.write_text((CONFIGS / "smoke.toml").read_text().replace("epochs = 3", "epochs = 30"))
    budget = 24
    cmd = [sys.executable, "-m", "bnsearch", "study", str(cfg), "--bn", "on", "--trials", str(budget),
           "--jobs", "4", "--storage", pg_url]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "BNSEARCH_HEARTBEAT": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with killed_on_exit(proc):
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"run ended before the restart: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no trial completed within 180 s"
            try:
                c = _counts(postgres, pg_url)
            except Exception:  # tables not created yet
                c = {}
            if c.get("COMPLETE", 0) >= 4 and c.get("RUNNING", 0) >= 1:
                break
            time.sleep(0.1)
        before = c["COMPLETE"]
        postgres.restart()
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert before < budget
    check_arm_exact(pg_url, "smoke", "bn-on", budget)
    print(f"\npostgres restart after {before} of {budget} trials: run finished with "
          f"{_counts(postgres, pg_url)}")
