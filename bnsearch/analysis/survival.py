"""Adaptive samplers (TPE, GP): trials-to-target across repeats as a time-to-event outcome.

An adaptive sampler's trials are not independent draws, so the good fraction and its tests (built
for i.i.d. random draws) do not hold. What a TPE user asks is "does the search get to a good
configuration in fewer trials?", and one trajectory per arm is one observation of that. So the unit
of evidence is the repeat (`compare --repeats R`, docs/design.md §6, Adaptive samplers):

- target: the TARGET_QUANTILE (90th) percentile of the scores of every completed trial of both arms
  and all repeats pooled. It depends on no single arm's luckiest maximum, and swapping arm labels
  leaves it unchanged, so it cannot favour either arm under the null.
- per repeat: the trial (1-based, in trial-number order) at which the best-so-far first reaches the
  target, censored at the repeat's completed trials when it never does.
- per arm: Kaplan-Meier of "reached the target by trial n" with lifelines' pointwise 95% band
  (exponential Greenwood), the median trials-to-target with its CI, the restricted mean up to the
  budget (= mean of min(T, budget)).
- between arms: the log-rank test (the primary for adaptive samplers) and the RMST difference with a
  paired percentile bootstrap over repeats (repeat r of both arms shares its seed and data split).
- best-so-far across repeats with pointwise (Student t) and simultaneous (bootstrap sup-t) bands, and
  the best-score gap at the budget with a paired t-interval across repeats.

Pure functions of the trials DataFrames; lifelines is imported lazily (~1.5 s).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .common import ADAPTIVE_SAMPLERS, CONFIDENCE, _rng, complete_trials, json_safe, records

TARGET_QUANTILE = 0.90
DEFAULT_ADAPTIVE_REPEATS = 10  # power figure: docs/design.md §6, Adaptive samplers
MIN_REPEATS = 2  # per arm: below this there is nothing to compare across repeats
N_BOOT = 1000


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


def km_rmst(durations: np.ndarray, events: np.ndarray, tau: float) -> np.ndarray:
    """Restricted mean of the Kaplan-Meier curve up to tau, for many samples at once (rows).

    The same number as lifelines' restricted_mean_survival_time (tests check equality); written
    out only because the bootstrap refits it a thousand times per arm, ~8 ms each in lifelines."""
    d = np.atleast_2d(np.asarray(durations, float))
    e = np.atleast_2d(np.asarray(events, bool))
    times = np.unique(d[e]) if e.any() else np.array([])
    times = times[times <= tau]
    surv = np.ones(d.shape[0])
    area = np.zeros(d.shape[0])
    last = 0.0
    for t in times:
        area += surv * (t - last)
        at_risk = (d >= t).sum(axis=1)
        died = ((d == t) & e).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            surv = surv * np.where(at_risk > 0, 1 - died / np.maximum(at_risk, 1), 1.0)
        last = t
    return area + surv * (tau - last)


# ----------------------------------------------------------------------------- between arms

def logrank(d_t, e_t, d_r, e_r) -> tuple[float, float, float]:
    """(chi-square, p, observed - expected events of the treatment): lifelines' log-rank test; the
    sign of O - E says which arm reaches the target sooner (positive: the treatment)."""
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


def rmst_difference(d_t, e_t, d_r, e_r, tau: float, *, paired: bool, n_boot: int = N_BOOT,
                    seed: int = 0) -> tuple[float, float, float]:
    """RMST(treatment) - RMST(reference) with a 95% percentile bootstrap over repeats (paired:
    the same repeat indices drawn for both arms, since repeat r of both shares seed and split)."""
    d_t, d_r = np.asarray(d_t, float), np.asarray(d_r, float)
    e_t, e_r = np.asarray(e_t, bool), np.asarray(e_r, bool)
    point = float(km_rmst(d_t, e_t, tau)[0] - km_rmst(d_r, e_r, tau)[0])
    if min(d_t.size, d_r.size) < MIN_REPEATS:
        return (point, math.nan, math.nan)
    rng = _rng(seed, "rmst_difference")
    it = rng.integers(0, d_t.size, (n_boot, d_t.size))
    ir = it if paired and d_t.size == d_r.size else rng.integers(0, d_r.size, (n_boot, d_r.size))
    diff = km_rmst(d_t[it], e_t[it], tau) - km_rmst(d_r[ir], e_r[ir], tau)
    lo, hi = np.percentile(diff, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return (point, float(lo), float(hi))


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
    logrank_chi2: float
    logrank_p: float
    o_minus_e: float
    rmst_diff: tuple[float, float, float]
    gap: tuple[float, float, float]  # best score at the budget, treatment - reference, t-interval
    best_at_budget: dict[str, tuple[float, float, float]]
    curves: pd.DataFrame  # best-so-far bands (best_so_far_band per arm)
    outcome: str  # faster | slower | cannot tell | too few repeats
    sampler_settings: dict = field(default_factory=dict)
    # TPE's speed-up over a random search of the same space (speedup_over_random), when one is stored
    speedup: pd.DataFrame | None = None
    speedup_source: str = ""

    @property
    def repeats(self) -> int:
        return min(a.repeats for a in self.per_arm.values()) if self.per_arm else 0

    def km_table(self) -> pd.DataFrame:
        return pd.concat([a.km for a in self.per_arm.values()], ignore_index=True)

    def to_json(self) -> dict:
        """Plain JSON-able numbers (NaN and inf become null) for `summary --json`."""
        clean = json_safe
        return {"sampler": self.sampler, "arms": list(self.arms), "budget": self.budget, "repeats": self.repeats,
                "target": clean(self.target), "target_quantile": self.quantile, "outcome": self.outcome,
                "logrank_chi2": clean(self.logrank_chi2), "logrank_p": clean(self.logrank_p),
                "sampler_settings": dict(self.sampler_settings),
                "summary": records(self.summary_rows()), "times": records(self.times)}

    def summary_rows(self) -> pd.DataFrame:
        """One row per quantity (arm or 'delta'), value/lo/hi: what km.csv's companion rows hold."""
        rows = [{"quantity": "target", "arm": "", "value": self.target, "lo": math.nan, "hi": math.nan}]
        for a in self.arms:
            s = self.per_arm[a]
            rows += [{"quantity": "reached", "arm": a, "value": s.reached, "lo": math.nan, "hi": math.nan},
                     {"quantity": "repeats", "arm": a, "value": s.repeats, "lo": math.nan, "hi": math.nan},
                     {"quantity": "median_trials_to_target", "arm": a, "value": s.median, "lo": s.median_lo,
                      "hi": s.median_hi},
                     {"quantity": "rmst", "arm": a, "value": s.rmst, "lo": math.nan, "hi": math.nan},
                     {"quantity": "best_at_budget", "arm": a, "value": self.best_at_budget[a][0],
                      "lo": self.best_at_budget[a][1], "hi": self.best_at_budget[a][2]}]
        rows += [{"quantity": "rmst", "arm": "delta", "value": self.rmst_diff[0], "lo": self.rmst_diff[1],
                  "hi": self.rmst_diff[2]},
                 {"quantity": "best_at_budget", "arm": "delta", "value": self.gap[0], "lo": self.gap[1],
                  "hi": self.gap[2]},
                 {"quantity": "logrank_p", "arm": "delta", "value": self.logrank_p, "lo": math.nan, "hi": math.nan}]
        if self.speedup is not None:
            rows += [{"quantity": "speedup_over_random", "arm": r["arm"], "value": r["speedup"], "lo": r["lo"],
                      "hi": r["hi"]} for _, r in self.speedup.iterrows()]
        return pd.DataFrame(rows)


@dataclass(frozen=True)
class PrimaryTest:
    target: float
    times: pd.DataFrame  # repeat, arm, trials, reached
    chi2: float
    p: float
    o_minus_e: float
    outcome: str  # faster | slower | cannot tell | too few repeats


def primary_test(trajs: Mapping[str, Sequence[np.ndarray]], arms: tuple[str, str], *,
                 quantile: float = TARGET_QUANTILE, target: float | None = None) -> PrimaryTest:
    """The decision alone (the calibration tests run it thousands of times): the pooled target,
    each repeat's trials-to-target, the log-rank test and its outcome at alpha = 0.05."""
    treat, ref = arms
    pooled = [np.asarray(t, float) for a in arms for t in trajs[a] if len(t)]
    target = pooled_target(pooled, quantile) if target is None else float(target)
    rows = []
    for a in arms:
        for r, t in enumerate(trajs[a]):
            if len(t):
                n, hit = time_to_target(t, target)
                rows.append({"repeat": r, "arm": a, "trials": n, "reached": hit})
    times = pd.DataFrame(rows, columns=["repeat", "arm", "trials", "reached"])
    dur = {a: times.loc[times["arm"] == a, "trials"].to_numpy(float) for a in arms}
    ev = {a: times.loc[times["arm"] == a, "reached"].to_numpy(bool) for a in arms}
    if not all(dur[a].size >= MIN_REPEATS for a in arms):
        return PrimaryTest(target, times, math.nan, math.nan, math.nan, "too few repeats")
    chi2, p, ome = logrank(dur[treat], ev[treat], dur[ref], ev[ref])
    if p < 1 - CONFIDENCE and ome != 0:
        outcome = "faster" if ome > 0 else "slower"
    else:
        outcome = "cannot tell"
    return PrimaryTest(target, times, chi2, p, ome, outcome)


def analyse_adaptive(dfs: Sequence[pd.DataFrame], arms: tuple[str, str], *, sampler: str, task: str = "classification",
                     budget: int | None = None, seed: int = 0, quantile: float = TARGET_QUANTILE,
                     n_boot: int = N_BOOT, sampler_settings: Mapping | None = None) -> AdaptiveResult:
    """Trials-to-target of each repeat (one trials DataFrame per repeat, in repeat order) of both arms."""
    treat, ref = arms
    trajs = {a: trajectories(dfs, a) for a in arms}
    return analyse_trajectories(trajs, arms, sampler=sampler, task=task, budget=budget, seed=seed, quantile=quantile,
                                n_boot=n_boot, sampler_settings=sampler_settings)


def analyse_trajectories(trajs: Mapping[str, Sequence[np.ndarray]], arms: tuple[str, str], *, sampler: str,
                         task: str = "classification", budget: int | None = None, seed: int = 0,
                         quantile: float = TARGET_QUANTILE, n_boot: int = N_BOOT,
                         sampler_settings: Mapping | None = None, target: float | None = None) -> AdaptiveResult:
    """The same from score trajectories: {arm: [scores of repeat 0, repeat 1, ...]}."""
    treat, ref = arms
    # Every repeat gets the same budget: a worker may finish one trial beyond it (two asked at once).
    trajs = {a: [np.asarray(t, float)[:budget] if budget else np.asarray(t, float) for t in trajs[a]] for a in arms}
    # A repeat with no completed trial of an arm carries no time for it (nothing was searched).
    keep = {a: [t for t in trajs[a] if t.size] for a in arms}
    budget = int(budget or max((t.size for a in arms for t in keep[a]), default=0))
    pooled = [t for a in arms for t in keep[a]]
    test = primary_test(trajs, arms, quantile=quantile, target=target)
    times, target = test.times, test.target
    dur = {a: times.loc[times["arm"] == a, "trials"].to_numpy(float) for a in arms}
    ev = {a: times.loc[times["arm"] == a, "reached"].to_numpy(bool) for a in arms}
    per_arm = {a: kaplan_meier(dur[a], ev[a], budget, a) for a in arms if dur[a].size}
    enough = all(dur[a].size >= MIN_REPEATS for a in arms)
    chi2, p, ome, outcome = test.chi2, test.p, test.o_minus_e, test.outcome
    rep_t = times.loc[times["arm"] == treat, "repeat"].to_numpy()
    rep_r = times.loc[times["arm"] == ref, "repeat"].to_numpy()
    paired = np.array_equal(rep_t, rep_r)
    rmst = (rmst_difference(dur[treat], ev[treat], dur[ref], ev[ref], budget, paired=paired, n_boot=n_boot, seed=seed)
            if enough else (math.nan, math.nan, math.nan))
    best = {a: np.array([np.max(t) for t in trajs[a] if t.size]) for a in arms}
    if paired and enough:
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
    return AdaptiveResult(sampler=sampler, arms=(treat, ref), task=task, budget=budget, target=target, quantile=quantile,
                          n_pooled=int(sum(t.size for t in pooled)), times=times, per_arm=per_arm, logrank_chi2=chi2,
                          logrank_p=p, o_minus_e=ome, rmst_diff=rmst, gap=gap,
                          best_at_budget={a: t_interval(best[a]) for a in arms}, curves=curves, outcome=outcome,
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


def _score(x: float, task: str, signed: bool = False) -> str:
    if not np.isfinite(x):
        return "n/a"
    if task == "classification":
        return (f"{100 * x:+.1f} pts" if signed else f"{x:.3f}")
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def settings_text(settings: Mapping) -> str:
    """One line: the sampler as it was constructed (for a rerun under another Optuna version)."""
    if not settings:
        return ""
    keys = [k for k in settings if k not in ("name", "optuna_version")]
    inner = ", ".join(f"{k}={settings[k]}" for k in keys)
    return f"{settings.get('name', '')}({inner}) under Optuna {settings.get('optuna_version', '?')}"


def adaptive_sentences(result: AdaptiveResult | None, words: Mapping[str, str], *, sampler: str, task: str,
                       n_repeats: int = 1) -> list[str]:
    """The verdict's opening for an adaptive sampler: which outcome, its numbers, conclusion first."""
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
    head = {"faster": f"The search reached the target sooner {words['with_t']} than {words['with_r']}",
            "slower": f"The search reached the target later {words['with_t']} than {words['with_r']}",
            }.get(result.outcome, f"The data cannot tell whether the search reaches the target sooner "
                                  f"{words['with_t']} than {words['with_r']}")
    lead = (f"{name}, {result.repeats} repeats per arm of {result.budget} trials (outcome: trials to target, "
            f"log-rank test across repeats). {head} (log-rank {_p(result.logrank_p)}): {words['with_t']} in "
            f"{_median_text(st)}, {words['with_r']} in {_median_text(sr)}. The target is a validation score of at "
            f"least {result.target:.4g}, the {100 * result.quantile:.0f}th percentile of all {result.n_pooled} trials "
            "of both arms and every repeat.")
    d, lo, hi = result.rmst_diff
    rmst = (f"Counting the whole budget for a repeat that never got there, the mean trials to target is "
            f"{st.rmst:.1f} {words['with_t']} and {sr.rmst:.1f} {words['with_r']} (difference {d:+.1f}, 95% bootstrap "
            f"CI over repeats {lo:+.1f} to {hi:+.1f}).") if np.isfinite(d) and np.isfinite(lo) else None
    g, glo, ghi = result.gap
    gap = (f"After {result.budget} trials the best score is {_score(result.best_at_budget[t][0], task)} "
           f"{words['with_t']} and {_score(result.best_at_budget[r][0], task)} {words['with_r']} (difference "
           f"{_score(g, task, True)}, 95% t-interval across repeats {_score(glo, task, True)} to "
           f"{_score(ghi, task, True)}).") if np.isfinite(g) else None
    caveat = ("Good-fraction tests are not reported for adaptive draws: they assume independent trials.")
    return [x for x in (lead, rmst, gap, speedup_sentence(result, words), caveat) if x]


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
    """The Comparison.outcome vocabulary: reaching the target sooner is an easier search."""
    if result is None:
        return "cannot tell"
    return {"faster": "easier", "slower": "harder"}.get(result.outcome, "cannot tell")


def is_adaptive(sampler: str) -> bool:
    return sampler in ADAPTIVE_SAMPLERS
