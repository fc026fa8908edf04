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

from .common import MIN_TRIALS_TO_TELL, N_BOOT, _floats, complete_trials, signed_text
from .curves import tuning_curve
from .inference import hodges_lehmann
from .primary import PrimaryResult, primary_analysis
from .robustness import is_good, proportion, shared_best
from .tolerance import reference_mask

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


def pair_primary(df: pd.DataFrame, arm: str, reference: str, epoch: int, epochs: int, tolerance: float,
                 seed: int = 0, floor: float | None = None) -> tuple[PrimaryResult, np.ndarray]:
    """The primary analysis of ``arm`` against ``reference`` at budget ``epoch``, on exactly the inputs
    the two-arm summary uses at the full budget: s* over every completed trial of the two arms, the
    configuration that sets it left out, the configurations completed in both arms in config order.
    Returns (the result, the score differences of every configuration completed in both arms)."""
    t, r = complete_trials(df, arm), complete_trials(df, reference)
    vt, vr = scores_at(t, epoch, epochs), scores_at(r, epoch, epochs)
    scores = {arm: vt[np.isfinite(vt)], reference: vr[np.isfinite(vr)]}
    order = {arm: _floats(t["config_index"])[np.isfinite(vt)], reference: _floats(r["config_index"])[np.isfinite(vr)]}
    s_star = shared_best(*scores.values())
    mask = reference_mask(scores, order)
    ref_cfg = next((order[a][np.argmax(m)] for a, m in mask.items() if m.any()), None)
    both = pd.concat({"st": _by_config(t, vt), "sr": _by_config(r, vr)}, axis=1, join="inner").dropna().sort_index()
    d = (both["st"] - both["sr"]).to_numpy(float)  # every pair, as the summary's Wilcoxon counts them
    if ref_cfg is not None and np.isfinite(ref_cfg):  # unpaired trials have no configuration to leave out
        both = both[both.index != int(ref_cfg)]
    res = primary_analysis(both["st"].to_numpy(float), both["sr"].to_numpy(float), paired=True, s_star=s_star,
                           tolerance=tolerance, seed=seed,
                           floor=floor if floor is not None and math.isfinite(floor) else None)
    return res, d


def default_pairs(arms: Sequence[str], reference: str) -> list[tuple[str, str]]:
    return [(a, reference) for a in arms if a != reference]


def budget_table(df: pd.DataFrame, *, arms: Sequence[str], reference: str, epochs: int, tolerance: float,
                 pairs: Sequence[tuple[str, str]] | None = None, grid: Sequence[int] | None = None,
                 best_of: int = BEST_OF, n_boot: int = N_BOOT, seed: int = 0,
                 tolerances: dict | None = None, floor: float | None = None) -> pd.DataFrame:
    """Long table (epochs, arm, versus, metric, value, lo, hi) of every robustness metric at every budget.

    Per arm (``versus`` empty; good = within the tolerance of the best of *all* arms at that budget):
    n_complete, good_fraction (Clopper-Pearson CI), diverged_rate (Clopper-Pearson CI), failed_rate (trials that never
    completed; the same at every budget), expected_best (V-estimate of the best of ``best_of``
    random trials, bootstrap band). Per pair (arm, versus) -- every arm against ``reference`` unless
    ``pairs`` says otherwise -- the primary analysis at that budget (`pair_primary`): good_delta (the
    good-fraction difference at the declared δ with the test's simultaneous interval), primary_p (the
    test over all quality levels), direction (+1 easier, -1 harder, 0 neither), quoted_delta,
    quoted_level and quoted_threshold (the level a direction rests on: the rejecting level with the
    largest |z|, whose interval excludes 0; the declared δ when there is no direction) and median_d
    (the Hodges-Lehmann shift of the paired scores with the interval its Wilcoxon test accepts).
    ``tolerances`` maps a pair to the δ its two-arm summary used (default ``tolerance``), so the full
    budget reproduces the summary exactly.
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
            res, d = pair_primary(df, a, r, e, epochs, (tolerances or {}).get((a, r), tolerance), seed=seed,
                                  floor=floor)
            if d.size == 0:
                continue
            add(e, a, "n_pairs", d.size, versus=r)
            add(e, a, "good_delta", res.diff, res.lo, res.hi, versus=r)
            add(e, a, "primary_p", res.p_value, versus=r)
            add(e, a, "direction", {"easier": 1, "harder": -1}.get(res.outcome, 0), versus=r)
            quoted = res.level(res.quoted)
            if quoted:  # the level the claim quotes: for a direction, the rejecting level with the largest |z|
                add(e, a, "quoted_delta", quoted["diff"], quoted["lo"], quoted["hi"], versus=r)
                add(e, a, "quoted_level", quoted["delta"], versus=r)
                add(e, a, "quoted_threshold", quoted["threshold"], versus=r)
            add(e, a, "median_d", *hodges_lehmann(d), versus=r)
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


def _fmt(v: float, lo: float, hi: float) -> str:
    if not math.isfinite(v):
        return "n/a"
    ci = f" (95% CI {_pp(lo)} to {_pp(hi)})" if math.isfinite(lo) and math.isfinite(hi) else ""
    return f"{_pp(v)} pts{ci}"


def _pp(x: float) -> str:
    # whole points, but an end within half a point of 0 keeps its sign and a decimal: "+0" beside a
    # test that does not reject would read as an interval touching 0 from above
    r = int(round(100 * x))
    if r == 0:
        return "0" if abs(100 * x) < 0.05 else f"{100 * x:+.1f}"
    return f"{r:+d}"


def _p(p: float) -> str:
    return "p n/a" if not math.isfinite(p) else ("p < 0.001" if p < 0.001 else f"p = {p:.3f}")


def budget_verdict(df: pd.DataFrame, table: pd.DataFrame, *, arm: str, reference: str, epochs: int,
                   tolerance: float, n_boot: int = N_BOOT, seed: int = 0, task: str = "classification") -> str:
    """One sentence: does ``arm``'s advantage over ``reference`` hold at the full budget (robustness) or
    show only after fewer epochs (faster training)? Each budget is judged by the primary analysis
    itself, so the full budget says what the verdict says. No test of the change between budgets is
    made, so a difference seen early and not at the full budget is reported as such, not as a fade."""
    grid = sorted(set(table["epochs"]))
    if len(grid) < 2:
        return f"{arm} vs {reference}: one epoch budget only; faster training and robustness cannot be told apart."
    short = next((e for e in grid if 2 <= e < epochs), grid[0])
    n = _row(table, epochs, arm, "n_pairs", reference)[0]
    n = int(n) if math.isfinite(n) else 0
    if n < MIN_TRIALS_TO_TELL:
        return (f"{arm} vs {reference}: {n} configurations completed in both arms, too few (< {MIN_TRIALS_TO_TELL}) "
                "to tell faster training from robustness.")

    def at(e: int) -> tuple[int, str]:
        d = _row(table, e, arm, "direction", reference)[0]
        d = int(d) if math.isfinite(d) else 0
        g = _row(table, e, arm, "good_delta", reference)
        q = _row(table, e, arm, "quoted_delta", reference)
        lvl = _row(table, e, arm, "quoted_level", reference)[0]
        thr = _row(table, e, arm, "quoted_threshold", reference)[0]
        p = _row(table, e, arm, "primary_p", reference)[0]
        declared = f"{_fmt(*g)} at the declared δ"
        if d and math.isfinite(q[0]) and math.isfinite(lvl) and abs(lvl - tolerance) > 1e-12:
            # a direction quotes the level that shows it, then the declared δ, labelled
            alone = ", not significant at this level on its own" if g[1] <= 0 <= g[2] else ""
            return d, (f"{_fmt(*q)} at a score ≥ {signed_text(thr, 3).lstrip('+')}, within {_level(lvl)} of the best; "
                       f"{declared}{alone}; {_p(p)}")
        return d, f"{declared}; {_p(p)}"

    def _level(x: float) -> str:  # accuracy differences in points, R² in its own units
        return f"{100 * x:.3g} pts" if task == "classification" else f"{x:.3g}"

    (d_s, t_s), (d_f, t_f) = at(short), at(epochs)
    word = {1: "easier", -1: "harder", 0: "not shown different"}
    head = f"{arm} vs {reference} by epoch budget: after {short} epochs {word[d_s]} ({t_s}); at the full {epochs} {word[d_f]} ({t_f})"
    if d_f == 1:
        return head + ": the advantage holds at the full budget, so it is robustness, not only faster training."
    if d_f == -1:
        return head + f": {arm}'s disadvantage holds at the full budget."
    if d_s == 1:
        return head + (": consistent with faster training, but this analysis does not test whether the advantage "
                       "shrinks with more epochs.")
    if d_s == -1:
        return head + f": {reference} may only be faster to train; the change itself is not tested."
    return head + ": neither budget separates the arms."
