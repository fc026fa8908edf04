"""The primary endpoint: the difference in good fraction between two arms, its interval, its test,
the four-outcome decision and a sample-size estimate (docs/design.md, Primary endpoint).

Paired design (one list of configurations run in both arms): the difference is (b - c) / n over the
n configurations, b = good only in the treatment arm, c = good only in the reference arm.
  * direction: exact McNemar test (binomial on the b + c discordant pairs) and the exact conditional
    interval that inverts it (Clopper-Pearson for b / (b + c), mapped to the difference at the
    observed discordant share). The interval excludes 0 exactly when p < alpha, so the verdict can
    never print an interval that contradicts its own test.
  * equivalence: TOST with Tango's score interval at 1 - 2 alpha (unconditional, so it stays honest
    when there are no discordant pairs at all).
Unpaired design: the Newcombe hybrid score interval; its p value is the level at which that
interval first touches 0 (the test the interval inverts), so again the two cannot disagree.

Holm's step-down adjustment for the secondary tests lives here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.80
EQUIVALENCE_MARGIN = 0.10  # |difference in good fraction| below which the arms are practically equal
MAX_TRIALS_SHOWN = 100_000

OUTCOMES = ("easier", "harder", "equivalent", "cannot tell")


# ----------------------------------------------------------------------------- intervals and tests

def exact_mcnemar(b: int, c: int) -> float:
    """Two-sided exact McNemar p (binomial test of b successes in b + c at 1/2); 1.0 with no discordant pair."""
    return 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)


def paired_exact_interval(b: int, c: int, n: int, confidence: float = 1 - ALPHA) -> tuple[float, float]:
    """Exact conditional interval of the paired difference (b - c) / n.

    Conditional on m = b + c, b ~ Binomial(m, pi) and the difference is (m / n)(2 pi - 1); the
    Clopper-Pearson interval of pi maps across. (0, 0) when m = 0: no configuration separates the arms.
    """
    if n <= 0:
        return (math.nan, math.nan)
    m = b + c
    if m == 0:
        return (0.0, 0.0)
    ci = stats.binomtest(b, m, 0.5).proportion_ci(confidence, method="exact")
    return (m / n * (2 * ci.low - 1), m / n * (2 * ci.high - 1))


def _tango_z(delta: float, b: int, c: int, n: int) -> float:
    # Tango (1998) score statistic for H0: p10 - p01 = delta, with the restricted MLE of p01.
    A = 2 * n
    B = -b - c + (2 * n - b + c) * delta
    C = -c * delta * (1 - delta)
    p01 = (math.sqrt(max(B * B - 4 * A * C, 0.0)) - B) / (2 * A)
    var = n * (2 * p01 + delta * (1 - delta))
    if var <= 0:
        return 0.0 if b - c - n * delta == 0 else math.copysign(math.inf, b - c - n * delta)
    return (b - c - n * delta) / math.sqrt(var)


def tango_interval(b: int, c: int, n: int, confidence: float = 1 - ALPHA) -> tuple[float, float]:
    """Tango's score interval for the paired difference of proportions (b - c) / n.

    Hand-written: neither scipy nor numpy has it. It inverts the score test, solved by brentq.
    """
    if n <= 0:
        return (math.nan, math.nan)
    z = stats.norm.ppf(0.5 + confidence / 2)
    d = (b - c) / n
    eps = 1e-12
    lo = -1.0 if _tango_z(-1 + eps, b, c, n) <= z else optimize.brentq(
        lambda x: _tango_z(x, b, c, n) - z, -1 + eps, d if d > -1 + eps else -1 + 2 * eps)
    hi = 1.0 if _tango_z(1 - eps, b, c, n) >= -z else optimize.brentq(
        lambda x: _tango_z(x, b, c, n) + z, d if d < 1 - eps else 1 - 2 * eps, 1 - eps)
    return (float(lo), float(hi))


def _wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def newcombe_interval(k1: int, n1: int, k2: int, n2: int, confidence: float = 1 - ALPHA) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for k1/n1 - k2/n2, from the two Wilson intervals."""
    if n1 <= 0 or n2 <= 0:
        return (math.nan, math.nan)
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = _wilson(k1, n1, confidence)
    l2, u2 = _wilson(k2, n2, confidence)
    d = p1 - p2
    return (d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def newcombe_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p of the test that the Newcombe interval inverts: the largest alpha whose
    (1 - alpha) interval still contains 0."""
    if n1 <= 0 or n2 <= 0:
        return math.nan
    if k1 * n2 == k2 * n1:
        return 1.0

    def gap(alpha: float) -> float:  # > 0 while the interval excludes 0
        lo, hi = newcombe_interval(k1, n1, k2, n2, 1 - alpha)
        return lo if k1 / n1 > k2 / n2 else -hi

    if gap(1e-12) > 0:
        return 1e-12
    if gap(1 - 1e-9) <= 0:
        return 1.0
    return float(optimize.brentq(gap, 1e-12, 1 - 1e-9, xtol=1e-10))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p values (NaN stays NaN and does not count as a test).

    Hand-written: scipy.stats.false_discovery_control offers only Benjamini-Hochberg/Yekutieli.
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


# ----------------------------------------------------------------------------- sample size

def _z(q: float) -> float:
    return float(stats.norm.ppf(q))


def trials_needed_paired(p10: float, p01: float, margin: float, alpha: float = ALPHA,
                         power: float = POWER) -> tuple[float, str]:
    """(configurations per arm, what they would settle) at the observed discordant rates.

    A difference: Connor's (1987) McNemar formula. No practical difference (when the observed
    difference is inside the margin): TOST, n = (z_(1-alpha) + z_(1-beta/2))^2 psi / (margin - |d|)^2.
    The smaller of the two is returned, since either would end "cannot tell".
    """
    psi, d = p10 + p01, p10 - p01
    out = []
    if d != 0:
        za, zb = _z(1 - alpha / 2), _z(power)
        out.append(((za * math.sqrt(psi) + zb * math.sqrt(max(psi - d * d, 0.0))) ** 2 / (d * d), "a difference"))
    if abs(d) < margin:
        out.append(((_z(1 - alpha) + _z(1 - (1 - power) / 2)) ** 2 * max(psi, 1e-3) / (margin - abs(d)) ** 2,
                    "no practical difference"))
    return min(out) if out else (math.nan, "")


def trials_needed_unpaired(p1: float, p2: float, margin: float, alpha: float = ALPHA,
                           power: float = POWER) -> tuple[float, str]:
    """(trials per arm, what they would settle) for two independent proportions (Fleiss, no correction)."""
    d = p1 - p2
    v = p1 * (1 - p1) + p2 * (1 - p2)
    out = []
    if d != 0:
        pbar = (p1 + p2) / 2
        za, zb = _z(1 - alpha / 2), _z(power)
        out.append(((za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(v)) ** 2 / (d * d), "a difference"))
    if abs(d) < margin:
        out.append(((_z(1 - alpha) + _z(1 - (1 - power) / 2)) ** 2 * max(v, 1e-3) / (margin - abs(d)) ** 2,
                    "no practical difference"))
    return min(out) if out else (math.nan, "")


# ----------------------------------------------------------------------------- the endpoint

@dataclass
class PrimaryResult:
    paired: bool
    n_on: int
    n_off: int
    k_on: int  # good trials (reference left out)
    k_off: int
    diff: float
    lo: float  # 95% interval consistent with p
    hi: float
    p_value: float
    eq_lo: float  # 90% interval used for the equivalence (TOST) decision
    eq_hi: float
    margin: float
    outcome: str
    trials_needed: float = math.nan
    settles: str = ""
    discordant: tuple[int, int] = (0, 0)
    notes: list[str] = field(default_factory=list)


def decide(p_value: float, diff: float, eq_lo: float, eq_hi: float, margin: float, alpha: float = ALPHA) -> str:
    """easier / harder (the test rejects 0), equivalent (TOST within +-margin), or cannot tell."""
    if np.isfinite(p_value) and p_value < alpha and diff != 0:
        return "easier" if diff > 0 else "harder"
    if np.isfinite(eq_lo) and -margin < eq_lo and eq_hi < margin:
        return "equivalent"
    return "cannot tell"


def primary_endpoint(on_good: Sequence[bool], off_good: Sequence[bool], *, paired: bool,
                     margin: float = EQUIVALENCE_MARGIN, alpha: float = ALPHA) -> PrimaryResult:
    """Good-fraction difference (treatment minus reference) with its interval, test and outcome.

    on_good/off_good: per-trial good flags (paired: aligned per configuration), the reference
    configuration already left out (see tolerance.reference_mask).
    """
    a, b_ = np.asarray(on_good, bool), np.asarray(off_good, bool)
    n1, n2 = a.size, b_.size
    k1, k2 = int(a.sum()), int(b_.sum())
    if n1 == 0 or n2 == 0:
        return PrimaryResult(paired, n1, n2, k1, k2, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan,
                             margin, "cannot tell")
    if paired:
        n = n1
        b, c = int((a & ~b_).sum()), int((~a & b_).sum())
        diff = (b - c) / n
        lo, hi = paired_exact_interval(b, c, n, 1 - alpha)
        p = exact_mcnemar(b, c)
        eq_lo, eq_hi = tango_interval(b, c, n, 1 - 2 * alpha)
        need, settles = trials_needed_paired(b / n, c / n, margin, alpha)
        res = PrimaryResult(True, n, n, k1, k2, diff, lo, hi, p, eq_lo, eq_hi, margin, "", discordant=(b, c))
    else:
        diff = k1 / n1 - k2 / n2
        lo, hi = newcombe_interval(k1, n1, k2, n2, 1 - alpha)
        p = newcombe_p(k1, n1, k2, n2)
        eq_lo, eq_hi = newcombe_interval(k1, n1, k2, n2, 1 - 2 * alpha)
        need, settles = trials_needed_unpaired(k1 / n1, k2 / n2, margin, alpha)
        res = PrimaryResult(False, n1, n2, k1, k2, diff, lo, hi, p, eq_lo, eq_hi, margin, "")
    res.outcome = decide(p, diff, eq_lo, eq_hi, margin, alpha)
    if res.outcome == "cannot tell" and np.isfinite(need):
        res.trials_needed = float(min(math.ceil(need), MAX_TRIALS_SHOWN))
        res.settles = settles
    return res
