"""Studies, arms, the paired plan, storage, workers, resume (docs/design.md, Storage and Workers).

One experiment = one Optuna study per arm, `<experiment>/<arm>`, in any Optuna RDB storage. In the
paired design the list of configurations is drawn once from the seeded sampler and enqueued in
every arm *before* any worker starts; workers only claim WAITING trials, so the list is consumed
exactly once, without gaps or duplicates, by any number of processes on any number of machines.
Everything a worker needs (config TOML, seed, budget) lives in study user attrs.

    storage          open_storage and its reliability settings, study names
    plan             seeded configurations, prepare_experiment, load_arm
    stale            failing and re-queueing dead workers' trials
    worker           claim -> train -> record (one trial, or a pack of them), worker processes, run_arms
    packing          --pack: when a worker packs trials and how many it claims
    lifecycle        signals; workers that never outlive their parent
    readback         load_trials, list_experiments, per-arm progress
    _optuna_private  every use of Optuna's private API
"""

from ._optuna_private import claim_waiting
from .plan import ArmStudy, load_arm, make_sampler, prepare_experiment, sample_configs, trial_seed
from .readback import (TRIAL_COLUMNS, ArmState, arm_state, list_experiments, load_trials, load_trials_and_records,
                       packing_note, trial_records)
from .stale import fail_stale, requeue
from .storage import (ACTIVE, ARMS, DEFAULT_STORAGE, MAX_RETRY, SearchError, StorageFailure, arm_of,
                      check_environment, heartbeat_interval, masked, open_storage, reading, storage_failure,
                      storage_url, study_name)
from .worker import OUT_OF_MEMORY, default_jobs, is_out_of_memory, resolve_device, run_arms, run_worker, start_workers

_pop_waiting = claim_waiting  # the name older tests and notebooks use

__all__ = ["ACTIVE", "ARMS", "ArmStudy", "ArmState", "DEFAULT_STORAGE", "MAX_RETRY", "SearchError", "StorageFailure", "TRIAL_COLUMNS",
           "arm_of", "arm_state", "claim_waiting", "default_jobs", "fail_stale", "heartbeat_interval",
           "list_experiments", "load_arm", "load_trials", "load_trials_and_records", "make_sampler", "masked", "open_storage", "packing_note", "prepare_experiment",
           "requeue", "resolve_device", "run_arms", "run_worker", "sample_configs", "start_workers",
           "storage_failure", "storage_url", "study_name", "trial_records", "trial_seed"]
