"""Pooling per-data-set effects across a panel: random-effects meta-analysis, its prediction
interval for a new data set, meta-regression on one data-set trait, and a Bayesian signed-rank
test with a region of practical equivalence.

Pure functions of small tables; the library implementations do the work (statsmodels'
combine_effects and WLS, baycomp's SignedRankTest). Only the prediction interval is written out
here: statsmodels has none. It follows Higgins, Thompson & Spiegelhalter (2009):
    pooled +- t_{k-2, 1-alpha/2} * sqrt(tau^2 + SE(pooled)^2),
defined for k >= 3 data sets (NaN below).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

METHODS = {"dl": "dl", "pm": "pm"}  # DerSimonian-Laird, Paule-Mandel (statsmodels' names)


@dataclass(frozen=True)
class MetaResult:
    method: str  # "dl" | "pm"
    k: int  # data sets pooled
    pooled: float  # random-effects pooled effect
    se: float  # its standard error
    ci_low: float
    ci_high: float
    tau2: float  # between-data-set variance of the true effects
    i2: float  # share of the total variation due to heterogeneity, 0..1
    q: float  # Cochran's Q
    q_pvalue: float  # test of homogeneity (chi-square, k-1 df)
    pi_low: float  # prediction interval for the effect on a new data set (NaN when k < 3)
    pi_high: float
    weights: tuple[float, ...]  # relative random-effects weights, in input order

    def as_dict(self) -> dict:
        return asdict(self)


def _variances(frame: pd.DataFrame, effect: str, variance: str | None, se: str | None) -> tuple[np.ndarray, np.ndarray]:
    if (variance is None) == (se is None):
        raise ValueError("give exactly one of variance= or se= (a column name)")
    y = frame[effect].to_numpy(dtype=float)
    v = frame[variance].to_numpy(dtype=float) if variance is not None else frame[se].to_numpy(dtype=float) ** 2
    if not (np.isfinite(y).all() and np.isfinite(v).all()):
        raise ValueError("effects and variances must be finite; drop data sets without an estimate first")
    if (v <= 0).any():
        raise ValueError("variances must be > 0")
    return y, v


def prediction_interval(pooled: float, se: float, tau2: float, k: int, alpha: float = 0.05) -> tuple[float, float]:
    """Where the true effect on a new data set is expected to lie (Higgins et al. 2009); NaN for k < 3."""
    from scipy import stats

    if k < 3:
        return float("nan"), float("nan")
    half = stats.t.ppf(1 - alpha / 2, k - 2) * np.sqrt(tau2 + se ** 2)
    return float(pooled - half), float(pooled + half)


def random_effects(frame: pd.DataFrame, *, effect: str = "effect", variance: str | None = "variance",
                   se: str | None = None, method: str = "pm", alpha: float = 0.05) -> MetaResult:
    """Random-effects pooling of one effect per row of `frame` (column `effect`, and its sampling
    `variance` or standard error `se`). method "dl" (DerSimonian-Laird) or "pm" (Paule-Mandel).
    The CI is normal-based (statsmodels' default); at least 2 rows."""
    from scipy import stats
    from statsmodels.stats.meta_analysis import combine_effects

    if se is not None and variance == "variance":
        variance = None
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)} (got {method!r})")
    y, v = _variances(frame, effect, variance, se)
    if len(y) < 2:
        raise ValueError("a meta-analysis needs at least 2 data sets")
    with np.errstate(all="ignore"):  # statsmodels divides by Q and takes sqrt of a negative variance when Q < df
        res = combine_effects(y, v, method_re=METHODS[method], use_t=False, alpha=alpha)
    if res.tau2 < 0:
        # statsmodels' DerSimonian-Laird is not truncated at 0 (Q < df gives a negative tau^2 and
        # wrong weights); the estimator is max(0, .), and with tau^2 = 0 random effects are fixed.
        tau2, pooled, sd, weights = 0.0, float(res.mean_effect_fe), float(res.sd_eff_w_fe), res.weights_rel_fe
    else:
        tau2, pooled, sd, weights = float(res.tau2), float(res.mean_effect_re), float(res.sd_eff_w_re), res.weights_rel_re
    z = stats.norm.ppf(1 - alpha / 2)
    q, df = float(res.q), len(y) - 1
    pi = prediction_interval(pooled, sd, tau2, len(y), alpha)
    return MetaResult(method=method, k=len(y), pooled=pooled, se=sd, ci_low=float(pooled - z * sd),
                      ci_high=float(pooled + z * sd), tau2=tau2, i2=max(0.0, (q - df) / q) if q > 0 else 0.0, q=q,
                      q_pvalue=float(stats.chi2.sf(q, df)), pi_low=pi[0], pi_high=pi[1],
                      weights=tuple(float(w) for w in weights))


@dataclass(frozen=True)
class MetaRegression:
    trait: str
    k: int
    tau2: float  # the between-data-set variance used in the weights
    intercept: float
    slope: float  # change in effect per unit of the trait
    slope_se: float
    slope_ci_low: float
    slope_ci_high: float
    slope_pvalue: float

    @property
    def supported(self) -> bool:
        """The slope's CI excludes 0: only then is the trait reported as a moderator."""
        return self.slope_ci_low > 0 or self.slope_ci_high < 0

    def as_dict(self) -> dict:
        return {**asdict(self), "supported": self.supported}


def meta_regression(frame: pd.DataFrame, trait: str, *, effect: str = "effect", variance: str | None = "variance",
                    se: str | None = None, tau2: float | None = None, method: str = "pm",
                    alpha: float = 0.05) -> MetaRegression:
    """Weighted least squares of the effect on one data-set trait, weights 1 / (v_i + tau^2).

    tau^2 defaults to the random-effects estimate without the trait (random_effects(method=...)).
    The weights are inverse variances, so the residual scale is fixed at 1 (normal-based CI and p),
    not re-estimated from the residuals. Needs at least 3 data sets and a trait that varies."""
    import statsmodels.api as sm

    if se is not None and variance == "variance":
        variance = None
    y, v = _variances(frame, effect, variance, se)
    x = frame[trait].to_numpy(dtype=float)
    if len(y) < 3:
        raise ValueError("a meta-regression needs at least 3 data sets")
    if not np.isfinite(x).all() or np.ptp(x) == 0:
        raise ValueError(f"trait {trait!r} must be finite and vary across data sets")
    if tau2 is None:
        tau2 = random_effects(frame, effect=effect, variance=variance, se=se, method=method, alpha=alpha).tau2
    fit = sm.WLS(y, sm.add_constant(x), weights=1.0 / (v + tau2)).fit(cov_type="fixed scale")
    lo, hi = fit.conf_int(alpha)[1]
    return MetaRegression(trait=trait, k=len(y), tau2=float(tau2), intercept=float(fit.params[0]),
                          slope=float(fit.params[1]), slope_se=float(fit.bse[1]), slope_ci_low=float(lo),
                          slope_ci_high=float(hi), slope_pvalue=float(fit.pvalues[1]))


@dataclass(frozen=True)
class SignedRank:
    k: int
    rope: float
    p_better: float  # P(the first arm scores higher by more than rope)
    p_equivalent: float
    p_worse: float

    def as_dict(self) -> dict:
        return asdict(self)


def bayes_signed_rank(first, second, rope: float, *, seed: int = 0, nsamples: int = 50000) -> SignedRank:
    """Bayesian signed-rank test (Benavoli et al. 2014, baycomp) over data sets: `first` and
    `second` are one score per data set for the two arms (e.g. BN on, BN off), paired by position;
    `rope` is the width of practical equivalence on the score's scale. Seeded: the same inputs give
    the same probabilities."""
    import baycomp

    x, y = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError("first and second must be 1-d, the same length, at least 2 data sets")
    if rope <= 0:
        raise ValueError("rope must be > 0")
    p = baycomp.SignedRankTest.probs(x, y, rope, nsamples=nsamples, random_state=seed)
    return SignedRank(k=len(x), rope=float(rope), p_better=float(p[0]), p_equivalent=float(p[1]), p_worse=float(p[2]))
