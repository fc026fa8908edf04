"""Tests and intervals comparing the arms: paired scores, Wilcoxon, Mann-Whitney, McNemar,
two-proportion test, bootstrap intervals."""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .common import N_BOOT, _Q, _floats, _rng

def paired_scores(on: pd.DataFrame, off: pd.DataFrame) -> pd.DataFrame:
    """config_index, on, off, d = on - off, for the configs COMPLETE in both arms.

    A config re-run after a failure may appear twice; its first COMPLETE trial counts.
    """
    def by_config(trials: pd.DataFrame) -> pd.Series:
        t = trials[pd.notna(trials["config_index"])]
        t = t.assign(config_index=t["config_index"].astype("int64"))
        return t.drop_duplicates("config_index").set_index("config_index")["score"].astype(float)

    both = pd.concat({"on": by_config(on), "off": by_config(off)}, axis=1, join="inner").sort_index()
    both["d"] = both["on"] - both["off"]
    return both.reset_index()


def wilcoxon_test(d: Sequence[float]) -> tuple[float, float]:
    """(W, two-sided p) of the Wilcoxon signed-rank test; zero differences are dropped (Wilcoxon's
    convention). NaNs when no non-zero difference is left."""
    d = _floats(d)
    # Dropping zeros here is exactly zero_method="wilcox", and keeps scipy on its exact null
    # distribution instead of a slow 2^n permutation test whenever a zero is present.
    d = d[np.isfinite(d) & (d != 0)]
    if d.size == 0:
        return (math.nan, math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return (float(res.statistic), float(res.pvalue))


def hodges_lehmann(d: Sequence[float], alpha: float = 0.05) -> tuple[float, float, float]:
    """(Hodges-Lehmann shift, lo, hi): the median of the Walsh averages, and the range of shifts t
    whose Wilcoxon test of d - t (as `wilcoxon_test` runs it) does not reject at alpha -- so the
    interval and the printed test answer the same question. The statistic only changes at Walsh
    averages, so acceptance is checked at each of them and between consecutive ones. With heavy ties
    the accepted range can shrink to the estimate itself (the report says so).

    Hand-written: scipy has neither the estimator nor its interval."""
    d = _floats(d)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return (math.nan, math.nan, math.nan)
    i, j = np.triu_indices(d.size)
    est = float(np.median((d[i] + d[j]) / 2))
    walsh = np.unique((d[i] + d[j]) / 2)
    grid = np.empty(2 * walsh.size - 1)
    grid[0::2], grid[1::2] = walsh, (walsh[:-1] + walsh[1:]) / 2

    def accept(k: int) -> bool:
        p = wilcoxon_test(d - grid[k])[1]
        return not (np.isfinite(p) and p < alpha)

    centre = int(np.argmin(np.abs(grid - est)))
    if not accept(centre):
        return (est, math.nan, math.nan)
    lo, hi = 0, grid.size - 1
    if not accept(lo):
        a, b = lo, centre
        while b - a > 1:
            m = (a + b) // 2
            a, b = (a, m) if accept(m) else (m, b)
        lo = b
    if not accept(hi):
        a, b = centre, hi
        while b - a > 1:
            m = (a + b) // 2
            a, b = (m, b) if accept(m) else (a, m)
        hi = a
    # a midpoint accepted at an end means the whole segment is: its Walsh average is the end
    lo_v = grid[lo - 1] if lo % 2 else grid[lo]
    hi_v = grid[hi + 1] if hi % 2 else grid[hi]
    return (est, float(lo_v), float(hi_v))


def mann_whitney(on: Sequence[float], off: Sequence[float]) -> tuple[float, float]:
    """(U of the first sample, two-sided p)."""
    a, b = _floats(on), _floats(off)
    if a.size == 0 or b.size == 0:
        return (math.nan, math.nan)
    res = stats.mannwhitneyu(a, b, alternative="two-sided")
    return (float(res.statistic), float(res.pvalue))


def mcnemar_exact(on_good: Sequence[bool], off_good: Sequence[bool]) -> float:
    """Exact McNemar p: the paired two-proportion test (binomial on the discordant pairs)."""
    a, b = np.asarray(on_good, bool), np.asarray(off_good, bool)
    only_on, only_off = int((a & ~b).sum()), int((~a & b).sum())
    if only_on + only_off == 0:
        return 1.0
    return float(stats.binomtest(only_on, only_on + only_off, 0.5).pvalue)


def two_proportion_ztest(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p of the pooled two-proportion z-test; 1.0 when both proportions are 0 or 1."""
    if n1 == 0 or n2 == 0:
        return math.nan
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (k1 / n1 - k2 / n2) / se
    return float(2 * stats.norm.sf(abs(z)))


def bootstrap_ci(statistic: Callable[..., float], *samples: np.ndarray, paired: bool = False,
                 n_boot: int = N_BOOT, seed: int = 0, tag: str = "") -> tuple[float, float]:
    """95% percentile bootstrap CI of statistic(*samples).

    paired=True resamples the same indices in every sample (rows of a pair stay together);
    otherwise each sample is resampled on its own.
    """
    samples = [np.asarray(s) for s in samples]
    if any(s.size == 0 for s in samples):
        return (math.nan, math.nan)
    rng = _rng(seed, f"boot-{tag}")
    if paired:
        idx = rng.integers(0, samples[0].size, size=(n_boot, samples[0].size))
        idxs = [idx] * len(samples)
    else:
        idxs = [rng.integers(0, s.size, size=(n_boot, s.size)) for s in samples]
    rows = _ROWWISE.get(statistic)
    if rows is not None:
        # The same numbers as the loop below (tests/test_analysis.py checks bit for bit), a row block
        # at a time: the loop's Python calls were most of a report's analysis time.
        step = max(1, (1 << 21) // max(s.size for s in samples))
        reps = np.concatenate([rows(*(s[ix[b:b + step]] for s, ix in zip(samples, idxs)))
                               for b in range(0, n_boot, step)])
    else:
        reps = [statistic(*(s[ix[b]] for s, ix in zip(samples, idxs))) for b in range(n_boot)]
    lo, hi = np.nanpercentile(np.asarray(reps, float), _Q)
    return (float(lo), float(hi))


def _diff_of_means(a, b) -> float:
    return float(np.mean(a) - np.mean(b))


def _diff_of_medians(a, b) -> float:
    return float(np.median(a) - np.median(b))


def _median(a) -> float:
    return float(np.median(a))


# statistic -> the same statistic of every row of 2-D resamples at once (rows = bootstrap replicates)
_ROWWISE: dict[Callable, Callable] = {
    _median: lambda a: np.median(a, axis=1),
    _diff_of_means: lambda a, b: np.mean(a, axis=1) - np.mean(b, axis=1),
    _diff_of_medians: lambda a, b: np.median(a, axis=1) - np.median(b, axis=1),
}

