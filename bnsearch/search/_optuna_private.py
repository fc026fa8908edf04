"""Every use of Optuna's private API and of its table layout, in one place.

bnsearch needs what Optuna's public API does not offer:

- the storage behind a Study and the internal ids of studies and trials;
- which RUNNING trials never wrote a heartbeat (to fail trials of workers killed before their
  first beat);
- O(1) bookkeeping per trial (docs/design.md, Storage: "Per-trial bookkeeping"). The public path
  costs ~17 transactions per trial, and `Study.ask`/`_CachedStorage.get_all_trials` re-read every
  WAITING trial on each call, so claiming a trial got slower the longer the queue (691 ms with
  1000 trials waiting). Here a trial is claimed, its parameters, start attributes and first
  heartbeat written in ONE transaction (`claim`), and its results (user attrs, per-epoch
  intermediate values, value, COMPLETE) in ONE more (`finish_many`). A plan of N trials is enqueued in
  one transaction (`enqueue_many`), and progress is read with counting queries (`arm_counts`). A
  packed worker claims, records and heartbeats its pack's K trials in one transaction each
  (`claim_many`, `finish_many`, `record_heartbeats`).

Every row written here is the row Optuna itself writes for the same operation (same tables,
columns, JSON encodings, internal parameter representation, naive-UTC datetimes), so `optuna
trials`, optuna-dashboard, `Study.get_trials` and Optuna's own stale-trial sweep read these trials
exactly like trials written through the public API. The tables are reached through Optuna's
SQLAlchemy models (optuna.storages._rdb.models), not hand-written table names, so a renamed column
fails at import or on first use rather than writing somewhere else. tests/test_optuna_private.py
pins all of this to the Optuna range in pyproject.toml and fails loudly when an upgrade moves it.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

import optuna
import sqlalchemy as sa
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

T_TRIALS = models.TrialModel.__table__
T_PARAMS = models.TrialParamModel.__table__
T_VALUES = models.TrialValueModel.__table__
T_INTERMEDIATE = models.TrialIntermediateValueModel.__table__
T_USER = models.TrialUserAttributeModel.__table__
T_SYSTEM = models.TrialSystemAttributeModel.__table__
T_HEARTBEATS = models.TrialHeartbeatModel.__table__
T_STUDIES = models.StudyModel.__table__

# The claim query filters on (study_id, state) and takes the lowest trial_id: with this index it
# reads one index entry whatever the number of waiting and finished trials. Optuna only indexes
# study_id. An extra index is invisible to Optuna (its migrations name the indexes they touch).
CLAIM_INDEX = "ix_bnsearch_trials_study_state"


def storage_of(study: optuna.Study):
    """The storage a Study talks to (for RDB storage, a _CachedStorage around an RDBStorage)."""
    return study._storage


def rdb_backend(study: optuna.Study) -> RDBStorage | None:
    storage = storage_of(study)
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


def study_id(study) -> int:
    """Internal id of a Study or a FrozenStudy."""
    return study._study_id


def trial_id(trial) -> int:
    """Internal id of a Trial or a FrozenTrial."""
    return trial._trial_id


def _backend(study: optuna.Study) -> RDBStorage:
    backend = rdb_backend(study)
    if backend is None:
        raise TypeError("bnsearch needs an RDB storage (SQLite, PostgreSQL, MySQL)")
    return backend


def _utcnow() -> datetime:
    # TrialModel stores naive UTC and converts to local time when it builds a FrozenTrial.
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _local(utc_naive: datetime | None) -> datetime | None:
    if utc_naive is None:
        return None
    return utc_naive.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)


def _lock(select, conn):
    # PostgreSQL/MySQL: row locks, and SKIP LOCKED lets concurrent claimers pass each other. SQLite
    # has no row locks: storage.py makes every transaction BEGIN IMMEDIATE, which serialises them.
    if conn.dialect.name in ("postgresql", "mysql"):
        return select.with_for_update(skip_locked=True)
    return select


# --------------------------------------------------------------------------- schema

def ensure_claim_index(backend: RDBStorage) -> None:
    """Create the claim index once (prepare_experiment); workers never need to. Plain DDL, not an
    sa.Index on Optuna's table object, which would add it to Optuna's own metadata."""
    c = T_TRIALS.c
    cols = f"{T_TRIALS.name} ({c.study_id.name}, {c.state.name}, {c.trial_id.name})"
    with backend.engine.begin() as conn:
        if conn.dialect.name in ("sqlite", "postgresql"):
            conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {CLAIM_INDEX} ON {cols}")
        elif not any(ix["name"] == CLAIM_INDEX for ix in sa.inspect(conn).get_indexes(T_TRIALS.name)):
            conn.exec_driver_sql(f"CREATE INDEX {CLAIM_INDEX} ON {cols}")


# --------------------------------------------------------------------------- plan

def enqueue_many(study: optuna.Study, items: Iterable[tuple[dict[str, Any], dict[str, Any]]]) -> list[int]:
    """Enqueue (params, user_attrs) pairs as WAITING trials in one transaction; returns their numbers.

    Each row is what Study.enqueue_trial writes: a WAITING trial, no datetimes, system attr
    `fixed_params` and the user attrs. Numbers continue the study's count, under the same study-row
    lock Optuna takes when it numbers a new trial.
    """
    items = list(items)
    if not items:
        return []
    sid = study_id(study)
    with _backend(study).engine.begin() as conn:
        lock = sa.select(T_STUDIES.c.study_id).where(T_STUDIES.c.study_id == sid)
        if conn.dialect.name in ("postgresql", "mysql"):
            lock = lock.with_for_update()
        conn.execute(lock)
        base = conn.execute(sa.select(sa.func.count()).select_from(T_TRIALS).where(T_TRIALS.c.study_id == sid)).scalar()
        numbers, system, user = [], [], []
        for i, (params, attrs) in enumerate(items):
            tid = conn.execute(sa.insert(T_TRIALS).values(
                study_id=sid, number=base + i, state=TrialState.WAITING)).inserted_primary_key[0]
            numbers.append(base + i)
            system.append({"trial_id": tid, "key": "fixed_params", "value_json": json.dumps(params)})
            user += [{"trial_id": tid, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()]
        conn.execute(sa.insert(T_SYSTEM), system)
        if user:
            conn.execute(sa.insert(T_USER), user)
    return numbers


def active_config_indices(study: optuna.Study, states=(TrialState.COMPLETE, TrialState.RUNNING,
                                                      TrialState.WAITING)) -> set[int]:
    """The `config_index` user attrs of the study's trials in `states`, in one query."""
    q = (sa.select(T_USER.c.value_json).join(T_TRIALS, T_TRIALS.c.trial_id == T_USER.c.trial_id)
         .where(T_TRIALS.c.study_id == study_id(study), T_TRIALS.c.state.in_(list(states)),
                T_USER.c.key == "config_index"))
    with _backend(study).engine.connect() as conn:
        return {json.loads(v) for (v,) in conn.execute(q)}


# --------------------------------------------------------------------------- one trial

def claim(study: optuna.Study, *, distributions: Mapping[str, BaseDistribution] | None = None,
          user_attrs: Mapping[str, Any] | None = None, heartbeat: bool = True) -> FrozenTrial | None:
    """Take the oldest WAITING trial of the study and make it RUNNING, in one transaction.

    In the same transaction: the trial's fixed parameters (from enqueue) are written as its params
    for every name in `distributions` (what `suggest_*` would write, one row each), `user_attrs`
    are set, and its first heartbeat is recorded, so a worker killed right after claiming leaves a
    trial that goes stale like any other. Two workers never get the same trial: PostgreSQL/MySQL
    lock the row (SKIP LOCKED), SQLite runs the transaction under BEGIN IMMEDIATE. Returns the
    claimed trial as a FrozenTrial (no further read), or None when nothing is waiting.
    """
    got = claim_many(study, 1, distributions=distributions, user_attrs=user_attrs, heartbeat=heartbeat)
    return got[0] if got else None


def claim_many(study: optuna.Study, n: int, *, distributions: Mapping[str, BaseDistribution] | None = None,
               user_attrs: Mapping[str, Any] | None = None, heartbeat: bool = True) -> list[FrozenTrial]:
    """`claim` for up to `n` of the oldest WAITING trials at once, all in ONE transaction and with
    the same few statements whatever `n` (set-based: one UPDATE, one read per attribute table, one
    multi-row INSERT each). A pack of 1,000 claimed trial by trial held SQLite's write lock 1,000
    times; claimed row by row in one transaction it still ran 8 statements a trial (~2 ms of a
    50-80 ms trial on a 2-core machine)."""
    sid = study_id(study)
    q = (sa.select(T_TRIALS.c.trial_id, T_TRIALS.c.number)
         .where(T_TRIALS.c.study_id == sid, T_TRIALS.c.state == TrialState.WAITING)
         .order_by(T_TRIALS.c.trial_id).limit(int(n)))
    with _backend(study).engine.begin() as conn:
        rows = conn.execute(_lock(q, conn)).all()
        return _claim_rows(conn, rows, distributions, user_attrs, heartbeat) if rows else []


def _claim_rows(conn, rows, distributions, user_attrs, heartbeat: bool) -> list[FrozenTrial]:
    """WAITING rows (trial id, number) made RUNNING, inside the caller's transaction (claim's docstring)."""
    tids = [tid for tid, _ in rows]
    start = _utcnow()
    done = conn.execute(sa.update(T_TRIALS).where(T_TRIALS.c.trial_id.in_(tids), T_TRIALS.c.state == TrialState.WAITING)
                        .values(state=TrialState.RUNNING, datetime_start=start))
    if done.rowcount != len(tids):  # cannot happen under the locks above; refuse rather than double-run
        raise RuntimeError(f"trials {tids} were claimed concurrently")
    system = _attrs_of(conn, T_SYSTEM, tids)
    user = _attrs_of(conn, T_USER, tids)
    # A re-queued trial already holds its predecessor's params (Optuna's retry callback copies
    # them): keep those rows, write only the missing ones.
    stored: dict[int, dict[str, Any]] = {tid: {} for tid in tids}
    for tid, name, value, dist in conn.execute(
            sa.select(T_PARAMS.c.trial_id, T_PARAMS.c.param_name, T_PARAMS.c.param_value, T_PARAMS.c.distribution_json)
            .where(T_PARAMS.c.trial_id.in_(tids))):
        stored[tid][name] = json_to_distribution(dist).to_external_repr(value)
    extra = dict(user_attrs or {})
    out, new_params, new_attrs = [], [], []
    for tid, number in rows:
        fixed = system[tid].get("fixed_params", {})
        params, dists = {}, {}
        for name, dist in (distributions or {}).items():
            if name in stored[tid]:
                params[name], dists[name] = stored[tid][name], dist
            elif name in fixed:
                params[name], dists[name] = fixed[name], dist
                new_params.append({"trial_id": tid, "param_name": name, "param_value": dist.to_internal_repr(fixed[name]),
                                   "distribution_json": distribution_to_json(dist)})
        new_attrs += [{"trial_id": tid, "key": k, "value_json": json.dumps(v)} for k, v in extra.items()]
        out.append(FrozenTrial(number=number, state=TrialState.RUNNING, value=None, values=None,
                               datetime_start=_local(start), datetime_complete=None, params=params, distributions=dists,
                               user_attrs={**user[tid], **extra}, system_attrs=system[tid], intermediate_values={},
                               trial_id=tid))
    if new_params:
        conn.execute(sa.insert(T_PARAMS), new_params)
    if extra:  # upsert (portable): a re-queued trial carries its predecessor's attrs, so keys may exist
        conn.execute(sa.delete(T_USER).where(T_USER.c.trial_id.in_(tids), T_USER.c.key.in_(list(extra))))
        conn.execute(sa.insert(T_USER), new_attrs)
    if heartbeat:
        conn.execute(sa.insert(T_HEARTBEATS), [{"trial_id": tid} for tid in tids])
    return out


def _attrs_of(conn, table, tids: list[int]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {tid: {} for tid in tids}
    for tid, k, v in conn.execute(sa.select(table.c.trial_id, table.c.key, table.c.value_json)
                                  .where(table.c.trial_id.in_(tids)).order_by(*table.primary_key.columns)):
        out[tid][k] = json.loads(v)
    return out


def finish_many(study: optuna.Study, items) -> list[tuple[TrialState, datetime] | TrialState | None]:
    """Record trials' results in ONE transaction: per trial its user attrs, intermediate values (what
    `trial.report(value, step)` writes; the dashboard draws learning curves from them), the value and
    the final state with its completion time -- what Study.tell writes, one commit for a trial or a
    pack. Like Study.tell, a NaN value makes a trial FAIL instead of COMPLETE. `items` are (trial id,
    value, user attrs, intermediate values). Per item: (state, completion time) when recorded, else the state
    the trial was found in (it failed as stale meanwhile and was re-queued: its result is dropped, the
    others are still recorded). Set-based like claim_many: the same few statements for one trial or a
    pack of 1,000 (row by row, a pack ran 8 statements a member)."""
    items = [(tid, float(value), dict(user_attrs or {}), dict(intermediate_values or {}))
             for tid, value, user_attrs, intermediate_values in items]
    if not items:
        return []
    tids = [tid for tid, *_ in items]
    with _backend(study).engine.begin() as conn:
        q = sa.select(T_TRIALS.c.trial_id, T_TRIALS.c.state).where(T_TRIALS.c.trial_id.in_(tids))
        if conn.dialect.name in ("postgresql", "mysql"):
            q = q.with_for_update()
        current = dict(conn.execute(q).all())
        live = [it for it in items if current.get(it[0]) == TrialState.RUNNING]
        end = _utcnow()
        if live:
            _record(conn, live, end)
    return [(TrialState.FAIL if math.isnan(value) else TrialState.COMPLETE, _local(end))
            if current.get(tid) == TrialState.RUNNING else current.get(tid) for tid, value, *_ in items]


def _record(conn, items, end: datetime) -> None:
    """finish_many's writes for RUNNING trials, inside its transaction: what Study.tell writes."""
    by_keys: dict[tuple, list[int]] = {}  # user attrs are upserted (portable): delete the keys, insert anew
    attrs, curves, values, state_of = [], [], [], {}
    for tid, value, user_attrs, intermediate_values in items:
        if user_attrs:
            by_keys.setdefault(tuple(user_attrs), []).append(tid)
            attrs += [{"trial_id": tid, "key": k, "value_json": json.dumps(v)} for k, v in user_attrs.items()]
        for step, v in intermediate_values.items():
            stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(float(v))
            curves.append({"trial_id": tid, "step": int(step), "intermediate_value": stored,
                           "intermediate_value_type": kind})
        state_of[tid] = TrialState.FAIL if math.isnan(value) else TrialState.COMPLETE  # NaN: as Study.tell
        if state_of[tid] == TrialState.COMPLETE:
            stored, kind = models.TrialValueModel.value_to_stored_repr(value)
            values.append({"trial_id": tid, "objective": 0, "value": stored, "value_type": kind})
    for keys, tids in by_keys.items():
        for chunk in _chunks(tids):
            conn.execute(sa.delete(T_USER).where(T_USER.c.trial_id.in_(chunk), T_USER.c.key.in_(list(keys))))
    if attrs:
        conn.execute(sa.insert(T_USER), attrs)
    with_curves = [tid for tid, _, _, iv in items if iv]
    for chunk in _chunks(with_curves):
        conn.execute(sa.delete(T_INTERMEDIATE).where(T_INTERMEDIATE.c.trial_id.in_(chunk)))
    if curves:
        conn.execute(sa.insert(T_INTERMEDIATE), curves)
    for chunk in _chunks([v["trial_id"] for v in values]):
        conn.execute(sa.delete(T_VALUES).where(T_VALUES.c.trial_id.in_(chunk)))
    if values:
        conn.execute(sa.insert(T_VALUES), values)
    for state in (TrialState.COMPLETE, TrialState.FAIL):
        for chunk in _chunks([tid for tid, st in state_of.items() if st == state]):
            conn.execute(sa.update(T_TRIALS).where(T_TRIALS.c.trial_id.in_(chunk))
                         .values(state=state, datetime_complete=end))


def _chunks(ids: list[int], size: int = 500):
    """`ids` in slices well under any backend's limit on bound parameters in one IN (...)."""
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def record_heartbeats(study: optuna.Study, tids) -> None:
    """RDBStorage.record_heartbeat for many trials in ONE transaction: the database's own clock, as
    Optuna writes it (its stale check compares with that clock). Rows come from the claim; a pack's
    heartbeat thread beats every member still training, and 1,000 beats a transaction each held
    SQLite's write lock for seconds of every interval."""
    tids = list(tids)
    with _backend(study).engine.begin() as conn:
        for i in range(0, len(tids), 500):  # well under any backend's limit on bound parameters
            conn.execute(sa.update(T_HEARTBEATS).where(T_HEARTBEATS.c.trial_id.in_(tids[i:i + 500]))
                         .values(heartbeat=sa.func.now()))


def claim_waiting(study: optuna.Study, *, heartbeat: bool = False) -> optuna.Trial | None:
    """Claim one WAITING trial and return it as an optuna.Trial (for callers that go on through the
    public API: suggest, set_user_attr, tell). Without `heartbeat` the trial looks like one whose
    worker died before its first beat."""
    frozen = claim(study, heartbeat=heartbeat)
    return None if frozen is None else optuna.Trial(study, trial_id(frozen))


# --------------------------------------------------------------------------- reading

def running_trials(study: optuna.Study) -> list[tuple[int, datetime | None, bool, str | None]]:
    """(trial_id, datetime_start in local time, has written a heartbeat, `worker` owner tag) of every
    RUNNING trial, in one query (Study.get_trials would load every WAITING trial too)."""
    owner = T_USER.alias("owner")
    q = (sa.select(T_TRIALS.c.trial_id, T_TRIALS.c.datetime_start, T_HEARTBEATS.c.trial_id, owner.c.value_json)
         .outerjoin(T_HEARTBEATS, T_HEARTBEATS.c.trial_id == T_TRIALS.c.trial_id)
         .outerjoin(owner, sa.and_(owner.c.trial_id == T_TRIALS.c.trial_id, owner.c.key == "worker"))
         .where(T_TRIALS.c.study_id == study_id(study), T_TRIALS.c.state == TrialState.RUNNING))
    with _backend(study).engine.connect() as conn:
        return [(tid, _local(start), beat is not None, json.loads(tag) if tag else None)
                for tid, start, beat, tag in conn.execute(q)]


def read_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Every trial of the study, as Study.get_trials(deepcopy=False) returns them (same FrozenTrials,
    same order), from six plain queries. Optuna's ORM read (selectinload of five relationships into
    mapped objects) took 0.15-0.38 s per 200 trials of 20 epochs, up to a third of a report's time
    after the last trial; this takes ~0.04 s. Values are decoded by Optuna's own models; tests
    compare the two field for field."""
    sid = study_id(study)
    tc = T_TRIALS.c
    with _backend(study).engine.connect() as conn:
        trials = conn.execute(sa.select(tc.trial_id, tc.number, tc.state, tc.datetime_start, tc.datetime_complete)
                              .where(tc.study_id == sid).order_by(tc.trial_id)).all()

        def rows(table, order, *cols):
            q = (sa.select(table.c.trial_id, *(table.c[c] for c in cols))
                 .join(T_TRIALS, tc.trial_id == table.c.trial_id).where(tc.study_id == sid))
            return conn.execute(q.order_by(table.c.trial_id, table.c[order])).all()

        # Params in param_id order (Optuna sorts them so); attributes by key and intermediate values
        # by step, the order of the unique (trial_id, key/step) index Optuna's ORM read comes in on
        # SQLite (elsewhere its order is the planner's; here it is the same on every backend).
        params = rows(T_PARAMS, "param_id", "param_name", "param_value", "distribution_json")
        values = rows(T_VALUES, "objective", "objective", "value", "value_type")
        user = rows(T_USER, "key", "key", "value_json")
        system = rows(T_SYSTEM, "key", "key", "value_json")
        inter = rows(T_INTERMEDIATE, "step", "step", "intermediate_value", "intermediate_value_type")
    by: dict[str, dict[int, list]] = {}
    for name, table in (("params", params), ("values", values), ("user", user), ("system", system), ("inter", inter)):
        d = by.setdefault(name, {})
        for row in table:
            d.setdefault(row[0], []).append(row[1:])
    value_of = models.TrialValueModel.stored_repr_to_value
    inter_of = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value
    dists: dict[str, BaseDistribution] = {}
    out = []
    for tid, number, state, start, complete in trials:
        vals = by["values"].get(tid)
        values_list: list[float] | None = None
        if vals:
            values_list = [0.0] * len(vals)
            for objective, value, kind in vals:
                values_list[objective] = value_of(value, kind)
        ps = by["params"].get(tid, [])
        for _, _, dj in ps:
            if dj not in dists:
                dists[dj] = json_to_distribution(dj)
        dist = {name: dists[dj] for name, _, dj in ps}
        out.append(FrozenTrial(
            number=number, state=state, value=None, values=values_list,
            datetime_start=_local(start), datetime_complete=_local(complete),
            params={name: dist[name].to_external_repr(v) for name, v, _ in ps}, distributions=dist,
            user_attrs={k: json.loads(v) for k, v in by["user"].get(tid, [])},
            system_attrs={k: json.loads(v) for k, v in by["system"].get(tid, [])},
            intermediate_values={step: inter_of(v, kind) for step, v, kind in by["inter"].get(tid, [])},
            trial_id=tid))
    return out


def heartbeating_trial_ids(backend: RDBStorage) -> set[int]:
    """Ids of the trials that have written at least one heartbeat (Optuna's trial_heartbeats table)."""
    with backend.engine.connect() as conn:
        return {r[0] for r in conn.execute(sa.select(T_HEARTBEATS.c.trial_id))}


def arm_counts(study: optuna.Study) -> dict[str, Any]:
    """Trials per state, the best COMPLETE value (maximised), how many COMPLETE trials diverged and
    how many FAIL trials were re-queued (interrupted, or their worker died: their configuration ran
    again, see readback.count_requeued), from aggregate queries instead of loading every trial (the
    progress display runs this about once a second; the re-queued count costs two small queries,
    only when something failed)."""
    sid = study_id(study)
    complete = sa.and_(T_TRIALS.c.study_id == sid, T_TRIALS.c.state == TrialState.COMPLETE)
    with _backend(study).engine.connect() as conn:
        counts = {s.name: n for s, n in conn.execute(
            sa.select(T_TRIALS.c.state, sa.func.count()).where(T_TRIALS.c.study_id == sid).group_by(T_TRIALS.c.state))}
        best_by_kind = dict(conn.execute(
            sa.select(T_VALUES.c.value_type, sa.func.max(T_VALUES.c.value))
            .join(T_TRIALS, T_TRIALS.c.trial_id == T_VALUES.c.trial_id)
            .where(complete, T_VALUES.c.objective == 0).group_by(T_VALUES.c.value_type)).all())
        diverged = conn.execute(sa.select(sa.func.count()).select_from(T_USER)
                                .join(T_TRIALS, T_TRIALS.c.trial_id == T_USER.c.trial_id)
                                .where(complete, T_USER.c.key == "diverged", T_USER.c.value_json == "true")).scalar()
        requeued = 0
        if counts.get("FAIL"):
            retried = {n for (v,) in conn.execute(
                sa.select(T_SYSTEM.c.value_json).join(T_TRIALS, T_TRIALS.c.trial_id == T_SYSTEM.c.trial_id)
                .where(T_TRIALS.c.study_id == sid, T_SYSTEM.c.key == "retry_history")) for n in json.loads(v)}
            requeued = sum(n in retried for (n,) in conn.execute(
                sa.select(T_TRIALS.c.number).where(T_TRIALS.c.study_id == sid, T_TRIALS.c.state == TrialState.FAIL)))
    kind = models.TrialValueModel.TrialValueType
    best = (math.inf if kind.INF_POS in best_by_kind else best_by_kind.get(kind.FINITE)
            if kind.FINITE in best_by_kind else -math.inf if kind.INF_NEG in best_by_kind else None)
    return {"counts": counts, "best": best, "diverged": int(diverged or 0), "requeued": requeued}
