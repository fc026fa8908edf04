"""Pins every use of Optuna's private API (bnsearch/search/_optuna_private.py) to the Optuna range
declared in pyproject.toml, against real SQLite storage: each private function is run, and what it
writes is compared with what Optuna's public API writes for the same operation. An Optuna upgrade
that moves a private name, a table or a column fails here, loudly, instead of in a user's study."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import tomllib
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from packaging.requirements import Requirement
from packaging.version import Version

from bnsearch.search import _optuna_private as P
from bnsearch.search import open_storage

ROOT = Path(__file__).resolve().parents[1]
DISTS = {"layers": IntDistribution(1, 4), "lr": FloatDistribution(1e-4, 1.0, log=True),
         "act": CategoricalDistribution(["relu", "tanh"])}
PLAN = [({"layers": 2, "lr": 0.01, "act": "tanh"}, {"config_index": 0, "seed": 11}),
        ({"layers": 3, "lr": 0.5, "act": "relu"}, {"config_index": 1, "seed": 12}),
        ({"layers": 1, "lr": 1e-4, "act": "relu"}, {"config_index": 2, "seed": 13})]



def _finish(study, tid, value, *, user_attrs=None, intermediate_values=None):
    """One trial through finish_many: (state, completion time) when recorded, else the state found."""
    return P.finish_many(study, [(tid, value, user_attrs, intermediate_values)])[0]

def test_installed_optuna_is_in_the_range_pyproject_declares():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [req] = [Requirement(d) for d in deps if Requirement(d).name == "optuna"]
    assert Version(optuna.__version__) in req.specifier, (optuna.__version__, str(req.specifier))


@pytest.fixture
def storage(tmp_path):
    return open_storage(f"sqlite:///{tmp_path / 'p.db'}")


def _study(storage, name):
    return optuna.create_study(storage=storage, study_name=name, direction="maximize")


def _rows(storage, study) -> dict[str, list[tuple]]:
    """Every row of the study's trials, minus ids and timestamps, in a stable order."""
    sid = P.study_id(study)
    with storage.engine.connect() as c:
        tids = [r[0] for r in c.exec_driver_sql(f"SELECT trial_id FROM trials WHERE study_id={sid} ORDER BY trial_id")]
        pos = {t: i for i, t in enumerate(tids)}
        out = {"trials": [tuple(r) for r in c.exec_driver_sql(
            f"SELECT number, state, datetime_start IS NULL, datetime_complete IS NULL FROM trials "
            f"WHERE study_id={sid} ORDER BY trial_id")]}
        for table, cols in (("trial_params", "param_name, param_value, distribution_json"),
                            ("trial_user_attributes", "key, value_json"),
                            ("trial_system_attributes", "key, value_json"),
                            ("trial_values", "objective, value, value_type"),
                            ("trial_intermediate_values", "step, intermediate_value, intermediate_value_type")):
            out[table] = sorted((pos[r[0]], *r[1:]) for r in c.exec_driver_sql(f"SELECT trial_id, {cols} FROM {table}")
                                if r[0] in pos)
    return out


def test_accessors_reach_the_storage_and_ids(storage):
    study = _study(storage, "s")
    assert isinstance(P.rdb_backend(study), RDBStorage)
    assert P.storage_of(study).get_study_id_from_name("s") == P.study_id(study)
    t = study.ask()
    assert P.storage_of(study).get_trial(P.trial_id(t)).number == t.number == 0


def test_enqueue_many_writes_what_enqueue_trial_writes(storage):
    public, private = _study(storage, "pub"), _study(storage, "priv")
    for params, attrs in PLAN:
        public.enqueue_trial(params, user_attrs=attrs)
    assert P.enqueue_many(private, PLAN) == [0, 1, 2]
    assert _rows(storage, private) == _rows(storage, public)
    assert P.enqueue_many(private, PLAN[:1]) == [3]  # numbers continue the study's count
    assert P.active_config_indices(private) == {0, 1, 2}


def test_claim_and_finish_write_what_the_public_api_writes(storage):
    """Public path: enqueue, ask (claims the oldest WAITING), suggest each param, set_user_attr,
    record_heartbeat, report per epoch, set result attrs, tell. Private path: claim + finish."""
    public, private = _study(storage, "pub"), _study(storage, "priv")
    for study in (public, private):
        P.enqueue_many(study, PLAN)
    start = {"arm": "bn-on", "hardware": {"cpu": "x", "isa": "avx2"}}
    results = {"diverged": False, "val_score": [0.5, 0.75], "seconds": 0.25}
    curve = {1: 0.5, 2: 0.75}

    t = public.ask()
    t.suggest_int("layers", 1, 4)
    t.suggest_float("lr", 1e-4, 1.0, log=True)
    t.suggest_categorical("act", ["relu", "tanh"])
    for k, v in start.items():
        t.set_user_attr(k, v)
    P.storage_of(public).record_heartbeat(t._trial_id)
    for step, v in curve.items():
        t.report(v, step)
    for k, v in results.items():
        t.set_user_attr(k, v)
    public.tell(t, 0.75)

    before = time.time()
    c = P.claim(private, distributions=DISTS, user_attrs=start)
    assert c.number == 0 and c.state == TrialState.RUNNING
    assert c.params == PLAN[0][0] and c.user_attrs == {**PLAN[0][1], **start}
    assert abs(c.datetime_start.timestamp() - before) < 5  # naive local time, like Optuna's
    assert P.trial_id(c) in P.heartbeating_trial_ids(P.rdb_backend(private))
    state, end = _finish(private, P.trial_id(c), 0.75, user_attrs=results, intermediate_values=curve)
    assert state == TrialState.COMPLETE and end >= c.datetime_start

    assert _rows(storage, private) == _rows(storage, public)
    a, b = public.trials[0], private.trials[0]
    assert (a.params, a.distributions, a.user_attrs, a.intermediate_values, a.value) == \
        (b.params, b.distributions, b.user_attrs, b.intermediate_values, b.value)
    assert b.datetime_start <= b.datetime_complete <= datetime.now() + timedelta(seconds=1)


def test_claim_is_in_order_and_empty_queue_is_none(storage):
    study = _study(storage, "s")
    P.enqueue_many(study, PLAN)
    assert [P.claim(study).number for _ in PLAN] == [0, 1, 2]
    assert P.claim(study) is None
    assert P.claim_waiting(study) is None


def test_claim_keeps_a_requeued_trials_params(storage):
    """Optuna's retry callback copies params into the WAITING retry; claim must not write them twice."""
    from bnsearch.search.stale import requeue

    study = _study(storage, "s")
    P.enqueue_many(study, PLAN[:1])
    c = P.claim(study, distributions=DISTS)
    P.storage_of(study).set_trial_state_values(P.trial_id(c), TrialState.FAIL)
    requeue(study, P.storage_of(study).get_trial(P.trial_id(c)))
    retry = P.claim(study, distributions=DISTS)
    assert retry.number == 1 and retry.params == PLAN[0][0]
    assert study.trials[1].params == PLAN[0][0]


def test_finish_nan_fails_and_a_finished_trial_is_not_rewritten(storage):
    study = _study(storage, "s")
    P.enqueue_many(study, PLAN[:2])
    a, b = P.claim(study), P.claim(study)
    assert _finish(study, P.trial_id(a), math.nan)[0] == TrialState.FAIL  # like Study.tell(nan)
    P.storage_of(study).set_trial_state_values(P.trial_id(b), TrialState.FAIL)  # failed as stale
    assert _finish(study, P.trial_id(b), 0.5, user_attrs={"x": 1}) == TrialState.FAIL  # found, not written
    assert "x" not in study.trials[1].user_attrs and study.trials[1].value is None


def test_counts_best_diverged_and_missing_heartbeats(storage):
    study = _study(storage, "s")
    P.enqueue_many(study, PLAN + PLAN)  # 6 trials
    t = [P.claim(study, heartbeat=(i != 3), user_attrs={"worker": f"w{i}"}) for i in range(4)]  # trial 3 never beats
    _finish(study, P.trial_id(t[0]), 0.25, user_attrs={"diverged": True})
    _finish(study, P.trial_id(t[1]), 0.5, user_attrs={"diverged": False})
    _finish(study, P.trial_id(t[2]), math.inf)
    # COMPLETE 3 (values 0.25, 0.5, +inf: best +inf), RUNNING 1, WAITING 2; diverged 1 (trial 0).
    assert P.arm_counts(study) == {"counts": {"COMPLETE": 3, "RUNNING": 1, "WAITING": 2}, "best": math.inf,
                                   "diverged": 1, "requeued": 0}
    # Only trial 3 is still RUNNING; it never beat, and its owner tag comes back with it.
    assert [(tid, beat, owner) for tid, _, beat, owner in P.running_trials(study)] == [(P.trial_id(t[3]), False, "w3")]
    assert P.active_config_indices(study) == {0, 1, 2}
    other = _study(storage, "empty")
    assert P.arm_counts(other) == {"counts": {}, "best": None, "diverged": 0, "requeued": 0}


def test_counts_tell_requeued_failures_from_errors(storage):
    """The live progress line and the post-run table said "N errored" for trials that were only
    interrupted and run again. Two failures here: trial 0 failed and re-queued (as a Ctrl-C or a
    dead worker leaves it; its retry is trial 3), trial 1 failed with NaN and not re-queued. So 2 FAIL,
    1 re-queued, 1 errored, the same as readback.count_requeued finds from the trials themselves."""
    from bnsearch.search.readback import ArmState, count_requeued
    from bnsearch.search.stale import requeue

    study = _study(storage, "s")
    P.enqueue_many(study, PLAN)  # trials 0, 1, 2
    a, b = P.claim(study, distributions=DISTS), P.claim(study, distributions=DISTS)
    P.storage_of(study).set_trial_state_values(P.trial_id(a), TrialState.FAIL)
    requeue(study, P.storage_of(study).get_trial(P.trial_id(a)))  # trial 3, WAITING
    _finish(study, P.trial_id(b), math.nan)
    c = P.arm_counts(study)
    assert c["counts"] == {"FAIL": 2, "WAITING": 2} and c["requeued"] == 1
    assert c["requeued"] == count_requeued(study.get_trials())
    st = ArmState(complete=0, running=0, failed=c["counts"]["FAIL"], budget=3, best=None, diverged=0,
                  requeued=c["requeued"])
    assert (st.errored, st.requeued) == (1, 1)


def test_read_trials_is_what_get_trials_returns(storage):
    """The report's fast read: the same FrozenTrials as Study.get_trials, field for field and in the
    same order (dict key order too: the lossless export writes them as they come), for every state,
    +-inf values, NaN/inf intermediate values, every distribution type, system attrs, and trials
    written through the public API as well as through claim/finish; other studies are not mixed in."""
    study = _study(storage, "s")
    _study(storage, "other").enqueue_trial({"lr": 0.5})
    P.enqueue_many(study, PLAN + PLAN)  # 6 WAITING
    t = [P.claim(study, distributions=DISTS, user_attrs={"worker": f"w{i}", "b": 1, "a": [i, None]}) for i in range(4)]
    _finish(study, P.trial_id(t[0]), 0.25, user_attrs={"z": True},
             intermediate_values={1: 0.1, 2: math.nan, 3: math.inf, 4: -math.inf})
    _finish(study, P.trial_id(t[1]), math.inf)
    _finish(study, P.trial_id(t[2]), math.nan)  # FAIL
    study.enqueue_trial({"lr": 0.01}, user_attrs={"config_index": 9})  # a retry-like WAITING trial
    study.add_trial(optuna.trial.create_trial(
        params={"lr": 0.02, "n": 5, "choice": None},
        distributions={"lr": FloatDistribution(1e-4, 1.0, log=True), "n": IntDistribution(1, 9, step=2),
                       "choice": CategoricalDistribution(["relu", None, 2.5, False])},
        value=-math.inf, intermediate_values={7: 0.5}, user_attrs={"note": {"nested": [1, 2]}},
        system_attrs={"s": "x"}))
    fast, slow = P.read_trials(study), study.get_trials(deepcopy=False)
    assert [tr.state for tr in fast] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL,
                                         TrialState.RUNNING, TrialState.WAITING, TrialState.WAITING,
                                         TrialState.WAITING, TrialState.COMPLETE]
    assert len(fast) == len(slow) == 8
    for f, s in zip(fast, slow):
        # NaN != NaN, so intermediate values are compared by their repr
        assert {k: v for k, v in vars(f).items() if k != "intermediate_values"} == \
            {k: v for k, v in vars(s).items() if k != "intermediate_values"}
        assert repr(f.intermediate_values) == repr(s.intermediate_values)
        for field in ("params", "distributions", "user_attrs", "system_attrs"):
            assert list(getattr(f, field).items()) == list(getattr(s, field).items()), field
    assert P.read_trials(_study(storage, "empty")) == []


def test_claim_index_is_created_once_and_optuna_still_reads_the_storage(tmp_path):
    url = f"sqlite:///{tmp_path / 'i.db'}"
    backend = open_storage(url)
    P.ensure_claim_index(backend)
    P.ensure_claim_index(backend)  # idempotent
    with backend.engine.connect() as c:
        names = [ix["name"] for ix in sa.inspect(c).get_indexes("trials")]
        plan = " ".join(str(r) for r in c.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT trial_id FROM trials WHERE study_id = 1 AND state = 'WAITING' "
            "ORDER BY trial_id LIMIT 1"))
    assert names.count(P.CLAIM_INDEX) == 1
    assert P.CLAIM_INDEX in plan and "TEMP B-TREE" not in plan  # one index seek, no sort
    study = optuna.create_study(storage=open_storage(url), study_name="s", direction="maximize")
    P.enqueue_many(study, PLAN)
    c = P.claim(study, distributions=DISTS)
    _finish(study, P.trial_id(c), 0.5, intermediate_values={1: 0.5})
    # A fresh Optuna process (its schema check, its own CLI) reads everything back.
    r = subprocess.run([str(Path(sys.executable).parent / "optuna"), "trials", "--storage", url, "--study-name", "s",
                        "-f", "json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert '"COMPLETE"' in r.stdout and r.stdout.count('"WAITING"') == 2
    assert optuna.load_study(study_name="s", storage=url).trials[0].intermediate_values == {1: 0.5}
