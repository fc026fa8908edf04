"""Dead workers' trials: fail them and re-queue their configuration (same params and seed)."""

from __future__ import annotations

import contextlib
import copy
import time
import warnings

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from ._optuna_private import running_trials, storage_of
from .ownership import owner_is_dead
from .settings import MAX_RETRY, heartbeat_interval

def fail_stale(study: optuna.Study) -> None:
    """Fail dead workers' trials so their configurations run again.

    Optuna's fail_stale_trials handles trials whose heartbeat stopped (its callback re-enqueues
    them). A worker killed before its first heartbeat leaves a RUNNING trial Optuna never looks
    at; those are failed here once older than the grace period, and re-enqueued the same way.
    """
    storage = storage_of(study)
    optuna.storages.fail_stale_trials(study)
    grace = 3 * heartbeat_interval()
    now = time.time()
    for tid, started, beating, owner in running_trials(study):
        dead = owner_is_dead(owner)  # same machine, process gone: no need to wait for the grace period
        if dead or (not beating and now - (started.timestamp() if started else now) > grace):
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                # The reason first: a finished trial's attrs can no longer be written.
                storage.set_trial_user_attr(tid, "error", "worker process died" if dead else
                                            "worker died before its first heartbeat")
                if storage.set_trial_state_values(tid, TrialState.FAIL):
                    requeue(study, storage.get_trial(tid))


def requeue(study: optuna.Study, failed: FrozenTrial) -> None:
    """Run a failed trial's configuration again (same params and seed), at most MAX_RETRY times.

    Optuna's callback copies every user attr into the retry; the failure's `error` text is dropped,
    or the retry (and, once it succeeds, a COMPLETE trial) would carry its predecessor's error.
    """
    if "error" in failed.user_attrs or "worker" in failed.user_attrs:
        # The retry is nobody's yet: a copied `worker` tag would name the dead process.
        failed = copy.copy(failed)
        failed.user_attrs = {k: v for k, v in failed.user_attrs.items() if k not in ("error", "worker")}
    # Optuna warns that the callback is experimental each time one is made; a requeue can run outside any
    # quiet() call (a worker releasing its trials as it stops), and the warning would reach the terminal.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    callback(study, failed)

