"""`--repeats R`: every scalar of every table as a mean with a 95% Student-t interval across repeats."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .common import ARMS, CONFIDENCE, DELTA, TABLE_KEYS, _VALUE_COLS, Comparison, _floats
from .primary import decide
from .robustness import trials_to_target
from .verdict import verdict

def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, lo, hi): Student-t interval of the mean. NaN interval with one value or any inf
    (e.g. trials-to-target = inf in some repeat: the mean is then inf, the interval undefined)."""
    v = _floats(values)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(v.mean())
    if v.size < 2 or not np.all(np.isfinite(v)):
        return (mean, math.nan, math.nan)
    half = stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return (mean, mean - half, mean + half)


def _aggregate_table(tables: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    frames = [t for t in tables if t is not None and not t.empty]
    if not frames:
        return tables[0].iloc[0:0].copy() if tables else pd.DataFrame()
    stacked = pd.concat(frames, ignore_index=True)
    text_cols = [c for c in stacked.columns if c not in keys + _VALUE_COLS]
    rows = []
    for key, group in stacked.groupby(keys, sort=False, dropna=False):
        mean, lo, hi = t_interval(group["value"])
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row.update(value=mean, lo=lo, hi=hi, repeats=int(group["value"].notna().sum()))
        for c in text_cols:
            if c != "repeats":
                row[c] = group[c].dropna().iloc[0] if group[c].notna().any() else None
        rows.append(row)
    return pd.DataFrame(rows)


def _trials_to_target_from_mean_g(metrics: pd.DataFrame, arms=ARMS) -> pd.DataFrame:
    # One repeat with g = 0 would make the mean of 1/g infinite; 1/mean(g) is what a reader expects
    # ("how many draws on average"), with the interval mapped from g's interval.
    m = metrics.copy()
    for arm in arms:
        g = m[(m["metric"] == "good_fraction") & (m["arm"] == arm)]
        row = (m["metric"] == "trials_to_target") & (m["arm"] == arm)
        if len(g) and row.any():
            value, lo, hi = g[["value", "lo", "hi"]].iloc[0]
            m.loc[row, ["value", "lo", "hi"]] = [trials_to_target(value), trials_to_target(hi), trials_to_target(lo)]
    delta = (m["metric"] == "trials_to_target") & (m["arm"] == DELTA)
    on, off = (m.loc[(m["metric"] == "trials_to_target") & (m["arm"] == a), "value"] for a in arms)
    if delta.any() and len(on) and len(off):
        with np.errstate(invalid="ignore"):
            m.loc[delta, ["value", "lo", "hi"]] = [float(on.iloc[0]) - float(off.iloc[0]), math.nan, math.nan]
    return m


def aggregate_repeats(summaries: Sequence[Comparison]) -> Comparison:
    """Mean and 95% Student-t interval of the mean across repeats, for every scalar of every table.

    Exception: trials-to-target is 1 / (mean good fraction), its interval mapped from g's interval,
    because a single repeat with g = 0 would make the mean of 1/g infinite.
    Each table gains a `repeats` column (how many repeats had a value for that row).
    The primary outcome comes from the repeats' good-fraction differences: a direction when the 95%
    t-interval excludes 0, no practical difference when the 90% t-interval lies within the margin.
    The verdict is rebuilt from the aggregated numbers.
    """
    if not summaries:
        raise ValueError("aggregate_repeats needs at least one summary")
    first = summaries[0]
    tables = {name: _aggregate_table([getattr(s, name) for s in summaries], keys)
              for name, keys in TABLE_KEYS.items()}
    notes = list(dict.fromkeys(n for s in summaries for n in s.notes))
    tables["metrics"] = _trials_to_target_from_mean_g(tables["metrics"], first.arms)
    diffs = [s.primary.get("diff", math.nan) for s in summaries]
    mean, lo, hi = t_interval(diffs)
    _, eq_lo, eq_hi = t_interval(diffs, confidence=1 - 2 * (1 - CONFIDENCE))
    margin = first.primary.get("margin", math.nan)
    # p < alpha exactly when the 95% t-interval excludes 0; 1.0 stands for "does not".
    p = 0.0 if np.isfinite(lo) and (lo > 0 or hi < 0) else 1.0
    primary = {"paired": all(s.primary.get("paired") for s in summaries), "diff": mean, "lo": lo, "hi": hi,
               "p_value": math.nan, "eq_lo": eq_lo, "eq_hi": eq_hi, "margin": margin,
               "trials_needed": math.nan, "settles": ""}
    outcome = decide(p, mean, eq_lo, eq_hi, margin)
    out = Comparison(
        experiment=first.experiment, task=first.task, sampler=first.sampler,
        paired=all(s.paired for s in summaries), tolerance=first.tolerance,
        s_star=t_interval([s.s_star for s in summaries])[0], params=list(first.params),
        n_repeats=len(summaries),
        interval=f"mean and 95% Student-t interval of the mean across {len(summaries)} repeats",
        notes=notes, arms=first.arms, primary=primary, outcome=outcome, tolerance_source=first.tolerance_source,
        context={k: (t_interval([s.context.get(k) for s in summaries])[0]
                     if isinstance(first.context.get(k), (int, float)) else first.context.get(k))
                 for k in first.context},
        **tables)
    out.verdict = verdict(out)
    return out

