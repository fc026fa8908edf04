"""The panel's pooling and its words (docs/design.md, Panel): pure functions of one row per data set
and of each data set's trials, nothing read or written here (bnsearch/panel.py runs, report/panel.py
renders).

The pooled effect is on a scale that means the same on every data set, whatever its declared δ: the
paired difference in the share of configurations reaching the top quarter of that data set's scores
(both arms pooled), with a variance from Tango's score interval (honest with no discordant pair one
way). It is pooled by Paule-Mandel with Hartung-Knapp-Sidik-Jonkman intervals (DerSimonian-Laird as
a sensitivity line), with the prediction interval for a new data set, a Bayesian signed-rank test
whose ROPE is the per-data-set practical margin and which carries each data set's sampling
uncertainty, and a meta-regression on data-set traits. Each data set's own verdict is quoted with
the interval that justifies it, and data sets whose best model barely beats the constant predictor
are marked. Beyond the headline (`panel_extras`, analysis.panelpool): the same scale within
pre-declared sub-spaces, at shorter epoch budgets, for the inputs x BN 2x2, and without each data
set in turn.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .common import signed_text
from .panelpool import TOP_QUANTILE, paired_share_effect, top_threshold

if TYPE_CHECKING:
    import pandas as pd

    from .meta import MetaResult, SignedRank
    from .panelpool import SubspaceDifference

ROPE = None  # the Bayesian test's ROPE; None: the verdicts' practical margin (primary.EQUIVALENCE_MARGIN)
N_DRAWS = 1000  # draws of every data set's effect for the Bayesian test (1000 x 50 Dirichlet samples: ~0.5 s)
# Traits the effect is regressed on, with the label the report uses.
MODERATORS = {"log10_rows": "rows (log10)", "features": "features", "classes": "classes",
              "scale_spread": "feature-scale spread (log10 of max/min SD)", "raw_inputs": "raw inputs (1) vs standardized (0)"}


# --------------------------------------------------------------------------- formatting

def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def pts(x, digits: int = 1, signed: bool = True) -> str:
    """A share difference in points. Rounded first, so nothing prints as "-0.0" (a value that rounds
    to zero prints unsigned)."""
    x = _num(x)
    if not math.isfinite(x):
        return "–"
    return signed_text(100 * x, digits) if signed else signed_text(100 * x, digits).lstrip("+")


def _ci(lo, hi, digits: int = 1, label: str = "95% CI") -> str:
    return f"{label} {pts(lo, digits)} to {pts(hi, digits)}"


_NEG_ZERO = re.compile(r"(?<![\w.])[-−]0(\.0+)?(?![\d.])")


def no_negative_zero(text: str) -> str:
    """Text the panel copies from elsewhere (each data set's verdict) without a "-0" or "-0.0": the
    panel's output never shows a negative zero, whoever rounded it."""
    return _NEG_ZERO.sub(lambda m: "0" + (m.group(1) or ""), text)


# --------------------------------------------------------------------------- per data set

def top_quarter_counts(t, r, *, paired: bool, quantile: float = TOP_QUANTILE) -> dict:
    """The pooled scale's counts for one data set: a configuration is "top quarter" when its score
    reaches the `quantile` of both arms' scores pooled (numpy's "lower" quantile and the same
    round-off epsilon as the primary analysis' "top 25%" level, so the counts match that level
    wherever the primary analysis kept it). t, r: the compared scores (the s* configuration left
    out), aligned by configuration when paired."""
    import numpy as np

    t, r = np.asarray(t, float), np.asarray(r, float)
    if paired and t.size != r.size:
        raise ValueError("paired scores must be aligned")
    if t.size == 0 or r.size == 0:
        return {"top_threshold": math.nan}
    thr = top_threshold(t, r, quantile=quantile)
    gt, gr = t >= thr - 1e-12, r >= thr - 1e-12
    out = {"top_threshold": thr, "top_on": float(gt.mean()), "top_off": float(gr.mean()),
           "top_k_on": int(gt.sum()), "top_k_off": int(gr.sum())}
    if paired:
        out.update(top_b=int((gt & ~gr).sum()), top_c=int((~gt & gr).sum()))
    return out


def _score_variance(lo: float, hi: float) -> float:
    from scipy import stats

    return ((hi - lo) / (2 * float(stats.norm.ppf(0.975)))) ** 2


# (b - c)/n with Tango's 95% score interval, and the variance that pooling uses: the interval's
# half-width back-transformed, ((hi - lo) / (2 z_0.975))^2. Unlike the Wald variance
# (p_b + p_c - (p_b - p_c)^2)/n it stays positive and honest with no discordant pair one way (c = 0)
# or none at all (b = c = 0: half-width z^2/(n + z^2)). One definition, shared with the sub-spaces.
paired_effect = paired_share_effect


def unpaired_effect(n_on: int, k_on: int, n_off: int, k_off: int) -> dict:
    """k_on/n_on - k_off/n_off (independent arms: an adaptive sampler) with Mee's 95% score interval,
    its variance back-transformed from the half-width like the paired one."""
    from .primary import score_interval_2indep

    if n_on <= 0 or n_off <= 0:
        return {"effect": math.nan, "effect_lo": math.nan, "effect_hi": math.nan, "variance": math.nan}
    lo, hi = score_interval_2indep(int(k_on), int(n_on), int(k_off), int(n_off))
    return {"effect": k_on / n_on - k_off / n_off, "effect_lo": lo, "effect_hi": hi,
            "variance": _score_variance(lo, hi)}


def effect_draws(frame: "pd.DataFrame", size: int = N_DRAWS, seed: int = 0):
    """size x data sets draws of each data set's pooled-scale effect from its posterior under a
    Jeffreys prior: paired, (p10, p01, concordant) ~ Dirichlet(b + 1/2, c + 1/2, n - b - c + 1/2) and the
    effect p10 - p01; unpaired, the difference of two Beta(k + 1/2, n - k + 1/2). Bounded like the
    effect itself and spread out at c = 0, where a normal draw around (b - c)/n would not be."""
    import numpy as np

    rng = np.random.default_rng([int(seed), 23])
    cols = []
    for r in frame.itertuples():
        n = int(r.n)
        if bool(getattr(r, "paired", True)):
            b, c = int(r.top_b), int(r.top_c)
            p = rng.dirichlet([b + 0.5, c + 0.5, n - b - c + 0.5], size)
            cols.append(p[:, 0] - p[:, 1])
        else:
            n_off, k_on, k_off = int(r.n_off), int(r.top_k_on), int(r.top_k_off)
            cols.append(rng.beta(k_on + 0.5, n - k_on + 0.5, size) - rng.beta(k_off + 0.5, n_off - k_off + 0.5, size))
    return np.column_stack(cols) if cols else np.empty((size, 0))


def compared_scores(df: "pd.DataFrame", summary):
    """The scores the primary analysis compared, from the experiment's trials: the summary's arms'
    complete trials, paired by configuration when the summary paired them, the configuration that
    sets s* left out (as analysis.summary does: reference_mask, first complete trial per config)."""
    import numpy as np

    from .common import _floats, complete_trials
    from .inference import paired_scores
    from .tolerance import reference_mask

    treat, ref = summary.arms
    trials = {a: complete_trials(df, a) for a in (treat, ref)}
    scores = {a: _floats(t["score"]) for a, t in trials.items()}
    order = {a: (_floats(t["config_index"]) if "config_index" in t and t["config_index"].notna().all()
                 else _floats(t["number"])) for a, t in trials.items()}
    mask = reference_mask(scores, order)
    if summary.paired:
        pairs = paired_scores(trials[treat], trials[ref])
        ref_cfg = [int(trials[a]["config_index"].to_numpy()[np.argmax(mask[a])]) for a in (treat, ref) if mask[a].any()]
        if ref_cfg:
            pairs = pairs[pairs["config_index"].to_numpy() != ref_cfg[-1]]
        t, r = pairs["on"].to_numpy(float), pairs["off"].to_numpy(float)
    else:
        t, r = scores[treat][~mask[treat]], scores[ref][~mask[ref]]
    p = summary.primary or {}
    if (p.get("n_on") is not None and int(p["n_on"]) != t.size) or (p.get("n_off") is not None
                                                                    and int(p["n_off"]) != r.size):
        raise RuntimeError(f"{summary.experiment}: the panel rebuilt {t.size}/{r.size} compared scores, the "
                           f"primary analysis had {p.get('n_on')}/{p.get('n_off')}; "
                           "analysis.panel.compared_scores no longer matches analysis.summary")
    return t, r


FOCUS_KEYS = ("kind", "delta", "threshold", "diff", "lo", "hi", "z", "p_adj")


def dataset_row(entry, summary, traits: dict, scores=None) -> dict:
    """One data set's row of panel.csv from its Comparison (analysis.summarize), traits and the
    compared scores (compared_scores) the pooled scale is counted on. entry: a panel.PanelEntry."""
    p = summary.primary or {}
    n = int(p.get("n_on") or 0)
    b, c = int(p.get("only_on") or 0), int(p.get("only_off") or 0)
    paired = bool(p.get("paired", summary.paired))
    baseline = _num((summary.context or {}).get("baseline"))
    row = {"dataset": entry.settings.data.dataset, "slug": entry.slug, "experiment": entry.settings.name,
           "inputs": entry.settings.data.inputs, "n": n, "n_off": int(p.get("n_off") or 0),
           "k_on": int(p.get("k_on") or 0), "k_off": int(p.get("k_off") or 0),
           "good_on": (p.get("k_on") or 0) / n if n else math.nan,
           "good_off": (p.get("k_off") or 0) / (p.get("n_off") or n) if n else math.nan,
           "b": b, "c": c, "diff": _num(p.get("diff")), "lo": _num(p.get("lo")), "hi": _num(p.get("hi")),
           "eq_lo": _num(p.get("eq_lo")), "eq_hi": _num(p.get("eq_hi")), "margin": _num(p.get("margin")),
           "p_value": _num(p.get("p_value")), "outcome": summary.outcome, "reason": str(p.get("reason") or ""),
           **{f"focus_{k}": (str(p.get(f"focus_{k}") or "") if k == "kind" else _num(p.get(f"focus_{k}")))
              for k in FOCUS_KEYS},
           "tolerance": float(summary.tolerance), "s_star": _num(summary.s_star), "baseline": baseline,
           "fail_cutoff": _num((summary.context or {}).get("fail_cutoff")),
           "paired": paired,
           "rows": traits.get("rows"), "log10_rows": math.log10(traits["rows"]) if traits.get("rows") else math.nan,
           "features": traits.get("features"), "classes": traits.get("classes"),
           "majority": traits.get("majority"), "scale_spread": traits.get("scale_spread"),
           "raw_inputs": traits.get("raw_inputs"), "verdict": summary.verdict}
    if scores is not None:
        row.update(top_quarter_counts(*scores, paired=paired))
    return row


def _directional(r) -> bool:
    """The row's own verdict has a direction AND the interval that justifies it (the level with the
    largest |z|, PrimaryResult.focus) excludes 0 on that side."""
    lo, hi = _num(getattr(r, "focus_lo", math.nan)), _num(getattr(r, "focus_hi", math.nan))
    if r.outcome == "easier":
        return math.isfinite(lo) and lo > 0
    if r.outcome == "harder":
        return math.isfinite(hi) and hi < 0
    return False


def dataset_claim(r, *, short: bool = False) -> str:
    """A data set's own verdict as the panel quotes it: a direction only with the interval that
    justifies it, "easier: +16 pts at a score ≥ 0.819 (95% CI +4 to +29)" (the primary analysis'
    simultaneous interval at its strongest level). `r`: a row of PanelResult.datasets (itertuples)."""
    o = getattr(r, "outcome", "")
    o = o if isinstance(o, str) and o else "cannot tell"
    if o in ("easier", "harder"):
        if _directional(r):
            return (f"{o}: {pts(r.focus_diff, 0)} pts at a score ≥ {_num(r.focus_threshold):.3f} "
                    f"({_ci(r.focus_lo, r.focus_hi, 0)})")
        return "direction not quoted: no interval excluding 0 was reported for it"
    if o == "equivalent":
        m = _num(getattr(r, "margin", math.nan))
        m = m if math.isfinite(m) else 0.10
        return f"no practical difference (every level's 90% CI within ±{100 * m:.0f} pts)"
    reason = str(getattr(r, "reason", "") or "")
    return "cannot tell" if short or not reason else f"cannot tell: {reason}"


def declared_text(r) -> str:
    """The difference at the data set's declared δ, labelled, with its simultaneous interval."""
    diff, lo, hi = (getattr(r, k, math.nan) for k in ("diff", "lo", "hi"))
    if not math.isfinite(_num(diff)):
        return "–"
    return f"{pts(diff, 0)} pts ({pts(lo, 0)} to {pts(hi, 0)})"


# --------------------------------------------------------------------------- pooling (pure)

@dataclass
class PanelResult:
    name: str
    datasets: "pd.DataFrame"  # one row per data set, with the pooled-scale effect, variance and weight
    pm: "MetaResult | None"  # Paule-Mandel (the headline)
    dl: "MetaResult | None"  # DerSimonian-Laird (sensitivity)
    bayes: "SignedRank | None"
    moderators: "pd.DataFrame"  # trait, k, slope, its CI and p, supported (or why not estimated)
    rope: float
    what: str = "BN"
    verdict: str = ""
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    seconds: float = math.nan  # wall time of the command that produced it (not set by pool_panel)
    pm_clear: "MetaResult | None" = None  # Paule-Mandel without the near-constant data sets (sensitivity)
    influence: "pd.DataFrame | None" = None  # panelpool.leave_one_out over the pooled data sets (by slug)
    extras: "PanelExtras | None" = None  # sub-spaces, budgets, 2x2 (panel_extras); None: not computed

    @property
    def k(self) -> int:
        return 0 if self.pm is None else self.pm.k

    def pooled_table(self) -> "pd.DataFrame":
        """pooled.csv: long format (method, quantity, value, lo, hi)."""
        import pandas as pd

        rows = []
        for label, m in (("random effects, Paule-Mandel", self.pm), ("random effects, DerSimonian-Laird", self.dl),
                         ("random effects, Paule-Mandel, near-constant data sets left out", self.pm_clear)):
            if m is None:
                continue
            rows += [(label, "pooled difference, HKSJ 95% CI", m.pooled, m.hk_low, m.hk_high),
                     (label, "pooled difference, normal 95% CI", m.pooled, m.ci_low, m.ci_high),
                     (label, "prediction interval (new data set)", m.pooled, m.pi_low, m.pi_high),
                     (label, "tau2", m.tau2, math.nan, math.nan),
                     (label, "I2 (from this tau2)", m.i2, math.nan, math.nan),
                     (label, "Q", m.q, math.nan, math.nan), (label, "Q p value", m.q_pvalue, math.nan, math.nan),
                     (label, "data sets", float(m.k), math.nan, math.nan)]
        if self.bayes is not None:
            b = self.bayes
            label = f"Bayesian signed-rank, ROPE {b.rope:g}, {b.draws} draws per data set"
            rows += [(label, f"P(difference > +{b.rope:g})", b.p_better, math.nan, math.nan),
                     (label, f"P(difference within ±{b.rope:g})", b.p_equivalent, math.nan, math.nan),
                     (label, f"P(difference < -{b.rope:g})", b.p_worse, math.nan, math.nan)]
        return pd.DataFrame(rows, columns=["method", "quantity", "value", "lo", "hi"])


def _effects(df: "pd.DataFrame", paired) -> "pd.DataFrame":
    import pandas as pd

    out = []
    for r, pr in zip(df.itertuples(), paired):
        n = _num(getattr(r, "n", 0))
        n = int(n) if math.isfinite(n) else 0
        if pr and math.isfinite(_num(getattr(r, "top_b", math.nan))):
            out.append(paired_effect(n, int(r.top_b), int(r.top_c)))
        elif not pr and math.isfinite(_num(getattr(r, "top_k_on", math.nan))):
            out.append(unpaired_effect(n, int(r.top_k_on), int(r.n_off), int(r.top_k_off)))
        else:
            out.append(paired_effect(0, 0, 0))
    return pd.DataFrame(out, index=df.index, columns=["effect", "effect_lo", "effect_hi", "variance"])


def pool_panel(rows, *, rope: float | None = ROPE, name: str = "panel", what: str = "BN", seed: int = 0,
               draws: int = N_DRAWS) -> PanelResult:
    """Pool one row per data set (dicts or a DataFrame). Each row needs n and the pooled scale's
    counts: top_b and top_c (paired), or n_off, top_k_on and top_k_off (rows with paired = False);
    optional: the MODERATORS traits, outcome and the focus_* / declared-δ fields quoted beside it,
    s_star, baseline and tolerance (for near_constant). Rows without an estimate are kept in the
    table but left out of the pooling. rope None: the rows' practical margin (primary.EQUIVALENCE_MARGIN)."""
    import numpy as np
    import pandas as pd

    from .meta import bayes_signed_rank, meta_regression, random_effects
    from .primary import EQUIVALENCE_MARGIN

    df = pd.DataFrame(rows).reset_index(drop=True)
    paired = df["paired"].astype(bool) if "paired" in df else pd.Series(True, index=df.index)
    df["paired"] = paired
    df[["effect", "effect_lo", "effect_hi", "variance"]] = _effects(df, paired)
    df["se"] = np.sqrt(df["variance"])
    for col in ("s_star", "baseline", "tolerance"):
        if col not in df:
            df[col] = np.nan
    df["headroom"] = df["s_star"].astype(float) - df["baseline"].astype(float)
    known = np.isfinite(df["headroom"]) & np.isfinite(df["tolerance"].astype(float))
    # The primary analysis' own test, float for float: the declared level s* - δ lies below the
    # failed-to-train cutoff (tolerance.failure_cutoff), with its round-off epsilon.
    tol = df["tolerance"].astype(float)
    cutoff = df["fail_cutoff"].astype(float) if "fail_cutoff" in df else df["baseline"].astype(float) + tol
    below = (df["s_star"].astype(float) - tol) < cutoff - 1e-12
    df["near_constant"] = pd.Series(np.where(known, below, None), index=df.index, dtype="object")
    ok = np.isfinite(df["effect"].astype(float)) & np.isfinite(df["variance"]) & (df["n"] > 0)
    margins = sorted({round(m, 12) for m in df.get("margin", pd.Series(dtype=float)).astype(float) if np.isfinite(m)})
    margin = margins[0] if len(margins) == 1 else EQUIVALENCE_MARGIN
    notes = []
    if rope is None:
        rope = margin
    elif not math.isclose(rope, margin):
        notes.append(f"panel.rope = {rope:g} differs from the per-data-set practical margin ({margin:g}): the "
                     "Bayesian test and the verdicts then answer different questions; leave panel.rope out")
    if (~ok).any():
        notes.append("left out of the pooling (no estimate): " + ", ".join(map(str, df.loc[~ok, "slug"]
                                                                               if "slug" in df else df.index[~ok])))
    use = df[ok].reset_index(drop=True)
    pm = dl = bayes = clear = None
    df["weight"] = np.nan
    if len(use) >= 2:
        pm = random_effects(use, effect="effect", variance="variance", method="pm")
        dl = random_effects(use, effect="effect", variance="variance", method="dl")
        df.loc[ok, "weight"] = pm.weights
        near = use["near_constant"].eq(True).to_numpy()
        if near.any() and (~near).sum() >= 2:
            clear = random_effects(use[~near], effect="effect", variance="variance", method="pm")
        with np.errstate(all="ignore"):
            d = effect_draws(use, draws, seed)
            bayes = bayes_signed_rank(d, np.zeros_like(d), rope, seed=seed)
    else:
        notes.append("fewer than 2 data sets with an estimate: nothing is pooled")
    mods = []
    for trait, label in MODERATORS.items():
        row = {"trait": trait, "label": label, "k": len(use)}
        if trait not in use or len(use) < 3:
            why = "not recorded for these data sets" if trait not in use else "needs at least 3 data sets"
            mods.append({**row, "supported": False, "note": why})
            continue
        try:
            fit = meta_regression(use, trait, effect="effect", variance="variance", method="pm")
        except ValueError as exc:
            mods.append({**row, "supported": False, "note": str(exc)})
            continue
        mods.append({**row, **{k: v for k, v in fit.as_dict().items() if k not in ("trait", "k")}, "note": ""})
    moderators = pd.DataFrame(mods, columns=["trait", "label", "k", "tau2", "intercept", "slope", "slope_se",
                                             "slope_ci_low", "slope_ci_high", "slope_pvalue", "supported", "note"])
    res = PanelResult(name=name, datasets=df, pm=pm, dl=dl, bayes=bayes, moderators=moderators, rope=float(rope),
                      what=what, notes=notes, pm_clear=clear, influence=_influence(df[ok]))
    res.verdict = panel_verdict(res)
    return res


def _influence(use: "pd.DataFrame") -> "pd.DataFrame":
    from .panelpool import leave_one_out

    label = next((c for c in ("slug", "dataset") if c in use), None)
    if label is None:
        use, label = use.assign(slug=[f"data set {i + 1}" for i in range(len(use))]), "slug"
    return leave_one_out(use[[label, "effect", "variance", "n"]], label=label)


def attach_extras(res: PanelResult, extras: "PanelExtras") -> PanelResult:
    """res with the pooled analyses beyond the headline, its verdict worded again to include them."""
    res.extras = extras
    res.notes += [n for n in extras.notes if n not in res.notes]
    res.verdict = panel_verdict(res)
    return res


SCALE = "the share of configurations reaching the top quarter of their data set's scores (both arms pooled)"


def _pooled_text(m) -> str:
    return f"{pts(m.pooled)} pts ({_ci(m.hk_low, m.hk_high)}, Hartung–Knapp)"


def _tally(df: "pd.DataFrame") -> str:
    """The per-data-set outcomes, counted. A direction is counted with the span of the intervals that
    justify it (each excludes 0, so their span does); a count of 0 is left out rather than printed
    as a bare direction."""
    if not len(df) or "outcome" not in df:
        return "none"
    groups: dict[str, list] = {}
    for r in df.itertuples():
        o = r.outcome if isinstance(r.outcome, str) and r.outcome else "cannot tell"
        key = o if o not in ("easier", "harder") or _directional(r) else "direction not quoted"
        groups.setdefault(key, []).append(r)
    parts = []
    for key in ("easier", "harder", "equivalent", "direction not quoted", "cannot tell"):
        rs = groups.get(key, [])
        if not rs:
            continue
        if key in ("easier", "harder"):
            lo, hi = min(_num(r.focus_lo) for r in rs), max(_num(r.focus_hi) for r in rs)
            span = (f"its simultaneous 95% CI {pts(lo, 0)} to {pts(hi, 0)} pts" if len(rs) == 1 else
                    f"their simultaneous 95% CIs span {pts(lo, 0)} to {pts(hi, 0)} pts, each excluding 0")
            parts.append(f"{key} on {len(rs)} ({span})")
        else:
            parts.append(f"{key.replace('equivalent', 'no practical difference')} on {len(rs)}")
    return ", ".join(parts)


def panel_verdict(res: PanelResult) -> str:
    """The panel's paragraph: direction and size first (a direction only when the HKSJ interval
    excludes 0, the interval quoted right after it), what to expect on a new data set,
    heterogeneity, the per-data-set tally, the near-constant data sets, the sensitivity lines, the
    Bayesian test and the moderators the intervals support."""
    df, pm, what = res.datasets, res.pm, res.what
    counts = _tally(df)
    if pm is None:
        return f"Too few data sets with an estimate to pool ({len(df)} in the panel; per data set: {counts})."
    k = pm.k
    ci = f"{_ci(pm.hk_low, pm.hk_high)}, Paule–Mandel with Hartung–Knapp–Sidik–Jonkman; normal-based " \
         f"{pts(pm.ci_low)} to {pts(pm.ci_high)}"
    if pm.hk_low > 0:
        head = f"Across {k} data sets {what} raised {SCALE} by {pts(pm.pooled, signed=False)} pts ({ci})"
    elif pm.hk_high < 0:
        head = f"Across {k} data sets {what} lowered {SCALE} by {pts(-pm.pooled, signed=False)} pts ({ci})"
    else:
        head = (f"Across {k} data sets {SCALE} changed by {pts(pm.pooled)} pts with {what} ({ci}): the pooled "
                "effect is not distinguishable from 0")
    if math.isfinite(pm.pi_low) and (pm.pi_low < -1 or pm.pi_high > 1):
        # a difference of shares lies within ±100 pts: an interval past that says only that k is too small
        pi = (f"; with {k} data sets the 95% prediction interval ({pts(pm.pi_low)} to {pts(pm.pi_high)} pts) "
              "reaches past the ±100 pts a difference of shares can take: too few data sets to say what to "
              "expect on a new one")
    elif math.isfinite(pm.pi_low):
        pi = f"; on a new data set expect between {pts(pm.pi_low)} and {pts(pm.pi_high)} pts (95% prediction interval)"
    else:
        pi = "; no prediction interval with fewer than 3 data sets"
    het = (f"; heterogeneity τ² = {pm.tau2:.4f} (Paule–Mandel), I² = {100 * pm.i2:.0f}% from that τ² "
           f"(Q = {pm.q:.1f}, p = {pm.q_pvalue:.2g}).")
    parts = [head + pi + het, f"Own verdicts per data set (table below): {counts}.", *_answers(res)]
    near = df[df["near_constant"].eq(True)] if "near_constant" in df else df.iloc[:0]
    if len(near):
        parts.append(f"On {len(near)} data set{'s' if len(near) > 1 else ''} ({', '.join(map(str, near['slug']))}) "
                     "the best model is less than δ above the failed-to-train cutoff (a constant predictor plus "
                     "its noise), so scoring within δ of the best does not set a configuration apart from one "
                     "that failed to train (marked †; their own verdict is cannot tell)"
                     + (f"; without them the pooled difference is {_pooled_text(res.pm_clear)}." if res.pm_clear
                        else "."))
    if res.dl is not None:
        parts.append(f"DerSimonian–Laird gives {_pooled_text(res.dl)}, I² = {100 * res.dl.i2:.0f}% from its τ².")
    if res.bayes is not None:
        b, m = res.bayes, f"{100 * res.bayes.rope:g}"
        parts.append(f"Bayesian signed-rank over data sets, each data set's difference drawn {b.draws} times from its "
                     f"posterior, ROPE ±{m} pts (the per-data-set practical margin): P(difference > +{m} pts) = "
                     f"{b.p_better:.2f}, P(within ±{m} pts) = {b.p_equivalent:.2f}, P(difference < -{m} pts) = "
                     f"{b.p_worse:.2f}.")
    sup = res.moderators[res.moderators["supported"].astype(bool)] if len(res.moderators) else res.moderators
    if len(sup):
        parts.append("Moderators (meta-regression, slope's 95% CI excludes 0): " + "; ".join(
            f"{r.label}: {pts(r.slope)} pts per unit ({pts(r.slope_ci_low)} to {pts(r.slope_ci_high)})"
            for r in sup.itertuples()) + ".")
    elif k >= 3:
        parts.append("No data-set trait (rows, features, classes, scale spread, raw inputs) moderated the effect "
                     "at the 95% level; with few data sets a moderator must be large to show.")
    parts.append("The pooled difference is measured at the same quantile of every data set's scores, not at its "
                 "declared δ, so it means the same on each; these conclusions hold for the searched space and budget.")
    return " ".join(parts)



# --------------------------------------------------------------------------- beyond the headline

CAREFUL_VS_CARELESS = "careful inits − careless inits"
NOT_PAIRED = ("each arm was searched by an adaptive sampler and holds its own configurations, so a sub-space or "
              "an epoch budget would compare different configurations in the two arms")


@dataclass
class PanelExtras:
    """The pooled analyses beyond the headline (panel_extras). Every per-data-set frame names the data
    set by its slug in `dataset`; every pooled frame has panelpool.POOLED_COLUMNS."""
    paired: bool
    why_not: str = ""  # why the sub-spaces, budgets and 2x2 are not pooled; "" when they are
    named: tuple[str, ...] = ()  # the categorical hyperparameters panel.subspaces named
    subspace_rows: "pd.DataFrame | None" = None  # panelpool.subspace_rows of every data set, stacked
    subspaces: "pd.DataFrame | None" = None  # one pooled row per sub-space, "all configurations" first
    difference: "SubspaceDifference | None" = None  # careful vs careless inits, where the space has both
    budget_rows: "pd.DataFrame | None" = None  # panelpool.budget_rows of every data set, stacked
    budgets: "pd.DataFrame | None" = None  # one pooled row per epoch budget
    interaction_rows: "pd.DataFrame | None" = None  # the inputs x norm 2x2 per data set (panels whose arms hold one)
    interaction: "pd.DataFrame | None" = None  # one pooled row per 2x2 quantity
    norm: str = "BN"  # how the 2x2's norm is named
    notes: list[str] = field(default_factory=list)


def panel_extras(frames, *, distributions, arms: Sequence[str], epochs: int, paired: bool, cells=None,
                 named: Sequence[str] = (), norm: str = "BN") -> PanelExtras:
    """Sub-spaces, epoch budgets and (cells given: arms.two_by_two) the 2x2 of every data set, pooled.
    frames: {slug: the data set's trials frame}; arms: (treatment, reference) as the headline compares
    them; distributions: the shared search space (Optuna distributions); named: categorical
    hyperparameters whose every level is a sub-space too. Nothing is pooled for unpaired arms."""
    import pandas as pd

    from . import panelpool as pp

    if not paired:
        return PanelExtras(paired=False, why_not=NOT_PAIRED, named=tuple(named), norm=norm)
    subs = pp.declared_subspaces(pp.space_choices(distributions), named)
    arms = tuple(arms[:2])
    sub_rows = pd.concat([pp.subspace_rows(df, subs, arms=arms).assign(dataset=slug) for slug, df in frames.items()],
                         ignore_index=True)
    names = list(dict.fromkeys(sub_rows["subspace"]))
    careful = [n for n in names if n.startswith(pp.CAREFUL)]
    careless = [n for n in names if n.startswith(pp.CARELESS)]
    diff = pp.subspace_difference(sub_rows, careful[0], careless[0]) if careful and careless else None
    budget_rows = pd.concat([pp.budget_rows(df, epochs=epochs, arms=arms).assign(dataset=slug)
                             for slug, df in frames.items()], ignore_index=True)
    out = PanelExtras(paired=True, named=tuple(named), subspace_rows=sub_rows, subspaces=pp.pool_subspaces(sub_rows),
                      difference=diff, budget_rows=budget_rows, budgets=pp.pool_budgets(budget_rows), norm=norm)
    if cells:
        rows = pd.concat([pp.interaction_rows(df, cells).assign(dataset=slug) for slug, df in frames.items()],
                         ignore_index=True)
        out.interaction_rows, out.interaction = rows, pp.pool_interaction(rows)
    if diff is not None and diff.note:
        out.notes.append(f"{CAREFUL_VS_CARELESS}: {diff.note}")
    return out


def long_table(rows: "pd.DataFrame", pooled: "pd.DataFrame", by: str) -> "pd.DataFrame":
    """The per-data-set rows of each `by` group followed by its pooled row (dataset = "pooled", its
    effect, effect_lo and effect_hi the pooled value and HKSJ interval): one CSV a reader can filter."""
    import pandas as pd

    p = pooled.assign(dataset="pooled", effect=pooled["pooled"], effect_lo=pooled["hk_low"],
                      effect_hi=pooled["hk_high"], variance=pooled["se"] ** 2)
    order = {k: i for i, k in enumerate(pooled[by])}
    both = pd.concat([rows.assign(_pooled=0), p.assign(_pooled=1)], ignore_index=True)
    both = both.assign(_group=both[by].map(order)).sort_values(["_group", "_pooled"], kind="stable")
    for c in ("n", "top_b", "top_c", "k", "configs"):  # counts stay whole numbers beside the pooled rows' blanks
        if c in both:
            both[c] = both[c].astype("Int64")
    first = [by, "dataset"]
    return both[first + [c for c in both if c not in first and c not in ("_group", "_pooled")]].reset_index(drop=True)


def difference_table(diff: "SubspaceDifference") -> "pd.DataFrame":
    """The careful-vs-careless test as rows of panel_subspaces.csv: each data set's difference, then
    the pooled one."""
    import pandas as pd

    from .panelpool import POOLED_COLUMNS

    rows = diff.rows.assign(subspace=CAREFUL_VS_CARELESS)
    m = diff.pm
    pooled = {c: math.nan for c in POOLED_COLUMNS} | {"k": 0, "note": diff.note}
    if m is not None:
        pooled.update(k=m.k, pooled=m.pooled, se=m.se, hk_low=m.hk_low, hk_high=m.hk_high, ci_low=m.ci_low,
                      ci_high=m.ci_high, pi_low=m.pi_low, pi_high=m.pi_high, tau2=m.tau2, i2=m.i2, q=m.q,
                      q_pvalue=m.q_pvalue)
    return long_table(rows, pd.DataFrame([{"subspace": CAREFUL_VS_CARELESS, **pooled}]), "subspace")


def interaction_sentence(pooled: "pd.DataFrame", norm: str = "BN") -> str:
    """The 2x2's one-sentence answer: does the norm stand in for input scaling? Judged on the
    interaction (D - C) - (B - A) of the top-quarter shares: below 0, the norm adds more on raw inputs
    than on standardized ones, so it does part of what scaling does."""
    import numpy as np

    q = pooled.set_index("quantity")
    lead = f"Does {norm} stand in for input scaling?"
    if "interaction" not in q.index or not np.isfinite(float(q.loc["interaction", "pooled"])):
        return f"{lead} Too few data sets with all four arms to pool the 2×2."

    def est(name):
        r = q.loc[name]
        return f"{pts(r['pooled'])} pts, {_ci(r['hk_low'], r['hk_high'])}"

    k = int(q.loc["interaction", "k"])
    raw, std, inter, scale = (est(n) for n in ("norm_gain_raw", "norm_gain_std", "interaction", "standardize_gain"))
    i = q.loc["interaction"]
    if i["hk_high"] < 0 and q.loc["norm_gain_raw", "hk_low"] > 0:
        ans = (f"In part: across {k} data sets {norm} adds more to the share of top-quarter configurations on raw "
               f"inputs ({raw}) than on standardized ones ({std}); interaction {inter}")
    elif i["hk_low"] > 0:
        ans = (f"No: across {k} data sets {norm} adds more to the share of top-quarter configurations on "
               f"standardized inputs ({std}) than on raw ones ({raw}); interaction {inter}")
    else:
        ans = (f"Not shown: across {k} data sets {norm}'s change in the share of top-quarter configurations on raw "
               f"inputs ({raw}) and on standardized ones ({std}) cannot be told apart; interaction {inter}")
    return f"{lead} {ans}; standardizing alone changes the share by {scale}."


def effect_owner(res: PanelResult) -> str:
    """Whose effect the sub-spaces and budgets measure: the norm for the 2x2 (its arms at the reference's
    inputs), what the headline compares otherwise."""
    x = res.extras
    return x.norm if x is not None and x.interaction is not None else res.what


def _answers(res: PanelResult) -> list[str]:
    """The verdict's answers beyond the headline: the careful sub-space, faster training or more
    robust, the 2x2, and whether one data set changes the headline."""
    from . import panelpool as pp

    out, x = [], res.extras
    if x is not None and not x.paired:
        out.append(f"Sub-spaces and epoch budgets are not pooled: {x.why_not}.")
    elif x is not None:
        who = effect_owner(res)
        if any(n.startswith(pp.CAREFUL) for n in x.subspaces["subspace"]):
            out.append(pp.subspace_sentence(x.subspaces, pp.CAREFUL, what=who))
        out.append(pp.budget_sentence(x.budgets, what=who))
        if x.interaction is not None:
            out.append(interaction_sentence(x.interaction, x.norm))
    if res.influence is not None and res.k >= 3:
        out.append(pp.influence_sentence(res.influence))
    return out
