"""Which hyperparameters matter: per-hyperparameter sensitivity and Optuna's importances."""

from __future__ import annotations

import math
import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..optuna_logging import quiet_optuna
from .common import MIN_IMPORTANCE_TRIALS, _floats, complete_trials

def categorical_sensitivity(values: Sequence, scores: Sequence[float]) -> float:
    """max - min over the values of the median score; NaN when fewer than two values were tried."""
    frame = pd.DataFrame({"v": pd.Series(values, dtype=object).astype(str), "s": _floats(scores)}).dropna()
    medians = frame.groupby("v")["s"].median()
    return float(medians.max() - medians.min()) if len(medians) >= 2 else math.nan


def numeric_sensitivity(values: Sequence[float], scores: Sequence[float]) -> float:
    """Spearman rank correlation of the hyperparameter with the score; NaN when undefined."""
    x, s = _floats(values), _floats(scores)
    ok = np.isfinite(x) & np.isfinite(s)
    x, s = x[ok], s[ok]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(s) == 0:
        return math.nan
    return float(stats.spearmanr(x, s).statistic)


def _is_categorical(dist) -> bool:
    import optuna

    return isinstance(dist, optuna.distributions.CategoricalDistribution)


def _param_value(value, dist):
    """DataFrame cell -> the Python value Optuna's distribution accepts (numpy ints, CSV strings...)."""
    import optuna

    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        for choice in dist.choices:
            if choice == value or str(choice) == str(value):
                return choice
        raise ValueError(f"{value!r} not in {dist.choices}")
    if isinstance(dist, optuna.distributions.IntDistribution):
        return int(value)
    return float(value)


def param_importances(trials: pd.DataFrame, distributions: Mapping, evaluator=None) -> dict[str, float]:
    """Optuna importances (PED-ANOVA by default) from the COMPLETE rows of one arm.

    Returns NaN for every parameter when the answer would be meaningless: fewer than
    MIN_IMPORTANCE_TRIALS trials or constant scores (Optuna would then return equal shares).
    Parameters with a single possible value are left out (Optuna ignores them too).
    """
    import optuna

    params = [p for p, d in distributions.items() if p in trials.columns and not d.single()]
    nan = {p: math.nan for p in params}
    rows = complete_trials(trials)
    scores = _floats(rows["score"]) if not rows.empty else np.array([])
    if len(rows) < MIN_IMPORTANCE_TRIALS or np.ptp(scores) == 0 or not params:
        return nan
    frozen = []
    for (_, row), score in zip(rows.iterrows(), scores):
        try:
            values = {p: _param_value(row[p], distributions[p]) for p in params}
            frozen.append(optuna.trial.create_trial(
                params=values, distributions={p: distributions[p] for p in params}, value=float(score)))
        except (ValueError, TypeError):
            continue  # a row outside the declared space (edited storage): skip it, do not crash
    if len(frozen) < MIN_IMPORTANCE_TRIALS:
        return nan
    with quiet_optuna(), warnings.catch_warnings():  # no "new study created" line per arm
        warnings.simplefilter("ignore")
        study = optuna.create_study(direction="maximize", storage=optuna.storages.InMemoryStorage())
        study.add_trials(frozen)
        result = optuna.importance.get_param_importances(study, evaluator=evaluator, params=params)
    return {p: float(result.get(p, math.nan)) for p in params}

