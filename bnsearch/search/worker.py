"""Workers: claim a queued trial, train it with a heartbeat, record it; survive storage hiccups.

See docs/design.md, Worker protocol."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterable

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from .._quiet import quiet
from ..config import Settings
from ._optuna_private import claim_waiting, storage_of, trial_id
from .plan import trial_seed, Arm, load_arm, prepare_experiment
from .readback import arm_state
from .stale import fail_stale, requeue
from . import lifecycle
from .storage import ACTIVE, SearchError, StorageFailure, heartbeat_interval, storage_failure, storage_url

# --------------------------------------------------------------------------- workers

class _Heartbeat:
    """Records a heartbeat at once and then every interval, so a dead worker's trial goes stale."""

    def __init__(self, storage: RDBStorage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat is harmless; the next one retries
                self.storage.record_heartbeat(self.trial_id)
            if self.stop.wait(heartbeat_interval()):
                return

    def __enter__(self):
        self.storage.record_heartbeat(self.trial_id)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def _next_trial(arm: Arm) -> optuna.Trial | None | str:
    """A trial to run, "wait" when the rest is held by other workers, None when the arm is done."""
    study = arm.study
    if arm.paired:
        trial = claim_waiting(study)
        if trial is not None:
            return trial
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return "wait" if running else None
    trial = claim_waiting(study)  # re-enqueued retries first
    if trial is not None:
        return trial
    counts = study.get_trials(deepcopy=False, states=ACTIVE)
    if len(counts) < arm.budget:
        return study.ask()
    running = [t for t in counts if t.state == TrialState.RUNNING]
    if running and len([t for t in counts if t.state == TrialState.COMPLETE]) < arm.budget:
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


def run_trial(arm: Arm, trial: optuna.Trial, data, device: str) -> FrozenTrial:
    """Train one configuration and record it. Divergence is a COMPLETE trial with a poor score."""
    from ..train import train

    trial.set_user_attr("worker", lifecycle.owner_tag())  # first: an interrupt from here on can release it
    s = arm.settings
    params = dict(s.fixed_params())
    for name, dist in s.distributions().items():
        params[name] = _suggest(trial, name, dist)
    seed = trial.user_attrs.get("seed")
    if seed is None:  # adaptive samplers: no plan, so derive the seed from the trial number
        seed = trial_seed(s.seed, 100_000 + trial.number)
        trial.set_user_attr("seed", seed)
    trial.set_user_attr("arm", arm.arm)
    storage = storage_of(arm.study)
    try:
        with _Heartbeat(storage, trial_id(trial)):
            r = train(params, data, bn=arm.bn, epochs=s.epochs, seed=int(seed), device=device)
    except BaseException as exc:
        reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            trial.set_user_attr("error", reason[:2000])
            arm.study.tell(trial, state=TrialState.FAIL)
            requeue(arm.study, storage.get_trial(trial_id(trial)))
        raise
    for key, value in (("diverged", bool(r.diverged)), ("epochs_run", int(r.epochs_run)),
                       ("train_loss", [float(x) for x in r.train_loss]),
                       ("val_score", [float(x) for x in r.val_curve]),
                       ("test_score", float(r.test_score)), ("seconds", float(r.seconds))):
        trial.set_user_attr(key, value)
    return arm.study.tell(trial, float(r.val_score))


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


def _show(progress: Callable[[list["Arm"]], None], arms: list["Arm"]) -> None:
    """The progress display reads storage; a storage hiccup must not stop the workers it watches."""
    try:
        progress(arms)
    except Exception as exc:
        if not _is_transient(exc):
            raise


@quiet
def run_worker(url: str | None, experiment: str, arms: Iterable[str], *, device: str = "auto",
               on_trial: Callable[[str, FrozenTrial], None] | None = None,
               max_storage_retry_s: float = 300.0) -> int:
    """Run trials of the given arms until none is left. Returns the number of trials this worker
    finished. Survives transient storage errors (a database restart) with backoff.

    When the rest of an arm is held by other workers, this one moves on to the next arm instead of
    idling, and only waits (for them to finish, or to go stale and be re-queued) once every arm is
    in that state.
    """
    import torch

    from ..data import load_dataset

    torch.set_num_threads(1)  # one process per core beats threads for small nets (docs/design.md, Speed)
    device = resolve_device(device)
    done = 0
    pending = list(dict.fromkeys(arms))
    state: dict[str, tuple[Arm, Any]] = {}
    backoff, failing_since = 1.0, None
    while pending:
        waiting = []
        for arm_name in pending:
            try:
                if arm_name not in state:
                    arm = load_arm(url, experiment, arm_name)
                    state[arm_name] = (arm, load_dataset(arm.settings.data, arm.settings.seed).to(device))
                arm, data = state[arm_name]
                while True:
                    fail_stale(arm.study)
                    trial = _next_trial(arm)
                    if trial is None or trial == "wait":
                        break
                    frozen = run_trial(arm, trial, data, device)
                    done += 1
                    backoff, failing_since = 1.0, None
                    if on_trial is not None:
                        on_trial(arm_name, frozen)
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
                waiting.append(arm_name)
        pending = waiting
        if pending:
            time.sleep(min(0.5, heartbeat_interval()))  # a cheap poll; idle workers shorten the tail
    return done


def _worker_entry(url, experiment, arms, device) -> None:
    # Child processes: Ctrl-C, SIGTERM and the parent's death arrive here as KeyboardInterrupt;
    # run_trial fails and re-queues the trial in flight (docs/design.md, Worker life cycle).
    lifecycle.start_worker()
    try:
        run_worker(url, experiment, arms, device=device)
    except KeyboardInterrupt:
        lifecycle.release_own_trials(url, experiment, arms)
    except Exception as exc:
        failure = storage_failure(exc, url)
        if failure is None:
            raise
        # The parent names the storage and the fix once; N workers printing N tracebacks did not.
        sys.exit(lifecycle.STORAGE_EXIT[failure.kind])


def start_workers(url: str | None, experiment: str, arms: list[str], jobs: int, device: str):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fork after torch/SQLAlchemy init is unsafe
    procs = [ctx.Process(target=_worker_entry, args=(storage_url(url), experiment, arms, device), daemon=False)
             for _ in range(jobs)]
    for p in procs:
        p.start()
    return procs



def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


@quiet
def run_arms(settings: Settings, url: str | None, arms: list[str], *, jobs: int | None = None,
             progress: Callable[[list[Arm]], None] | None = None) -> list[Arm]:
    """Prepare the studies, then run what is missing with `jobs` worker processes (1 = in-process).

    `progress(arms)` is called after every trial (jobs = 1) or about every second (jobs > 1).
    """
    jobs = default_jobs() if jobs is None else jobs  # `--jobs 0` is an error, not "default"
    if jobs < 1:
        raise SearchError(f"--jobs must be at least 1 (got {jobs})")
    resolve_device(settings.device)
    if settings.data.dataset == "csv":
        # A bad CSV is bad input: reject it before storage is touched (built-ins are checked by the config).
        from ..data import load_dataset
        load_dataset(settings.data, settings.seed)
    prepared = prepare_experiment(settings, url, arms)
    todo = [a.arm for a in prepared if arm_state(a).complete < a.budget]
    if progress:
        progress(prepared)
    if not todo:
        return prepared
    if jobs == 1:
        try:
            run_worker(url, settings.name, todo, device=settings.device,
                       on_trial=(lambda *_: progress(prepared)) if progress else None)
        except KeyboardInterrupt:
            lifecycle.release_own_trials(url, settings.name, todo)
            raise
        return prepared
    procs = start_workers(url, settings.name, todo, jobs, settings.device)
    refresh = (lambda: _show(progress, prepared)) if progress else None
    try:
        while any(p.is_alive() for p in procs):
            if progress:
                _show(progress, prepared)
            for p in procs:
                p.join(timeout=1.0 / len(procs))  # polling storage costs the workers CPU
            if any(p.exitcode not in (None, 0) for p in procs):
                # One worker failed (e.g. a write hit a full disk): the others would only fail the
                # same way, after minutes of retries. Stop them now; their trials are re-queued.
                lifecycle.stop_workers(procs, on_wait=refresh)
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches the workers too, `kill -INT`/`kill PID` of this process alone
        # does not: forward it, so every worker fails and re-queues its trial within seconds.
        lifecycle.stop_workers(procs, on_wait=refresh)
        if refresh:
            with contextlib.suppress(Exception):
                refresh()
        raise
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    bad = [p.exitcode for p in procs if p.exitcode not in (0, -signal.SIGINT)]
    if progress:
        _show(progress, prepared)
    storage_kinds = sorted({lifecycle.EXIT_KIND[c] for c in bad if c in lifecycle.EXIT_KIND})
    if storage_kinds:
        # Re-create the worker's failure here, where the message can name the storage once.
        raise StorageFailure(*_storage_message(storage_kinds[0], url))
    if bad:
        raise RuntimeError(f"{len(bad)} of {jobs} workers failed (exit codes {bad}); rerun the same command to resume")
    return prepared


def _storage_message(kind: str, url: str | None) -> tuple[str, int, str]:
    from .storage import _KINDS, _describe, masked

    code = next((c for k, c, _ in _KINDS if k == kind), 1)
    detail = {"full": "a worker could not write: database or disk is full"}.get(kind, f"a worker failed: {kind}")
    return _describe(kind, masked(storage_url(url)), detail), code, kind

