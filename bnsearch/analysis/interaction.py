"""The inputs x normalisation 2x2: does BN stand in for input scaling, and does it still help after it?

The four arms train the same configurations with the same seeds, so every configuration c has four
scores: A = raw/none, B = raw/norm, C = standardized/none, D = standardized/norm. On the mean over
configurations (means keep the decomposition exact: D - A = (C - A) + (D - C)):

    standardize_gain   C - A            what scaling the inputs buys without a norm
    norm_gain_raw      B - A            what the norm buys on raw inputs
    norm_gain_std      D - C            what the norm still buys once inputs are standardized
    interaction        (D - C) - (B - A)
    recovered_share    (B - A) / (C - A)  the share of the scaling benefit the norm recovers on raw inputs

Intervals of the four differences: the one-sample t-test of the per-configuration differences and the
t-interval it inverts, so test and interval answer the same question about the mean. The ratio has no
test; its interval is a 95% percentile bootstrap over configurations, the four scores of a
configuration resampled together (docs/design.md, Interaction).
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping

import numpy as np
import pandas as pd

from .common import MIN_TRIALS_TO_TELL, N_BOOT, _Q, _rng, complete_trials, signed_text

CELLS = ("A", "B", "C", "D")  # raw/none, raw/norm, std/none, std/norm
QUANTITIES = ("standardize_gain", "norm_gain_raw", "norm_gain_std", "interaction", "recovered_share")
INTERACTION_COLUMNS = ["quantity", "value", "lo", "hi", "p_value", "n_configs"]


def cell_scores(df: pd.DataFrame, cells: Mapping[tuple[str, bool], str]) -> pd.DataFrame:
    """One row per configuration COMPLETE in all four arms; columns A, B, C, D (scores).

    ``cells`` maps (inputs, has_norm) to the arm name, as bnsearch.arms.two_by_two returns it.
    """
    names = {"A": cells[("raw", False)], "B": cells[("raw", True)],
             "C": cells[("standardize", False)], "D": cells[("standardize", True)]}
    cols = {}
    for cell, arm in names.items():
        t = complete_trials(df, arm)
        t = t[pd.notna(t["config_index"])]
        s = pd.Series(t["score"].astype(float).to_numpy(), index=t["config_index"].astype("int64").to_numpy())
        cols[cell] = s[~s.index.duplicated()]
    return pd.concat(cols, axis=1, join="inner").sort_index()


def _quantities(m: np.ndarray) -> np.ndarray:
    """The five quantities from the column means (A, B, C, D) of m (rows: configurations)."""
    a, b, c, d = m.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (b - a) / (c - a) if c != a else math.nan
    return np.array([c - a, b - a, d - c, (d - c) - (b - a), share])


def interaction_table(scores: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """quantity, value, lo, hi, p_value (t-test of the per-configuration differences, lo/hi its
    interval; the ratio: bootstrap interval, no p), n_configs."""
    m = scores[list(CELLS)].to_numpy(float)
    n = m.shape[0]
    if n == 0:
        return pd.DataFrame([{"quantity": q, "value": math.nan, "lo": math.nan, "hi": math.nan,
                              "p_value": math.nan, "n_configs": 0} for q in QUANTITIES], columns=INTERACTION_COLUMNS)
    point = _quantities(m)
    idx = _rng(seed, "interaction").integers(0, n, size=(n_boot, n))
    boot = np.array([_quantities(m[i]) for i in idx])
    with warnings.catch_warnings():  # a ratio with no gain to recover is NaN in every resample
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(boot, _Q, axis=0) if n > 1 else (np.full(5, math.nan), np.full(5, math.nan))
    a, b, c, d = m.T
    diffs = [c - a, b - a, d - c, (d - c) - (b - a), None]
    rows = []
    for k, q in enumerate(QUANTITIES):
        p = math.nan
        if diffs[k] is not None:  # a mean: the one-sample t-test and the t-interval it inverts
            p, lo[k], hi[k] = _t_test(diffs[k])
        rows.append({"quantity": q, "value": float(point[k]), "lo": float(lo[k]), "hi": float(hi[k]),
                     "p_value": p, "n_configs": n})
    return pd.DataFrame(rows, columns=INTERACTION_COLUMNS)


def _t_test(x: np.ndarray) -> tuple[float, float, float]:
    """(two-sided p, lo, hi) of the one-sample t-test of mean 0 and its 95% interval: the interval
    excludes 0 exactly when p < 0.05."""
    from scipy import stats

    x = np.asarray(x, float)
    if x.size < 2:
        return (math.nan, math.nan, math.nan)
    if np.ptp(x) == 0:  # no spread: the mean is known exactly
        return (1.0 if x[0] == 0 else 0.0, float(x[0]), float(x[0]))
    res = stats.ttest_1samp(x, 0.0)
    ci = res.confidence_interval(0.95)
    return (float(res.pvalue), float(ci.low), float(ci.high))


def _get(table: pd.DataFrame, q: str) -> tuple[float, float, float]:
    r = table[table["quantity"] == q].iloc[0]
    return float(r["value"]), float(r["lo"]), float(r["hi"])


def _pts(x: float, lo: float, hi: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    ci = f", 95% CI {signed_text(100 * lo)}..{signed_text(100 * hi)}" if math.isfinite(lo) and math.isfinite(hi) else ""
    return f"{signed_text(100 * x)} pts{ci}"


def interaction_verdict(table: pd.DataFrame, norm_label: str = "BN") -> str:
    """Two plain sentences: how much of the scaling benefit the norm recovers on raw inputs, and
    whether it still helps on standardized inputs -- claims only where the interval excludes 0."""
    n = int(table["n_configs"].iloc[0]) if not table.empty else 0
    if n < MIN_TRIALS_TO_TELL:
        return (f"Too few configurations completed in all four arms ({n} < {MIN_TRIALS_TO_TELL}) to estimate the "
                "interaction.")
    sg, sg_lo, sg_hi = _get(table, "standardize_gain")
    br, br_lo, br_hi = _get(table, "norm_gain_raw")
    bs, bs_lo, bs_hi = _get(table, "norm_gain_std")
    rs, rs_lo, rs_hi = _get(table, "recovered_share")
    first = f"Standardizing the inputs changes the mean score by {_pts(sg, sg_lo, sg_hi)} without {norm_label}"
    if sg_lo > 0 and math.isfinite(rs):
        ci = f" (95% CI {100 * rs_lo:.0f}%..{100 * rs_hi:.0f}%)" if math.isfinite(rs_lo) else ""
        first += (f"; on raw inputs {norm_label} recovers {100 * rs:.0f}%{ci} of that gain "
                  f"({_pts(br, br_lo, br_hi)}).")
    else:
        first += (f" (the interval does not show a gain to recover); on raw inputs {norm_label} changes it by "
                  f"{_pts(br, br_lo, br_hi)}.")
    if bs_lo > 0:
        second = f"With standardized inputs {norm_label} still helps: {_pts(bs, bs_lo, bs_hi)}."
    elif bs_hi < 0:
        second = f"With standardized inputs {norm_label} hurts: {_pts(bs, bs_lo, bs_hi)}."
    else:
        second = (f"With standardized inputs the data cannot show that {norm_label} still helps "
                  f"({_pts(bs, bs_lo, bs_hi)}).")
    return f"{first} {second}"
