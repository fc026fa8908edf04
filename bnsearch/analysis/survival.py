"""Adaptive samplers (TPE, GP): trials-to-target across repeats, paired by repeat.

An adaptive sampler's trials are not independent draws, so the good fraction and its tests (built
for i.i.d. random draws) do not hold. What a TPE user asks is "does the search get to a good
configuration in fewer trials?", and one trajectory per arm is one observation of that. So the unit
of evidence is the repeat (`compare --repeats R`, docs/design.md §6, Adaptive samplers):

- target: the TARGET_QUANTILE (90th) percentile of the scores of every completed trial of both arms
  and all repeats pooled. It depends on no single arm's luckiest maximum, and swapping arm labels
  leaves it unchanged, so it cannot favour either arm under the null.
- per repeat: the trial (1-based, in trial-number order) at which the best-so-far first reaches the
  target, censored at the repeat's completed trials when it never does.
- between arms, the primary (one question, one method): repeat r of both arms shares its seed and
  data split, so the repeat is the pair. Per repeat, d_r = restricted trials-to-target of the
  treatment minus the reference, min(T, tau_r) with tau_r the pair's common horizon (the budget when
  both ran it); the exact sign-flip test of the mean of d_r, and the 95% interval that inverts that
  same test (`sign_flip_test`), so the interval excludes 0 exactly when p < 0.05.
- per arm, descriptive: Kaplan-Meier of "reached the target by trial n" with lifelines' pointwise 95%
  band (exponential Greenwood), the median trials-to-target with its CI, the restricted mean up to the
  budget (= mean of min(T, budget)); the unpaired log-rank p is kept for comparison, never decides.
- best-so-far across repeats with pointwise (Student t) and simultaneous (bootstrap sup-t) bands, and
  the best-score gap at the budget with a paired t-interval across repeats.

Pure functions of the trials DataFrames; lifelines is imported lazily (~1.5 s).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .common import ADAPTIVE_SAMPLERS, CONFIDENCE, _rng, complete_trials, json_safe, records, signed_text

TARGET_QUANTILE = 0.90
DEFAULT_ADAPTIVE_REPEATS = 10  # power figure: docs/design.md §6, Adaptive samplers
MIN_REPEATS = 2  # per arm: below this there is nothing to compare across repeats
N_BOOT = 1000
# Sign-flip test: every one of the 2^n sign patterns up to this many paired repeats (65 536 patterns),
# a seeded Monte Carlo sample of N_SIGN_FLIPS patterns beyond it.
MAX_EXACT_PAIRS = 16
N_SIGN_FLIPS = 20_000


# ----------------------------------------------------------------------------- per repeat

def trajectories(dfs: Sequence[pd.DataFrame], arm: str) -> list[np.ndarray]:
    """One array of scores per repeat (COMPLETE trials in trial-number order); repeats without any
    completed trial of this arm are kept as empty arrays so repeat r stays aligned across arms."""
    out = []
    for df in dfs:
        t = complete_trials(df, arm)
        out.append(np.asarray(pd.to_numeric(t["score"], errors="coerce"), float) if len(t) else np.array([]))
    return out


def pooled_target(trajs: Sequence[np.ndarray], quantile: float = TARGET_QUANTILE) -> float:
    """The quantile of every score of every repeat of every arm, pooled (linear interpolation)."""
    allv = np.concatenate([np.asarray(t, float) for t in trajs]) if len(trajs) else np.array([])
    allv = allv[np.isfinite(allv)]
    return float(np.quantile(allv, quantile)) if allv.size else math.nan


def time_to_target(scores: Sequence[float], target: float) -> tuple[int, bool]:
    """(trial, reached): the first 1-based trial whose best-so-far is >= target, or (len, False)."""
    s = np.asarray(scores, float)
    hit = np.flatnonzero(s >= target)
    return (int(hit[0]) + 1, True) if hit.size else (int(s.size), False)


def best_so_far_matrix(trajs: Sequence[np.ndarray], budget: int) -> np.ndarray:
    """Repeats x budget best-so-far; NaN past a repeat's last completed trial."""
    m = np.full((len(trajs), budget), np.nan)
    for i, t in enumerate(trajs):
        t = np.asarray(t, float)[:budget]
        if t.size:
            m[i, :t.size] = np.maximum.accumulate(t)
    return m


# ----------------------------------------------------------------------------- per arm (lifelines)

@dataclass
class ArmSurvival:
    arm: str
    repeats: int
    reached: int
    median: float  # inf: fewer than half the repeats reached the target
    median_lo: float
    median_hi: float
    rmst: float  # restricted mean trials-to-target up to the budget
    km: pd.DataFrame  # n, reached (1 - S), lo, hi (pointwise 95%), at_risk


def kaplan_meier(durations: Sequence[int], events: Sequence[bool], budget: int, arm: str = "") -> ArmSurvival:
    """lifelines' Kaplan-Meier of trials-to-target; the curve is P(reached by trial n) = 1 - S(n)."""
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times, restricted_mean_survival_time

    d = np.asarray(durations, float)
    e = np.asarray(events, bool)
    kmf = KaplanMeierFitter(alpha=1 - CONFIDENCE).fit(d, e)
    with warnings.catch_warnings():  # lifelines warns that a step function's median is read off its steps
        warnings.simplefilter("ignore")
        median = float(kmf.median_survival_time_)
    ns = np.arange(0, budget + 1)
    surv = kmf.survival_function_at_times(ns).to_numpy()
    ci = kmf.confidence_interval_.reindex(kmf.confidence_interval_.index.union(ns)).ffill().loc[ns]
    lower, upper = ci.iloc[:, 0].to_numpy(), ci.iloc[:, 1].to_numpy()
    at_risk = np.array([(d >= n).sum() for n in ns])
    km = pd.DataFrame({"n": ns, "arm": arm, "reached": 1 - surv, "lo": 1 - upper, "hi": 1 - lower,
                       "at_risk": at_risk})
    mci = median_survival_times(kmf.confidence_interval_)
    rmst = float(restricted_mean_survival_time(kmf, t=budget))
    return ArmSurvival(arm=arm, repeats=int(d.size), reached=int(e.sum()), median=median,
                       median_lo=float(mci.iloc[0, 0]), median_hi=float(mci.iloc[0, 1]), rmst=rmst, km=km)


# ----------------------------------------------------------------------------- between arms

def logrank(d_t, e_t, d_r, e_r) -> tuple[float, float, float]:
    """(chi-square, p, observed - expected events of the treatment): lifelines' log-rank test; the
    sign of O - E says which arm reaches the target sooner (positive: the treatment).

    Descriptive only: it treats the arms' repeats as independent samples although repeat r of both
    shares its seed and data split, so it answers another question than the paired primary
    (`sign_flip_test`) and never decides. Kept so older reports can be compared."""
    from lifelines.statistics import logrank_test

    d_t, d_r = np.asarray(d_t, float), np.asarray(d_r, float)
    e_t, e_r = np.asarray(e_t, bool), np.asarray(e_r, bool)
    if not (e_t.any() or e_r.any()):
        return (0.0, 1.0, 0.0)  # nobody reached it: no evidence of any difference
    res = logrank_test(d_t, d_r, event_observed_A=e_t, event_observed_B=e_r)
    d = np.concatenate([d_t, d_r])
    e = np.concatenate([e_t, e_r])
    in_t = np.r_[np.ones(d_t.size, bool), np.zeros(d_r.size, bool)]
    o_minus_e = 0.0
    for t in np.unique(d[e]):
        risk = d >= t
        deaths = (d == t) & e
        o_minus_e += deaths[in_t].sum() - deaths.sum() * risk[in_t].sum() / risk.sum()
    p = float(res.p_value)
    return (float(res.test_statistic), p if np.isfinite(p) else 1.0, float(o_minus_e))


@dataclass(frozen=True)
class SignFlip:
    """The paired primary: mean of the differences, its 95% interval, and the test it inverts."""
    mean: float
    lo: float
    hi: float
    p: float
    n: int  # paired differences
    nonzero: int  # of which not tied
    exact: bool  # every sign pattern enumerated (else a seeded Monte Carlo sample of them)
    min_p: float  # the smallest p these ties allow (all untied differences of one sign): 2 / 2^nonzero


@functools.lru_cache(maxsize=MAX_EXACT_PAIRS + 1)
def _all_sign_patterns(n: int) -> np.ndarray:
    # Cached: the calibration tests run the test thousands of times with the same n.
    m = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(np.int8)
    m.flags.writeable = False
    return m


def _sign_patterns(n: int, seed: int, n_resamples: int, max_exact: int) -> tuple[np.ndarray, bool]:
    """0/1 matrix, one row per sign pattern (1 = flipped). Exact: all 2^n rows. Otherwise the
    identity (no flip) plus n_resamples random rows, so p = (1 + #{as extreme}) / (1 + n_resamples)."""
    if n <= max_exact:
        return _all_sign_patterns(n), True
    rng = _rng(seed, "sign_flip")
    flips = rng.integers(0, 2, (n_resamples, n), dtype=np.int8)
    return np.vstack([np.zeros((1, n), np.int8), flips]), False


def sign_flip_test(diffs: Sequence[float], *, alpha: float = 1 - CONFIDENCE, seed: int = 0,
                   n_resamples: int = N_SIGN_FLIPS, max_exact: int = MAX_EXACT_PAIRS) -> SignFlip:
    """Exact (permutation) sign-flip test of mean(d) = 0 and the interval that inverts it.

    Under the null the two arms of a repeat are exchangeable, so each d_r is as likely to carry
    either sign; p = share of sign patterns s with |sum s_r d_r| >= |sum d_r| (two-sided). The
    interval is every shift D whose test of d - D does not reject (p >= alpha), so it excludes 0
    exactly when p < alpha: test and interval answer the same question.

    Flipping the set M of signs, |sum s_r (d_r - D)| >= |sum (d_r - D)| holds exactly when the sums
    of d - D over M and over its complement do not share a sign, i.e. when D lies between the mean
    of d over M and over its complement (all D when M is empty or everything). So each pattern
    accepts a closed interval around mean(d), p(D) falls off monotonically on either side, and the
    interval's ends are order statistics of those subset means: the c-th smallest lower end and the
    c-th largest upper end, c = ceil(alpha x patterns). p(0) counts the same intervals, so the
    agreement holds in floating point too.

    Hand-written because scipy.stats.permutation_test (permutation_type="samples" flips signs and
    enumerates all 2^n when n_resamples >= 2^n; the tests check p against it) returns a p value
    only, and inverting it on a grid of shifts would be approximate and slow; its Monte Carlo
    patterns would also differ from the ones the interval uses."""
    d = np.asarray(diffs, float)
    d = d[np.isfinite(d)]
    n = int(d.size)
    if n == 0:
        return SignFlip(math.nan, math.nan, math.nan, math.nan, 0, 0, True, math.nan)
    flips, exact = _sign_patterns(n, seed, n_resamples, max_exact)
    size = flips.sum(axis=1, dtype=np.int64)
    sub = flips @ d
    with np.errstate(invalid="ignore", divide="ignore"):
        m_in = sub / size
        m_out = (d.sum() - sub) / (n - size)
    always = (size == 0) | (size == n)
    lo_s = np.where(always, -np.inf, np.fmin(m_in, m_out))
    hi_s = np.where(always, np.inf, np.fmax(m_in, m_out))
    total = flips.shape[0]
    p = float(np.count_nonzero((lo_s <= 0) & (hi_s >= 0)) / total)
    c = max(1, math.ceil(alpha * total - 1e-9))  # accept D when count(D) >= alpha x total
    lo = float(np.partition(lo_s, c - 1)[c - 1])
    hi = float(-np.partition(-hi_s, c - 1)[c - 1])
    k = int(np.count_nonzero(d))
    return SignFlip(float(d.mean()), lo, hi, p, n, k, exact, min(1.0, 2.0 ** (1 - k)))


def paired_restricted(trajs: Mapping[str, Sequence[np.ndarray]], arms: tuple[str, str], target: float) -> pd.DataFrame:
    """One row per repeat that both arms searched: its horizon tau (the shorter of the two
    repeats' completed trials, the budget when both ran it), each arm's restricted trials-to-target
    min(T, tau) and their difference (treatment - reference). Restricting both arms of a repeat
    to the same tau keeps the difference symmetric under the null, as the sign-flip test needs,
    and makes it exactly known: a repeat that never reached the target counts tau."""
    treat, ref = arms
    rows = []
    for r in range(min(len(trajs[treat]), len(trajs[ref]))):
        t, f = np.asarray(trajs[treat][r], float), np.asarray(trajs[ref][r], float)
        if not (t.size and f.size):
            continue
        tau = min(t.size, f.size)
        nt, nr = time_to_target(t[:tau], target)[0], time_to_target(f[:tau], target)[0]
        rows.append({"repeat": r, "horizon": tau, "treatment": nt, "reference": nr, "diff": nt - nr})
    return pd.DataFrame(rows, columns=["repeat", "horizon", "treatment", "reference", "diff"])


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(v.mean())
    if v.size < 2:
        return (m, math.nan, math.nan)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return (m, m - half, m + half)


def best_so_far_band(trajs: Sequence[np.ndarray], budget: int, arm: str = "", *, n_boot: int = N_BOOT,
                     seed: int = 0) -> pd.DataFrame:
    """Mean best-so-far over repeats at each trial n, with a pointwise 95% Student-t band (lo, hi)
    and a simultaneous one over all n (sim_lo, sim_hi: bootstrap sup-t over repeats, approximate
    with few repeats)."""
    m = best_so_far_matrix(trajs, budget)
    ns = np.arange(1, budget + 1)
    k = np.sum(np.isfinite(m), axis=0)
    with warnings.catch_warnings():  # all-NaN columns (no repeat this long) are NaN, as meant
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(m, axis=0)
        se = np.nanstd(m, axis=0, ddof=1) / np.sqrt(k)
    tq = np.where(k >= 2, stats.t.ppf(0.5 + CONFIDENCE / 2, np.maximum(k - 1, 1)), np.nan)
    lo, hi = mean - tq * se, mean + tq * se
    sim_lo = sim_hi = np.full(budget, np.nan)
    ok = np.isfinite(se) & (se > 0)
    if len(trajs) >= MIN_REPEATS and ok.any():
        rng = _rng(seed, f"best_so_far_band/{arm}")
        idx = rng.integers(0, len(trajs), (n_boot, len(trajs)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            boot = np.nanmean(m[idx], axis=1)  # n_boot x budget
        sup_t = np.nanmax(np.abs(boot[:, ok] - mean[ok]) / se[ok], axis=1)
        crit = float(np.quantile(sup_t, CONFIDENCE))
        sim_lo = np.where(k >= 2, mean - crit * np.nan_to_num(se), np.nan)
        sim_hi = np.where(k >= 2, mean + crit * np.nan_to_num(se), np.nan)
    return pd.DataFrame({"n": ns, "arm": arm, "mean": mean, "lo": lo, "hi": hi, "sim_lo": sim_lo,
                         "sim_hi": sim_hi, "repeats": k})


# ----------------------------------------------------------------------------- the analysis

@dataclass
class AdaptiveResult:
    """Trials-to-target across repeats for one comparison (treatment, reference)."""
    sampler: str
    arms: tuple[str, str]
    task: str
    budget: int
    target: float
    quantile: float
    n_pooled: int
    times: pd.DataFrame  # repeat, arm, trials, reached
    per_arm: dict[str, ArmSurvival]
    logrank_chi2: float  # descriptive (unpaired), see `logrank`
    logrank_p: float
    o_minus_e: float
    gap: tuple[float, float, float]  # best score at the budget, treatment - reference, t-interval
    best_at_budget: dict[str, tuple[float, float, float]]
    curves: pd.DataFrame  # best-so-far bands (best_so_far_band per arm)
    outcome: str  # faster | slower | cannot tell | too few repeats: from the paired test alone
    # The primary: paired by repeat (paired_restricted), sign-flip test and the interval inverting it
    paired_p: float = math.nan
    paired_diff: tuple[float, float, float] = (math.nan, math.nan, math.nan)  # mean d, 95% lo, hi
    pairs: pd.DataFrame | None = None  # repeat, horizon, treatment, reference, diff
    paired_exact: bool = True
    paired_min_p: float = math.nan
    sampler_settings: dict = field(default_factory=dict)
    # TPE's speed-up over a random search of the same space (speedup_over_random), when one is stored
    speedup: pd.DataFrame | None = None
    speedup_source: str = ""

    @property
    def rmst_diff(self) -> tuple[float, float, float]:
        """The restricted-mean difference, treatment - reference: the paired mean of min(T, tau)
        differences with its sign-flip interval (the KM restricted means' difference whenever every
        repeat of both arms ran its budget). Old name of `paired_diff`."""
        return self.paired_diff

    @property
    def repeats(self) -> int:
        return min(a.repeats for a in self.per_arm.values()) if self.per_arm else 0

    @property
    def n_pairs(self) -> int:
        return 0 if self.pairs is None else len(self.pairs)

    def km_table(self) -> pd.DataFrame:
        return pd.concat([a.km for a in self.per_arm.values()], ignore_index=True)

    def to_json(self) -> dict:
        """Plain JSON-able numbers (NaN and inf become null) for `summary --json`."""
        clean = json_safe
        return {"sampler": self.sampler, "arms": list(self.arms), "budget": self.budget, "repeats": self.repeats,
                "target": clean(self.target), "target_quantile": self.quantile, "outcome": self.outcome,
                "paired_test": "sign-flip (exact)" if self.paired_exact else "sign-flip (Monte Carlo)",
                "paired_repeats": self.n_pairs, "paired_p": clean(self.paired_p),
                "paired_diff": [clean(x) for x in self.paired_diff],
                "logrank_chi2": clean(self.logrank_chi2), "logrank_p": clean(self.logrank_p),
                "sampler_settings": dict(self.sampler_settings),
                "summary": records(self.summary_rows()), "times": records(self.times)}

    def summary_rows(self) -> pd.DataFrame:
        """One row per quantity (arm or 'delta'), value/lo/hi: what km.csv's companion rows hold."""
        nan = math.nan
        rows = [{"quantity": "target", "arm": "", "value": self.target, "lo": nan, "hi": nan}]
        for a in self.arms:
            s = self.per_arm[a]
            rows += [{"quantity": "reached", "arm": a, "value": s.reached, "lo": nan, "hi": nan},
                     {"quantity": "repeats", "arm": a, "value": s.repeats, "lo": nan, "hi": nan},
                     {"quantity": "median_trials_to_target", "arm": a, "value": s.median, "lo": s.median_lo,
                      "hi": s.median_hi},
                     {"quantity": "rmst", "arm": a, "value": s.rmst, "lo": nan, "hi": nan},
                     {"quantity": "best_at_budget", "arm": a, "value": self.best_at_budget[a][0],
                      "lo": self.best_at_budget[a][1], "hi": self.best_at_budget[a][2]}]
        # rmst/delta: the paired mean difference with the interval inverting the sign-flip test
        rows += [{"quantity": "rmst", "arm": "delta", "value": self.paired_diff[0], "lo": self.paired_diff[1],
                  "hi": self.paired_diff[2]},
                 {"quantity": "paired_p", "arm": "delta", "value": self.paired_p, "lo": nan, "hi": nan},
                 {"quantity": "paired_repeats", "arm": "delta", "value": self.n_pairs, "lo": nan, "hi": nan},
                 {"quantity": "best_at_budget", "arm": "delta", "value": self.gap[0], "lo": self.gap[1],
                  "hi": self.gap[2]},
                 {"quantity": "logrank_p", "arm": "delta", "value": self.logrank_p, "lo": nan, "hi": nan}]
        if self.speedup is not None:
            rows += [{"quantity": "speedup_over_random", "arm": r["arm"], "value": r["speedup"], "lo": r["lo"],
                      "hi": r["hi"]} for _, r in self.speedup.iterrows()]
        return pd.DataFrame(rows)


@dataclass(frozen=True)
class PrimaryTest:
    target: float
    times: pd.DataFrame  # repeat, arm, trials, reached
    pairs: pd.DataFrame  # paired_restricted
    test: SignFlip | None  # None: too few repeats
    diff: tuple[float, float, float]  # mean paired difference (treatment - reference), 95% lo, hi
    outcome: str  # faster | slower | cannot tell | too few repeats

    @property
    def p(self) -> float:
        return self.test.p if self.test is not None else math.nan


def primary_test(trajs: Mapping[str, Sequence[np.ndarray]], arms: tuple[str, str], *,
                 quantile: float = TARGET_QUANTILE, target: float | None = None, budget: int | None = None,
                 seed: int = 0, alpha: float = 1 - CONFIDENCE) -> PrimaryTest:
    """The decision alone (the calibration tests run it thousands of times): the pooled target,
    each repeat's trials-to-target, the paired differences, the sign-flip test and its interval,
    and the outcome at alpha. Directional (faster / slower) only when the test rejects, which is
    exactly when the interval excludes 0."""
    treat, ref = arms
    # Every repeat gets the same budget: a worker may finish one trial beyond it (two asked at once).
    trajs = {a: [np.asarray(t, float)[:budget] if budget else np.asarray(t, float) for t in trajs[a]] for a in arms}
    pooled = [t for a in arms for t in trajs[a] if t.size]
    target = pooled_target(pooled, quantile) if target is None else float(target)
    rows = []
    for a in arms:
        for r, t in enumerate(trajs[a]):
            if t.size:
                n, hit = time_to_target(t, target)
                rows.append({"repeat": r, "arm": a, "trials": n, "reached": hit})
    times = pd.DataFrame(rows, columns=["repeat", "arm", "trials", "reached"])
    pairs = paired_restricted(trajs, arms, target)
    nan3 = (math.nan, math.nan, math.nan)
    if len(pairs) < MIN_REPEATS:
        return PrimaryTest(target, times, pairs, None, nan3, "too few repeats")
    sf = sign_flip_test(pairs["diff"].to_numpy(float), alpha=alpha, seed=seed)
    # A pattern-count interval is unbounded when the test cannot reject at all (n <= 5 pairs); the
    # mean of differences of trials in 1..tau cannot pass +-(tau - 1).
    bound = float(pairs["horizon"].max() - 1)
    diff = (sf.mean, max(sf.lo, -bound), min(sf.hi, bound))
    if sf.p < alpha and sf.mean != 0:
        outcome = "faster" if sf.mean < 0 else "slower"
    else:
        outcome = "cannot tell"
    return PrimaryTest(target, times, pairs, sf, diff, outcome)


def analyse_adaptive(dfs: Sequence[pd.DataFrame], arms: tuple[str, str], *, sampler: str, task: str = "classification",
                     budget: int | None = None, seed: int = 0, quantile: float = TARGET_QUANTILE,
                     n_boot: int = N_BOOT, sampler_settings: Mapping | None = None) -> AdaptiveResult:
    """Trials-to-target of each repeat (one trials DataFrame per repeat, in repeat order) of both arms."""
    trajs = {a: trajectories(dfs, a) for a in arms}
    return analyse_trajectories(trajs, arms, sampler=sampler, task=task, budget=budget, seed=seed, quantile=quantile,
                                n_boot=n_boot, sampler_settings=sampler_settings)


def analyse_trajectories(trajs: Mapping[str, Sequence[np.ndarray]], arms: tuple[str, str], *, sampler: str,
                         task: str = "classification", budget: int | None = None, seed: int = 0,
                         quantile: float = TARGET_QUANTILE, n_boot: int = N_BOOT,
                         sampler_settings: Mapping | None = None, target: float | None = None) -> AdaptiveResult:
    """The same from score trajectories: {arm: [scores of repeat 0, repeat 1, ...]}."""
    treat, ref = arms
    trajs = {a: [np.asarray(t, float)[:budget] if budget else np.asarray(t, float) for t in trajs[a]] for a in arms}
    # A repeat with no completed trial of an arm carries no time for it (nothing was searched).
    keep = {a: [t for t in trajs[a] if t.size] for a in arms}
    budget = int(budget or max((t.size for a in arms for t in keep[a]), default=0))
    pooled = [t for a in arms for t in keep[a]]
    test = primary_test(trajs, arms, quantile=quantile, target=target, seed=seed)
    times, target = test.times, test.target
    dur = {a: times.loc[times["arm"] == a, "trials"].to_numpy(float) for a in arms}
    ev = {a: times.loc[times["arm"] == a, "reached"].to_numpy(bool) for a in arms}
    per_arm = {a: kaplan_meier(dur[a], ev[a], budget, a) for a in arms if dur[a].size}
    enough = all(dur[a].size >= MIN_REPEATS for a in arms)
    chi2, lp, ome = logrank(dur[treat], ev[treat], dur[ref], ev[ref]) if enough else (math.nan,) * 3
    best = {a: np.array([np.max(t) for t in trajs[a] if t.size]) for a in arms}
    rep_t = times.loc[times["arm"] == treat, "repeat"].to_numpy()
    rep_r = times.loc[times["arm"] == ref, "repeat"].to_numpy()
    if np.array_equal(rep_t, rep_r) and enough:
        gap = t_interval(best[treat] - best[ref])
    elif enough:  # Welch interval of the difference of means
        a, b = best[treat], best[ref]
        va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
        df_w = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1)) if va + vb > 0 else 1.0
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, df_w) * math.sqrt(va + vb)
        gap = (float(a.mean() - b.mean()), float(a.mean() - b.mean() - half), float(a.mean() - b.mean() + half))
    else:
        gap = (math.nan, math.nan, math.nan)
    curves = pd.concat([best_so_far_band(keep[a], budget, a, n_boot=n_boot, seed=seed) for a in arms],
                       ignore_index=True)
    outcome = test.outcome if enough else "too few repeats"
    sf = test.test
    return AdaptiveResult(sampler=sampler, arms=(treat, ref), task=task, budget=budget, target=target, quantile=quantile,
                          n_pooled=int(sum(t.size for t in pooled)), times=times, per_arm=per_arm, logrank_chi2=chi2,
                          logrank_p=lp, o_minus_e=ome, gap=gap,
                          best_at_budget={a: t_interval(best[a]) for a in arms}, curves=curves, outcome=outcome,
                          paired_p=test.p, paired_diff=test.diff, pairs=test.pairs,
                          paired_exact=sf.exact if sf is not None else True,
                          paired_min_p=sf.min_p if sf is not None else math.nan,
                          sampler_settings=dict(sampler_settings or {}))


# ----------------------------------------------------------------------------- random search, closed form

def geometric_reached(p: float, ns: Sequence[int]) -> np.ndarray:
    """P(an i.i.d. search reaches the target by trial n) = 1 - (1 - p)^n, p = the good fraction at
    the target: what Kaplan-Meier estimates from random-search repeats."""
    return 1 - (1 - float(p)) ** np.asarray(ns, float)


def geometric_median(p: float) -> float:
    """Median trials-to-target of an i.i.d. search, in lifelines' convention (the first n with
    P(not reached by n) <= 1/2): the smallest n with (1 - p)^n <= 1/2."""
    if p <= 0:
        return math.inf
    if p >= 1:
        return 1.0
    return float(math.ceil(math.log(0.5) / math.log1p(-p) - 1e-12))


def random_search_median(scores: Sequence[float], target: float) -> tuple[float, float, float]:
    """Median trials-to-target of a random search from its i.i.d. scores: the geometric median at
    p = share of scores >= target, with p's Clopper-Pearson interval mapped across (swapped)."""
    s = np.asarray(scores, float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return (math.nan, math.nan, math.nan)
    k, n = int((s >= target).sum()), int(s.size)
    a = 1 - CONFIDENCE
    p_lo = stats.beta.ppf(a / 2, k, n - k + 1) if k > 0 else 0.0
    p_hi = stats.beta.ppf(1 - a / 2, k + 1, n - k) if k < n else 1.0
    return (geometric_median(k / n), geometric_median(p_hi), geometric_median(p_lo))


def speedup_over_random(adaptive: AdaptiveResult, random_scores: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """Per arm: how many times fewer trials the adaptive sampler needs than a random search on the
    same space to reach the adaptive analysis' target (median trials, random / adaptive).

    random_scores: {arm: scores of a random-search experiment's trials} (i.i.d. draws, so the
    geometric closed form gives its median). The interval divides the bounds (random lo / adaptive
    hi to random hi / adaptive lo): conservative, since the two are independent experiments. A
    smaller speed-up with the treatment means the sampler's edge shrinks there -- the search space
    is easier, so adaptivity buys less."""
    rows = []
    for a in adaptive.arms:
        s = adaptive.per_arm.get(a)
        if s is None or a not in random_scores:
            continue
        rm, rlo, rhi = random_search_median(random_scores[a], adaptive.target)

        def ratio(x, y):
            if not (np.isfinite(y) and y > 0):
                return math.nan
            return x / y if np.isfinite(x) else math.inf

        v = np.asarray(random_scores[a], float)
        v = v[np.isfinite(v)]
        rows.append({"arm": a, "random_k": int((v >= adaptive.target).sum()), "random_n": int(v.size),
                     "random_median": rm, "random_lo": rlo, "random_hi": rhi,
                     "adaptive_median": s.median, "adaptive_lo": s.median_lo, "adaptive_hi": s.median_hi,
                     "speedup": ratio(rm, s.median), "lo": ratio(rlo, s.median_hi), "hi": ratio(rhi, s.median_lo)})
    return pd.DataFrame(rows, columns=["arm", "random_k", "random_n", "random_median", "random_lo", "random_hi",
                                       "adaptive_median",
                                       "adaptive_lo", "adaptive_hi", "speedup", "lo", "hi"])


# ----------------------------------------------------------------------------- words

def _trials(x: float) -> str:
    if not np.isfinite(x):
        return "never (within the budget)" if x == math.inf else "n/a"
    return f"{x:.0f}"


def _median_text(s: ArmSurvival) -> str:
    if not np.isfinite(s.median):
        return (f"more than half its repeats never reached it ({s.reached}/{s.repeats} did"
                + (f"; 95% CI from {s.median_lo:.0f} trials" if np.isfinite(s.median_lo) else "") + ")")
    hi = f"{s.median_hi:.0f}" if np.isfinite(s.median_hi) else "beyond the budget"
    lo = f"{s.median_lo:.0f}" if np.isfinite(s.median_lo) else "n/a"
    unit = "trial" if s.median == 1 else "trials"
    return f"a median of {s.median:.0f} {unit} (95% CI {lo} to {hi}; {s.reached}/{s.repeats} repeats reached it)"


def _p(p: float) -> str:
    return "p n/a" if not np.isfinite(p) else ("p < 0.001" if p < 0.001 else f"p = {p:.3f}")


def signed(x: float, digits: int = 1) -> str:
    """A signed number, "n/a" when undefined; the project's signed_text (never "-0.0")."""
    return signed_text(x, digits) if np.isfinite(x) else "n/a"


def bound(x: float) -> str:
    """An interval end: like `signed`, but a non-zero end that one decimal would show as 0 keeps
    two significant digits, so an interval that excludes 0 never reads as if it touched it."""
    if np.isfinite(x) and x != 0 and float(f"{x:.1f}") == 0:
        return f"{x:+.2g}"
    return signed(x)


def _score(x: float, task: str, signed_: bool = False) -> str:
    if not np.isfinite(x):
        return "n/a"
    if task == "classification":
        return f"{signed(100 * x)} pts" if signed_ else f"{x:.3f}"
    return signed(x, 3) if signed_ else f"{x:.3f}"


def settings_text(settings: Mapping) -> str:
    """One line: the sampler as it was constructed (for a rerun under another Optuna version)."""
    if not settings:
        return ""
    keys = [k for k in settings if k not in ("name", "optuna_version")]
    inner = ", ".join(f"{k}={settings[k]}" for k in keys)
    return f"{settings.get('name', '')}({inner}) under Optuna {settings.get('optuna_version', '?')}"


def _untied_needed(alpha: float = 1 - CONFIDENCE) -> int:
    """Untied pairs the exact sign-flip test needs before any outcome can reach p < alpha: 2 / 2^k < alpha."""
    return int(math.floor(1 - math.log2(alpha))) + 1


def paired_sentence(result: AdaptiveResult, words: Mapping[str, str]) -> str:
    """The decision and the interval that justifies it, from the one paired sign-flip test."""
    t, r = result.arms
    d, lo, hi = result.paired_diff
    n = result.n_pairs
    how = (f"{'exact' if result.paired_exact else f'Monte Carlo ({N_SIGN_FLIPS} sign patterns)'} sign-flip test "
           f"over {n} paired repeats, {_p(result.paired_p)}")
    head = {"faster": f"The search reached the target sooner {words['with_t']} than {words['with_r']} ({how})",
            "slower": f"The search reached the target later {words['with_t']} than {words['with_r']} ({how})",
            }.get(result.outcome, f"The data cannot tell whether the search reaches the target sooner "
                                  f"{words['with_t']} than {words['with_r']} ({how})")
    pairs = result.pairs
    mt, mr = pairs["treatment"].mean(), pairs["reference"].mean()
    sooner, later = int((pairs["diff"] < 0).sum()), int((pairs["diff"] > 0).sum())
    text = (f"{head}: counting the whole budget for a repeat that never got there, the mean trials to target is "
            f"{mt:.1f} {words['with_t']} and {mr:.1f} {words['with_r']}, a difference of {signed(d)} trials per "
            f"repeat (95% CI {bound(lo)} to {bound(hi)}, the shifts that test accepts"
            + (", so it includes 0" if result.outcome == "cannot tell" else "")
            + f"); {sooner} repeat{'s' if sooner != 1 else ''} reached it sooner {words['with_t']}, {later} later, "
            f"{n - sooner - later} tied.")
    if result.paired_min_p >= 1 - CONFIDENCE:
        text += (f" With {sooner + later} untied paired repeats no outcome can reach p < {1 - CONFIDENCE:.2f} (the "
                 f"smallest possible p is {result.paired_min_p:.3f}; {_untied_needed()} are needed): run more "
                 "repeats (`bnsearch compare --repeats R`).")
    left = result.repeats - n
    if left > 0:
        text += (f" {left} repeat{'s' if left != 1 else ''} with no completed trial in one arm "
                 f"{'are' if left != 1 else 'is'} left out of the pairs.")
    return text


def adaptive_sentences(result: AdaptiveResult | None, words: Mapping[str, str], *, sampler: str, task: str,
                       n_repeats: int = 1) -> list[str]:
    """The verdict's opening for an adaptive sampler: which outcome, the interval that justifies it,
    then the descriptive numbers. Sooner / later only when the paired test rejects."""
    name = sampler.upper()
    if result is None or result.outcome == "too few repeats":
        r = result.repeats if result is not None else n_repeats
        return [f"{name} tunes each arm adaptively, so one search per arm is one observation and its trials are "
                f"not independent draws; with {r} repeat{'s' if r != 1 else ''} per arm the data cannot tell whether "
                f"the search reaches a good configuration sooner {words['with_t']} than {words['with_r']}. Run "
                f"`bnsearch compare --repeats {DEFAULT_ADAPTIVE_REPEATS}` (independent seeded searches per arm) "
                "to compare trials-to-target across repeats; good-fraction tests are not used for adaptive draws."]
    t, r = result.arms
    st, sr = result.per_arm[t], result.per_arm[r]
    lead = (f"{name}, {result.repeats} repeats per arm of {result.budget} trials (outcome: trials to target, "
            f"paired by repeat). {paired_sentence(result, words)} The target is a validation score of at least "
            f"{result.target:.4g}, the {100 * result.quantile:.0f}th percentile of all {result.n_pooled} trials of "
            "both arms and every repeat.")
    km = (f"Kaplan–Meier (descriptive): {words['with_t']} {_median_text(st)}; {words['with_r']} "
          f"{_median_text(sr)}.")
    g, glo, ghi = result.gap
    gap = (f"After {result.budget} trials the best score is {_score(result.best_at_budget[t][0], task)} "
           f"{words['with_t']} and {_score(result.best_at_budget[r][0], task)} {words['with_r']} (difference "
           f"{_score(g, task, True)}, 95% t-interval across repeats {_score(glo, task, True)} to "
           f"{_score(ghi, task, True)}).") if np.isfinite(g) else None
    caveat = ("Good-fraction tests are not reported for adaptive draws: they assume independent trials.")
    return [x for x in (lead, km, gap, speedup_sentence(result, words), caveat) if x]


def speedup_sentence(result: AdaptiveResult, words: Mapping[str, str]) -> str | None:
    sp = result.speedup
    if sp is None or sp.empty or len(sp) < 2:
        return None
    sp = sp.set_index("arm")
    name = result.sampler.upper()

    def arm_text(a, with_words):
        row = sp.loc[a]
        own = _trials(row["adaptive_median"])
        if row["random_k"] == 0:
            return (f"{with_words} a random search never reached it in {row['random_n']:.0f} trials (its median "
                    f"is above {row['random_lo']:.0f} trials at 95%; {name}'s: {own})")
        v, lo, hi = row["speedup"], row["lo"], row["hi"]
        if not np.isfinite(v):
            return f"{with_words} n/a ({name} did not reach it in half its repeats)"
        band = (f"; {lo:.1f}x to {hi:.1f}x" if np.isfinite(lo) and np.isfinite(hi) else
                f"; at least {lo:.1f}x" if np.isfinite(lo) else "")
        return (f"{with_words} {name} needed {v:.1f}x fewer trials (median {own} vs {_trials(row['random_median'])} "
                f"for a random search{band})")

    src = f" ({result.speedup_source})" if result.speedup_source else ""
    t, r = result.arms
    return (f"Against a random search of the same space{src}, to the same target: {arm_text(t, words['with_t'])}; "
            f"{arm_text(r, words['with_r'])} (intervals: the bounds divided, conservative; a smaller speed-up with "
            "one arm means adaptivity buys less there).")


def outcome_word(result: AdaptiveResult | None) -> str:
    """The Comparison.outcome vocabulary: reaching the target sooner is an easier search. Easier /
    harder only when the paired sign-flip test rejects (its interval then excludes 0)."""
    if result is None or not (np.isfinite(result.paired_p) and result.paired_p < 1 - CONFIDENCE):
        return "cannot tell"
    return {"faster": "easier", "slower": "harder"}.get(result.outcome, "cannot tell")


def is_adaptive(sampler: str) -> bool:
    return sampler in ADAPTIVE_SAMPLERS
