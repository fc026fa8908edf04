"""Pooling across data sets: random effects (DerSimonian-Laird, Paule-Mandel), their
Hartung-Knapp-Sidik-Jonkman intervals and I^2 from the printed tau^2 against hand arithmetic, the
prediction interval, meta-regression and the Bayesian signed-rank test (its ROPE, and draws that carry
each data set's uncertainty)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bnsearch.analysis.meta import bayes_signed_rank, meta_regression, prediction_interval, random_effects

# Three data sets: effects 0.1, 0.3, 0.5 with sampling variances 0.01, 0.02, 0.04.
# t with 2 df has a closed form: t_{2, p} = (2p - 1) / sqrt(2 p (1 - p)); p = 0.975: 4.3026527297.
T2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)
THREE = pd.DataFrame({"effect": [0.1, 0.3, 0.5], "variance": [0.01, 0.02, 0.04]})


def test_dersimonian_laird_by_hand():
    # Fixed-effect weights 1/v: 100, 50, 25 (sum 175).
    w = [100.0, 50.0, 25.0]
    fixed = (100 * 0.1 + 50 * 0.3 + 25 * 0.5) / 175  # 37.5 / 175 = 0.2142857
    q = 100 * (0.1 - fixed) ** 2 + 50 * (0.3 - fixed) ** 2 + 25 * (0.5 - fixed) ** 2  # 3.7142857
    c = 175 - (100 ** 2 + 50 ** 2 + 25 ** 2) / 175  # 175 - 13125/175 = 100
    tau2 = (q - 2) / c  # (Q - df) / C = 0.0171429
    i2 = (q - 2) / q  # 0.4615
    w_re = [1 / (0.01 + tau2), 1 / (0.02 + tau2), 1 / (0.04 + tau2)]
    pooled = (w_re[0] * 0.1 + w_re[1] * 0.3 + w_re[2] * 0.5) / sum(w_re)
    se = math.sqrt(1 / sum(w_re))
    assert q == pytest.approx(26 / 7) and tau2 == pytest.approx(0.12 / 7) and sum(w) == 175

    r = random_effects(THREE, method="dl")
    assert r.k == 3 and r.method == "dl"
    assert r.q == pytest.approx(q, rel=1e-12)
    assert r.tau2 == pytest.approx(tau2, rel=1e-12)
    assert r.i2 == pytest.approx(i2, rel=1e-12)
    assert r.pooled == pytest.approx(pooled, rel=1e-12)
    assert r.se == pytest.approx(se, rel=1e-12)
    assert (r.ci_low, r.ci_high) == pytest.approx((pooled - 1.959963984540054 * se, pooled + 1.959963984540054 * se))
    assert sum(r.weights) == pytest.approx(1.0) and r.weights[0] == pytest.approx(w_re[0] / sum(w_re))
    assert r.q_pvalue == pytest.approx(math.exp(-q / 2))  # chi-square with 2 df: P(X > q) = exp(-q/2)

    # Prediction interval (Higgins et al. 2009): pooled +- t_{k-2} sqrt(tau^2 + se^2); t_{1, 0.975} = 12.7062047
    half = 12.706204736174707 * math.sqrt(tau2 + se ** 2)
    assert (r.pi_low, r.pi_high) == pytest.approx((pooled - half, pooled + half), rel=1e-9)

    # HKSJ: the variance scaled by q = sum w*(y - mu)^2 / (k - 1), t with k - 1 = 2 df (t = 4.3026527).
    # Here q = 0.99477 < 1, so the modified rule (scale max(1, q)) keeps the fixed-scale SE.
    q_hk = sum(wi * (yi - pooled) ** 2 for wi, yi in zip(w_re, (0.1, 0.3, 0.5))) / 2
    assert q_hk == pytest.approx(0.9947690, rel=1e-6)
    se_hk = math.sqrt(max(1.0, q_hk) / sum(w_re))
    assert r.hk_se == pytest.approx(se_hk, rel=1e-12)
    assert (r.hk_low, r.hk_high) == pytest.approx((pooled - T2 * se_hk,
                                                   pooled + T2 * se_hk), rel=1e-12)
    # Higgins & Thompson's I^2 from DL's tau^2 is the Q-based (Q - df)/Q (checked above), through the
    # typical within-study variance s^2 = (k - 1) sum w / ((sum w)^2 - sum w^2) = 350 / 17500 = 0.02
    # (= (k - 1) / C with C = 100 above).
    assert r.within_var == pytest.approx(0.02, rel=1e-12)
    assert tau2 / (tau2 + 0.02) == pytest.approx(i2, rel=1e-12)


def test_paule_mandel_hksj_and_i2_by_hand():
    """PM's tau^2 solves sum (y - mu)^2 / (v + tau^2) = k - 1 (solved here with brentq, not by
    statsmodels' iteration); I^2 is tau^2 / (tau^2 + s^2) from that tau^2, which here is well above
    the Q-based (Q - df)/Q; and since PM's equation makes q = 1, HKSJ is mu +- t_{k-1} SE."""
    from scipy import optimize

    y, v = np.array([0.05, 0.3, 0.1, 0.45]), np.array([0.002, 0.01, 0.004, 0.03])

    def gen_q(t2):
        w = 1 / (v + t2)
        mu = (w * y).sum() / w.sum()
        return (w * (y - mu) ** 2).sum() - 3

    tau2 = optimize.brentq(gen_q, 0.0, 1.0, xtol=1e-14)  # 0.019704
    w = 1 / (v + tau2)
    mu, se = (w * y).sum() / w.sum(), math.sqrt(1 / w.sum())
    r = random_effects(pd.DataFrame({"effect": y, "variance": v}), method="pm")
    assert r.tau2 == pytest.approx(tau2, rel=1e-4)  # statsmodels stops at |Q_gen - df| < 1e-5
    assert (r.pooled, r.se) == pytest.approx((mu, se), rel=1e-5)
    # s^2 = (k - 1) sum w / ((sum w)^2 - sum w^2) with w = 1/v = 500, 100, 250, 100/3
    sw, sw2 = 500 + 100 + 250 + 100 / 3, 500 ** 2 + 100 ** 2 + 250 ** 2 + (100 / 3) ** 2
    s2 = 3 * sw / (sw ** 2 - sw2)  # 0.0058029
    assert r.within_var == pytest.approx(s2, rel=1e-12)
    assert r.i2 == pytest.approx(tau2 / (tau2 + s2), rel=1e-4)  # 0.7725
    assert r.i2 - (r.q - 3) / r.q > 0.09  # the Q-based I^2 (0.677) belongs to DL's tau^2, not this one
    t3 = 3.182446305284263  # t_{3, 0.975}
    assert (r.hk_low, r.hk_high) == pytest.approx((mu - t3 * se, mu + t3 * se), rel=1e-5)
    assert (r.ci_low, r.ci_high) == pytest.approx((mu - 1.959963984540054 * se, mu + 1.959963984540054 * se),
                                                  rel=1e-5)


def test_hksj_is_never_narrower_than_the_fixed_scale_interval():
    """Effects closer than their variances say (q < 1): plain HKSJ would shrink the interval; the
    modified rule keeps scale 1 (Roever, Knapp & Friede 2015), i.e. mu +- t_{k-1} SE."""
    close = pd.DataFrame({"effect": [0.20, 0.22, 0.21], "variance": [0.01, 0.04, 0.01]})
    fixed = (100 * 0.20 + 25 * 0.22 + 100 * 0.21) / 225
    q_hk = (100 * (0.20 - fixed) ** 2 + 25 * (0.22 - fixed) ** 2 + 100 * (0.21 - fixed) ** 2) / 2
    assert q_hk < 1
    for method in ("dl", "pm"):
        r = random_effects(close, method=method)
        assert r.tau2 == 0.0 and r.i2 == 0.0
        assert r.hk_se == pytest.approx(math.sqrt(1 / 225), rel=1e-12)
        assert (r.hk_low, r.hk_high) == pytest.approx((fixed - T2 / 15, fixed + T2 / 15),
                                                      rel=1e-9)


def test_prediction_interval_formula_and_small_k():
    # k = 5: t_{3, 0.975} = 3.1824463; sqrt(0.03 + 0.01) = 0.2
    lo, hi = prediction_interval(0.25, 0.1, 0.03, 5)
    assert (lo, hi) == pytest.approx((0.25 - 3.182446305284263 * 0.2, 0.25 + 3.182446305284263 * 0.2), rel=1e-9)
    assert all(math.isnan(x) for x in prediction_interval(0.25, 0.1, 0.03, 2))


def test_homogeneous_effects_have_no_heterogeneity_and_se_input_matches_variance():
    same = pd.DataFrame({"effect": [0.2, 0.2, 0.2, 0.2], "se": [0.1, 0.2, 0.1, 0.3]})
    for method in ("dl", "pm"):
        r = random_effects(same, se="se", method=method)
        assert r.tau2 == pytest.approx(0.0, abs=1e-12) and r.i2 == 0.0 and r.pooled == pytest.approx(0.2)
    as_var = THREE.assign(se=np.sqrt(THREE["variance"]))
    assert random_effects(as_var, se="se", method="pm").pooled == pytest.approx(
        random_effects(THREE, method="pm").pooled, rel=1e-12)


def test_dersimonian_laird_truncates_tau2_at_zero():
    """Q below its degrees of freedom: tau^2 = max(0, (Q - df) / C) = 0, so the pooled effect is
    the fixed-effect one (statsmodels alone would weight with a negative tau^2)."""
    close = pd.DataFrame({"effect": [0.20, 0.22, 0.21], "variance": [0.01, 0.04, 0.01]})
    fixed = (100 * 0.20 + 25 * 0.22 + 100 * 0.21) / 225  # weights 1/v = 100, 25, 100
    q = 100 * (0.20 - fixed) ** 2 + 25 * (0.22 - fixed) ** 2 + 100 * (0.21 - fixed) ** 2
    assert q < 2
    r = random_effects(close, method="dl")
    assert r.tau2 == 0.0 and r.i2 == 0.0 and r.q == pytest.approx(q)
    assert r.pooled == pytest.approx(fixed, rel=1e-12) and r.se == pytest.approx(math.sqrt(1 / 225), rel=1e-12)
    assert r.weights == pytest.approx((100 / 225, 25 / 225, 100 / 225))


def test_paule_mandel_solves_its_estimating_equation():
    """PM's tau^2 makes the generalised Q equal its degrees of freedom."""
    r = random_effects(THREE, method="pm")
    v = THREE["variance"].to_numpy()
    y = THREE["effect"].to_numpy()
    w = 1 / (v + r.tau2)
    mu = (w * y).sum() / w.sum()
    assert (w * (y - mu) ** 2).sum() == pytest.approx(2, rel=1e-5)
    assert r.pooled == pytest.approx(mu, rel=1e-6)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        random_effects(THREE.iloc[:1])
    with pytest.raises(ValueError, match="> 0"):
        random_effects(THREE.assign(variance=[0.01, 0.0, 0.02]))
    with pytest.raises(ValueError, match="method"):
        random_effects(THREE, method="reml")


def test_meta_regression_recovers_a_linear_moderator():
    traits = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    frame = pd.DataFrame({"effect": 0.05 + 0.02 * traits, "variance": [0.0004] * 6, "log_rows": traits})
    m = meta_regression(frame, "log_rows")
    assert m.slope == pytest.approx(0.02) and m.intercept == pytest.approx(0.05)
    assert m.supported and m.slope_ci_low > 0 and m.k == 6
    # Weights 1/(v + tau^2) with equal v: the slope's SE is sqrt((v + tau^2) / sum((x - mean)^2)).
    assert m.slope_se == pytest.approx(math.sqrt((0.0004 + m.tau2) / 17.5))
    flat = frame.assign(effect=[0.1, 0.12, 0.09, 0.11, 0.1, 0.1])
    assert not meta_regression(flat, "log_rows").supported
    with pytest.raises(ValueError, match="vary"):
        meta_regression(frame.assign(log_rows=1.0), "log_rows")


def test_bayes_signed_rank_is_seeded_and_points_the_right_way():
    off = np.array([0.60, 0.70, 0.55, 0.80, 0.65, 0.72, 0.58, 0.66])
    on = off + np.array([0.08, 0.05, 0.10, 0.04, 0.06, 0.07, 0.09, 0.05])
    a = bayes_signed_rank(on, off, rope=0.01, seed=3)
    assert a == bayes_signed_rank(on, off, rope=0.01, seed=3)
    assert a.p_better > 0.95 and a.p_better + a.p_equivalent + a.p_worse == pytest.approx(1.0)
    b = bayes_signed_rank(off, on, rope=0.01, seed=3)
    assert b.p_worse > 0.95
    tied = bayes_signed_rank(off + 0.001, off, rope=0.01, seed=3)
    assert tied.p_equivalent > 0.95


def test_bayes_signed_rank_rope_decides_what_counts_as_a_difference():
    # Every data set 5 pts ahead: a clear win with a 1-pt ROPE, practically equal with the 10-pt
    # practical margin of the per-data-set verdicts; 15 pts ahead is beyond either.
    off = np.array([0.30, 0.25, 0.40, 0.35, 0.20, 0.28, 0.33, 0.26])
    five, fifteen = off + 0.05, off + 0.15
    assert bayes_signed_rank(five, off, rope=0.01).p_better > 0.95
    assert bayes_signed_rank(five, off, rope=0.10).p_equivalent > 0.95
    assert bayes_signed_rank(fifteen, off, rope=0.10).p_better > 0.95
    with pytest.raises(ValueError, match="rope"):
        bayes_signed_rank(five, off, rope=0.0)


def test_bayes_signed_rank_over_draws_averages_the_posteriors():
    """2-d input: one row per joint draw of every data set's value. Identical rows give the point
    test's probabilities (pooled samples of the same posterior); spread-out draws of the same centre
    give a less certain answer, and the draws are seeded."""
    effects = np.array([0.14, 0.16, 0.15, 0.13, 0.17, 0.15])
    point = bayes_signed_rank(effects, np.zeros(6), rope=0.10, seed=1)
    same = bayes_signed_rank(np.tile(effects, (200, 1)), np.zeros((200, 6)), rope=0.10, seed=1)
    assert same.draws == 200 and same.k == 6
    assert same.p_better == pytest.approx(point.p_better, abs=0.02)
    rng = np.random.default_rng(0)
    noisy = effects + rng.normal(0, 0.08, (500, 6))
    spread = bayes_signed_rank(noisy, np.zeros_like(noisy), rope=0.10, seed=1)
    assert spread.p_better < point.p_better - 0.1  # measured: 0.79 vs 0.95
    assert spread == bayes_signed_rank(noisy, np.zeros_like(noisy), rope=0.10, seed=1)
