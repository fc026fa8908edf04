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

from .common import MIN_TRIALS_TO_TELL, N_BOOT, _floats, complete_trials
from .curves import tuning_curve
from .inference import _diff_of_means, _median, bootstrap_ci
from .robustness import is_good, proportion, shared_best

ALL = "*"  # the arm of rows that belong to every arm (s_star, the shared best at a budget)
BEST_OF = 5  # the expected best of this many random trials is the "tuning" metric per budget
BUDGET_COLUMNS = ["epochs", "arm", "versus", "metric", "value", "lo", "hi"]
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


def reference_config(scores: pd.DataFrame) -> int | None:
    """The configuration that sets s* (columns: arms, index: config): the highest score, on a tie the
    lowest config index. Like the two-arm analysis, good counts leave it out: it is good by
    construction (docs/design.md, Tolerance and s*)."""
    best = scores.max(axis=1)
    if best.isna().all():
        return None
    return int(best[best == best.max()].index.min())


def pair_frame(df: pd.DataFrame, arm: str, reference: str, epoch: int, epochs: int, tolerance: float) -> pd.DataFrame:
    """Configurations scored in both arms at budget ``epoch``: columns st, sr (scores), gt, gr (good flags;
    NaN for the reference configuration, which no good count includes).

    "Good" is judged against the best score of these two arms at that budget, as the two-arm
    analysis judges it at the full budget."""
    t, r = complete_trials(df, arm), complete_trials(df, reference)
    vt, vr = scores_at(t, epoch, epochs), scores_at(r, epoch, epochs)
    both = pd.concat({"st": _by_config(t, vt), "sr": _by_config(r, vr)}, axis=1, join="inner").dropna()
    s_star = shared_best(both["st"], both["sr"])
    out = both.assign(gt=is_good(both["st"], s_star, tolerance).astype(float),
                      gr=is_good(both["sr"], s_star, tolerance).astype(float))
    ref = reference_config(both)
    if ref is not None:
        out.loc[ref, ["gt", "gr"]] = np.nan
    return out


def default_pairs(arms: Sequence[str], reference: str) -> list[tuple[str, str]]:
    return [(a, reference) for a in arms if a != reference]


def budget_table(df: pd.DataFrame, *, arms: Sequence[str], reference: str, epochs: int, tolerance: float,
                 pairs: Sequence[tuple[str, str]] | None = None, grid: Sequence[int] | None = None,
                 best_of: int = BEST_OF, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Long table (epochs, arm, versus, metric, value, lo, hi) of every robustness metric at every budget.

    Per arm (``versus`` empty; good = within the tolerance of the best of *all* arms at that budget):
    n_complete, good_fraction (Wilson CI), diverged_rate (Wilson CI), failed_rate (trials that never
    completed; the same at every budget), expected_best (V-estimate of the best of ``best_of``
    random trials, bootstrap band). Per pair (arm, versus) -- every arm against ``reference`` unless
    ``pairs`` says otherwise -- on the configurations scored in both: good_delta (difference of the good
    fractions, good judged within the pair as in the two-arm analysis; paired bootstrap CI) and
    median_d (median per-configuration score difference; bootstrap CI).
    """
    grid = list(grid or budget_grid(epochs))
    pairs = list(pairs) if pairs is not None else default_pairs(arms, reference)
    trials = {a: complete_trials(df, a) for a in arms}
    n_all = {a: int((df["arm"].astype(str) == a).sum()) if len(df) else 0 for a in arms}
    rows: list[dict] = []

    def add(e, arm, metric, value, lo=math.nan, hi=math.nan, versus=""):
        rows.append({"epochs": e, "arm": arm, "versus": versus, "metric": metric, "value": float(value),
                     "lo": lo, "hi": hi})

    for e in grid:
        at = {a: scores_at(trials[a], e, epochs) for a in arms}
        s_star = shared_best(*(v[np.isfinite(v)] for v in at.values()))
        add(e, ALL, "s_star", s_star)
        ref_cfg = reference_config(pd.concat({a: _by_config(trials[a], at[a]) for a in arms}, axis=1)) \
            if all(len(trials[a]) for a in arms) else None
        for a in arms:
            ok = np.isfinite(at[a])
            add(e, a, "n_complete", ok.sum())
            counted = ok & (_floats(trials[a]["config_index"]) != ref_cfg) if ref_cfg is not None else ok
            g = proportion(is_good(at[a][counted], s_star, tolerance))
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
        for a, r in pairs:
            p = pair_frame(df, a, r, e, epochs, tolerance)
            if p.empty:
                continue
            g = p[["gt", "gr"]].dropna()
            gt, gr = g["gt"].to_numpy(), g["gr"].to_numpy()
            add(e, a, "n_pairs", len(p), versus=r)
            add(e, a, "good_delta", gt.mean() - gr.mean(),
                *bootstrap_ci(_diff_of_means, gt, gr, paired=True, n_boot=n_boot, seed=seed, tag=f"bg{e}{a}{r}"),
                versus=r)
            d = (p["st"] - p["sr"]).to_numpy()
            add(e, a, "median_d", np.median(d), *bootstrap_ci(_median, d, n_boot=n_boot, seed=seed, tag=f"bd{e}{a}{r}"),
                versus=r)
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


def _row(table: pd.DataFrame, e: int, arm: str, metric: str, versus: str = "") -> tuple[float, float, float]:
    m = table[(table["epochs"] == e) & (table["arm"] == arm) & (table["metric"] == metric)
              & (table["versus"].fillna("") == versus)]
    if m.empty:
        return (math.nan, math.nan, math.nan)
    r = m.iloc[0]
    return (float(r["value"]), float(r["lo"]), float(r["hi"]))


def _good_delta(gt, gr) -> float:
    return float(np.mean(gt - gr))


def _median_d(st, sr) -> float:
    return float(np.median(st - sr))


_PAIR_STATS = {"good_delta": (("gt", "gr"), _good_delta), "median_d": (("st", "sr"), _median_d)}


def shrink_ci(df: pd.DataFrame, *, arm: str, reference: str, epochs: int, tolerance: float, short: int,
              metric: str = "good_delta", n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """Change of ``arm``'s advantage (``metric``: good_delta or median_d) from budget ``short`` to the
    full budget: (value(short) - value(full), 95% paired bootstrap CI over the configurations scored at
    both). Positive: the advantage shrinks with more training."""
    (ct, cr), stat = _PAIR_STATS[metric]
    a, b = (pair_frame(df, arm, reference, e, epochs, tolerance) for e in (short, epochs))
    both = a[[ct, cr]].add_suffix("_s").join(b[[ct, cr]].add_suffix("_f"), how="inner").dropna()
    if both.empty:
        return (math.nan, math.nan, math.nan)
    arrays = [both[c].to_numpy(float) for c in (f"{ct}_s", f"{cr}_s", f"{ct}_f", f"{cr}_f")]

    def change(ts, rs, tf, rf):
        return stat(ts, rs) - stat(tf, rf)

    lo, hi = bootstrap_ci(change, *arrays, paired=True, n_boot=n_boot, seed=seed, tag=f"shrink-{metric}-{arm}")
    return (change(*arrays), lo, hi)


_WHAT = {"good_delta": "in the share of good configurations", "median_d": "in the median paired score"}


def _fmt(metric: str, v: float, lo: float, hi: float) -> str:
    if not math.isfinite(v):
        return "n/a"
    ci = f" (95% CI {100 * lo:+.1f}..{100 * hi:+.1f})" if math.isfinite(lo) and math.isfinite(hi) else ""
    return f"{100 * v:+.1f} pts{ci}"


def _reading(table, df, *, arm, reference, epochs, tolerance, short, metric, n_boot, seed) -> tuple[str, str | None]:
    """(the numbers, a conclusion or None where the intervals do not support one) for one metric."""
    s_val, s_lo, s_hi = _row(table, short, arm, metric, reference)
    f_val, f_lo, f_hi = _row(table, epochs, arm, metric, reference)
    numbers = f"{_fmt(metric, s_val, s_lo, s_hi)} at {short} epochs and {_fmt(metric, f_val, f_lo, f_hi)} at {epochs}"
    if not (math.isfinite(s_val) and math.isfinite(f_val)):
        return numbers, None
    _, c_lo, c_hi = shrink_ci(df, arm=arm, reference=reference, epochs=epochs, tolerance=tolerance, short=short,
                              metric=metric, n_boot=n_boot, seed=seed)
    fades = math.isfinite(c_lo) and c_lo > 0  # the advantage is smaller after full training
    rises = math.isfinite(c_hi) and c_hi < 0
    if f_lo > 0:
        return numbers, ("it holds at the full budget: robustness, not only faster training"
                         + (" (it does shrink with training, so part of it is speed)" if fades else "")
                         + (" (it even grows with training: no head start)" if rises else ""))
    if f_hi < 0:
        return numbers, (f"at the full budget {arm} is worse than {reference}"
                         + (f", more so than after {short} epochs" if fades else ""))
    if s_lo > 0 and fades:
        return numbers, "it fades with more training: most of it is faster training"
    if s_hi < 0 and rises:
        return numbers, f"its early deficit fades with training: {reference} is only faster to train"
    return numbers, None


def budget_verdict(df: pd.DataFrame, table: pd.DataFrame, *, arm: str, reference: str, epochs: int,
                   tolerance: float, n_boot: int = N_BOOT, seed: int = 0) -> str:
    """One sentence: is ``arm``'s advantage over ``reference`` faster training (it fades with more
    epochs) or robustness (it holds at the full budget)? Read first on the share of good
    configurations, then on the median paired difference; it concludes only where the intervals
    (of the advantage at each budget, and of its change between budgets) support it."""
    grid = sorted(set(table["epochs"]))
    if len(grid) < 2:
        return f"{arm} vs {reference}: one epoch budget only; faster training and robustness cannot be told apart."
    short = next((e for e in grid if 2 <= e < epochs), grid[0])
    n = int(_row(table, epochs, arm, "n_pairs", reference)[0]) if math.isfinite(_row(table, epochs, arm, "n_pairs",
                                                                                       reference)[0]) else 0
    if n < MIN_TRIALS_TO_TELL:
        return (f"{arm} vs {reference}: {n} configurations completed in both arms, too few (< {MIN_TRIALS_TO_TELL}) "
                "to tell faster training from robustness.")
    readings = {m: _reading(table, df, arm=arm, reference=reference, epochs=epochs, tolerance=tolerance,
                            short=short, metric=m, n_boot=n_boot, seed=seed) for m in ("good_delta", "median_d")}
    for m, (numbers, conclusion) in readings.items():
        if conclusion is not None:
            return f"{arm}'s advantage over {reference} {_WHAT[m]} is {numbers}: {conclusion}."
    return (f"{arm}'s advantage over {reference} {_WHAT['good_delta']} is {readings['good_delta'][0]}, and "
            f"{_WHAT['median_d']} {readings['median_d'][0]}: the intervals cannot separate faster training "
            "from robustness.")
