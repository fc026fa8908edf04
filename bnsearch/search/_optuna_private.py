"""Every use of Optuna's private API, in one place.

bnsearch needs three things Optuna's public API does not offer: the storage behind a Study (to
record heartbeats and set trial states directly), the internal ids of studies and trials, and
which trials have ever written a heartbeat (to fail RUNNING trials of workers killed before their
first beat). tests/test_optuna_private.py pins these to the Optuna range in pyproject.toml and fails
loudly when an upgrade moves them.
"""

from __future__ import annotations

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState


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


def heartbeating_trial_ids(backend: RDBStorage) -> set[int]:
    """Ids of the trials that have written at least one heartbeat (Optuna's trial_heartbeats table)."""
    with backend.engine.connect() as conn:
        return {r[0] for r in conn.exec_driver_sql("SELECT trial_id FROM trial_heartbeats")}


def claim_waiting(study: optuna.Study) -> optuna.Trial | None:
    """Claim one WAITING trial; the RUNNING transition is atomic in the storage, so two workers
    never get the same one (this is what Study.ask does, minus creating a new trial when the
    queue is empty, which in the paired design would run an unplanned configuration)."""
    storage = storage_of(study)
    for t in storage.get_all_trials(study_id(study), deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(trial_id(t), state=TrialState.RUNNING):
                return optuna.Trial(study, trial_id(t))
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None
