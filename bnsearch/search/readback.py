"""Reading an experiment back from storage: trial tables, per-arm progress, the experiment list."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from optuna.trial import TrialState

if TYPE_CHECKING:
    import pandas as pd

from ..optuna_logging import quiet
from ..hardware import signature_text
from ._optuna_private import arm_counts, read_trials, study_id
from .plan import ArmStudy, load_arm
from .storage import ARMS, open_storage, reading

# --------------------------------------------------------------------------- progress

@dataclass
class ArmState:
    complete: int
    running: int
    failed: int  # FAIL trials, re-queued ones included
    budget: int
    best: float | None
    diverged: int
    requeued: int = 0  # FAIL trials whose configuration was queued again (count_requeued)

    @property
    def errored(self) -> int:
        """Failures to look into: FAIL trials whose configuration was not queued again."""
        return self.failed - self.requeued


def arm_state(arm: ArmStudy) -> ArmState:
    """Counts from aggregate queries: the progress display calls this every second during a run,
    and loading every trial would cost more the longer the study (docs/design.md, Storage)."""
    c = arm_counts(arm.study)
    n = c["counts"]
    return ArmState(complete=n.get("COMPLETE", 0), running=n.get("RUNNING", 0), failed=n.get("FAIL", 0),
                    budget=arm.budget, best=c["best"], diverged=c["diverged"], requeued=c["requeued"])



# --------------------------------------------------------------------------- reading back

TRIAL_COLUMNS = ["experiment", "arm", "number", "state", "config_index", "seed", "score", "test_score",
                 "diverged", "epochs_run", "seconds", "val_curve", "hardware"]


@quiet
def load_trials(url: str | None, experiment: str, arms: Iterable[str] = ARMS) -> "pd.DataFrame":
    """Every trial of the experiment's studies, one row each (all states), params as columns."""
    return _frame(experiment, _read(url, experiment, arms))


@quiet
def load_trials_and_records(url: str | None, experiment: str,
                            arms: Iterable[str] = ARMS) -> tuple["pd.DataFrame", list[dict[str, Any]]]:
    """load_trials and trial_records from one read of the storage (a report needs both; reading
    every trial through Optuna twice cost ~0.3 s per 200 trials)."""
    read = _read(url, experiment, arms)
    return _frame(experiment, read), _records(experiment, read)


def _read(url, experiment, arms) -> list[tuple[str, ArmStudy, list]]:
    out = []
    for arm_name in arms:
        arm = load_arm(url, experiment, arm_name)
        out.append((arm_name, arm, read_trials(arm.study)))
    return out


def _frame(experiment: str, read) -> "pd.DataFrame":
    import pandas as pd

    rows = []
    param_names: list[str] = []
    for arm_name, arm, trials in read:
        for n in arm.settings.distributions():
            if n not in param_names:
                param_names.append(n)
        for t in trials:
            ua = t.user_attrs
            rows.append({
                "experiment": experiment, "arm": arm_name, "number": t.number, "state": t.state.name,
                "config_index": ua.get("config_index"), "seed": ua.get("seed"),
                "score": t.value if t.state == TrialState.COMPLETE else float("nan"),
                "test_score": ua.get("test_score", float("nan")) if t.state == TrialState.COMPLETE else float("nan"),
                "diverged": bool(ua.get("diverged", False)), "epochs_run": ua.get("epochs_run"),
                "seconds": ua.get("seconds", float("nan")), "val_curve": ua.get("val_score"),
                "hardware": signature_text(ua["hardware"]) if ua.get("hardware") else None, **t.params,
            })
    df = pd.DataFrame(rows, columns=TRIAL_COLUMNS + param_names)
    df["config_index"] = df["config_index"].astype("Int64")
    df["seed"] = df["seed"].astype("Int64")
    df["epochs_run"] = df["epochs_run"].astype("Int64")
    return df


def packing_note(records: list[dict[str, Any]]) -> str | None:
    """How the finished trials were trained, from their `pack_size` user attrs (worker.run_pack); None
    when every one trained alone. Packing is a run option, so one experiment may mix both."""
    import pandas as pd

    sizes = pd.Series([r["user_attrs"].get("pack_size", 1) for r in records if r["state"] == "COMPLETE"], dtype=float)
    packed = sizes[sizes > 1]
    if packed.empty:
        return None
    which = f"all {len(sizes)}" if len(packed) == len(sizes) else f"{len(packed)} of {len(sizes)}"
    rest = "" if len(packed) == len(sizes) else f", the other {len(sizes) - len(packed)} one at a time"
    return (f"{which} finished trials were trained in packs of up to {int(packed.max())} (median "
            f"{packed.median():g}; --pack){rest}; a packed trial's scores are its solo run's up to float rounding "
            "(which training amplifies, as on another CPU), and its seconds are its share of its pack's wall time")


def count_requeued(trials) -> int:
    """FAIL trials whose configuration was queued again. A trial interrupted (Ctrl-C, SIGTERM) or left
    by a dead worker is failed and re-queued (stale.requeue), and Optuna's retry names it in its
    retry_history: such a FAIL is superseded, not an error to look into, so it is counted apart."""
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    return sum(t.state == TrialState.FAIL and t.number in retried for t in trials)


@quiet
def list_experiments(url: str | None) -> list[dict[str, Any]]:
    """One row per study created by bnsearch: experiment, arm, trial counts by state, budget.
    `errored` counts the failed trials whose configuration was not queued again; `requeued` the
    failed ones that were (interrupted, or their worker died): their retry is waiting or done.
    Reads only: nothing is written to the storage (storage.reading)."""
    with reading():
        storage = open_storage(url, create=False)
    out = []
    for s in storage.get_all_studies():
        if "/" not in s.study_name or "config_hash" not in s.user_attrs:
            continue
        exp, arm = s.study_name.rsplit("/", 1)
        trials = storage.get_all_trials(study_id(s), deepcopy=False)
        states = [t.state for t in trials]
        values = [t.value for t in trials if t.state == TrialState.COMPLETE]
        requeued = count_requeued(trials)
        out.append({
            "experiment": exp, "arm": arm, "complete": states.count(TrialState.COMPLETE),
            "running": states.count(TrialState.RUNNING), "waiting": states.count(TrialState.WAITING),
            "errored": states.count(TrialState.FAIL) - requeued, "requeued": requeued,
            "budget": s.user_attrs.get("budget"),
            "config_hash": s.user_attrs.get("config_hash"), "best": max(values, default=None),
        })
    return sorted(out, key=lambda r: (r["experiment"], r["arm"]))


@quiet
def trial_records(url: str | None, experiment: str, arms: Iterable[str] = ARMS) -> list[dict[str, Any]]:
    """Everything stored for every trial, one plain dict each: the lossless export (trials.jsonl).

    Unlike load_trials' flat table this keeps the per-epoch curves, every user attr, the parameter
    distributions and the timestamps, so a write-up can be redone from the file alone.
    """
    return _records(experiment, _read(url, experiment, arms))


def _records(experiment: str, read) -> list[dict[str, Any]]:
    from optuna.distributions import distribution_to_json

    out = []
    for arm_name, arm, trials in read:
        for t in trials:
            out.append({
                "experiment": experiment, "arm": arm_name, "study": arm.study.study_name, "number": t.number,
                "state": t.state.name, "value": t.value, "params": dict(t.params),
                "distributions": {k: json.loads(distribution_to_json(d)) for k, d in t.distributions.items()},
                "user_attrs": dict(t.user_attrs),
                "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
                "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
                "datetime_complete": t.datetime_complete.isoformat() if t.datetime_complete else None,
            })
    return out
