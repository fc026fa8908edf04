"""Faster, or more robust? Every robustness metric at each epoch budget, from the stored curves alone.

A trial stores its validation score after every epoch (``val_curve``). Read at epoch e, that is
exactly the score a run of e epochs would have given -- no LR schedule, and epoch k's batches do not
depend on the total number of epochs (tests/test_train.py, epoch-budget identity) -- so no retraining
is needed to ask how an arm's advantage changes with the training budget (docs/design.md, Budget).

At budget e a trial scores ``val_curve[e-1]``; a run that stopped earlier (it diverged) keeps its
final score, as a run of e epochs would have stopped the same way. "Good" at budget e means within
the tolerance of the best score of *all* arms at that budget, so every budget is judged against
what was reachable with that much training.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .common import N_BOOT, _floats, complete_trials
from .curves import curve_grid, tuning_curve, v_estimate
from .inference import _diff_of_means, _median, bootstrap_ci
from .robustness import is_good, proportion, shared_best

ALL = "*"  # the arm of rows that belong to every arm (s_star, the shared best at a budget)
BEST_OF = 5  # the expected best of this many random trials is the "tuning" metric per budget
BUDGET_COLUMNS = ["epochs", "arm", "metric", "value", "lo", "hi"]
COMPUTE_COLUMNS = ["epochs", "arm", "n", "seconds", "value", "lo", "hi"]


def budget_grid(epochs: int, points: int = 8) -> list[int]:
    """Epoch budgets 1 .. epochs, roughly geometric (short budgets are where the arms differ most)."""
    if epochs < 1:
        return []
    grid = np.unique(np.round(np.geomspace(1, epochs, num=min(epochs, points))).astype(int))
    return [int(e) for e in grid]


def _curve(value) -> list[float] | None:
    if isinstance(value, (list, tuple, np.ndarray)) and len(value):
        return [float(x) for x in value]
    return None


def scores_at(trials: pd.DataFrame, epoch: int, epochs: int) -> np.ndarray:
    """Score of every row at budget ``epoch`` (NaN where the stored curve cannot tell).

    A run that stopped before ``epoch`` (diverged) keeps its recorded final score. At the full
    budget the recorded score is used as it is, so budget ``epochs`` reproduces the main analysis.
    """
    final = _floats(trials["score"])
    if epoch >= epochs:
        return final
    out = np.full(len(trials), math.nan)
    curves = trials["val_curve"] if "val_curve" in trials else pd.Series([None] * len(trials))
    runs = pd.to_numeric(trials["epochs_run"], errors="coerce").to_numpy(float) if "epochs_run" in trials \
        else np.full(len(trials), math.nan)
    for i, (c, ran) in enumerate(zip(curves, runs)):
        c = _curve(c)
        if c is None:
            continue
        ran = len(c) if not np.isfinite(ran) else int(ran)
        out[i] = c[epoch - 1] if epoch < ran and epoch <= len(c) else final[i]
    return out


def diverged_by(trials: pd.DataFrame, epoch: int) -> np.ndarray:
    div = np.asarray(trials["diverged"].fillna(False), bool) if "diverged" in trials else np.zeros(len(trials), bool)
    runs = pd.to_numeric(trials["epochs_run"], errors="coerce").to_numpy(float) if "epochs_run" in trials \
        else np.full(len(trials), math.inf)
    return div & ~(runs > epoch)  # NaN epochs_run (old rows): the flag as recorded


def seconds_at(trials: pd.DataFrame, epoch: int) -> np.ndarray:
    """Training seconds a run of ``epoch`` epochs costs, pro rata of the recorded run (epochs cost alike)."""
    sec = _floats(trials["seconds"]) if "seconds" in trials else np.full(len(trials), math.nan)
    runs = pd.to_numeric(trials["epochs_run"], errors="coerce").to_numpy(float) if "epochs_run" in trials \
        else np.full(len(trials), math.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sec * np.minimum(epoch, runs) / runs


def _by_config(trials: pd.DataFrame, values: np.ndarray) -> pd.Series:
    s = pd.Series(values, index=trials["config_index"].to_numpy())
    s = s[pd.notna(s.index)]
    s.index = s.index.astype("int64")
    return s[~s.index.duplicated()]


def _paired(t: pd.DataFrame, r: pd.DataFrame, tv: np.ndarray, rv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    both = pd.concat({"t": _by_config(t, tv), "r": _by_config(r, rv)}, axis=1, join="inner").dropna()
    return both["t"].to_numpy(float), both["r"].to_numpy(float)


def budget_table(df: pd.DataFrame, *, arms: Sequence[str], reference: str, epochs: int, tolerance: float,
                 grid: Sequence[int] | None = None, best_of: int = BEST_OF, n_boot: int = N_BOOT,
                 seed: int = 0) -> pd.DataFrame:
    """Long table (epochs, arm, metric, value, lo, hi) of every robustness metric at every budget.

    Per arm: n_complete, good_fraction (Wilson CI), diverged_rate (Wilson CI), failed_rate (trials
    that never completed; the same at every budget), expected_best (V-estimate of the best of
    ``best_of`` random trials, bootstrap band). Per non-reference arm, paired on configurations with
    the reference: good_delta (difference of good fractions, paired bootstrap CI) and median_d (median
    of the per-configuration score difference, bootstrap CI).
    """
    grid = list(grid or budget_grid(epochs))
    trials = {a: complete_trials(df, a) for a in arms}
    n_all = {a: int((df["arm"].astype(str) == a).sum()) if len(df) else 0 for a in arms}
    rows: list[dict] = []

    def add(e, arm, metric, value, lo=math.nan, hi=math.nan):
        rows.append({"epochs": e, "arm": arm, "metric": metric, "value": float(value), "lo": lo, "hi": hi})

    for e in grid:
        at = {a: scores_at(trials[a], e, epochs) for a in arms}
        s_star = shared_best(*(v[np.isfinite(v)] for v in at.values()))
        good = {a: is_good(at[a], s_star, tolerance) for a in arms}
        add(e, ALL, "s_star", s_star)
        for a in arms:
            ok = np.isfinite(at[a])
            add(e, a, "n_complete", ok.sum())
            g = proportion(good[a][ok])
            add(e, a, "good_fraction", g["value"], g["lo"], g["hi"])
            d = proportion(diverged_by(trials[a], e)[ok])
            add(e, a, "diverged_rate", d["value"], d["lo"], d["hi"])
            add(e, a, "failed_rate", (n_all[a] - len(trials[a])) / n_all[a] if n_all[a] else math.nan)
            v = at[a][ok]
            if v.size >= best_of:
                c = tuning_curve(v, "V", ns=[best_of], n_boot=n_boot, seed=seed)
                add(e, a, "expected_best", c["value"].iloc[0], c["lo"].iloc[0], c["hi"].iloc[0])
            else:
                add(e, a, "expected_best", math.nan)
        for a in arms:
            if a == reference:
                continue
            # A score the curve cannot tell (NaN) is neither good nor bad: it drops out of the pairs.
            gt, gr = _paired(trials[a], trials[reference], np.where(np.isfinite(at[a]), good[a], np.nan),
                             np.where(np.isfinite(at[reference]), good[reference], np.nan))
            st, sr = _paired(trials[a], trials[reference], at[a], at[reference])
            if gt.size:
                add(e, a, "good_delta", gt.mean() - gr.mean(),
                    *bootstrap_ci(_diff_of_means, gt, gr, paired=True, n_boot=n_boot, seed=seed, tag=f"bg{e}{a}"))
            d = st - sr
            if d.size:
                add(e, a, "median_d", np.median(d),
                    *bootstrap_ci(_median, d, n_boot=n_boot, seed=seed, tag=f"bd{e}{a}"))
    return pd.DataFrame(rows, columns=BUDGET_COLUMNS)


def compute_curves(df: pd.DataFrame, *, arms: Sequence[str], epochs: int, grid: Sequence[int] | None = None,
                   n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Expected best score against training compute: at budget e, n random trials cost n times the
    arm's mean training seconds of an e-epoch run (so an arm whose steps cost more pays for it).

    Columns epochs, arm, n, seconds, value, lo, hi (V-estimate with its bootstrap band).
    """
    grid = list(grid or budget_grid(epochs))
    frames = []
    for a in arms:
        t = complete_trials(df, a)
        for e in grid:
            v = scores_at(t, e, epochs)
            sec = seconds_at(t, e)
            ok = np.isfinite(v)
            if not ok.any():
                continue
            mean_sec = float(np.nanmean(sec[ok])) if np.isfinite(sec[ok]).any() else math.nan
            c = tuning_curve(v[ok], "V", n_boot=n_boot, seed=seed)
            frames.append(c.assign(epochs=e, arm=a, seconds=c["n"] * mean_sec))
    if not frames:
        return pd.DataFrame(columns=COMPUTE_COLUMNS)
    out = pd.concat(frames, ignore_index=True)[COMPUTE_COLUMNS]
    out["n"] = out["n"].astype("int64")
    return out


def _row(table: pd.DataFrame, e: int, arm: str, metric: str) -> tuple[float, float, float]:
    m = table[(table["epochs"] == e) & (table["arm"] == arm) & (table["metric"] == metric)]
    if m.empty:
        return (math.nan, math.nan, math.nan)
    r = m.iloc[0]
    return (float(r["value"]), float(r["lo"]), float(r["hi"]))


def shrink_ci(df: pd.DataFrame, table: pd.DataFrame, *, arm: str, reference: str, epochs: int,
              tolerance: float, short: int, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """Change of the good-fraction advantage from budget ``short`` to the full budget:
    (Δg(short) - Δg(full), 95% paired bootstrap CI over configurations, each budget judged against
    its shared best from ``table``). Positive: the advantage shrinks with training."""
    flags = {}
    for e in (short, epochs):
        s_star = _row(table, e, ALL, "s_star")[0]
        for a in (arm, reference):
            t = complete_trials(df, a)
            v = scores_at(t, e, epochs)
            flags[(a, e)] = _by_config(t, np.where(np.isfinite(v), is_good(v, s_star, tolerance), np.nan))
    both = pd.concat(flags, axis=1, join="inner").dropna()
    if both.empty:
        return (math.nan, math.nan, math.nan)
    cols = [both[(arm, short)], both[(reference, short)], both[(arm, epochs)], both[(reference, epochs)]]
    arrays = [c.to_numpy(float) for c in cols]

    def stat(a, b, c, d):
        return float(np.mean(a - b) - np.mean(c - d))

    lo, hi = bootstrap_ci(stat, *arrays, paired=True, n_boot=n_boot, seed=seed, tag=f"shrink{arm}")
    return (stat(*arrays), lo, hi)


def _pts(x: float) -> str:
    return f"{100 * x:+.0f} pts" if math.isfinite(x) else "n/a"


def _ci(lo: float, hi: float) -> str:
    return f"95% CI {100 * lo:+.0f}..{100 * hi:+.0f}" if math.isfinite(lo) and math.isfinite(hi) else "no CI"


def budget_verdict(df: pd.DataFrame, table: pd.DataFrame, *, arm: str, reference: str, epochs: int,
                   tolerance: float, n_boot: int = N_BOOT, seed: int = 0) -> str:
    """One sentence: is ``arm``'s advantage over ``reference`` in the share of good configurations faster
    training (it fades with more epochs) or robustness (it persists at the full budget)? It says so only
    when the intervals support it, and says that they cannot tell otherwise."""
    grid = sorted(set(table["epochs"]))
    if len(grid) < 2:
        return f"{arm} vs {reference}: one epoch budget only; faster training and robustness cannot be told apart."
    short = next((e for e in grid if e >= 2 and e < epochs), grid[0])
    s_val, s_lo, s_hi = _row(table, short, arm, "good_delta")
    f_val, f_lo, f_hi = _row(table, epochs, arm, "good_delta")
    if not (math.isfinite(s_val) and math.isfinite(f_val)):
        return f"{arm} vs {reference}: too few paired trials to read the advantage at each budget."
    change, c_lo, c_hi = shrink_ci(df, table, arm=arm, reference=reference, epochs=epochs, tolerance=tolerance,
                                   short=short, n_boot=n_boot, seed=seed)
    head = (f"{arm}'s advantage over {reference} in the share of good configurations is {_pts(s_val)} "
            f"({_ci(s_lo, s_hi)}) at {short} epochs and {_pts(f_val)} ({_ci(f_lo, f_hi)}) at {epochs}")
    shrinks = math.isfinite(c_lo) and c_lo > 0
    grows = math.isfinite(c_hi) and c_hi < 0
    if f_lo > 0:
        tail = ("it persists at the full budget: robustness, not only speed"
                + (" (it does shrink with training, so part of it is speed)" if shrinks else ""))
    elif f_hi < 0:
        tail = f"at the full budget {arm} is worse than {reference}"
    elif s_lo > 0 and shrinks:
        tail = "it fades with more training: most of it is faster training"
    elif s_hi < 0 and grows:
        tail = f"{arm}'s deficit at short budgets fades with training: {reference} is only faster to train"
    else:
        tail = "the intervals cannot separate faster training from robustness"
    return f"{head}: {tail}."
