"""Per-arm robustness statistics: score summaries, the good fraction and its interval, trials to
target, divergence rate (definitions: docs/design.md, Analysis)."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from scipy import stats

from .common import CONFIDENCE, _floats

def score_stats(scores: Sequence[float]) -> dict[str, float]:
    """best, median, p25, p75, mean, std (sample std, ddof=1) of the scores; NaN when empty."""
    s = _floats(scores)
    if s.size == 0:
        return {k: math.nan for k in ("best", "median", "p25", "p75", "mean", "std")}
    return {
        "best": float(s.max()),
        "median": float(np.median(s)),
        "p25": float(np.percentile(s, 25)),
        "p75": float(np.percentile(s, 75)),
        "mean": float(s.mean()),
        "std": float(s.std(ddof=1)) if s.size > 1 else math.nan,
    }


def shared_best(*score_lists: Iterable[float]) -> float:
    """s* = the best score over all arms together (so 'good' means the same thing in each arm)."""
    s = np.concatenate([_floats(list(x)) for x in score_lists]) if score_lists else np.array([])
    s = s[np.isfinite(s)]
    return float(s.max()) if s.size else math.nan


def is_good(scores: Sequence[float], s_star: float, tolerance: float) -> np.ndarray:
    # A tiny epsilon so that scores exactly at s* - δ count despite float round-off (0.98 vs 0.99-0.01).
    return _floats(scores) >= s_star - tolerance - 1e-12


def wilson_ci(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n; (nan, nan) when n = 0."""
    if n <= 0:
        return (math.nan, math.nan)
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of k/n: its coverage is at least `confidence` at every p,
    where Wilson's dips to about 0.83 near 0 and 1 -- and good fractions live near 0."""
    if n <= 0:
        return (math.nan, math.nan)
    # The beta-quantile form of the same interval (scipy's binomtest root-finds it, 30x slower).
    a = (1 - confidence) / 2
    lo = 0.0 if k <= 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k >= n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return (lo, hi)


def proportion(flags: Sequence[bool]) -> dict[str, float]:
    """share of True with its Clopper-Pearson 95% CI."""
    f = np.asarray(flags, dtype=bool)
    n, k = int(f.size), int(f.sum())
    lo, hi = clopper_pearson(k, n)
    return {"k": k, "n": n, "value": k / n if n else math.nan, "lo": lo, "hi": hi}


def good_fraction(scores: Sequence[float], s_star: float, tolerance: float) -> dict[str, float]:
    """g = #{s_i >= s* - δ} / N with its Clopper-Pearson 95% CI."""
    return proportion(is_good(scores, s_star, tolerance))


def trials_to_target(g: float) -> float:
    """Expected random draws to the first good configuration (geometric mean 1/g); inf when g = 0."""
    if g is None or not np.isfinite(g):
        return math.nan
    return math.inf if g <= 0 else 1.0 / g


def divergence_rate(diverged: Sequence[bool]) -> float:
    # a missing flag (NaN/None: a trial stored before the flag existed) is not a divergence; written
    # out because pandas' object fillna warns of a future downcast
    d = np.array([bool(x) if x is not None and x == x else False for x in diverged], dtype=bool)
    return float(d.mean()) if d.size else math.nan
