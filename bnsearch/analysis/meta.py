"""Pooling per-data-set effects across a panel: random-effects meta-analysis with
Hartung-Knapp-Sidik-Jonkman intervals, its prediction interval for a new data set, meta-regression on
one data-set trait, and a Bayesian signed-rank test with a region of practical equivalence that can
carry each data set's sampling uncertainty.

Pure functions of small tables; the library implementations do the work (statsmodels'
combine_effects and its conf_int, WLS, baycomp's SignedRankTest). Written out here, because the
libraries lack them:
* the prediction interval (Higgins, Thompson & Spiegelhalter 2009):
      pooled +- t_{k-2, 1-alpha/2} * sqrt(tau^2 + SE(pooled)^2), for k >= 3 data sets (NaN below);
* I^2 from the printed tau^2 (Higgins & Thompson 2002): tau^2 / (tau^2 + s^2) with the typical
  within-study variance s^2 = (k - 1) sum(w) / ((sum w)^2 - sum(w^2)), w = 1/v. statsmodels' i2 is
  the Q-based (Q - df)/Q, which matches DerSimonian-Laird's tau^2 only;
* the choice between statsmodels' two HKSJ-style intervals (the modified Knapp-Hartung rule, below).
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
    se: float  # its standard error (fixed scale 1)
    ci_low: float  # normal-based CI
    ci_high: float
    tau2: float  # between-data-set variance of the true effects
    i2: float  # tau2 / (tau2 + typical within-study variance), from THIS tau2, 0..1
    q: float  # Cochran's Q (fixed-effect weights)
    q_pvalue: float  # test of homogeneity (chi-square, k-1 df)
    pi_low: float  # prediction interval for the effect on a new data set (NaN when k < 3)
    pi_high: float
    weights: tuple[float, ...]  # relative random-effects weights, in input order
    hk_se: float = float("nan")  # Hartung-Knapp-Sidik-Jonkman SE (modified: never below se)
    hk_low: float = float("nan")  # HKSJ CI: pooled +- t_{k-1} * hk_se
    hk_high: float = float("nan")
    within_var: float = float("nan")  # the typical within-study variance s^2 of I^2

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


def typical_within_variance(variances) -> float:
    """Higgins & Thompson's (2002) typical within-study variance, (k - 1) sum(w) / ((sum w)^2 - sum w^2)."""
    w = 1.0 / np.asarray(variances, dtype=float)
    return float((len(w) - 1) * w.sum() / (w.sum() ** 2 - (w ** 2).sum()))


def random_effects(frame: pd.DataFrame, *, effect: str = "effect", variance: str | None = "variance",
                   se: str | None = None, method: str = "pm", alpha: float = 0.05) -> MetaResult:
    """Random-effects pooling of one effect per row of `frame` (column `effect`, and its sampling
    `variance` or standard error `se`). method "dl" (DerSimonian-Laird) or "pm" (Paule-Mandel).
    Two CIs: normal-based with scale 1 (ci_low/ci_high) and Hartung-Knapp-Sidik-Jonkman (hk_low/hk_high,
    t with k-1 df). I^2 is computed from the returned tau^2. At least 2 rows."""
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
        ci_fe, ci_re, ci_fe_hk, ci_re_hk = res.conf_int(alpha=alpha, use_t=True)
    if res.tau2 < 0:
        # statsmodels' DerSimonian-Laird is not truncated at 0 (Q < df gives a negative tau^2 and
        # wrong weights); the estimator is max(0, .), and with tau^2 = 0 random effects are fixed.
        tau2, pooled, sd, weights = 0.0, float(res.mean_effect_fe), float(res.sd_eff_w_fe), res.weights_rel_fe
        sd_hk, ci_t, ci_hk = float(res.sd_eff_w_fe_hksj), ci_fe, ci_fe_hk
    else:
        tau2, pooled, sd, weights = float(res.tau2), float(res.mean_effect_re), float(res.sd_eff_w_re), res.weights_rel_re
        sd_hk, ci_t, ci_hk = float(res.sd_eff_w_re_hksj), ci_re, ci_re_hk
    # HKSJ multiplies the variance by q = sum w*(y - mu)^2 / (k - 1). Below 1 (tau^2 truncated at 0,
    # effects closer than their variances say) it would give an interval narrower than the
    # fixed-scale one with the same t quantile; the modified rule (Roever, Knapp & Friede 2015) keeps
    # max(1, q), i.e. the wider of statsmodels' two t-based intervals. With Paule-Mandel at tau^2 > 0,
    # q = 1 by PM's estimating equation, so HKSJ is the PM SE with a t_{k-1} quantile.
    if sd_hk < sd:
        sd_hk, ci_hk = sd, ci_t
    z = stats.norm.ppf(1 - alpha / 2)
    q, df = float(res.q), len(y) - 1
    s2 = typical_within_variance(v)
    pi = prediction_interval(pooled, sd, tau2, len(y), alpha)
    return MetaResult(method=method, k=len(y), pooled=pooled, se=sd, ci_low=float(pooled - z * sd),
                      ci_high=float(pooled + z * sd), tau2=tau2, i2=tau2 / (tau2 + s2), q=q,
                      q_pvalue=float(stats.chi2.sf(q, df)), pi_low=pi[0], pi_high=pi[1],
                      weights=tuple(float(w) for w in weights), hk_se=sd_hk, hk_low=float(ci_hk[0]),
                      hk_high=float(ci_hk[1]), within_var=s2)


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
    draws: int = 1  # 1: point values per data set; more: averaged over draws of each data set's effect

    def as_dict(self) -> dict:
        return asdict(self)


def bayes_signed_rank(first, second, rope: float, *, seed: int = 0, nsamples: int = 50000) -> SignedRank:
    """Bayesian signed-rank test (Benavoli et al. 2014, baycomp) over data sets, with a region of
    practical equivalence `rope` on the score's scale. Seeded: the same inputs give the same
    probabilities.

    `first` and `second`: one value per data set for the two arms, paired by position (1-d), or
    draws x data sets (2-d): each row one joint draw of every data set's value from its sampling
    distribution. baycomp's test treats each data set's value as exact; with draws, the posterior
    is the mixture over them (nsamples / draws Dirichlet samples per draw, pooled), so a data set
    measured on few configurations moves the probabilities less firmly than one measured on many.
    baycomp's hierarchical test would model that directly but needs Stan (pystan) and per-data-set
    cross-validation folds, neither of which a panel has."""
    import baycomp
    from baycomp.multiple import Posterior

    x, y = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if x.shape != y.shape or x.ndim not in (1, 2) or x.shape[-1] < 2:
        raise ValueError("first and second must have the same shape (data sets, or draws x data sets), "
                         "at least 2 data sets")
    if rope <= 0:
        raise ValueError("rope must be > 0")
    if x.ndim == 1:
        p = baycomp.SignedRankTest.probs(x, y, rope, nsamples=nsamples, random_state=seed)
        return SignedRank(k=len(x), rope=float(rope), p_better=float(p[0]), p_equivalent=float(p[1]),
                          p_worse=float(p[2]))
    per = max(1, nsamples // len(x))
    seeds = np.random.SeedSequence(seed).generate_state(len(x))
    sample = np.concatenate([baycomp.SignedRankTest.sample(a, b, rope, nsamples=per, random_state=int(s))
                             for a, b, s in zip(x, y, seeds)])
    p = Posterior(sample).probs()
    return SignedRank(k=x.shape[1], rope=float(rope), p_better=float(p[0]), p_equivalent=float(p[1]),
                      p_worse=float(p[2]), draws=len(x))
