"""Analysis: the trials DataFrame -> metrics, tuning curves, tests and a verdict (DESIGN.md §6).

Pure functions: no I/O, no printing, and every random quantity (bootstrap) derives from an explicit
seed, so the same trials always give the same report.

Every table of a `Summary` has one long layout -- key columns, then `value`, `lo`, `hi` -- so that
`aggregate_repeats` can reduce any of them the same way (mean and 95% t-interval across repeats)
and the report layer renders a single-run summary and an aggregated one with the same code.
Per-arm tables carry the arms "bn-on", "bn-off" and a "delta" row (bn-on minus bn-off).
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

ARMS = ("bn-on", "bn-off")
DELTA = "delta"
ARM_LABELS = {"bn-on": "BN on", "bn-off": "BN off", DELTA: "Δ"}
ADAPTIVE_SAMPLERS = ("tpe", "gp")
MIN_TRIALS_TO_TELL = 5  # per arm; below this the verdict refuses to conclude anything
MIN_IMPORTANCE_TRIALS = 5  # PED-ANOVA on fewer trials returns numbers that mean nothing
N_BOOT = 1000
CONFIDENCE = 0.95
_Q = (100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2)

TABLE_KEYS = {
    "metrics": ["section", "metric", "arm"],
    "curves": ["estimator", "n", "arm"],
    "importance": ["param", "arm"],
    "sensitivity": ["param", "kind", "measure", "arm"],
    "tests": ["test", "quantity"],
}
_VALUE_COLS = ["value", "lo", "hi"]


@dataclass
class Summary:
    """Everything the report renders. One experiment, or R repeats aggregated.

    Tables (long format, see TABLE_KEYS; `lo`/`hi` are NaN where no interval applies):
      metrics      section ("scores" | "robustness"), metric, arm, value, lo, hi
      curves       estimator ("V" | "U" | "best-so-far"), n, arm, value, lo, hi
      importance   param, arm, value, lo, hi
      sensitivity  param, kind ("categorical" | "numeric"), measure, arm, value, lo, hi
      tests        test, quantity, value, lo, hi, note
    For a single run, intervals are the per-statistic 95% CIs (Wilson, bootstrap); for an aggregate
    they are 95% t-intervals of the mean across repeats (see `interval`).
    """

    experiment: str
    task: str
    sampler: str
    paired: bool  # True only when per-config pairing was actually used by the tests
    tolerance: float
    s_star: float
    params: list[str]
    metrics: pd.DataFrame
    curves: pd.DataFrame
    importance: pd.DataFrame
    sensitivity: pd.DataFrame
    tests: pd.DataFrame
    verdict: str = ""
    n_repeats: int = 1
    interval: str = "95% CI per statistic (Wilson for proportions, percentile bootstrap otherwise)"
    notes: list[str] = field(default_factory=list)

    def metric(self, metric: str, arm: str) -> tuple[float, float, float]:
        """(value, lo, hi) of one metrics row; NaNs when absent."""
        return _lookup(self.metrics, (self.metrics["metric"] == metric) & (self.metrics["arm"] == arm))

    def test(self, test: str, quantity: str) -> tuple[float, float, float]:
        return _lookup(self.tests, (self.tests["test"] == test) & (self.tests["quantity"] == quantity))

    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in TABLE_KEYS}


def _lookup(table: pd.DataFrame, mask) -> tuple[float, float, float]:
    if table.empty or not mask.any():
        return (math.nan, math.nan, math.nan)
    row = table[mask].iloc[0]
    return (float(row["value"]), float(row["lo"]), float(row["hi"]))


# ----------------------------------------------------------------------------- helpers

def _rng(seed: int, tag: str) -> np.random.Generator:
    # One independent stream per statistic, so adding a bootstrap elsewhere never shifts this one.
    return np.random.default_rng([int(seed), zlib.crc32(tag.encode())])


def _floats(values) -> np.ndarray:
    return np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)


def complete_trials(df: pd.DataFrame, arm: str | None = None) -> pd.DataFrame:
    """COMPLETE trials with a finite score (diverged ones included: they are the fragility measured)."""
    if df.empty:
        return df
    mask = df["state"].astype(str) == "COMPLETE"
    if arm is not None:
        mask &= df["arm"].astype(str) == arm
    out = df[mask]
    return out[np.isfinite(_floats(out["score"]))].sort_values("number", kind="stable")


# ----------------------------------------------------------------------------- per-arm statistics

def score_stats(scores: Sequence[float]) -> dict[str, float]:
    """best, median, p25, p75, mean, std (sample std, ddof=1) of the scores; NaN when empty."""
    s = _floats(scores)
    if s.size == 0:
        return {k: math.nan for k in ("best", "median", "p25", "p75", "mean", "std")}
    return {
        "best": float(s.max()),
        "median": float(np.median(s)),
        "p25": float(np.percentile(s, 25)),
        "p75": float(np.percentile(s, 75)),
        "mean": float(s.mean()),
        "std": float(s.std(ddof=1)) if s.size > 1 else math.nan,
    }


def shared_best(*score_lists: Iterable[float]) -> float:
    """s* = the best score over all arms together (so 'good' means the same thing in each arm)."""
    s = np.concatenate([_floats(list(x)) for x in score_lists]) if score_lists else np.array([])
    s = s[np.isfinite(s)]
    return float(s.max()) if s.size else math.nan


def is_good(scores: Sequence[float], s_star: float, tolerance: float) -> np.ndarray:
    # A tiny epsilon so that scores exactly at s* - δ count despite float round-off (0.98 vs 0.99-0.01).
    return _floats(scores) >= s_star - tolerance - 1e-12


def wilson_ci(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n; (nan, nan) when n = 0."""
    if n <= 0:
        return (math.nan, math.nan)
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def proportion(flags: Sequence[bool]) -> dict[str, float]:
    """share of True with its Wilson 95% CI."""
    f = np.asarray(flags, dtype=bool)
    n, k = int(f.size), int(f.sum())
    lo, hi = wilson_ci(k, n)
    return {"k": k, "n": n, "value": k / n if n else math.nan, "lo": lo, "hi": hi}


def good_fraction(scores: Sequence[float], s_star: float, tolerance: float) -> dict[str, float]:
    """g = #{s_i >= s* - δ} / N with its Wilson 95% CI."""
    return proportion(is_good(scores, s_star, tolerance))


def trials_to_target(g: float) -> float:
    """Expected random draws to the first good configuration (geometric mean 1/g); inf when g = 0."""
    if g is None or not np.isfinite(g):
        return math.nan
    return math.inf if g <= 0 else 1.0 / g


def divergence_rate(diverged: Sequence[bool]) -> float:
    d = np.asarray(pd.Series(diverged, dtype=object).fillna(False), dtype=bool)
    return float(d.mean()) if d.size else math.nan


def lr_window(lrs: Sequence[float]) -> float:
    """Decades spanned by the learning rates of the good trials; 0 with fewer than two."""
    lr = _floats(lrs)
    lr = lr[np.isfinite(lr) & (lr > 0)]
    if lr.size < 2:
        return 0.0
    return float(np.log10(lr.max()) - np.log10(lr.min()))


# ----------------------------------------------------------------------------- tuning curves

def curve_grid(n_max: int) -> list[int]:
    """n = 1, 2, 4, 8, ... up to N, plus N itself."""
    if n_max < 1:
        return []
    grid = [2**k for k in range(int(math.log2(n_max)) + 1)]
    return grid if grid[-1] == n_max else grid + [n_max]


def v_weights(N: int, n: int) -> np.ndarray:
    """Dodge et al. 2019: weight of v_(i) is (i/N)^n - ((i-1)/N)^n (draws with replacement)."""
    i = np.arange(1, N + 1, dtype=float)
    return (i / N) ** n - ((i - 1) / N) ** n


def u_weights(N: int, n: int) -> np.ndarray:
    """Tang et al. 2020: weight of v_(i) is C(i-1, n-1) / C(N, n) for i >= n (without replacement)."""
    if not 1 <= n <= N:
        raise ValueError(f"U-estimate needs 1 <= n <= N, got n={n}, N={N}")
    i = np.arange(1, N + 1)
    w = np.zeros(N)
    ok = i >= n
    # log-gamma form: exact binomials overflow floats long before N = 1000
    log_c = special.gammaln(i[ok]) - special.gammaln(n) - special.gammaln(i[ok] - n + 1)
    log_total = special.gammaln(N + 1) - special.gammaln(n + 1) - special.gammaln(N - n + 1)
    w[ok] = np.exp(log_c - log_total)
    return w


_WEIGHTS: dict[str, Callable[[int, int], np.ndarray]] = {"V": v_weights, "U": u_weights}


def v_estimate(values: Sequence[float], n: int) -> float:
    """Expected best validation score of n random configurations (V-estimate)."""
    v = np.sort(_floats(values))
    return float(v @ v_weights(v.size, n))


def u_estimate(values: Sequence[float], n: int) -> float:
    """Expected best validation score of n random configurations (unbiased U-estimate)."""
    v = np.sort(_floats(values))
    return float(v @ u_weights(v.size, n))


def tuning_curve(values: Sequence[float], estimator: str = "V", ns: Sequence[int] | None = None,
                 n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Columns n, value, lo, hi: the estimator at each n with a 95% percentile bootstrap band
    (resampling the trials with replacement; pointwise, not simultaneous)."""
    v = np.sort(_floats(values))
    N = v.size
    if N == 0:
        return pd.DataFrame(columns=["n", *_VALUE_COLS])
    ns = [n for n in (ns or curve_grid(N)) if 1 <= n <= N]
    W = np.stack([_WEIGHTS[estimator](N, n) for n in ns])  # (len(ns), N)
    point = W @ v
    boot = np.sort(_rng(seed, f"curve-{estimator}").choice(v, size=(n_boot, N), replace=True), axis=1)
    lo, hi = np.percentile(boot @ W.T, _Q, axis=0)
    return pd.DataFrame({"n": ns, "value": point, "lo": lo, "hi": hi})


def best_so_far(scores_in_trial_order: Sequence[float]) -> np.ndarray:
    """Running maximum of the scores, for adaptive (TPE/GP) searches where i.i.d. formulas do not hold."""
    s = _floats(scores_in_trial_order)
    return np.maximum.accumulate(s) if s.size else s


# ----------------------------------------------------------------------------- sensitivity, importance

def categorical_sensitivity(values: Sequence, scores: Sequence[float]) -> float:
    """max - min over the values of the median score; NaN when fewer than two values were tried."""
    frame = pd.DataFrame({"v": pd.Series(values, dtype=object).astype(str), "s": _floats(scores)}).dropna()
    medians = frame.groupby("v")["s"].median()
    return float(medians.max() - medians.min()) if len(medians) >= 2 else math.nan


def numeric_sensitivity(values: Sequence[float], scores: Sequence[float]) -> float:
    """Spearman rank correlation of the hyperparameter with the score; NaN when undefined."""
    x, s = _floats(values), _floats(scores)
    ok = np.isfinite(x) & np.isfinite(s)
    x, s = x[ok], s[ok]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(s) == 0:
        return math.nan
    return float(stats.spearmanr(x, s).statistic)


def _is_categorical(dist) -> bool:
    import optuna

    return isinstance(dist, optuna.distributions.CategoricalDistribution)


def _param_value(value, dist):
    """DataFrame cell -> the Python value Optuna's distribution accepts (numpy ints, CSV strings...)."""
    import optuna

    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        for choice in dist.choices:
            if choice == value or str(choice) == str(value):
                return choice
        raise ValueError(f"{value!r} not in {dist.choices}")
    if isinstance(dist, optuna.distributions.IntDistribution):
        return int(value)
    return float(value)


def param_importances(trials: pd.DataFrame, distributions: Mapping, evaluator=None) -> dict[str, float]:
    """Optuna importances (PED-ANOVA by default) from the COMPLETE rows of one arm.

    Returns NaN for every parameter when the answer would be meaningless: fewer than
    MIN_IMPORTANCE_TRIALS trials or constant scores (Optuna would then return equal shares).
    Parameters with a single possible value are left out (Optuna ignores them too).
    """
    import optuna

    params = [p for p, d in distributions.items() if p in trials.columns and not d.single()]
    nan = {p: math.nan for p in params}
    rows = complete_trials(trials)
    scores = _floats(rows["score"]) if not rows.empty else np.array([])
    if len(rows) < MIN_IMPORTANCE_TRIALS or np.ptp(scores) == 0 or not params:
        return nan
    frozen = []
    for (_, row), score in zip(rows.iterrows(), scores):
        try:
            values = {p: _param_value(row[p], distributions[p]) for p in params}
            frozen.append(optuna.trial.create_trial(
                params=values, distributions={p: distributions[p] for p in params}, value=float(score)))
        except (ValueError, TypeError):
            continue  # a row outside the declared space (edited storage): skip it, do not crash
    if len(frozen) < MIN_IMPORTANCE_TRIALS:
        return nan
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line per arm
    try:
        study = optuna.create_study(direction="maximize", storage=optuna.storages.InMemoryStorage())
        study.add_trials(frozen)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = optuna.importance.get_param_importances(study, evaluator=evaluator, params=params)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return {p: float(result.get(p, math.nan)) for p in params}


# ----------------------------------------------------------------------------- tests

def paired_scores(on: pd.DataFrame, off: pd.DataFrame) -> pd.DataFrame:
    """config_index, on, off, d = on - off, for the configs COMPLETE in both arms.

    A config re-run after a failure may appear twice; its first COMPLETE trial counts.
    """
    def by_config(trials: pd.DataFrame) -> pd.Series:
        t = trials[pd.notna(trials["config_index"])]
        t = t.assign(config_index=t["config_index"].astype("int64"))
        return t.drop_duplicates("config_index").set_index("config_index")["score"].astype(float)

    both = pd.concat({"on": by_config(on), "off": by_config(off)}, axis=1, join="inner").sort_index()
    both["d"] = both["on"] - both["off"]
    return both.reset_index()


def wilcoxon_test(d: Sequence[float]) -> tuple[float, float]:
    """(W, two-sided p) of the Wilcoxon signed-rank test; zero differences are dropped (Wilcoxon's
    convention). NaNs when no non-zero difference is left."""
    d = _floats(d)
    # Dropping zeros here is exactly zero_method="wilcox", and keeps scipy on its exact null
    # distribution instead of a slow 2^n permutation test whenever a zero is present.
    d = d[np.isfinite(d) & (d != 0)]
    if d.size == 0:
        return (math.nan, math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return (float(res.statistic), float(res.pvalue))


def mann_whitney(on: Sequence[float], off: Sequence[float]) -> tuple[float, float]:
    """(U of the first sample, two-sided p)."""
    a, b = _floats(on), _floats(off)
    if a.size == 0 or b.size == 0:
        return (math.nan, math.nan)
    res = stats.mannwhitneyu(a, b, alternative="two-sided")
    return (float(res.statistic), float(res.pvalue))


def mcnemar_exact(on_good: Sequence[bool], off_good: Sequence[bool]) -> float:
    """Exact McNemar p: the paired two-proportion test (binomial on the discordant pairs)."""
    a, b = np.asarray(on_good, bool), np.asarray(off_good, bool)
    only_on, only_off = int((a & ~b).sum()), int((~a & b).sum())
    if only_on + only_off == 0:
        return 1.0
    return float(stats.binomtest(only_on, only_on + only_off, 0.5).pvalue)


def two_proportion_ztest(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p of the pooled two-proportion z-test; 1.0 when both proportions are 0 or 1."""
    if n1 == 0 or n2 == 0:
        return math.nan
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (k1 / n1 - k2 / n2) / se
    return float(2 * stats.norm.sf(abs(z)))


def bootstrap_ci(statistic: Callable[..., float], *samples: np.ndarray, paired: bool = False,
                 n_boot: int = N_BOOT, seed: int = 0, tag: str = "") -> tuple[float, float]:
    """95% percentile bootstrap CI of statistic(*samples).

    paired=True resamples the same indices in every sample (rows of a pair stay together);
    otherwise each sample is resampled on its own.
    """
    samples = [np.asarray(s) for s in samples]
    if any(s.size == 0 for s in samples):
        return (math.nan, math.nan)
    rng = _rng(seed, f"boot-{tag}")
    if paired:
        idx = rng.integers(0, samples[0].size, size=(n_boot, samples[0].size))
        reps = [statistic(*(s[i] for s in samples)) for i in idx]
    else:
        idxs = [rng.integers(0, s.size, size=(n_boot, s.size)) for s in samples]
        reps = [statistic(*(s[ix[b]] for s, ix in zip(samples, idxs))) for b in range(n_boot)]
    lo, hi = np.nanpercentile(np.asarray(reps, float), _Q)
    return (float(lo), float(hi))


def _diff_of_means(a, b) -> float:
    return float(np.mean(a) - np.mean(b))


def _diff_of_medians(a, b) -> float:
    return float(np.median(a) - np.median(b))


def _median(a) -> float:
    return float(np.median(a))


# ----------------------------------------------------------------------------- repeats

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


def _trials_to_target_from_mean_g(metrics: pd.DataFrame) -> pd.DataFrame:
    # One repeat with g = 0 would make the mean of 1/g infinite; 1/mean(g) is what a reader expects
    # ("how many draws on average"), with the interval mapped from g's interval.
    m = metrics.copy()
    for arm in ARMS:
        g = m[(m["metric"] == "good_fraction") & (m["arm"] == arm)]
        row = (m["metric"] == "trials_to_target") & (m["arm"] == arm)
        if len(g) and row.any():
            value, lo, hi = g[["value", "lo", "hi"]].iloc[0]
            m.loc[row, ["value", "lo", "hi"]] = [trials_to_target(value), trials_to_target(hi), trials_to_target(lo)]
    delta = (m["metric"] == "trials_to_target") & (m["arm"] == DELTA)
    on, off = (m.loc[(m["metric"] == "trials_to_target") & (m["arm"] == a), "value"] for a in ARMS)
    if delta.any() and len(on) and len(off):
        with np.errstate(invalid="ignore"):
            m.loc[delta, ["value", "lo", "hi"]] = [float(on.iloc[0]) - float(off.iloc[0]), math.nan, math.nan]
    return m


def aggregate_repeats(summaries: Sequence[Summary]) -> Summary:
    """Mean and 95% Student-t interval of the mean across repeats, for every scalar of every table.

    Exception: trials-to-target is 1 / (mean good fraction), its interval mapped from g's interval,
    because a single repeat with g = 0 would make the mean of 1/g infinite.
    Each table gains a `repeats` column (how many repeats had a value for that row).
    The verdict is rebuilt from the aggregated numbers.
    """
    if not summaries:
        raise ValueError("aggregate_repeats needs at least one summary")
    first = summaries[0]
    tables = {name: _aggregate_table([getattr(s, name) for s in summaries], keys)
              for name, keys in TABLE_KEYS.items()}
    notes = list(dict.fromkeys(n for s in summaries for n in s.notes))
    tables["metrics"] = _trials_to_target_from_mean_g(tables["metrics"])
    out = Summary(
        experiment=first.experiment, task=first.task, sampler=first.sampler,
        paired=all(s.paired for s in summaries), tolerance=first.tolerance,
        s_star=t_interval([s.s_star for s in summaries])[0], params=list(first.params),
        n_repeats=len(summaries),
        interval=f"mean and 95% Student-t interval of the mean across {len(summaries)} repeats",
        notes=notes, **tables)
    out.verdict = verdict(out)
    return out


# ----------------------------------------------------------------------------- verdict

def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _pts(x: float) -> str:
    return f"{100 * x:+.0f}"


def _score_diff(x: float, task: str, unit: bool = True) -> str:
    # Accuracy differences read naturally in points; R² / -RMSE only in their own units.
    if task == "classification":
        return f"{100 * x:+.1f}" + (" pts" if unit else "")
    return f"{x:+.3f}"


def _tol_text(tol: float, task: str) -> str:
    if task == "classification":
        pts = f"{100 * tol:g}"
        return f"within {pts} pt{'' if pts == '1' else 's'} of the best accuracy"
    return f"within {tol:g} of the best validation score"


def _ttt(x: float) -> str:
    return "never" if math.isinf(x) else ("n/a" if math.isnan(x) else f"{x:.1f}")


def _p(p: float) -> str:
    return "p n/a" if not np.isfinite(p) else ("p < 0.001" if p < 0.001 else f"p = {p:.3f}")


def verdict(s: Summary) -> str:
    """Two to four plain sentences from the numbers; says so when the data cannot tell."""
    n_on, n_off = s.metric("n_complete", "bn-on")[0], s.metric("n_complete", "bn-off")[0]
    n_on, n_off = (0 if np.isnan(x) else x for x in (n_on, n_off))
    repeats = s.n_repeats > 1
    prefix = f"Averaged over {s.n_repeats} repeats, w" if repeats else "W"
    count = (lambda x: f"{x:.0f}") if not repeats else (lambda x: f"{x:.1f}")
    if n_on == 0 or n_off == 0:
        missing = [ARM_LABELS[a] for a, n in zip(ARMS, (n_on, n_off)) if n == 0]
        who = f"{missing[0]} has no" if len(missing) == 1 else "Neither arm has any"
        return (f"{who} completed trials, so the arms cannot be compared: "
                f"the data cannot tell whether BN makes the search easier.")

    g_on, g_off = s.metric("good_fraction", "bn-on")[0], s.metric("good_fraction", "bn-off")[0]
    d, d_lo, d_hi = s.metric("good_fraction", DELTA)
    cls = s.task == "classification"
    unit = " pts" if cls else " percentage points"
    ci_name = "95% interval across repeats" if repeats else "95% CI"
    ci = f", {ci_name} {_pts(d_lo)}..{_pts(d_hi)}" if np.isfinite(d_lo) else ""
    sentences = [
        f"{prefix}ith BN {_pct(g_on)} of configurations reach {_tol_text(s.tolerance, s.task)} "
        f"(without: {_pct(g_off)}; difference {_pts(d)}{unit}{ci})."
    ]

    t_on, t_off = s.metric("trials_to_target", "bn-on")[0], s.metric("trials_to_target", "bn-off")[0]
    search = "A random search" if s.sampler not in ADAPTIVE_SAMPLERS else f"Drawing at random from the {s.sampler.upper()} trials, one"
    sentence = f"{search} needs {_ttt(t_on)} trials on average to get there (without: {_ttt(t_off)})"
    div_on, div_off = s.metric("divergence_rate", "bn-on")[0], s.metric("divergence_rate", "bn-off")[0]
    if (div_on or 0) > 0 or (div_off or 0) > 0:
        sentence += f"; {_pct(div_on)} of runs diverged with BN, {_pct(div_off)} without"
    sentences.append(sentence + ".")

    # Score-level test: per configuration when paired, otherwise the two score distributions.
    if s.paired:
        win = s.test("wilcoxon", "win_rate")[0]
        ties = s.test("wilcoxon", "tie_rate")[0]
        md, md_lo, md_hi = s.test("wilcoxon", "median_d")
        p_scores = s.test("wilcoxon", "p_value")[0]
        band = (f", {ci_name} {_score_diff(md_lo, s.task, unit=False)}..{_score_diff(md_hi, s.task)}"
                if np.isfinite(md_lo) else "")
        ptext = "" if repeats else f"; Wilcoxon {_p(p_scores)}"
        sentences.append(
            f"Configuration by configuration, BN scores higher in {_pct(win)} of the pairs "
            f"(ties {_pct(ties)}; median difference {_score_diff(md, s.task)}{band}{ptext}).")
    else:
        prob = s.test("mann_whitney", "prob_on_better")[0]
        p_scores = s.test("mann_whitney", "p_value")[0]
        ptext = "" if repeats else f" (Mann-Whitney {_p(p_scores)})"
        sentences.append(f"A random BN trial beats a random no-BN trial {_pct(prob)} of the time{ptext}.")
    # Whether typical scores differ clearly, apart from the share near the very best.
    if s.paired:
        scores_clear = np.isfinite(md_lo) and (md_lo > 0 or md_hi < 0) and (repeats or p_scores < 0.05)
        scores_better = md > 0
    else:
        scores_clear = not repeats and np.isfinite(p_scores) and p_scores < 0.05
        scores_better = prob > 0.5

    p_good = s.test("good_fraction", "p_value")[0]
    excludes_zero = np.isfinite(d_lo) and (d_lo > 0 or d_hi < 0)
    significant = repeats or (np.isfinite(p_good) and p_good < 0.05)
    few = min(n_on, n_off) < MIN_TRIALS_TO_TELL
    if few:
        sentences.append(
            f"With only {count(n_on)} and {count(n_off)} completed trials the data cannot tell whether BN makes "
            f"the search easier; run at least {MIN_TRIALS_TO_TELL} per arm.")
    elif excludes_zero and significant:
        easier = "easier" if d > 0 else "harder"
        why = "the interval across repeats excludes 0" if repeats else f"CI excludes 0, {_p(p_good)}"
        sentences.append(f"So BN clearly made the search {easier} here ({why}).")
    else:
        if repeats:
            why = "the interval across repeats includes 0" if np.isfinite(d_lo) else "the interval is undefined"
        else:
            why = ("the CI of the difference includes 0" if not excludes_zero else "the CI excludes 0 but the test does not agree") + f" ({_p(p_good)})"
        if scores_clear:
            # Typical configurations can differ clearly while the share within δ of the single best
            # score is too small to separate: say both, rather than a bare "cannot tell".
            sentences.append(
                f"Near the very best the data cannot separate the arms: {why}. But a typical configuration "
                f"does clearly {'better' if scores_better else 'worse'} with BN, so BN made the search "
                f"{'more' if scores_better else 'less'} forgiving here.")
        else:
            sentences.append(f"The data cannot tell whether BN makes the search easier: {why}.")
    return " ".join(sentences)


# ----------------------------------------------------------------------------- top level

def _rows(section: str, arm: str, values: Mapping[str, float], cis: Mapping[str, tuple] | None = None) -> list[dict]:
    cis = cis or {}
    return [{"section": section, "metric": m, "arm": arm, "value": float(v),
             "lo": cis.get(m, (math.nan, math.nan))[0], "hi": cis.get(m, (math.nan, math.nan))[1]}
            for m, v in values.items()]


def _with_delta(table: pd.DataFrame, keys: list[str], cis: Mapping[tuple, tuple] | None = None) -> pd.DataFrame:
    """Append arm = "delta" rows (bn-on minus bn-off) for every key present in both arms."""
    if table.empty:
        return table
    other = [k for k in keys if k != "arm"]
    on = table[table["arm"] == "bn-on"].set_index(other)
    off = table[table["arm"] == "bn-off"].set_index(other)
    common = [k for k in on.index if k in off.index]
    rows = []
    for k in common:
        with np.errstate(invalid="ignore"):
            value = float(on.loc[k, "value"]) - float(off.loc[k, "value"])
        key = k if isinstance(k, tuple) else (k,)
        lo, hi = (cis or {}).get(key, (math.nan, math.nan))
        rows.append({**dict(zip(other, key)), "arm": DELTA, "value": value, "lo": lo, "hi": hi})
    return pd.concat([table, pd.DataFrame(rows, columns=table.columns)], ignore_index=True) if rows else table


def summarize(df: pd.DataFrame, *, distributions: Mapping, tolerance: float, paired: bool, sampler: str,
              task: str, seed: int = 0, n_boot: int = N_BOOT, evaluator=None) -> Summary:
    """All DESIGN.md §6 metrics for one experiment (both arms) from its trials DataFrame."""
    notes: list[str] = []
    experiment = str(df["experiment"].iloc[0]) if len(df) and "experiment" in df else ""
    arms = {arm: complete_trials(df, arm) for arm in ARMS}
    scores = {arm: _floats(t["score"]) for arm, t in arms.items()}
    s_star = shared_best(*scores.values())
    params = [p for p in distributions if p in df.columns]

    # Pairing is only real when both arms carry config indices.
    pairs = None
    if paired:
        if "config_index" in df.columns:
            pairs = paired_scores(arms["bn-on"], arms["bn-off"])
            pairs = pairs if len(pairs) else None
        if pairs is None and all(len(t) for t in arms.values()):
            notes.append("paired design requested but no configuration is complete in both arms "
                         "with a config_index; unpaired tests used")

    # ---- scores and robustness
    rows: list[dict] = []
    good = {arm: is_good(scores[arm], s_star, tolerance) for arm in ARMS}
    for arm, trials in arms.items():
        n_all = int((df["arm"].astype(str) == arm).sum()) if len(df) else 0
        st = score_stats(scores[arm])
        test_at_best = math.nan
        if len(trials) and "test_score" in trials:
            test_at_best = float(pd.to_numeric(trials["test_score"], errors="coerce").iloc[int(np.argmax(scores[arm]))])
        rows += _rows("scores", arm, {"n_trials": n_all, "n_complete": len(trials), **st, "test_at_best": test_at_best})

        g = proportion(good[arm])
        ttt = trials_to_target(g["value"])
        div = proportion(np.asarray(trials["diverged"].fillna(False), bool) if len(trials) else [])
        robust = {"good_count": g["k"], "good_fraction": g["value"], "trials_to_target": ttt,
                  "divergence_rate": div["value"]}
        cis = {"good_fraction": (g["lo"], g["hi"]), "divergence_rate": (div["lo"], div["hi"]),
               # 1/g is monotone, so the Wilson bounds map across (swapped)
               "trials_to_target": (trials_to_target(g["hi"]), trials_to_target(g["lo"]))}
        if "lr" in params:
            robust["lr_window"] = lr_window(trials.loc[good[arm], "lr"]) if len(trials) else 0.0
        rows += _rows("robustness", arm, robust, cis)
    metrics = pd.DataFrame(rows, columns=["section", "metric", "arm", *_VALUE_COLS])

    # Δ CIs by bootstrap: pairs resampled together in the paired design (s* held fixed).
    def flag_diff_ci(on_flags, off_flags, tag: str):
        if pairs is not None:
            return bootstrap_ci(_diff_of_means, on_flags, off_flags, paired=True, n_boot=n_boot, seed=seed, tag=tag)
        return bootstrap_ci(_diff_of_means, on_flags, off_flags, n_boot=n_boot, seed=seed, tag=tag)

    if pairs is not None:
        on_good_p = is_good(pairs["on"], s_star, tolerance)
        off_good_p = is_good(pairs["off"], s_star, tolerance)
        div_by_cfg = {arm: arms[arm].drop_duplicates("config_index").set_index("config_index")["diverged"]
                      for arm in ARMS}
        cfg = pairs["config_index"].to_numpy()
        div_on_p = np.asarray(div_by_cfg["bn-on"].reindex(cfg).fillna(False), bool)
        div_off_p = np.asarray(div_by_cfg["bn-off"].reindex(cfg).fillna(False), bool)
        good_ci = flag_diff_ci(on_good_p.astype(float), off_good_p.astype(float), "good")
        div_ci = flag_diff_ci(div_on_p.astype(float), div_off_p.astype(float), "div")
    else:
        good_ci = flag_diff_ci(good["bn-on"].astype(float), good["bn-off"].astype(float), "good")
        div_flags = {arm: np.asarray(arms[arm]["diverged"].fillna(False), float) if len(arms[arm]) else np.array([])
                     for arm in ARMS}
        div_ci = flag_diff_ci(div_flags["bn-on"], div_flags["bn-off"], "div")
    metrics = _with_delta(metrics, TABLE_KEYS["metrics"], {("robustness", "good_fraction"): good_ci,
                                                           ("robustness", "divergence_rate"): div_ci})

    # ---- tuning curves
    curve_frames = []
    for arm in ARMS:
        if sampler in ADAPTIVE_SAMPLERS:
            bsf = best_so_far(scores[arm])
            if bsf.size:
                curve_frames.append(pd.DataFrame({"estimator": "best-so-far", "n": np.arange(1, bsf.size + 1),
                                                  "arm": arm, "value": bsf, "lo": math.nan, "hi": math.nan}))
        else:
            for est in ("V", "U"):
                c = tuning_curve(scores[arm], est, n_boot=n_boot, seed=seed + (0 if arm == "bn-on" else 1))
                if not c.empty:
                    curve_frames.append(c.assign(estimator=est, arm=arm))
    curves = pd.concat(curve_frames, ignore_index=True) if curve_frames else pd.DataFrame()
    curves = curves.reindex(columns=["estimator", "n", "arm", *_VALUE_COLS])
    curves["n"] = curves["n"].astype("int64")
    curves = _with_delta(curves, TABLE_KEYS["curves"])
    if sampler in ADAPTIVE_SAMPLERS:
        notes.append(f"{sampler} is adaptive: tuning curves are best-so-far by trial number, "
                     "not the i.i.d. V/U estimates")

    # ---- importance
    imp_rows = []
    for arm in ARMS:
        for p, v in param_importances(arms[arm], distributions, evaluator=evaluator).items():
            imp_rows.append({"param": p, "arm": arm, "value": v, "lo": math.nan, "hi": math.nan})
    importance = _with_delta(pd.DataFrame(imp_rows, columns=["param", "arm", *_VALUE_COLS]), TABLE_KEYS["importance"])
    if importance["value"].isna().all() and len(importance):
        notes.append(f"importances need at least {MIN_IMPORTANCE_TRIALS} completed trials with varying scores per arm")

    # ---- sensitivity
    sens_rows = []
    for p in params:
        cat = _is_categorical(distributions[p])
        for arm in ARMS:
            t = arms[arm]
            v = (categorical_sensitivity(t[p], scores[arm]) if cat else numeric_sensitivity(t[p], scores[arm])) \
                if len(t) else math.nan
            sens_rows.append({"param": p, "kind": "categorical" if cat else "numeric",
                              "measure": "median range" if cat else "spearman rho",
                              "arm": arm, "value": v, "lo": math.nan, "hi": math.nan})
    sensitivity = _with_delta(pd.DataFrame(sens_rows, columns=TABLE_KEYS["sensitivity"] + _VALUE_COLS),
                              TABLE_KEYS["sensitivity"])

    # ---- tests
    test_rows: list[dict] = []

    def add(test, quantity, value, lo=math.nan, hi=math.nan, note=""):
        test_rows.append({"test": test, "quantity": quantity, "value": float(value), "lo": lo, "hi": hi, "note": note})

    g_on, g_off = (proportion(good[arm])["value"] for arm in ARMS)
    g_delta = g_on - g_off
    if pairs is not None:
        d = pairs["d"].to_numpy(float)
        W, p = wilcoxon_test(d)
        lo, hi = bootstrap_ci(_median, d, n_boot=n_boot, seed=seed, tag="median_d")
        add("wilcoxon", "n_pairs", d.size, note="configs COMPLETE in both arms")
        add("wilcoxon", "statistic", W, note="Wilcoxon signed-rank W (zero differences dropped)")
        add("wilcoxon", "p_value", p, note="two-sided")
        add("wilcoxon", "win_rate", np.mean(d > 0), note="share of configs where BN on scores higher")
        add("wilcoxon", "tie_rate", np.mean(d == 0), note="share of configs with equal scores")
        add("wilcoxon", "loss_rate", np.mean(d < 0), note="share of configs where BN off scores higher")
        add("wilcoxon", "median_d", np.median(d), lo, hi, note="median of d = s(on) - s(off), bootstrap CI")
        add("good_fraction", "diff", g_delta, *good_ci, note="g(on) - g(off), paired bootstrap CI")
        add("good_fraction", "p_value", mcnemar_exact(on_good_p, off_good_p), note="exact McNemar (paired)")
    else:
        a, b = scores["bn-on"], scores["bn-off"]
        U, p = mann_whitney(a, b)
        lo, hi = bootstrap_ci(_diff_of_medians, a, b, n_boot=n_boot, seed=seed, tag="median_diff")
        add("mann_whitney", "n_on", a.size)
        add("mann_whitney", "n_off", b.size)
        add("mann_whitney", "statistic", U, note="Mann-Whitney U of BN on")
        add("mann_whitney", "p_value", p, note="two-sided")
        add("mann_whitney", "prob_on_better", U / (a.size * b.size) if a.size and b.size else math.nan,
            note="P(on > off) + P(tie)/2 = U / (n_on n_off)")
        add("mann_whitney", "median_diff", np.median(a) - np.median(b) if a.size and b.size else math.nan, lo, hi,
            note="median(on) - median(off), bootstrap CI")
        add("good_fraction", "diff", g_delta, *good_ci, note="g(on) - g(off), bootstrap CI")
        add("good_fraction", "p_value", two_proportion_ztest(int(good["bn-on"].sum()), good["bn-on"].size,
                                                             int(good["bn-off"].sum()), good["bn-off"].size),
            note="pooled two-proportion z-test")
    tests = pd.DataFrame(test_rows, columns=[*TABLE_KEYS["tests"], *_VALUE_COLS, "note"])

    summary = Summary(experiment=experiment, task=task, sampler=sampler, paired=pairs is not None,
                      tolerance=float(tolerance), s_star=s_star, params=params, metrics=metrics, curves=curves,
                      importance=importance, sensitivity=sensitivity, tests=tests, notes=notes)
    summary.verdict = verdict(summary)
    return summary
