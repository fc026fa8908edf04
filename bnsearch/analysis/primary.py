"""The primary analysis: does a random search reach a given quality more often in one arm?
(docs/design.md, Primary analysis).

"Tuning is easier" means a random search reaches a given quality with fewer trials, i.e. a larger
share of configurations reaches it. One good-fraction cell at one δ can sit at its floor in both arms
while the arms differ everywhere else, so the decision reads a profile of quality levels at once:

* levels: score thresholds s* - δ_j for the tolerance profile (multiples of the declared δ) and the
  pooled quartile/decile thresholds (the top 10%, 25% and 50% of all scores), so the profile reaches
  from "as good as the best" down to the median configuration;
* paired: at each level b_j (good only in the treatment arm), c_j (good only in the reference arm)
  and the score statistic z_j = (b_j - c_j) / sqrt(b_j + c_j) -- McNemar's, which is also Tango's
  statistic at a difference of 0. Unpaired: the pooled two-proportion score statistic;
* the test: M = max_j |z_j|. Its null distribution comes from swapping the arms inside pairs (paired)
  or permuting arm labels (unpaired). Under the A/A null that is exact: a swap leaves s*, δ, the
  pooled quantiles and the reference configuration unchanged. Enumerated exactly when at most
  EXACT_FLIPS pairs are discordant anywhere, Monte Carlo otherwise;
* intervals: at every level the score interval (Tango paired, Mee unpaired) at one critical value
  c, the larger of M's sign-flip null quantile and Bonferroni's z_(1-alpha/2J): the null's alone is
  computed at a difference of 0 and covered every level at once only 91-93% of the time under real
  effects. One excludes 0 exactly when its level's |z_j| > c, i.e. exactly when the test rejects there;
* quoting: a direction quotes the rejecting level with the largest |z| (`PrimaryResult.quoted`),
  whose interval excludes 0 by construction; no level below the failed-to-train cutoff counts;
* outcomes: easier / harder when the test rejects and every rejecting level agrees in sign; no
  practical difference only when every level's 90% interval is inside the margin, the tuning curves
  stay within δ of each other at every budget, and the declared level is not at its floor or ceiling
  in either arm; otherwise cannot tell, with the reason.

Holm's step-down adjustment for the secondary tests lives here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.80
EQUIVALENCE_MARGIN = 0.10  # |difference in good fraction| below which the arms are practically equal
N_PERM = 4000  # Monte Carlo swaps; the p value's Monte Carlo SE at p = 0.05 is 0.0034
EXACT_FLIPS = 12  # at most this many discordant pairs: all 2^k swaps are enumerated
QUANTILE_LEVELS = (0.9, 0.75, 0.5)  # pooled score quantiles added to the profile
FLOOR = 0.05  # a good fraction below this (or above 1 - FLOOR) in both arms says nothing about equality
MAX_TRIALS_SHOWN = 100_000

OUTCOMES = ("easier", "harder", "equivalent", "cannot tell")


# ----------------------------------------------------------------------------- score intervals

def _tango_z(delta, b, c, n):
    """Tango (1998) score statistic for H0: p10 - p01 = delta (vectorised over any argument)."""
    delta, b, c, n = (np.asarray(v, float) for v in (delta, b, c, n))
    A = 2 * n
    B = -b - c + (2 * n - b + c) * delta
    C = -c * delta * (1 - delta)
    p01 = (np.sqrt(np.maximum(B * B - 4 * A * C, 0.0)) - B) / (2 * A)
    var = n * (2 * p01 + delta * (1 - delta))
    num = b - c - n * delta
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, num / np.sqrt(np.where(var > 0, var, 1.0)),
                     np.where(num == 0, 0.0, np.copysign(np.inf, num)))
    return z if z.ndim else float(z)


def tango_interval(b: int, c: int, n: int, confidence: float = 1 - ALPHA, *,
                   z: float | None = None) -> tuple[float, float]:
    """Tango's score interval for the paired difference (b - c) / n: the differences its score test
    does not reject at critical value z (default: the two-sided normal quantile of `confidence`).

    Hand-written: neither scipy nor statsmodels has it. Checked against Fagerland et al. (2014).
    """
    if n <= 0:
        return (math.nan, math.nan)
    z = float(stats.norm.ppf(0.5 + confidence / 2)) if z is None else float(z)
    d = (b - c) / n
    eps = 1e-12
    lo = -1.0 if _tango_z(-1 + eps, b, c, n) <= z else optimize.brentq(
        lambda x: _tango_z(x, b, c, n) - z, -1 + eps, d if d > -1 + eps else -1 + 2 * eps, xtol=1e-10)
    hi = 1.0 if _tango_z(1 - eps, b, c, n) >= -z else optimize.brentq(
        lambda x: _tango_z(x, b, c, n) + z, d if d < 1 - eps else 1 - 2 * eps, 1 - eps, xtol=1e-10)
    return (float(lo), float(hi))


def _mn_z(delta, k1: int, n1: int, k2: int, n2: int):
    """Score statistic for H0: p1 - p2 = delta with the restricted MLE of Farrington & Manning (1990)
    (Miettinen-Nurminen without the n/(n-1) factor); vectorised over delta. At delta = 0 it is the
    pooled two-proportion z."""
    d = np.asarray(delta, float)
    p1, p2 = k1 / n1, k2 / n2
    th = n2 / n1
    a = 1 + th
    b = -(1 + th + p1 + th * p2 + d * (th + 2))
    c = d * d + d * (2 * p1 + th + 1) + p1 + th * p2
    e = -p1 * d * (1 + d)
    v = b ** 3 / (27 * a ** 3) - b * c / (6 * a * a) + e / (2 * a)
    u = np.where(v >= 0, 1.0, -1.0) * np.sqrt(np.maximum(b * b / (9 * a * a) - c / (3 * a), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        w = (math.pi + np.arccos(np.clip(np.where(u != 0, v / np.where(u != 0, u, 1.0) ** 3, 0.0), -1, 1))) / 3
        r1 = np.clip(2 * u * np.cos(w) - b / (3 * a), 0, 1)
        r2 = np.clip(r1 - d, 0, 1)
        var = r1 * (1 - r1) / n1 + r2 * (1 - r2) / n2
        num = p1 - p2 - d
        z = np.where(var > 0, num / np.sqrt(np.where(var > 0, var, 1.0)), np.where(num == 0, 0.0, np.copysign(np.inf, num)))
    return z if z.ndim else float(z)


def score_interval_2indep(k1: int, n1: int, k2: int, n2: int, confidence: float = 1 - ALPHA, *,
                          z: float | None = None) -> tuple[float, float]:
    """Mee's score interval of k1/n1 - k2/n2 (Miettinen-Nurminen without the n/(n-1) factor): the differences
    whose score test does not reject at critical value z. Hand-inverted on the closed-form restricted
    MLE because statsmodels' `confint_proportions_2indep(method="score")` fails to bracket at 0/n and n/n."""
    if n1 <= 0 or n2 <= 0:
        return (math.nan, math.nan)
    z = float(stats.norm.ppf(0.5 + confidence / 2)) if z is None else float(z)
    d = k1 / n1 - k2 / n2
    grid = np.linspace(-1 + 1e-9, 1 - 1e-9, 4001)
    inside = np.abs(_mn_z(grid, k1, n1, k2, n2)) <= z
    inside |= np.isclose(grid, d, atol=2.5e-4)
    idx = np.flatnonzero(inside)
    lo_i, hi_i = idx.min(), idx.max()

    def edge(i_out: int, i_in: int) -> float:
        f = lambda x: abs(_mn_z(x, k1, n1, k2, n2)) - z  # noqa: E731
        a, b = grid[i_out], grid[i_in]
        return float(optimize.brentq(f, a, b, xtol=1e-10)) if f(a) * f(b) < 0 else float(b)

    lo = -1.0 if lo_i == 0 else edge(lo_i - 1, lo_i)
    hi = 1.0 if hi_i == grid.size - 1 else edge(hi_i + 1, hi_i)
    return (lo, hi)


def exact_mcnemar(b: int, c: int) -> float:
    """Two-sided exact McNemar p (binomial test of b successes in b + c at 1/2); 1.0 with no discordant pair."""
    return 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p values (NaN stays NaN and does not count as a test).

    Hand-written: scipy.stats.false_discovery_control offers only Benjamini-Hochberg/Yekutieli, and
    statsmodels' multipletests does not pass NaN through.
    """
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, math.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adj
    return out


# ----------------------------------------------------------------------------- the max-statistic test

def _paired_z(x: np.ndarray) -> np.ndarray:
    """Score statistic per level (rows) of paired differences x in {-1, 0, 1}; 0 where nothing is discordant."""
    m = np.abs(x).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(m > 0, x.sum(axis=-1) / np.sqrt(np.maximum(m, 1)), 0.0)


def _pooled_z(k1: np.ndarray, n1: int, k2: np.ndarray, n2: int) -> np.ndarray:
    p = (k1 + k2) / (n1 + n2)
    se = np.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, (k1 / n1 - k2 / n2) / np.where(se > 0, se, 1.0), 0.0)


def _null_max(gt: np.ndarray, gr: np.ndarray, paired: bool, n_perm: int,
              rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """(max_j |z*_j| for every swap, exact?) -- the null distribution of the max statistic."""
    if paired:
        x = gt.astype(np.int8) - gr.astype(np.int8)  # (J, n)
        active = np.flatnonzero(np.abs(x).any(axis=0))
        x = x[:, active].astype(float)
        k = active.size
        if k <= EXACT_FLIPS:
            signs = 1 - 2 * ((np.arange(2 ** k)[:, None] >> np.arange(k)) & 1)  # every swap pattern
            exact = True
        else:
            signs = rng.choice(np.array([-1.0, 1.0]), size=(n_perm, k))
            exact = False
        m = np.abs(x).sum(axis=1)
        z = (signs @ x.T) / np.sqrt(np.maximum(m, 1))
        return np.abs(z).max(axis=1), exact
    n1 = gt.shape[1]
    g = np.concatenate([gt, gr], axis=1).astype(float)  # (J, n1 + n2)
    N = g.shape[1]
    perms = np.argsort(rng.random((n_perm, N)), axis=1)[:, :n1]
    k1 = np.stack([g[j][perms].sum(axis=1) for j in range(g.shape[0])], axis=1)  # (B, J)
    total = g.sum(axis=1)
    z = _pooled_z(k1, n1, total[None, :] - k1, N - n1)
    return np.abs(z).max(axis=1), False


def _critical(null: np.ndarray, exact: bool, alpha: float) -> float:
    """The smallest c with P(M > c) < alpha under the null (Monte Carlo: (count + 1) / (B + 1)),
    so that |z| > c exactly when the permutation p value is below alpha."""
    e = 0 if exact else 1
    s = np.sort(null)
    vals = np.unique(s)
    above = s.size - np.searchsorted(s, vals, side="right")
    ok = (above + e) / (s.size + e) < alpha
    return float(vals[ok].min()) if ok.any() else math.inf


def _perm_p(null: np.ndarray, exact: bool, value: float) -> float:
    e = 0 if exact else 1
    return float((np.sum(null >= value - 1e-12) + e) / (null.size + e))


# ----------------------------------------------------------------------------- result

@dataclass
class PrimaryResult:
    """The decision and the numbers the verdict quotes. `levels` has one row per quality level:
    delta, threshold, kind, n_t, n_r, k_t, k_r, b, c, diff, lo, hi (simultaneous), z, p_adj
    (max-statistic adjusted), eq_lo, eq_hi (90%, for equivalence)."""

    paired: bool
    n_on: int  # configurations (paired) or trials per arm, reference left out
    n_off: int
    k_on: int  # good at the declared δ
    k_off: int
    diff: float  # at the declared δ
    lo: float  # simultaneous interval at the declared δ (same critical value as the test)
    hi: float
    p_value: float  # the max-statistic test over all levels
    eq_lo: float  # 90% interval at the declared δ
    eq_hi: float
    margin: float
    outcome: str
    reason: str = ""  # why "cannot tell" (or a qualifier of a direction)
    critical: float = math.nan
    n_levels: int = 0
    exact: bool = False
    focus: int = -1  # index of the level with the largest |z| (where the arms differ most)
    declared: int = -1  # index of the declared δ
    trials_needed: float = math.nan
    settles: str = ""
    discordant: tuple[int, int] = (0, 0)
    levels: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
    near_constant: bool = False  # the best score is within 2δ of a constant predictor's: no level is meaningful

    def level(self, i: int) -> dict:
        return {} if self.levels.empty or i < 0 else self.levels.iloc[i].to_dict()

    @property
    def quoted(self) -> int:
        """The level a claim quotes: for a direction, the rejecting level with the largest |z| (its
        simultaneous interval excludes 0 by construction: it rejects, and every rejecting level
        agrees in sign); otherwise the declared δ."""
        return self.focus if self.outcome in ("easier", "harder") else self.declared


LEVEL_COLUMNS = ["delta", "threshold", "kind", "n_t", "n_r", "k_t", "k_r", "b", "c", "diff", "lo", "hi", "z",
                 "p_adj", "eq_lo", "eq_hi"]


def quality_levels(tolerance: float, pooled: np.ndarray, s_star: float,
                   multiples: Sequence[float] | None = None) -> pd.DataFrame:
    """delta, threshold, kind of every level: the tolerance profile, then the pooled quantiles
    below it (duplicates of a profile level dropped)."""
    from .tolerance import PROFILE_MULTIPLES

    multiples = PROFILE_MULTIPLES if multiples is None else multiples
    rows = []
    if np.isfinite(s_star) and np.isfinite(tolerance):
        unit = tolerance if tolerance > 0 else None
        if unit is None and pooled.size:
            unit = (s_star - float(np.median(pooled))) / 4 or None
        deltas = sorted({round(m * unit, 12) for m in multiples} | {round(tolerance, 12)}) if unit else \
            [round(tolerance, 12)]
        rows += [{"delta": d, "kind": "declared" if d == round(tolerance, 12) else "profile"} for d in deltas]
        if pooled.size:
            have = {r["delta"] for r in rows}
            for q in QUANTILE_LEVELS:
                d = round(s_star - float(np.quantile(pooled, q, method="lower")), 12)
                if d > 0 and d not in have:
                    rows.append({"delta": d, "kind": f"top {100 * (1 - q):.0f}%"})
                    have.add(d)
    out = pd.DataFrame(rows, columns=["delta", "kind"]).sort_values("delta", kind="stable").reset_index(drop=True)
    out.insert(1, "threshold", s_star - out["delta"])
    return out


def _flags(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    # The epsilon counts a score exactly at s* - δ despite float round-off (0.98 vs 0.99 - 0.01).
    return scores[None, :] >= thresholds[:, None] - 1e-12


def _intervals(gt: np.ndarray, gr: np.ndarray, paired: bool, z: float) -> list[tuple[float, float]]:
    out = []
    for a, r in zip(gt, gr):
        if paired:
            out.append(tango_interval(int((a & ~r).sum()), int((~a & r).sum()), a.size, z=z))
        else:
            out.append(score_interval_2indep(int(a.sum()), a.size, int(r.sum()), r.size, z=z))
    return out


def compare_flags(gt: np.ndarray, gr: np.ndarray, *, paired: bool, alpha: float = ALPHA, n_perm: int = N_PERM,
                  seed: int = 0, tag: str = "primary") -> dict:
    """The max-statistic test and simultaneous intervals for J levels of good flags at once.

    gt, gr: (J, n) boolean (paired: aligned configurations) or (J, n_t) and (J, n_r) (unpaired).
    Returns z, p_adj (per level), p (overall), critical, exact, diff, lo, hi, eq_lo, eq_hi, b, c.
    J = 1 is the single-level test: exact McNemar's distribution (paired) or a label permutation test.
    """
    from .common import _rng

    gt, gr = np.atleast_2d(np.asarray(gt, bool)), np.atleast_2d(np.asarray(gr, bool))
    if paired:
        b, c = (gt & ~gr).sum(axis=1), (~gt & gr).sum(axis=1)
        n = gt.shape[1]
        z = _paired_z(gt.astype(np.int8) - gr.astype(np.int8))
        diff = (b - c) / n
    else:
        b, c = gt.sum(axis=1), gr.sum(axis=1)
        z = _pooled_z(b.astype(float), gt.shape[1], c.astype(float), gr.shape[1])
        diff = b / gt.shape[1] - c / gr.shape[1]
    null, exact = _null_max(gt, gr, paired, n_perm, _rng(seed, tag))
    n_levels = max(len(z), 1)
    # Two critical values, and the larger one serves the test and every interval alike, so an
    # interval excludes 0 exactly where its level rejects. The sign-flip null's is exact under A/A
    # but computed at a difference of 0: under a real effect the levels decorrelate, the maximum of
    # |T_j(Δ_j)| grows, and its intervals covered every level at once only 91-92% of the time in
    # simulation. Bonferroni's z_(1 - alpha/2J) bounds the family by the union bound at any effect.
    bonferroni = float(stats.norm.ppf(1 - alpha / (2 * n_levels)))
    crit = max(_critical(null, exact, alpha), bonferroni)
    # Each level's p is the larger of the two tests' (sign-flip max statistic, Bonferroni), so
    # p < alpha exactly when |z| > crit.
    p_adj = np.array([max(_perm_p(null, exact, abs(v)), min(1.0, n_levels * float(2 * stats.norm.sf(abs(v)))))
                      for v in z])
    if (np.abs(z) > crit).any():
        p_adj = np.where(np.abs(z) > crit, np.minimum(p_adj, alpha * (1 - 1e-9)), np.maximum(p_adj, alpha))
    else:
        p_adj = np.maximum(p_adj, alpha)
    ci = _intervals(gt, gr, paired, crit)
    eq = _intervals(gt, gr, paired, float(stats.norm.ppf(1 - alpha)))
    return {"z": z, "p_adj": p_adj, "p": float(p_adj.min()) if p_adj.size else math.nan, "critical": crit,
            "exact": exact, "diff": diff, "lo": np.array([x[0] for x in ci]), "hi": np.array([x[1] for x in ci]),
            "eq_lo": np.array([x[0] for x in eq]), "eq_hi": np.array([x[1] for x in eq]), "b": b, "c": c}


def rate_difference(on_flags, off_flags, *, paired: bool, seed: int = 0, tag: str = "rate") -> PrimaryResult:
    """A single share compared between arms (diverged, failed to train): the one-level case of the
    primary machinery, so its interval and its test again answer the same question."""
    a, r = np.asarray(on_flags, bool), np.asarray(off_flags, bool)
    if a.size == 0 or r.size == 0:
        return PrimaryResult(paired, a.size, r.size, int(a.sum()), int(r.sum()), *(math.nan,) * 6,
                             margin=math.nan, outcome="cannot tell")
    res = compare_flags(a[None, :], r[None, :], paired=paired, seed=seed, tag=tag)
    b, c = int(res["b"][0]), int(res["c"][0])
    return PrimaryResult(paired, a.size, r.size, int(a.sum()), int(r.sum()), float(res["diff"][0]),
                         float(res["lo"][0]), float(res["hi"][0]), float(res["p_adj"][0]),
                         float(res["eq_lo"][0]), float(res["eq_hi"][0]), math.nan,
                         "easier" if res["p_adj"][0] < ALPHA and res["diff"][0] > 0 else
                         "harder" if res["p_adj"][0] < ALPHA and res["diff"][0] < 0 else "cannot tell",
                         critical=res["critical"], n_levels=1, exact=res["exact"],
                         discordant=(b, c) if paired else (0, 0))


def _curve_gap(t: np.ndarray, r: np.ndarray) -> float:
    """Largest |difference| of the two arms' expected best of n (V-estimate) over the budgets shown."""
    from .curves import curve_grid, v_estimate

    ns = curve_grid(min(t.size, r.size))
    return max((abs(v_estimate(t, n) - v_estimate(r, n)) for n in ns), default=math.nan)


def primary_analysis(t: Sequence[float], r: Sequence[float], *, paired: bool, s_star: float, tolerance: float,
                     margin: float = EQUIVALENCE_MARGIN, alpha: float = ALPHA, n_perm: int = N_PERM,
                     seed: int = 0, floor: float | None = None) -> PrimaryResult:
    """The primary analysis of two arms' scores (the reference configuration already left out).

    t, r: treatment and reference scores (paired: aligned by configuration). s_star: the shared best
    (reference configuration included). tolerance: the declared δ. floor: the score below which a
    run failed to train (tolerance.failure_cutoff); no level below it counts as good, so "good" and
    "failed to train" never describe the same run.
    """
    t, r = np.asarray(t, float), np.asarray(r, float)
    if paired and t.size != r.size:
        raise ValueError("paired scores must be aligned")
    if t.size == 0 or r.size == 0 or not np.isfinite(s_star):
        return PrimaryResult(paired, t.size, r.size, 0, 0, *(math.nan,) * 6, margin=margin, outcome="cannot tell",
                             reason="no completed trials to compare")
    pooled = np.concatenate([t, r])
    lv = quality_levels(tolerance, pooled, s_star)
    notes: list[str] = []
    if floor is not None and np.isfinite(floor):
        cut = lv["threshold"].to_numpy(float) < floor - 1e-12
        if cut[(lv["kind"] == "declared").to_numpy()].any():
            return PrimaryResult(paired, t.size, r.size, 0, 0, *(math.nan,) * 6, margin=margin, outcome="cannot tell",
                                 reason=(f"the best score ({s_star:.4g}) is less than δ = {tolerance:.3g} above the "
                                         f"failed-to-train cutoff ({floor:.4g}, a constant predictor plus its noise), so a "
                                         "configuration within δ of the best may be no better than trivial"),
                                 near_constant=True)
        if cut.any():
            notes.append(f"{int(cut.sum())} of {cut.size} quality levels lie below the failed-to-train cutoff "
                         f"({floor:.4g}: a constant predictor plus its noise) and are left out: a run no better "
                         "than trivial never counts as good")
            lv = lv[~cut].reset_index(drop=True)
    th = lv["threshold"].to_numpy(float)
    gt, gr = _flags(t, th), _flags(r, th)
    res = compare_flags(gt, gr, paired=paired, alpha=alpha, n_perm=n_perm, seed=seed)
    lv = lv.assign(n_t=t.size, n_r=r.size, k_t=gt.sum(axis=1), k_r=gr.sum(axis=1), b=res["b"], c=res["c"],
                   diff=res["diff"], lo=res["lo"], hi=res["hi"], z=res["z"], p_adj=res["p_adj"],
                   eq_lo=res["eq_lo"], eq_hi=res["eq_hi"])[LEVEL_COLUMNS]
    if not paired:
        lv[["b", "c"]] = 0
    d_i = int(np.flatnonzero(lv["kind"].to_numpy() == "declared")[0])
    az = np.abs(lv["z"].to_numpy(float))
    # the largest |z|; on a tie the declared level, so a claim quotes the declared δ whenever it can
    focus = (d_i if az[d_i] >= az.max() - 1e-12 else int(np.argmax(az))) if (az > 0).any() else d_i
    dec = lv.iloc[d_i]
    out = PrimaryResult(paired, t.size, r.size, int(dec["k_t"]), int(dec["k_r"]), float(dec["diff"]),
                        float(dec["lo"]), float(dec["hi"]), res["p"], float(dec["eq_lo"]), float(dec["eq_hi"]),
                        margin, "", critical=res["critical"], n_levels=len(lv), exact=res["exact"], focus=focus,
                        declared=d_i, discordant=(int(dec["b"]), int(dec["c"])) if paired else (0, 0), levels=lv,
                        notes=notes)
    out.outcome, out.reason = _decide(lv, t, r, tolerance, margin, alpha)
    if out.outcome == "cannot tell" and not out.reason.startswith("it differs in sign"):
        out.trials_needed, out.settles = trials_needed(out, t, r)
    return out


def _decide(lv: pd.DataFrame, t: np.ndarray, r: np.ndarray, tolerance: float, margin: float,
            alpha: float) -> tuple[str, str]:
    sig = lv[lv["p_adj"] < alpha]
    if len(sig):
        up, down = (sig["diff"] > 0).any(), (sig["diff"] < 0).any()
        if up and down:
            return "cannot tell", ("it differs in sign between quality levels: ahead at "
                                   + ", ".join(f"δ = {d:.3g}" for d in sig.loc[sig['diff'] > 0, 'delta'])
                                   + ", behind at " + ", ".join(f"δ = {d:.3g}" for d in sig.loc[sig['diff'] < 0, 'delta']))
        small = bool(((lv["lo"] > -margin) & (lv["hi"] < margin)).all())
        return ("easier" if up else "harder"), ("by less than the practical margin" if small else "")
    dec = lv[lv["kind"] == "declared"].iloc[0]
    g_t, g_r = dec["k_t"] / dec["n_t"], dec["k_r"] / dec["n_r"]
    if g_t < FLOOR and g_r < FLOOR:
        edge = f"the good fraction is at its floor in both arms ({100 * g_t:.0f}% and {100 * g_r:.0f}%)"
    elif g_t > 1 - FLOOR and g_r > 1 - FLOOR:
        edge = f"the good fraction is at its ceiling in both arms ({100 * g_t:.0f}% and {100 * g_r:.0f}%)"
    else:
        edge = ""
    wide = lv[(lv["eq_lo"] <= -margin) | (lv["eq_hi"] >= margin)]
    gap = _curve_gap(t, r)
    if edge:
        return "cannot tell", edge
    if len(wide):
        return "cannot tell", (f"the 90% interval reaches beyond ±{100 * margin:.0f} pts at "
                               f"{len(wide)} of {len(lv)} quality levels")
    if np.isfinite(gap) and gap >= tolerance:
        return "cannot tell", (f"the tuning curves differ by up to {gap:.3g}, more than δ = {tolerance:.3g}, "
                               "though no single quality level shows it")
    return "equivalent", ""


def decide(p_value: float, diff: float, eq_lo: float, eq_hi: float, margin: float, alpha: float = ALPHA) -> str:
    """The four outcomes from one test and one interval (used across repeats, where each repeat's
    difference is one observation): a direction when the test rejects, equivalence when the 90%
    interval lies inside the margin, otherwise cannot tell."""
    if np.isfinite(p_value) and p_value < alpha and diff != 0:
        return "easier" if diff > 0 else "harder"
    if np.isfinite(eq_lo) and -margin < eq_lo and eq_hi < margin:
        return "equivalent"
    return "cannot tell"


# ----------------------------------------------------------------------------- trials needed

def _power_paired(n: int, p10: float, p01: float, crit: float) -> float:
    """Exact power of |b - c| / sqrt(b + c) > crit for n pairs (b, c, rest trinomial)."""
    psi = p10 + p01
    if psi <= 0:
        return 0.0
    m = np.arange(1, n + 1)
    pm = stats.binom.pmf(m, n, psi)
    half = crit * np.sqrt(m)
    hi_b = np.floor((m + half) / 2)  # reject when b > hi_b ...
    lo_b = np.ceil((m - half) / 2)  # ... or b < lo_b
    q = p10 / psi
    # b > (m + crit sqrt(m)) / 2 is b > floor(.), and b < (m - crit sqrt(m)) / 2 is b <= ceil(.) - 1
    rej = stats.binom.sf(hi_b, m, q) + stats.binom.cdf(lo_b - 1, m, q)
    return float(np.sum(pm * np.clip(rej, 0, 1)))


def _power_equivalence(n: int, psi: float, margin: float, z: float) -> float:
    """Exact power of the paired TOST (Tango's 90% interval inside ±margin) when the arms are equal
    and a share psi of configurations is discordant, enumerated over (b, c)."""
    if n > 1000:  # normal approximation of the same TOST: the difference has variance psi / n
        se = math.sqrt(max(psi, 1e-9) / n)
        return float(max(0.0, 2 * stats.norm.cdf(margin / se - z) - 1))
    b = np.arange(n + 1)[:, None]
    c = np.arange(n + 1)[None, :]
    m = b + c
    ok = m <= n
    # trinomial: m discordant ~ Binomial(n, psi), b | m ~ Binomial(m, 1/2) when the arms are equal
    pmf = stats.binom.pmf(np.where(ok, m, 0), n, psi) * stats.binom.pmf(b, np.where(ok, m, 0), 0.5)
    inside = (_tango_z(margin, b, c, n) < -z) & (_tango_z(-margin, b, c, n) > z)
    return float(np.sum(np.where(ok & inside, pmf, 0.0)))


def _smallest_n(power, start: int, target: float = POWER) -> int | None:
    if power(start) >= target:
        return start
    hi = start
    while power(hi) < target:
        hi *= 2
        if hi > MAX_TRIALS_SHOWN:
            return None
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power(mid) >= target else (mid, hi)
    return hi


def trials_needed(res: PrimaryResult, t: np.ndarray, r: np.ndarray) -> tuple[float, str]:
    """(configurations per arm, what they would settle) from the exact power of this analysis'
    rule at the declared margin, never fewer than already run; (nan, reason) where more trials
    would not settle it."""
    if not res.paired:
        return _trials_needed_unpaired(res)
    n = res.n_on
    dec = res.level(res.declared)
    crit = res.critical if np.isfinite(res.critical) else float(stats.norm.ppf(1 - ALPHA / 2))
    psi = max((dec.get("b", 0) + dec.get("c", 0)) / max(n, 1), res.margin)
    p10 = (psi + res.margin) / 2
    n_diff = _smallest_n(lambda k: _power_paired(k, p10, psi - p10, crit), max(n, 1))
    if n_diff is not None and n_diff > n:
        return float(n_diff), f"a {100 * res.margin:.0f}-pt difference at the declared δ"
    if res.reason.startswith("the good fraction is at its"):
        return math.nan, ("more trials at this δ would not settle it: " + res.reason
                          + "; a larger δ in the config asks a question the data can answer")
    psi_eq = max((dec.get("b", 0) + dec.get("c", 0)) / max(n, 1), 1 / max(n, 1))
    z90 = float(stats.norm.ppf(1 - ALPHA))
    n_eq = _smallest_n(lambda k: _power_equivalence(k, psi_eq, res.margin, z90), max(n, 1))
    if n_eq is not None and n_eq > n:
        return float(n_eq), f"no practical difference at the declared δ (±{100 * res.margin:.0f} pts)"
    return math.nan, (f"this search already had 80% power to show a {100 * res.margin:.0f}-pt difference; "
                      "more trials of the same search are unlikely to change the answer")


def _trials_needed_unpaired(res: PrimaryResult) -> tuple[float, str]:
    """Unpaired: the score test's exact power at a margin-sized difference, by enumeration of both arms."""
    n = max(res.n_on, res.n_off)
    p2 = min(max(res.k_off / max(res.n_off, 1), 0.0), 1 - res.margin)
    p1 = p2 + res.margin
    crit = res.critical if np.isfinite(res.critical) else float(stats.norm.ppf(1 - ALPHA / 2))

    def power(k: int) -> float:
        x = np.arange(k + 1)
        z = _pooled_z(x[:, None].astype(float), k, x[None, :].astype(float), k)
        w = stats.binom.pmf(x, k, p1)[:, None] * stats.binom.pmf(x, k, p2)[None, :]
        return float(np.sum(w[np.abs(z) > crit]))

    need = _smallest_n(power, max(n, 1)) if n <= 2000 else None
    if need is not None and need > n:
        return float(need), f"a {100 * res.margin:.0f}-pt difference at the declared δ"
    return math.nan, "more trials of the same search are unlikely to change the answer"
