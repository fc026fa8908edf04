"""`--repeats R`: every scalar of every table as a mean with a 95% Student-t interval across repeats."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .common import ARMS, CONFIDENCE, DELTA, TABLE_KEYS, _VALUE_COLS, Comparison, _floats
from .primary import decide, rate_difference
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


def stratified_primary(summaries: Sequence[Comparison]) -> dict:
    """One test of the primary outcome over all repeats, never an average of p values.

    Paired: the discordant configurations of every repeat at its own declared δ, pooled -- McNemar
    stratified by repeat. Swapping the arms inside a pair is exact within each repeat, so the pooled
    sign-flip test is exact; its Tango interval of the pooled difference at the same critical value
    excludes 0 exactly when it rejects. Unpaired: the repeats' good-fraction differences, a one-sample
    t-test with its own t-interval (each repeat one observation)."""
    margin = summaries[0].primary.get("margin", math.nan)
    paired = all(s.primary.get("paired") for s in summaries)
    if paired and all(np.isfinite(s.primary.get("diff", math.nan)) for s in summaries):
        b = sum(int(s.primary.get("only_on", 0)) for s in summaries)
        c = sum(int(s.primary.get("only_off", 0)) for s in summaries)
        n = sum(int(s.primary.get("n_on", 0)) for s in summaries)
        on, off = np.zeros(n, bool), np.zeros(n, bool)
        on[:b], off[b:b + c] = True, True  # Tango's interval and the sign flips need only (b, c, n)
        res = rate_difference(on, off, paired=True, tag="repeats")
        outcome = decide(res.p_value, res.diff, res.eq_lo, res.eq_hi, margin)
        return {"paired": True, "diff": res.diff, "lo": res.lo, "hi": res.hi, "p_value": res.p_value,
                "eq_lo": res.eq_lo, "eq_hi": res.eq_hi, "margin": margin, "critical": res.critical,
                "only_on": b, "only_off": c, "n_on": n, "n_off": n, "trials_needed": math.nan, "settles": "",
                "test": "stratified", "outcome": outcome}
    diffs = _floats([s.primary.get("diff", math.nan) for s in summaries])
    diffs = diffs[np.isfinite(diffs)]
    mean, lo, hi = t_interval(diffs)
    _, eq_lo, eq_hi = t_interval(diffs, confidence=1 - 2 * (1 - CONFIDENCE))
    p = float(stats.ttest_1samp(diffs, 0.0).pvalue) if diffs.size >= 2 and np.ptp(diffs) > 0 else \
        (0.0 if diffs.size >= 2 and mean != 0 else math.nan)
    outcome = decide(p, mean, eq_lo, eq_hi, margin)
    return {"paired": False, "diff": mean, "lo": lo, "hi": hi, "p_value": p, "eq_lo": eq_lo, "eq_hi": eq_hi,
            "margin": margin, "trials_needed": math.nan, "settles": "", "test": "t across repeats",
            "outcome": outcome}


def _stratified_tests(tests: pd.DataFrame, primary: dict) -> pd.DataFrame:
    """The tests table over repeats: effect sizes as means across repeats, but no p value is averaged
    and no quality level of one repeat is mixed with another's (their thresholds differ): those rows
    go, and the primary test over all repeats takes their place."""
    if tests is None or tests.empty:
        return tests
    drop = tests["quantity"].isin(["p_value", "p_holm", "statistic", "trials_needed", "quoted"]) \
        | (tests["test"] == "quality_level") | (tests["test"] == "good_fraction")
    kept = tests[~drop]
    how = ("McNemar stratified by repeat: the discordant configurations of every repeat at its declared δ, pooled; "
           "exact sign-flip test, Tango interval at its critical value") if primary["paired"] else \
        "one-sample t-test of the repeats' good-fraction differences, t-interval"
    rows = pd.DataFrame([
        {"test": "good_fraction", "quantity": "diff", "value": primary["diff"], "lo": primary["lo"],
         "hi": primary["hi"], "note": f"PRIMARY over all repeats: {how}"},
        {"test": "good_fraction", "quantity": "p_value", "value": primary["p_value"], "lo": math.nan,
         "hi": math.nan, "note": f"PRIMARY over all repeats: {how}"},
        {"test": "good_fraction", "quantity": "equivalence", "value": primary["margin"], "lo": primary["eq_lo"],
         "hi": primary["eq_hi"], "note": "margin; interval: 90%, same method"}])
    return pd.concat([rows.reindex(columns=tests.columns), kept], ignore_index=True)


def aggregate_repeats(summaries: Sequence[Comparison]) -> Comparison:
    """Mean and 95% Student-t interval of the mean across repeats, for every scalar of every table.

    Exception: trials-to-target is 1 / (mean good fraction), its interval mapped from g's interval,
    because a single repeat with g = 0 would make the mean of 1/g infinite.
    Each table gains a `repeats` column (how many repeats had a value for that row).
    The primary outcome is one test over all repeats (`stratified_primary`), never averaged p values.
    The verdict is rebuilt from the aggregated numbers.
    """
    if not summaries:
        raise ValueError("aggregate_repeats needs at least one summary")
    first = summaries[0]
    tables = {name: _aggregate_table([getattr(s, name) for s in summaries], keys)
              for name, keys in TABLE_KEYS.items()}
    notes = list(dict.fromkeys(n for s in summaries for n in s.notes))
    tables["metrics"] = _trials_to_target_from_mean_g(tables["metrics"], first.arms)
    primary = stratified_primary(summaries)
    outcome = primary.pop("outcome")
    tables["tests"] = _stratified_tests(tables["tests"], primary)
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

