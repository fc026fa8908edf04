"""Studies, arms, samplers, storage, workers, resume.

One experiment = two Optuna studies, `<experiment>/bn-on` and `<experiment>/bn-off`, in any Optuna
RDB storage. In the paired design the list of configurations is drawn once from the seeded sampler
and enqueued in both studies *before* any worker starts; workers only pop WAITING trials, so the
list is consumed exactly once, without gaps or duplicates, by any number of processes on any number
of machines. Everything a worker needs (config TOML, seed, budget) lives in study user attrs.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from . import __version__
from .config import Settings, load_config_text, to_toml

ARMS = ("bn-on", "bn-off")
DEFAULT_STORAGE = "sqlite:///results/bnsearch.db"
MAX_RETRY = 3  # re-runs of one configuration after crashes before it is left FAIL
ACTIVE = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


class SearchError(ValueError):
    """Bad usage or input at the storage/experiment level (exit code 2)."""


# --------------------------------------------------------------------------- storage

def heartbeat_interval() -> int:
    # Seconds between heartbeats; a trial silent for 3 intervals is stale. Tests shorten it.
    return max(1, int(os.environ.get("BNSEARCH_HEARTBEAT", "10")))


def storage_url(url: str | None = None) -> str:
    return url or os.environ.get("BNSEARCH_STORAGE") or DEFAULT_STORAGE


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):]
    return None if path in ("", ":memory:") else Path(path)


def open_storage(url: str | None = None, *, create: bool = True) -> RDBStorage:
    """An RDBStorage with the settings measured to be reliable (DESIGN.md section 5)."""
    url = storage_url(url)
    if "://" not in url:
        raise SearchError(f"--storage: {url!r} is not a database URL; use e.g. sqlite:///results/bnsearch.db "
                          "or postgresql+psycopg2://user@host/db")
    engine_kwargs: dict[str, Any] = {}
    db = _sqlite_path(url)
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}
        if db is not None:
            if not create and not db.exists():
                raise SearchError(f"--storage: no database at {db}; run `bnsearch study` or `bnsearch compare` first, "
                                  "or pass the --storage you used")
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SearchError(f"--storage: cannot create folder {db.parent} ({exc.strerror})") from None
    else:
        engine_kwargs["pool_pre_ping"] = True
    hb = heartbeat_interval()
    try:
        storage = RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=hb, grace_period=3 * hb,
            heartbeat_stale_trial_callback=requeue,
        )
    except (ImportError, ModuleNotFoundError) as exc:
        raise SearchError(f"--storage: driver missing for {url.split(':')[0]} ({exc}); "
                          "pip install 'bnsearch[postgres]' for PostgreSQL") from None
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.OperationalError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0][:200]
        raise SearchError(f"--storage: cannot open {url!r} ({msg}); check the URL and that the database is reachable") from None
    if url.startswith("sqlite"):
        _serialize_sqlite(storage.engine, wal=db is not None)
    return storage


def _serialize_sqlite(engine: sqlalchemy.engine.Engine, wal: bool) -> None:
    """Make every SQLite transaction take the write lock at BEGIN.

    pysqlite only sends BEGIN before the first write, so Optuna's read-check-write steps (claiming
    a WAITING trial, failing a stale one) run their read outside the transaction: two processes
    both saw the same WAITING trial and both ran it. BEGIN IMMEDIATE serialises them, the
    SQLAlchemy-documented recipe for pysqlite. WAL keeps the progress monitor's reads cheap, and
    with WAL, synchronous=NORMAL still survives a killed process (only a power cut can lose the last
    commits) while saving an fsync per commit: a trial makes about ten (measured: jobs=1 overhead
    for 48 trials fell from ~9 s to ~5 s).
    """
    def on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN itself
        if wal:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    sqlalchemy.event.listen(engine, "connect", on_connect)
    sqlalchemy.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    engine.dispose()  # connections made while Optuna created its tables predate the hooks


def study_name(experiment: str, arm: str) -> str:
    return f"{experiment}/{arm}"


def arm_of(bn: str | bool) -> str:
    if isinstance(bn, bool):
        return "bn-on" if bn else "bn-off"
    if bn not in ("on", "off"):
        raise SearchError(f"--bn: must be 'on' or 'off' (got {bn!r})")
    return f"bn-{bn}"


# --------------------------------------------------------------------------- configurations

def trial_seed(seed: int, index: int) -> int:
    """Training seed of configuration `index`: the same in both arms, independent of worker order."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] & 0x7FFFFFFF)


def make_sampler(settings: Settings, worker: int = 0) -> optuna.samplers.BaseSampler:
    seed = settings.seed + 1000 * worker
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=settings.seed, scramble=True, warn_independent_sampling=False)
    if settings.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.GPSampler(seed=seed)


def sample_configs(settings: Settings, n: int) -> list[dict[str, Any]]:
    """The paired list: n configurations drawn from the seeded sampler in a throwaway study.

    Random and Sobol draws are prefix-stable, so raising `trials` later extends the same list.
    """
    study = optuna.create_study(sampler=make_sampler(settings), direction="maximize")
    dists = settings.distributions()
    out = []
    for _ in range(n):
        t = study.ask(dists)
        out.append(dict(t.params))
        study.tell(t, 0.0)
    return out


# --------------------------------------------------------------------------- experiment setup

@dataclass
class Arm:
    """One arm's study plus what a worker needs to run it, all recovered from storage."""
    study: optuna.Study
    arm: str
    settings: Settings
    budget: int

    @property
    def paired(self) -> bool:
        return self.settings.paired

    @property
    def bn(self) -> bool:
        return self.arm == "bn-on"


def _meta(settings: Settings, arm: str) -> dict[str, Any]:
    import torch
    return {
        "bnsearch": 1, "experiment": settings.name, "arm": arm, "bn": arm == "bn-on",
        "config_toml": to_toml(settings), "config_hash": settings.config_hash(), "seed": settings.seed,
        "paired": settings.paired, "sampler": settings.sampler, "budget": settings.trials,
        "bnsearch_version": __version__, "torch_version": torch.__version__.split("+")[0],
        "optuna_version": optuna.__version__,
    }


def prepare_experiment(settings: Settings, url: str | None, arms: Iterable[str] = ARMS) -> list[Arm]:
    """Create (or check) the studies and enqueue what is missing — once, before workers start.

    Parallel first-time table creation races (DESIGN.md section 5), and so would two processes
    enqueueing the same configuration, so this is the single place that writes the plan.
    """
    storage = open_storage(url)
    arms = list(arms)
    existing = {s.study_name: s for s in storage.get_all_studies()}
    # Check every arm before writing anything, so a rejected command leaves storage untouched.
    for arm in arms:
        old = existing.get(study_name(settings.name, arm))
        if old is not None and old.user_attrs.get("config_hash") not in (None, settings.config_hash()):
            raise SearchError(
                f"experiment {settings.name!r} already exists in this storage with a different config "
                f"(hash {old.user_attrs.get('config_hash')} vs {settings.config_hash()}); "
                "use a new experiment.name or the config it was created with")
    configs = sample_configs(settings, settings.trials) if settings.paired else []
    out = []
    for arm in arms:
        study = optuna.create_study(storage=storage, study_name=study_name(settings.name, arm),
                                    direction="maximize", load_if_exists=True, sampler=make_sampler(settings))
        meta = _meta(settings, arm)
        old_budget = study.user_attrs.get("budget", 0)
        for k, v in meta.items():
            if k == "budget":
                v = max(v, old_budget)  # a smaller --trials never shrinks a stored plan
            if study.user_attrs.get(k) != v and not (k.endswith("_version") and k in study.user_attrs):
                study.set_user_attr(k, v)
        fail_stale(study)
        if settings.paired:
            _enqueue_missing(study, settings, configs)
        out.append(Arm(study, arm, settings, max(settings.trials, old_budget)))
    return out


def _enqueue_missing(study: optuna.Study, settings: Settings, configs: list[dict[str, Any]]) -> int:
    """Enqueue every configuration index that has no COMPLETE, RUNNING or WAITING trial."""
    covered = {t.user_attrs.get("config_index") for t in study.get_trials(deepcopy=False, states=ACTIVE)}
    n = 0
    for i, params in enumerate(configs):
        if i not in covered:
            study.enqueue_trial(params, user_attrs={"config_index": i, "seed": trial_seed(settings.seed, i)})
            n += 1
    return n


def load_arm(url: str | None, experiment: str, arm: str) -> Arm:
    storage = open_storage(url, create=False)
    name = study_name(experiment, arm)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = sorted({s.study_name.rsplit("/", 1)[0] for s in storage.get_all_studies()})
        raise SearchError(f"no study {name!r} in this storage; experiments here: {', '.join(known) or 'none'}") from None
    text = study.user_attrs.get("config_toml")
    if text is None:
        raise SearchError(f"study {name!r} was not created by bnsearch (no config_toml user attr)")
    settings = load_config_text(text, f"storage:{name}")
    study.sampler = make_sampler(settings, worker=os.getpid() % 997)
    return Arm(study, arm, settings, int(study.user_attrs.get("budget", settings.trials)))


def fail_stale(study: optuna.Study) -> None:
    """Fail dead workers' trials so their configurations run again.

    Optuna's fail_stale_trials handles trials whose heartbeat stopped (its callback re-enqueues
    them). A worker killed before its first heartbeat leaves a RUNNING trial Optuna never looks
    at; those are failed here once older than the grace period, and re-enqueued the same way.
    """
    storage = study._storage
    backend = getattr(storage, "_backend", storage)  # Study wraps RDBStorage in a _CachedStorage
    optuna.storages.fail_stale_trials(study)
    grace = 3 * heartbeat_interval()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if running and isinstance(backend, RDBStorage):
        with backend.engine.connect() as conn:
            beating = {r[0] for r in conn.exec_driver_sql("SELECT trial_id FROM trial_heartbeats")}
        now = time.time()
        for t in running:
            started = t.datetime_start.timestamp() if t.datetime_start else now
            if t._trial_id not in beating and now - started > grace:
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    # The reason first: a finished trial's attrs can no longer be written.
                    storage.set_trial_user_attr(t._trial_id, "error", "worker died before its first heartbeat")
                    if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                        requeue(study, storage.get_trial(t._trial_id))


def requeue(study: optuna.Study, failed: FrozenTrial) -> None:
    """Run a failed trial's configuration again (same params and seed), at most MAX_RETRY times.

    Optuna's callback copies every user attr into the retry; the failure's `error` text is dropped,
    or the retry (and, once it succeeds, a COMPLETE trial) would carry its predecessor's error.
    """
    if "error" in failed.user_attrs:
        failed = copy.copy(failed)
        failed.user_attrs = {k: v for k, v in failed.user_attrs.items() if k != "error"}
    RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, failed)


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


def _pop_waiting(study: optuna.Study) -> optuna.Trial | None:
    """Claim one WAITING trial; the RUNNING transition is atomic in the storage, so two workers
    never get the same one (this is what Study.ask does, minus creating a new trial when the
    queue is empty, which in the paired design would run an unplanned configuration)."""
    storage = study._storage
    for t in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, t._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def _next_trial(arm: Arm) -> optuna.Trial | None | str:
    """A trial to run, "wait" when the rest is held by other workers, None when the arm is done."""
    study = arm.study
    if arm.paired:
        trial = _pop_waiting(study)
        if trial is not None:
            return trial
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return "wait" if running else None
    trial = _pop_waiting(study)  # re-enqueued retries first
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
    from .train import train

    s = arm.settings
    params = dict(s.fixed_params())
    for name, dist in s.distributions().items():
        params[name] = _suggest(trial, name, dist)
    seed = trial.user_attrs.get("seed")
    if seed is None:  # adaptive samplers: no plan, so derive the seed from the trial number
        seed = trial_seed(s.seed, 100_000 + trial.number)
        trial.set_user_attr("seed", seed)
    trial.set_user_attr("arm", arm.arm)
    storage = arm.study._storage
    try:
        with _Heartbeat(storage, trial._trial_id):
            r = train(params, data, bn=arm.bn, epochs=s.epochs, seed=int(seed), device=device)
    except BaseException as exc:
        reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            trial.set_user_attr("error", reason[:2000])
            arm.study.tell(trial, state=TrialState.FAIL)
            requeue(arm.study, storage.get_trial(trial._trial_id))
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

    from .data import load_dataset

    torch.set_num_threads(1)  # one process per core beats threads for small nets (DESIGN.md section 8)
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
    # Child processes: Ctrl-C arrives here too; run_trial fails and re-queues the trial in flight.
    try:
        run_worker(url, experiment, arms, device=device)
    except KeyboardInterrupt:
        pass


def start_workers(url: str | None, experiment: str, arms: list[str], jobs: int, device: str):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fork after torch/SQLAlchemy init is unsafe
    procs = [ctx.Process(target=_worker_entry, args=(storage_url(url), experiment, arms, device), daemon=False)
             for _ in range(jobs)]
    for p in procs:
        p.start()
    return procs


# --------------------------------------------------------------------------- progress

@dataclass
class ArmState:
    complete: int
    running: int
    failed: int
    budget: int
    best: float | None
    diverged: int


def arm_state(arm: Arm) -> ArmState:
    trials = arm.study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return ArmState(
        complete=len(complete),
        running=sum(t.state == TrialState.RUNNING for t in trials),
        failed=sum(t.state == TrialState.FAIL for t in trials),
        budget=arm.budget,
        best=max((t.value for t in complete), default=None),
        diverged=sum(bool(t.user_attrs.get("diverged")) for t in complete),
    )


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


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
        from .data import load_dataset
        load_dataset(settings.data, settings.seed)
    prepared = prepare_experiment(settings, url, arms)
    todo = [a.arm for a in prepared if arm_state(a).complete < a.budget]
    if progress:
        progress(prepared)
    if not todo:
        return prepared
    if jobs == 1:
        run_worker(url, settings.name, todo, device=settings.device,
                   on_trial=(lambda *_: progress(prepared)) if progress else None)
        return prepared
    procs = start_workers(url, settings.name, todo, jobs, settings.device)
    try:
        while any(p.is_alive() for p in procs):
            if progress:
                _show(progress, prepared)
            for p in procs:
                p.join(timeout=1.0 / len(procs))  # polling storage costs the workers CPU
    except KeyboardInterrupt:
        # Children got the same SIGINT: give them time to fail and re-queue their trials.
        for p in procs:
            p.join(timeout=30)
        raise
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
    bad = [p.exitcode for p in procs if p.exitcode not in (0, -signal.SIGINT)]
    if progress:
        _show(progress, prepared)
    if bad:
        raise RuntimeError(f"{len(bad)} of {jobs} workers failed (exit codes {bad}); rerun the same command to resume")
    return prepared


# --------------------------------------------------------------------------- reading back

TRIAL_COLUMNS = ["experiment", "arm", "number", "state", "config_index", "seed", "score", "test_score",
                 "diverged", "epochs_run", "seconds"]


def load_trials(url: str | None, experiment: str, arms: Iterable[str] = ARMS) -> "pd.DataFrame":
    """Every trial of the experiment's studies, one row each (all states), params as columns."""
    import pandas as pd

    rows = []
    param_names: list[str] = []
    for arm_name in arms:
        arm = load_arm(url, experiment, arm_name)
        for n in arm.settings.distributions():
            if n not in param_names:
                param_names.append(n)
        for t in arm.study.get_trials(deepcopy=False):
            ua = t.user_attrs
            rows.append({
                "experiment": experiment, "arm": arm_name, "number": t.number, "state": t.state.name,
                "config_index": ua.get("config_index"), "seed": ua.get("seed"),
                "score": t.value if t.state == TrialState.COMPLETE else float("nan"),
                "test_score": ua.get("test_score", float("nan")) if t.state == TrialState.COMPLETE else float("nan"),
                "diverged": bool(ua.get("diverged", False)), "epochs_run": ua.get("epochs_run"),
                "seconds": ua.get("seconds", float("nan")), **t.params,
            })
    df = pd.DataFrame(rows, columns=TRIAL_COLUMNS + param_names)
    df["config_index"] = df["config_index"].astype("Int64")
    df["seed"] = df["seed"].astype("Int64")
    df["epochs_run"] = df["epochs_run"].astype("Int64")
    return df


def list_experiments(url: str | None) -> list[dict[str, Any]]:
    """One row per study created by bnsearch: experiment, arm, trial counts by state, budget."""
    storage = open_storage(url, create=False)
    out = []
    for s in storage.get_all_studies():
        if "/" not in s.study_name or "config_hash" not in s.user_attrs:
            continue
        exp, arm = s.study_name.rsplit("/", 1)
        trials = storage.get_all_trials(s._study_id, deepcopy=False)
        states = [t.state for t in trials]
        values = [t.value for t in trials if t.state == TrialState.COMPLETE]
        out.append({
            "experiment": exp, "arm": arm, "complete": states.count(TrialState.COMPLETE),
            "running": states.count(TrialState.RUNNING), "waiting": states.count(TrialState.WAITING),
            "failed": states.count(TrialState.FAIL), "budget": s.user_attrs.get("budget"),
            "config_hash": s.user_attrs.get("config_hash"), "best": max(values, default=None),
        })
    return sorted(out, key=lambda r: (r["experiment"], r["arm"]))
