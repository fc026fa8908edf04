"""A panel's pooled answers beyond the headline: the pooled scale within pre-declared sub-spaces of
the search space, at shorter epoch budgets, without each data set in turn, and for the inputs x BN
2x2 (docs/design.md, Panel). Pure functions of one data set's trials frame (per-data-set rows) and
of those rows stacked over data sets (pooled rows); meta.random_effects pools (Paule-Mandel,
Hartung-Knapp-Sidik-Jonkman interval, prediction interval for a new data set).

The pooled scale is the panel's: for one data set, the paired difference (b - c)/n in the share of
configurations whose score reaches the data set's top-quarter threshold (the 75th percentile,
numpy's "lower" quantile, of both arms' scores pooled, the configuration that sets s* left out), with
Tango's score interval and the pooling variance back-transformed from its half-width.

Choices, and why:
* Sub-spaces share the WHOLE data set's threshold. A threshold per sub-space would make every
  sub-space's top quarter about a quarter of its own scores, so a sub-space where both arms do well
  (careful inits) and one where both do badly (careless inits) would be put on different bars: their
  effects could not be compared, nor their difference tested. With one bar, "good" means the same
  score in every sub-space, and a sub-space's shares say how often it reaches it with and without BN.
* Two sub-spaces are compared by pooling each data set's difference of the two sub-space effects
  (variance: the sum of the two, the sub-spaces holding disjoint configurations), so the data set's
  own level cancels before pooling; a meta-regression with a sub-space moderator over the stacked
  rows would instead treat a data set's two rows as independent data sets. Overlapping sub-spaces
  (Adam vs careful inits) share configurations and are refused.
* Budgets: at budget e a trial scores its validation curve at epoch e (budget.scores_at), and the
  threshold and the s* configuration are those of budget e, as budget.py judges every budget against
  what was reachable with that much training. The full budget reproduces the headline's row.
* The 2x2 on the pooled scale: the threshold is the top quarter of all four cells' scores (the
  configuration that sets s* over the four left out); the three simple contrasts are paired
  differences (Tango), the interaction (D - C) - (B - A) is a mean of per-configuration values in
  {-2..2} whose variance is the sample variance over configurations / n with one pseudo-configuration
  at +1 and one at -1 added (in the spirit of Agresti-Min's added pseudo counts), which keeps it
  positive when no configuration's contrast is non-zero and fades as n grows.
* Only paired arms: with an adaptive sampler each arm draws its own configurations, so a sub-space
  holds different configurations in the two arms and its shares are not comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .common import _floats, complete_trials, signed_text
from .meta import MetaResult, random_effects

TOP_QUANTILE = 0.75  # the pooled scale's level, defined here once (analysis.panel imports it)
SHORT_BUDGETS = (2, 5)  # epoch budgets pooled besides the full one
CAREFUL_INITS = ("kaiming", "xavier")  # scaled to the layer's fan: the sensible choices
CARELESS_INITS = ("normal", "uniform")  # N(0, 1) and U(-1, 1): the panel's deliberately careless ones
CAREFUL, CARELESS = "careful inits", "careless inits"
ALL = "all configurations"
ARMS = ("bn-on", "bn-off")
EFFECT_COLUMNS = ["n", "top_threshold", "top_b", "top_c", "top_on", "top_off", "effect", "effect_lo", "effect_hi",
                  "variance"]
POOLED_COLUMNS = ["k", "configs", "pooled", "se", "hk_low", "hk_high", "ci_low", "ci_high", "pi_low", "pi_high",
                  "tau2", "i2", "q", "q_pvalue", "note"]
INTERACTION_QUANTITIES = ("standardize_gain", "norm_gain_raw", "norm_gain_std", "interaction")
_EPS = 1e-12  # the primary analysis' round-off epsilon at a level


# --------------------------------------------------------------------------- the pooled scale

def top_threshold(*scores, quantile: float = TOP_QUANTILE) -> float:
    """The score the top (1 - quantile) of all given scores reach (numpy's "lower" quantile)."""
    s = np.concatenate([np.asarray(x, float).ravel() for x in scores]) if scores else np.empty(0)
    s = s[np.isfinite(s)]
    return float(np.quantile(s, quantile, method="lower")) if s.size else math.nan


def paired_share_effect(n: int, b: int, c: int) -> dict:
    """(b - c)/n with Tango's 95% score interval and its half-width back-transformed into a variance,
    ((hi - lo) / (2 z_0.975))^2, positive even with no discordant configuration (panel.paired_effect)."""
    from scipy import stats

    from .primary import tango_interval

    if n <= 0:
        return {"effect": math.nan, "effect_lo": math.nan, "effect_hi": math.nan, "variance": math.nan}
    lo, hi = tango_interval(int(b), int(c), int(n))
    return {"effect": (b - c) / n, "effect_lo": lo, "effect_hi": hi,
            "variance": ((hi - lo) / (2 * float(stats.norm.ppf(0.975)))) ** 2}


def _counts(on: np.ndarray, off: np.ndarray, thr: float) -> dict:
    gt, gr = on >= thr - _EPS, off >= thr - _EPS
    n = int(on.size)
    b, c = int((gt & ~gr).sum()), int((~gt & gr).sum())
    return {"n": n, "top_threshold": thr, "top_b": b, "top_c": c,
            "top_on": float(gt.mean()) if n else math.nan, "top_off": float(gr.mean()) if n else math.nan,
            **paired_share_effect(n, b, c)}


def paired_configs(df: pd.DataFrame, arms: Sequence[str] = ARMS, *, epoch: int | None = None,
                   epochs: int | None = None) -> pd.DataFrame:
    """One row per configuration scored in every arm: config_index, one score column per arm and the
    configuration's hyperparameters (every column the trials frame has beyond the trial's own),
    without the configuration that sets s* over every scored trial of these arms (good by
    construction; docs/design.md, Tolerance and s*). epoch: the budget (budget.scores_at), None or
    >= epochs for the recorded scores."""
    from .budget import _by_config, scores_at

    if len(arms) < 2 or len(set(arms)) != len(arms):
        raise ValueError("give at least two distinct arms")
    trials = {a: complete_trials(df, a) for a in arms}
    if any(t.empty or "config_index" not in t or t["config_index"].isna().all() for t in trials.values()):
        return pd.DataFrame(columns=["config_index", *arms])
    full = epoch is None or epochs is None or epoch >= epochs
    values = {a: _floats(t["score"]) if full else scores_at(t, int(epoch), int(epochs)) for a, t in trials.items()}
    both = pd.concat({a: _by_config(t, values[a]) for a, t in trials.items()}, axis=1, join="inner")
    both = both.dropna().sort_index()
    # the single trial that sets s* over every scored trial of these arms: the highest score, then the
    # lowest configuration, then the first arm (tolerance.reference_mask's order)
    every = pd.DataFrame({"score": np.concatenate(list(values.values())),
                          "config_index": np.concatenate([_floats(t["config_index"]) for t in trials.values()]),
                          "arm": np.repeat(np.arange(len(arms)), [len(t) for t in trials.values()])})
    every = every[np.isfinite(every["score"]) & np.isfinite(every["config_index"])]
    if len(every):
        best = every.sort_values(["score", "config_index", "arm"], ascending=[False, True, True]).iloc[0]
        both = both[both.index != int(best["config_index"])]
    first = trials[arms[0]]
    params = [c for c in first.columns if c not in _TRIAL_COLUMNS]
    p = first[pd.notna(first["config_index"])].assign(config_index=lambda t: t["config_index"].astype("int64"))
    p = p.drop_duplicates("config_index").set_index("config_index")[params]
    return both.join(p, how="left").rename_axis("config_index").reset_index()


_TRIAL_COLUMNS = {"experiment", "arm", "number", "state", "config_index", "seed", "score", "test_score", "diverged",
                  "epochs_run", "seconds", "val_curve", "hardware"}


# --------------------------------------------------------------------------- sub-spaces

@dataclass(frozen=True)
class SubSpace:
    """The configurations whose `param` takes one of `levels`."""
    name: str
    param: str
    levels: tuple

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        if self.param not in frame:
            return np.zeros(len(frame), bool)
        return frame[self.param].isin(list(self.levels)).to_numpy(bool)


def space_choices(distributions: Mapping) -> dict[str, tuple]:
    """The levels a sub-space can be cut by, from a config's Optuna distributions: every categorical
    hyperparameter's choices, and the depth (`layers`) when it is a whole-number range of at most 10."""
    out = {}
    for name, d in distributions.items():
        if hasattr(d, "choices"):
            out[name] = tuple(d.choices)
        elif name == "layers" and isinstance(getattr(d, "low", None), int) and getattr(d, "step", 1) == 1 \
                and 0 <= d.high - d.low < 10:
            out[name] = tuple(range(d.low, d.high + 1))
    return out


def declared_subspaces(choices: Mapping[str, Sequence], named: Iterable[str] = ()) -> list[SubSpace]:
    """The pre-declared sub-spaces of a search space (`choices`: space_choices): careful inits
    (kaiming, xavier) and careless inits (normal, uniform) where the space has them, each optimizer,
    each depth, then each level of every other categorical hyperparameter in `named`. Declared from
    the space alone, before any score is seen, so the list cannot follow the results."""
    out: list[SubSpace] = []
    inits = tuple(choices.get("init", ()))
    for name, group in ((CAREFUL, CAREFUL_INITS), (CARELESS, CARELESS_INITS)):
        levels = tuple(i for i in inits if i in group)
        if levels:
            out.append(SubSpace(f"{name} ({', '.join(levels)})", "init", levels))
    for param in ("optimizer", "layers", *named):
        if param == "init" and inits:
            continue
        if param not in choices and param not in named:
            continue  # a space that fixes the optimizer or the depth has no such sub-spaces
        if param not in choices:
            raise ValueError(f"{param!r} is not a categorical hyperparameter of this space "
                             f"(have: {', '.join(choices) or 'none'})")
        if any(s.param == param and len(s.levels) == 1 for s in out):
            continue  # named twice
        out += [SubSpace(f"{param} = {v}", param, (v,)) for v in choices[param]]
    return out


def subspace_rows(df: pd.DataFrame, subspaces: Sequence[SubSpace], *, arms: Sequence[str] = ARMS,
                  quantile: float = TOP_QUANTILE) -> pd.DataFrame:
    """One data set's pooled-scale effect in every sub-space, and first in ALL configurations (the
    headline's row): subspace, param, levels, then EFFECT_COLUMNS. The threshold is the whole data
    set's (module docstring); a sub-space no compared configuration falls in has n = 0 and no effect."""
    treat, ref = arms[0], arms[1]
    pairs = paired_configs(df, (treat, ref))
    on, off = pairs[treat].to_numpy(float), pairs[ref].to_numpy(float)
    thr = top_threshold(on, off, quantile=quantile)
    rows = [{"subspace": ALL, "param": "", "levels": "", **_counts(on, off, thr)}]
    for s in subspaces:
        m = s.mask(pairs)
        rows.append({"subspace": s.name, "param": s.param, "levels": _levels_text(s.levels),
                     **_counts(on[m], off[m], thr)})
    return pd.DataFrame(rows, columns=["subspace", "param", "levels", *EFFECT_COLUMNS])


def _levels_text(levels) -> str:
    return "|".join(str(v) for v in levels)


def pool_subspaces(rows: pd.DataFrame, *, method: str = "pm") -> pd.DataFrame:
    """Each sub-space pooled across data sets. rows: subspace_rows of every data set stacked, with a
    `dataset` column. One row per sub-space (subspace, POOLED_COLUMNS)."""
    return pool_rows(rows, by="subspace", method=method)


@dataclass(frozen=True)
class SubspaceDifference:
    first: str
    second: str
    rows: pd.DataFrame  # dataset, effect_first, effect_second, effect (first - second), variance
    pm: MetaResult | None  # the pooled difference; None with fewer than 2 data sets
    note: str = ""


def subspace_difference(rows: pd.DataFrame, first: str, second: str, *, method: str = "pm") -> SubspaceDifference:
    """Does BN's effect differ between two sub-spaces? Each data set's difference of its two sub-space
    effects (variance: the sum, the sub-spaces being disjoint), pooled by random effects. first and
    second: sub-space names as subspace_rows writes them (or their leading words, e.g. "careful inits").
    Sub-spaces that can share a configuration (a different hyperparameter, or a common level) are
    refused: their effects are not independent."""
    a, b = _one_subspace(rows, first), _one_subspace(rows, second)
    ra, rb = rows[rows["subspace"] == a], rows[rows["subspace"] == b]
    pa, pb = set(ra["param"]), set(rb["param"])
    la = {v for x in ra["levels"] for v in str(x).split("|")}
    lb = {v for x in rb["levels"] for v in str(x).split("|")}
    if pa != pb or len(pa) != 1 or la & lb:
        raise ValueError(f"{a!r} and {b!r} can share configurations (they must cut the same hyperparameter into "
                         "disjoint levels, e.g. careful vs careless inits, adam vs sgd)")
    m = ra.set_index("dataset")[["effect", "variance"]].join(
        rb.set_index("dataset")[["effect", "variance"]], lsuffix="_first", rsuffix="_second", how="inner")
    out = pd.DataFrame({"dataset": m.index, "effect_first": m["effect_first"].to_numpy(),
                        "effect_second": m["effect_second"].to_numpy(),
                        "effect": (m["effect_first"] - m["effect_second"]).to_numpy(),
                        "variance": (m["variance_first"] + m["variance_second"]).to_numpy()})
    ok = np.isfinite(out["effect"]) & np.isfinite(out["variance"]) & (out["variance"] > 0)
    note = "" if ok.all() else ("left out (a sub-space without configurations): "
                                + ", ".join(map(str, out.loc[~ok, "dataset"])))
    pm = random_effects(out[ok], method=method) if ok.sum() >= 2 else None
    if pm is None:
        note = "; ".join(x for x in (note, "fewer than 2 data sets with both sub-spaces: nothing pooled") if x)
    return SubspaceDifference(a, b, out, pm, note)


def _one_subspace(rows: pd.DataFrame, name: str) -> str:
    names = list(dict.fromkeys(rows["subspace"]))
    if name in names:
        return name
    hits = [n for n in names if n.startswith(name)]
    if len(hits) != 1:
        raise ValueError(f"sub-space {name!r}: {'ambiguous' if hits else 'unknown'}; have: {', '.join(names)}")
    return hits[0]


def subspace_sentence(pooled: pd.DataFrame, name: str = CAREFUL, *, what: str = "BN") -> str:
    """Whether the effect survives within one sub-space, for the panel's headline."""
    r = pooled[pooled["subspace"] == _one_subspace(pooled, name)].iloc[0]
    label = r["subspace"]
    if not np.isfinite(r["pooled"]):
        return f"Within {label} nothing could be pooled ({r['note'] or 'too few data sets'})."
    est = f"{_pts(r['pooled'])} pts ({_ci(r['hk_low'], r['hk_high'])}, {int(r['k'])} data sets)"
    if r["hk_low"] > 0:
        return f"Within {label} {what} still raises the share of top-quarter configurations: {est}."
    if r["hk_high"] < 0:
        return f"Within {label} {what} lowers the share of top-quarter configurations: {est}."
    return (f"Within {label} the pooled effect is not distinguishable from 0, {est}: the panel does not show "
            f"that {what}'s effect survives there.")


# --------------------------------------------------------------------------- epoch budgets

def budget_points(epochs: int, short: Sequence[int] = SHORT_BUDGETS) -> list[int]:
    """The pooled budgets: each of `short` below the full budget, then the full budget."""
    return sorted({int(e) for e in short if 1 <= e < epochs} | {int(epochs)})


def budget_rows(df: pd.DataFrame, *, epochs: int, arms: Sequence[str] = ARMS, budgets: Sequence[int] | None = None,
                quantile: float = TOP_QUANTILE) -> pd.DataFrame:
    """One data set's pooled-scale effect at each epoch budget (epochs, then EFFECT_COLUMNS), from the
    validation curves stored with each trial; threshold and s* per budget (module docstring)."""
    rows = []
    for e in budgets or budget_points(epochs):
        pairs = paired_configs(df, arms[:2], epoch=e, epochs=epochs)
        on, off = pairs[arms[0]].to_numpy(float), pairs[arms[1]].to_numpy(float)
        rows.append({"epochs": int(e), **_counts(on, off, top_threshold(on, off, quantile=quantile))})
    return pd.DataFrame(rows, columns=["epochs", *EFFECT_COLUMNS])


def pool_budgets(rows: pd.DataFrame, *, method: str = "pm") -> pd.DataFrame:
    """Each budget pooled across data sets (rows: budget_rows stacked with a `dataset` column)."""
    return pool_rows(rows, by="epochs", method=method)


def budget_sentence(pooled: pd.DataFrame, *, what: str = "BN") -> str:
    """One sentence: across the panel, is the effect only faster training? The full budget decides, as
    in budget.budget_verdict: an advantage that holds there is not only faster training; one seen only
    at a short budget is consistent with faster training. The change between budgets is not tested."""
    p = pooled[np.isfinite(pooled["pooled"].astype(float))].sort_values("epochs")
    if len(p) < 2:
        return "Fewer than two epoch budgets could be pooled: faster training and robustness cannot be told apart."
    full, short = p.iloc[-1], p.iloc[0]
    at = (f"after {int(short['epochs'])} epochs {_pts(short['pooled'])} pts "
          f"({_ci(short['hk_low'], short['hk_high'])}), "
          f"at the full {int(full['epochs'])} {_pts(full['pooled'])} pts ({_ci(full['hk_low'], full['hk_high'])}); "
          f"the share of top-quarter configurations pooled over {int(full['k'])} data sets")
    at_full, at_short = _direction(full), _direction(short)
    if at_full > 0:
        return f"Not only faster training: {what}'s advantage holds at the full budget across the panel: {at}."
    if at_full < 0:
        return f"{what}'s disadvantage holds at the full budget across the panel: {at}."
    if at_short > 0:
        return (f"Consistent with faster training only: {what}'s advantage shows at a short budget but is not "
                f"distinguishable from 0 at the full one: {at}; the change itself is not tested.")
    return f"Neither a short nor the full budget separates the arms across the panel: {at}."


# --------------------------------------------------------------------------- inputs x BN

def interaction_rows(df: pd.DataFrame, cells: Mapping[tuple[str, bool], str], *,
                     quantile: float = TOP_QUANTILE) -> pd.DataFrame:
    """One data set's 2x2 on the pooled scale: quantity (INTERACTION_QUANTITIES), n, the four cells'
    shares share_A..share_D (A raw/none, B raw/norm, C standardized/none, D standardized/norm), effect,
    effect_lo, effect_hi, variance. cells maps (inputs, has_norm) to the arm, as arms.two_by_two returns it."""
    names = {"A": cells[("raw", False)], "B": cells[("raw", True)],
             "C": cells[("standardize", False)], "D": cells[("standardize", True)]}
    pairs = paired_configs(df, tuple(names.values()))
    s = {k: pairs[a].to_numpy(float) for k, a in names.items()}
    thr = top_threshold(*s.values(), quantile=quantile)
    g = {k: v >= thr - _EPS for k, v in s.items()}
    n = int(len(pairs))
    shares = {f"share_{k}": float(v.mean()) if n else math.nan for k, v in g.items()}
    rows = []
    for q, (x, y) in {"standardize_gain": ("C", "A"), "norm_gain_raw": ("B", "A"), "norm_gain_std": ("D", "C")}.items():
        b, c = int((g[x] & ~g[y]).sum()), int((~g[x] & g[y]).sum())
        rows.append({"quantity": q, "n": n, **shares, **paired_share_effect(n, b, c)})
    i = (g["D"].astype(int) - g["C"]) - (g["B"].astype(int) - g["A"])
    rows.append({"quantity": "interaction", "n": n, **shares, **_mean_effect(i)})
    return pd.DataFrame(rows, columns=["quantity", "n", *shares, "effect", "effect_lo", "effect_hi", "variance"])


def _mean_effect(x: np.ndarray) -> dict:
    """The mean of per-configuration contrasts with a normal 95% interval; its variance from the sample
    with one pseudo-configuration at +1 and one at -1 added (module docstring)."""
    from scipy import stats

    n = int(x.size)
    if n == 0:
        return {"effect": math.nan, "effect_lo": math.nan, "effect_hi": math.nan, "variance": math.nan}
    aug = np.concatenate([x.astype(float), [1.0, -1.0]])
    var = float(aug.var(ddof=1) / aug.size)
    half = float(stats.norm.ppf(0.975)) * math.sqrt(var)
    m = float(x.mean())
    return {"effect": m, "effect_lo": max(-2.0, m - half), "effect_hi": min(2.0, m + half), "variance": var}


def pool_interaction(rows: pd.DataFrame, *, method: str = "pm") -> pd.DataFrame:
    """Each 2x2 quantity pooled across data sets (rows: interaction_rows stacked with a `dataset` column)."""
    return pool_rows(rows, by="quantity", method=method)


# --------------------------------------------------------------------------- pooling and influence

def _usable(rows: pd.DataFrame) -> pd.Series:
    e, v = rows["effect"].astype(float), rows["variance"].astype(float)
    n = rows["n"].astype(float) if "n" in rows else pd.Series(1.0, index=rows.index)
    return np.isfinite(e) & np.isfinite(v) & (v > 0) & (n > 0)


def _pooled(use: pd.DataFrame, method: str) -> dict:
    empty = {c: math.nan for c in POOLED_COLUMNS}
    configs = int(use["n"].sum()) if "n" in use else math.nan
    if len(use) < 2:
        return {**empty, "k": len(use), "configs": configs,
                "note": "fewer than 2 data sets with an estimate: nothing pooled"}
    m = random_effects(use, effect="effect", variance="variance", method=method)
    return {"k": m.k, "configs": configs, "pooled": m.pooled, "se": m.se, "hk_low": m.hk_low, "hk_high": m.hk_high,
            "ci_low": m.ci_low, "ci_high": m.ci_high, "pi_low": m.pi_low, "pi_high": m.pi_high, "tau2": m.tau2,
            "i2": m.i2, "q": m.q, "q_pvalue": m.q_pvalue, "note": ""}


def pool_rows(rows: pd.DataFrame, *, by: str, method: str = "pm") -> pd.DataFrame:
    """Random-effects pooling of the rows of every value of `by` (in order of first appearance): one
    row per group (by, POOLED_COLUMNS). Rows without an estimate (no configuration, no variance) are
    left out and named in the note."""
    out = []
    for key, g in rows.groupby(by, sort=False):
        ok = _usable(g)
        r = {by: key, **_pooled(g[ok], method)}
        if (~ok).any() and "dataset" in g:
            left = "left out (no estimate): " + ", ".join(map(str, g.loc[~ok, "dataset"]))
            r["note"] = "; ".join(x for x in (left, r["note"]) if x)
        out.append(r)
    return pd.DataFrame(out, columns=[by, *POOLED_COLUMNS])


def _direction(r) -> int:
    """+1 / -1 where the HKSJ interval excludes 0 above / below, else 0."""
    lo, hi = float(r["hk_low"]), float(r["hk_high"])
    return 1 if lo > 0 else -1 if hi < 0 else 0


def leave_one_out(rows: pd.DataFrame, *, label: str = "dataset", method: str = "pm") -> pd.DataFrame:
    """The pooled estimate without each data set in turn. rows: one per data set (effect, variance,
    and `label`); rows without an estimate are left out first, as the headline leaves them out.
    Columns: left_out, POOLED_COLUMNS, direction (+1/0/-1: the HKSJ interval above 0, across 0,
    below 0), sign_flips (the point estimate changes sign against the full panel's),
    changes_significance (whether the interval excludes 0 changes) and changes_headline (the
    direction changes: either of the two)."""
    use = rows[_usable(rows)].reset_index(drop=True)
    full = _pooled(use, method)
    h = _direction(full) if np.isfinite(full["pooled"]) else 0
    out = []
    for i in range(len(use)):
        r = {"left_out": use.loc[i, label], **_pooled(use.drop(index=i), method)}
        ok = np.isfinite(r["pooled"])
        d = _direction(r) if ok else 0
        r.update(direction=d, sign_flips=bool(ok and np.sign(r["pooled"]) != np.sign(full["pooled"])),
                 changes_significance=bool(ok and (d != 0) != (h != 0)), changes_headline=bool(ok and d != h))
        out.append(r)
    return pd.DataFrame(out, columns=["left_out", *POOLED_COLUMNS, "direction", "sign_flips",
                                      "changes_significance", "changes_headline"])


def influence_sentence(loo: pd.DataFrame) -> str:
    """Whether any single data set changes the headline, naming those that do."""
    if loo.empty or not np.isfinite(loo["pooled"].astype(float)).any():
        return "Too few data sets to leave one out."
    moved = loo[loo["changes_headline"]]
    span = f"{_pts(loo['pooled'].min())} and {_pts(loo['pooled'].max())} pts"
    if moved.empty:
        return (f"No single data set changes the headline: leaving each out in turn the pooled difference stays "
                f"between {span}, each with the full panel's direction and significance.")
    parts = [f"without {r.left_out} {_pts(r.pooled)} pts ({_ci(r.hk_low, r.hk_high)})" for r in moved.itertuples()]
    return (f"{len(moved)} data set{'s' if len(moved) > 1 else ''} alone change{'' if len(moved) > 1 else 's'} the "
            f"headline's direction or significance: {'; '.join(parts)}.")


def _pts(x) -> str:
    return signed_text(100 * float(x), 1) if np.isfinite(float(x)) else "–"


def _ci(lo, hi) -> str:
    return f"95% CI {_pts(lo)} to {_pts(hi)}"
