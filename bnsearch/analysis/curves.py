"""Tuning curves: expected best validation score of n random configurations (V- and U-estimates)
and best-so-far curves for adaptive samplers."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import special

from .common import N_BOOT, _Q, _VALUE_COLS, _floats, _rng

def curve_grid(n_max: int) -> list[int]:
    """n = 1, 2, 4, 8, ... up to N, plus N itself."""
    if n_max < 1:
        return []
    grid = [2**k for k in range(int(math.log2(n_max)) + 1)]
    return grid if grid[-1] == n_max else grid + [n_max]


def v_weights(N: int, n: int) -> np.ndarray:
    """Dodge et al. 2019: weight of v_(i) is (i/N)^n - ((i-1)/N)^n (draws with replacement)."""
    i = np.arange(1, N + 1, dtype=float)
    return (i / N) ** n - ((i - 1) / N) ** n


def u_weights(N: int, n: int) -> np.ndarray:
    """Tang et al. 2020: weight of v_(i) is C(i-1, n-1) / C(N, n) for i >= n (without replacement)."""
    if not 1 <= n <= N:
        raise ValueError(f"U-estimate needs 1 <= n <= N, got n={n}, N={N}")
    i = np.arange(1, N + 1)
    w = np.zeros(N)
    ok = i >= n
    # log-gamma form: exact binomials overflow floats long before N = 1000
    log_c = special.gammaln(i[ok]) - special.gammaln(n) - special.gammaln(i[ok] - n + 1)
    log_total = special.gammaln(N + 1) - special.gammaln(n + 1) - special.gammaln(N - n + 1)
    w[ok] = np.exp(log_c - log_total)
    return w


_WEIGHTS: dict[str, Callable[[int, int], np.ndarray]] = {"V": v_weights, "U": u_weights}


def v_estimate(values: Sequence[float], n: int) -> float:
    """Expected best validation score of n random configurations (V-estimate)."""
    v = np.sort(_floats(values))
    return float(v @ v_weights(v.size, n))


def u_estimate(values: Sequence[float], n: int) -> float:
    """Expected best validation score of n random configurations (unbiased U-estimate)."""
    v = np.sort(_floats(values))
    return float(v @ u_weights(v.size, n))


def tuning_curve(values: Sequence[float], estimator: str = "V", ns: Sequence[int] | None = None,
                 n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Columns n, value, lo, hi: the estimator at each n with a 95% percentile bootstrap band
    (resampling the trials with replacement; pointwise, not simultaneous)."""
    v = np.sort(_floats(values))
    N = v.size
    if N == 0:
        return pd.DataFrame(columns=["n", *_VALUE_COLS])
    ns = [n for n in (ns or curve_grid(N)) if 1 <= n <= N]
    W = np.stack([_WEIGHTS[estimator](N, n) for n in ns])  # (len(ns), N)
    point = W @ v
    boot = np.sort(_rng(seed, f"curve-{estimator}").choice(v, size=(n_boot, N), replace=True), axis=1)
    lo, hi = np.percentile(boot @ W.T, _Q, axis=0)
    return pd.DataFrame({"n": ns, "value": point, "lo": lo, "hi": hi})


def best_so_far(scores_in_trial_order: Sequence[float]) -> np.ndarray:
    """Running maximum of the scores, for adaptive (TPE/GP) searches where i.i.d. formulas do not hold."""
    s = _floats(scores_in_trial_order)
    return np.maximum.accumulate(s) if s.size else s



SCORE_BOUNDS = {"classification": (0.0, 1.0), "regression": (-1.0, 1.0)}


def simultaneous_curve(values: Sequence[float], ns: Sequence[int], task: str,
                       confidence: float = 0.95) -> pd.DataFrame:
    """Columns n, value, lo, hi: expected best of n draws with replacement (the V-estimate) with a
    band that covers the whole curve at once with probability >= `confidence`.

    The band is opda's: a simultaneous DKW band for the CDF of the scores, pushed through the
    average tuning curve (upper CDF band -> lower curve). DKW rather than opda's tighter
    Learned-Miller-DeStefano bands because accuracy scores have ties, which those bands exclude,
    and DKW costs nothing to compute. Scores are bounded (accuracy in [0, 1], R^2 in [-1, 1]), which
    the band needs to be finite.
    """
    from opda.nonparametric import EmpiricalDistribution

    v = _floats(values)
    v = v[np.isfinite(v)]
    ns = [n for n in ns if 1 <= n]
    if v.size == 0 or not ns:
        return pd.DataFrame(columns=["n", *_VALUE_COLS])
    a, b = SCORE_BOUNDS.get(task, (-np.inf, np.inf))
    a, b = min(a, v.min()), max(b, v.max())
    lower_cdf, point_cdf, upper_cdf = EmpiricalDistribution.confidence_bands(v, confidence, a=a, b=b, method="dkw")
    n_arr = np.asarray(ns, float)
    return pd.DataFrame({"n": ns, "value": point_cdf.average_tuning_curve(n_arr),
                         "lo": upper_cdf.average_tuning_curve(n_arr), "hi": lower_cdf.average_tuning_curve(n_arr)})
