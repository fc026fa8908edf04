"""Analysis checked against small hand-computed examples (docs/design.md, Analysis).

Expected numbers are worked out in the comments, never taken from the code's own output.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from bnsearch import analysis as A

DIST = {
    "layers": IntDistribution(1, 4),
    "activation": CategoricalDistribution(["relu", "tanh"]),
    "lr": FloatDistribution(1e-4, 1.0, log=True),
    "batch_size": CategoricalDistribution([32, 64, 128, 256]),
}


def trials(on_scores, off_scores, *, diverged_on=(), diverged_off=(), lrs=None, paired=True,
           experiment="t") -> pd.DataFrame:
    """A trials DataFrame in the load_trials layout; config i has the same params in both arms."""
    rows = []
    for arm, scores, div in (("bn-on", on_scores, diverged_on), ("bn-off", off_scores, diverged_off)):
        for i, s in enumerate(scores):
            rows.append({
                "experiment": experiment, "arm": arm, "number": i, "state": "COMPLETE",
                "config_index": i if paired else pd.NA, "seed": 100 + i, "score": float(s),
                "test_score": float(s) - 0.01, "diverged": i in div, "epochs_run": 20, "seconds": 0.5,
                "layers": 1 + i % 4, "activation": ["relu", "tanh"][i % 2],
                "lr": (lrs[i] if lrs is not None else 10.0 ** (-4 + 4 * i / max(len(scores), 2))),
                "batch_size": [32, 64, 128, 256][i % 4],
            })
    df = pd.DataFrame(rows)
    df["config_index"] = df["config_index"].astype("Int64")
    return df


def summarize(df, **kw):
    args = dict(distributions=DIST, tolerance=0.01, paired=True, sampler="random", task="classification",
                seed=0, n_boot=300)
    args.update(kw)
    return A.summarize(df, **args)


# ----------------------------------------------------------------------------- per-arm statistics

def test_score_stats_by_hand():
    st = A.score_stats([0.9, 0.1, 0.5])
    # sorted 0.1 0.5 0.9: p25 halfway between 0.1 and 0.5 (linear interpolation) = 0.3, p75 = 0.7;
    # sample std: deviations -0.4, 0, 0.4 -> var = 0.32 / 2 = 0.16 -> 0.4
    assert st == pytest.approx({"best": 0.9, "median": 0.5, "p25": 0.3, "p75": 0.7, "mean": 0.5, "std": 0.4})
    assert math.isnan(A.score_stats([0.7])["std"])
    assert all(math.isnan(v) for v in A.score_stats([]).values())


def test_wilson_ci_by_hand():
    # 2/4, z = 1.959964: centre = (0.5 + z²/8) / (1 + z²/4) = 0.5;
    # half = z·sqrt(0.25/4 + z²/64) / (1 + z²/4) = 1.959964·0.350033 / 1.960365 = 0.349961
    lo, hi = A.wilson_ci(2, 4)
    assert lo == pytest.approx(0.150039, abs=1e-5) and hi == pytest.approx(0.849961, abs=1e-5)
    # 0/10: lo = 0, hi = (z²/10) / (1 + z²/10) = 0.384146 / 1.384146 = 0.277533
    lo, hi = A.wilson_ci(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.277533, abs=1e-5)
    assert all(math.isnan(x) for x in A.wilson_ci(0, 0))


def test_good_fraction_uses_shared_best():
    on, off = [0.90, 0.95, 0.70, 0.96], [0.99, 0.50, 0.985, 0.60]
    s_star = A.shared_best(on, off)
    assert s_star == 0.99
    # threshold 0.99 - 0.01 = 0.98: no BN-on trial is good (its own best 0.96 would have made 2 good)
    assert A.good_fraction(on, s_star, 0.01)["value"] == 0.0
    g_off = A.good_fraction(off, s_star, 0.01)
    assert (g_off["k"], g_off["n"], g_off["value"]) == (2, 4, 0.5)
    # Clopper-Pearson 2/4: the lower end solves P(X >= 2 | p) = 0.025, i.e. 1 - (1-p)^4 - 4p(1-p)^3 = 0.025
    # -> p = 0.067586; by symmetry the upper end is 1 - 0.067586 = 0.932414 (published tables: 0.0676, 0.9324)
    assert (g_off["lo"], g_off["hi"]) == pytest.approx((0.067586, 0.932414), abs=1e-5)
    p = 0.067586
    assert 1 - (1 - p) ** 4 - 4 * p * (1 - p) ** 3 == pytest.approx(0.025, abs=1e-5)
    # exactly at s* - δ counts despite float round-off (0.98 is not exactly 0.99 - 0.01)
    assert A.good_fraction([0.98], 0.99, 0.01)["value"] == 1.0


def test_trials_to_target_and_divergence_rate():
    assert A.trials_to_target(0.5) == 2.0
    assert A.trials_to_target(0.25) == 4.0
    assert A.trials_to_target(0.0) == math.inf
    assert A.divergence_rate([True, False, False, False]) == 0.25


def test_lr_window_from_smoothed_probability():
    # Three good trials at lr 1e-4 and three bad ones at 1e0. With one Gaussian kernel width for all,
    # P(good | x) = K(x + 4) / (K(x + 4) + K(x)) >= 1/2 exactly where |x + 4| <= |x|, i.e. x <= -2.
    # The grid has 200 points from -4 to 0 (step 4/199); x_i <= -2 for i = 0..99: 100 points span 99
    # steps -> 396/199 decades (the window from -4 to the last point at or below -2).
    lrs = [1e-4] * 3 + [1.0] * 3
    good = [True] * 3 + [False] * 3
    grid = A.lr_window_grid(lrs)
    width, lo, hi = A.lr_window_stat(lrs, good, grid, 0.5)
    assert width == pytest.approx(396 / 199)
    assert lo <= width <= hi
    # every trial good: P = 1 on the whole grid, exactly the 4 decades searched; none good: 0
    assert A.lr_window_stat(lrs, [True] * 6, grid, 0.5)[0] == pytest.approx(4.0)
    assert A.lr_window_stat(lrs, [False] * 6, grid, 0.5)[0] == 0.0
    # fewer than 5 trials: undefined, never 0
    assert all(math.isnan(x) for x in A.lr_window_stat(lrs[:4], good[:4], grid, 0.5))


# ----------------------------------------------------------------------------- tuning curves

def test_curve_grid():
    assert A.curve_grid(10) == [1, 2, 4, 8, 10]
    assert A.curve_grid(8) == [1, 2, 4, 8]
    assert A.curve_grid(1) == [1]
    assert A.curve_grid(0) == []


def test_v_estimate_by_hand():
    v = [0.9, 0.1, 0.5]
    # n=2: 0.1·(1/9) + 0.5·(4/9 - 1/9) + 0.9·(9/9 - 4/9) = (0.1 + 1.5 + 4.5) / 9 = 6.1/9
    assert A.v_estimate(v, 2) == pytest.approx(6.1 / 9)
    # n=1 is the mean; n=3: 0.1·1/27 + 0.5·7/27 + 0.9·19/27 = 20.7/27
    assert A.v_estimate(v, 1) == pytest.approx(0.5)
    assert A.v_estimate(v, 3) == pytest.approx(20.7 / 27)


def test_u_estimate_by_hand():
    v = [0.9, 0.1, 0.5]
    assert A.u_estimate(v, 1) == pytest.approx(0.5)  # n = 1: the mean
    assert A.u_estimate(v, 3) == pytest.approx(0.9)  # n = N: the max
    # n=2: 0.5·C(1,1)/C(3,2) + 0.9·C(2,1)/C(3,2) = 0.5/3 + 1.8/3 = 2.3/3
    # (= mean of the pair maxima: (0.5 + 0.9 + 0.9) / 3)
    assert A.u_estimate(v, 2) == pytest.approx(2.3 / 3)
    # larger N does not overflow: N = 2000 values 0..1999, n = N is the max
    assert A.u_estimate(np.arange(2000.0), 2000) == pytest.approx(1999.0)
    with pytest.raises(ValueError):
        A.u_weights(3, 4)


def test_tuning_curve_band_and_constant_scores():
    curve = A.tuning_curve([0.9, 0.1, 0.5, 0.7], "U", n_boot=200, seed=0)
    assert curve["n"].tolist() == [1, 2, 4]
    # sorted 0.1 0.5 0.7 0.9: n=1 mean 0.55; n=2 (0.5·1 + 0.7·2 + 0.9·3) / C(4,2) = 4.6/6; n=4 max 0.9
    assert curve["value"].tolist() == pytest.approx([0.55, 4.6 / 6, 0.9])
    assert (curve["lo"] <= curve["value"] + 1e-12).all() and (curve["value"] <= curve["hi"] + 1e-12).all()
    flat = A.tuning_curve([0.4, 0.4, 0.4], "V", n_boot=50)
    assert flat[["value", "lo", "hi"]].to_numpy() == pytest.approx(np.full((3, 3), 0.4))
    assert A.tuning_curve([], "V").empty


def test_best_so_far():
    assert A.best_so_far([0.3, 0.1, 0.5, 0.4]).tolist() == [0.3, 0.3, 0.5, 0.5]


# ----------------------------------------------------------------------------- sensitivity, importance

def test_categorical_sensitivity_is_range_of_medians():
    values = ["relu", "relu", "relu", "tanh", "tanh"]
    scores = [0.9, 0.8, 0.7, 0.5, 0.6]
    # median relu 0.8, median tanh 0.55 -> 0.25
    assert A.categorical_sensitivity(values, scores) == pytest.approx(0.25)
    assert math.isnan(A.categorical_sensitivity(["relu", "relu"], [0.1, 0.2]))  # one value: undefined
    assert A.categorical_sensitivity([32, 64, 64], [0.2, 0.4, 0.6]) == pytest.approx(0.3)  # ints work


def test_numeric_sensitivity_is_spearman():
    # ranks x 1 2 3 4, y 1 3 2 4: d = 0, -1, 1, 0, Σd² = 2 -> rho = 1 - 6·2 / (4·15) = 0.8
    assert A.numeric_sensitivity([1, 2, 3, 4], [0.1, 0.3, 0.2, 0.4]) == pytest.approx(0.8)
    assert math.isnan(A.numeric_sensitivity([1, 2, 3], [0.5, 0.5, 0.5]))  # constant score
    assert math.isnan(A.numeric_sensitivity([1, 2], [0.1, 0.2]))  # too few


def test_importance_finds_the_parameter_that_matters_and_degrades_gracefully():
    rng = np.random.default_rng(0)
    lrs = 10 ** rng.uniform(-4, 0, 30)
    scores = 1 - np.abs(np.log10(lrs) + 2) / 2  # only lr matters
    df = trials(scores, scores, lrs=lrs)
    imp = A.param_importances(df[df["arm"] == "bn-on"], DIST)
    assert set(imp) == set(DIST)
    assert max(imp, key=imp.get) == "lr" and imp["lr"] > 0.5
    assert sum(imp.values()) == pytest.approx(1.0)
    # constant scores or too few trials: NaN, not Optuna's meaningless equal shares
    flat = trials([0.5] * 10, [0.5] * 10)
    assert all(math.isnan(v) for v in A.param_importances(flat[flat["arm"] == "bn-on"], DIST).values())
    few = trials([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert all(math.isnan(v) for v in A.param_importances(few[few["arm"] == "bn-on"], DIST).values())


# ----------------------------------------------------------------------------- tests

def test_wilcoxon_by_hand():
    # all five differences positive: W = 0; exact two-sided p = 2 · (1/2^5) = 0.0625
    assert A.wilcoxon_test([0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx((0.0, 0.0625))
    # one negative of rank 1: W = 1; P(W+ <= 1) = 2/32 -> p = 0.125
    assert A.wilcoxon_test([-0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx((1.0, 0.125))
    # a zero difference is dropped: same as the first case
    assert A.wilcoxon_test([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])[1] == pytest.approx(0.0625)
    assert all(math.isnan(x) for x in A.wilcoxon_test([0.0, 0.0]))  # all ties: undefined


def test_mann_whitney_by_hand():
    # every BN-on score below every BN-off score: U = 0; exact p = 2 / C(6,3) = 0.1
    assert A.mann_whitney([1, 2, 3], [4, 5, 6]) == pytest.approx((0.0, 0.1))
    assert all(math.isnan(x) for x in A.mann_whitney([], [1.0]))


def test_proportion_tests_by_hand():
    # McNemar exact: 5 discordant pairs, all good with BN only: p = 2 · 0.5^5 = 0.0625
    assert A.mcnemar_exact([1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]) == pytest.approx(0.0625)
    assert A.mcnemar_exact([1, 0], [1, 0]) == 1.0
    # z-test 5/10 vs 1/10: pooled 0.3, se = sqrt(0.3·0.7·0.2) = 0.204939, z = 1.951800,
    # p = 2·(1 - Φ(1.9518)) = 0.050962
    assert A.two_proportion_ztest(5, 10, 1, 10) == pytest.approx(0.050962, abs=1e-5)
    assert A.two_proportion_ztest(0, 5, 0, 5) == 1.0


def test_t_interval_by_hand():
    # mean 2, sd 1, se 1/sqrt(3) = 0.577350, t(0.975, 2) = 4.302653 -> half 2.484138
    mean, lo, hi = A.t_interval([1.0, 2.0, 3.0])
    assert (mean, lo, hi) == pytest.approx((2.0, -0.484138, 4.484138), abs=1e-5)
    mean, lo, hi = A.t_interval([5.0])
    assert mean == 5.0 and math.isnan(lo) and math.isnan(hi)


# ----------------------------------------------------------------------------- summarize

def test_summarize_small_paired_example_by_hand():
    on, off = [0.90, 0.95, 0.70, 0.96], [0.99, 0.50, 0.985, 0.60]
    s = summarize(trials(on, off, diverged_on={2}))
    assert s.s_star == 0.99 and s.paired
    assert s.metric("best", "bn-on")[0] == 0.96
    # Config 0 sets s* (0.99, BN off) and is the reference, left out of the good counts: configs 1..3
    # remain. Good (>= 0.98): BN on none; BN off config 2 only (0.985) -> 0/3 and 1/3.
    assert s.metric("good_fraction", "bn-on")[0] == 0.0
    # Clopper-Pearson 95% for 1/3: lower 1 - 0.975^(1/3) = 0.008404; upper solves
    # (1-p)^3 + 3p(1-p)^2 = 0.025 -> p = 0.905701
    assert s.metric("good_fraction", "bn-off")[:3] == pytest.approx((1 / 3, 0.008404, 0.905701), abs=1e-5)
    assert (1 - 0.905701) ** 3 + 3 * 0.905701 * (1 - 0.905701) ** 2 == pytest.approx(0.025, abs=1e-5)
    assert s.metric("good_fraction", A.DELTA)[0] == pytest.approx(-1 / 3)
    assert s.metric("trials_to_target", "bn-on")[0] == math.inf
    assert s.metric("trials_to_target", "bn-off")[0] == pytest.approx(3.0)
    assert s.metric("divergence_rate", "bn-on")[0] == 0.25
    assert s.metric("test_at_best", "bn-off")[0] == pytest.approx(0.98)
    # d = -0.09, 0.45, -0.285, 0.36: |d| ranks 1, 4, 2, 3 -> W+ = 7, W- = 3 = W;
    # P(W+ <= 3) over 16 sign patterns = 5/16 ({}, {1}, {2}, {3}, {1,2}) -> p = 10/16
    assert s.test("wilcoxon", "statistic")[0] == 3.0
    assert s.test("wilcoxon", "p_value")[0] == pytest.approx(0.625)
    assert s.test("wilcoxon", "win_rate")[0] == 0.5
    assert s.test("wilcoxon", "tie_rate")[0] == 0.0
    # Hodges-Lehmann: the 10 Walsh averages -0.285, -0.1875, -0.09, 0.0375, 0.0825, 0.135, 0.18, 0.36,
    # 0.405, 0.45 have median (0.0825 + 0.135) / 2 = 0.10875
    assert s.test("wilcoxon", "median_d")[0] == pytest.approx(0.10875)
    # 3 configurations left, at most 1 discordant: the test cannot reject
    assert s.test("good_fraction", "p_value")[0] >= 0.05
    # V at n=1 is the arm mean
    v1 = s.curves.query("estimator == 'V' and n == 1 and arm == 'bn-on'")["value"].iloc[0]
    assert v1 == pytest.approx(np.mean(on))
    assert "cannot tell" in s.verdict and "only 4" in s.verdict


def test_summarize_uses_only_complete_trials_and_pairs_by_config_index():
    df = trials([0.9, 0.8, 0.7], [0.6, 0.5, 0.4])
    extra = df.iloc[[0]].assign(number=3, state="FAIL", score=np.nan)
    running = df.iloc[[4]].assign(number=3, state="RUNNING", score=np.nan)
    df = pd.concat([df, extra, running], ignore_index=True).sample(frac=1, random_state=1)  # shuffled rows
    s = summarize(df)
    assert s.metric("n_trials", "bn-on")[0] == 4 and s.metric("n_complete", "bn-on")[0] == 3
    assert s.test("wilcoxon", "n_pairs")[0] == 3
    assert s.test("wilcoxon", "median_d")[0] == pytest.approx(0.3)  # d = 0.3 for every config


def test_summarize_unpaired_uses_mann_whitney_and_newcombe():
    on = [0.95] * 5 + [0.5] * 5
    off = [0.95] * 1 + [0.5] * 9
    s = summarize(trials(on, off, paired=False), paired=False)
    assert not s.paired
    # The first 0.95 (BN on, trial 0) is the reference: 4/9 good with BN, 1/10 without.
    assert s.metric("good_fraction", "bn-on")[0] == pytest.approx(4 / 9)
    assert s.test("good_fraction", "diff")[0] == pytest.approx(4 / 9 - 1 / 10)
    lo, hi = s.test("good_fraction", "diff")[1:]
    p = s.test("good_fraction", "p_value")[0]
    assert (lo > 0) == (p < 0.05)  # the interval and its test agree
    # U = pairs (on > off) + ties/2: 5 high on vs 9 low off = 45; ties 5·1 + 5·9 = 50 -> U = 45 + 25 = 70
    assert s.test("mann_whitney", "statistic")[0] == 70
    assert s.test("mann_whitney", "prob_on_better")[0] == pytest.approx(0.70)
    assert s.curves["estimator"].unique().tolist() == ["V", "U"]


def test_paired_requested_without_config_index_falls_back_to_unpaired():
    s = summarize(trials([0.9, 0.8, 0.7, 0.6, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1], paired=False), paired=True)
    assert not s.paired and "mann_whitney" in s.tests["test"].tolist()
    assert any("unpaired" in n for n in s.notes)


def test_adaptive_sampler_uses_best_so_far_curves():
    df = trials([0.3, 0.1, 0.5, 0.4], [0.2, 0.6, 0.1, 0.7]).sample(frac=1, random_state=0)
    s = summarize(df, sampler="tpe")
    on = s.curves.query("arm == 'bn-on'")
    assert on["estimator"].unique().tolist() == ["best-so-far"]
    assert on.sort_values("n")["value"].tolist() == [0.3, 0.3, 0.5, 0.5]  # ordered by trial number


def _clear_case(task="classification", scale=1.0):
    # 30 paired configs: with BN 27 good (configs 0..26), without BN 3 good (configs 0..2)
    on = [0.95 * scale] * 27 + [0.5 * scale] * 3
    off = [0.95 * scale] * 3 + [0.5 * scale] * 27
    return summarize(trials(on, off), task=task)


def test_verdict_clear_case():
    s = _clear_case()
    v = s.verdict
    # Config 0 sets s* and is left out: 29 configs, BN on good in 26, BN off in 2 (configs 1, 2).
    # g = 26/29 = 89.7% and 2/29 = 6.9%, difference 24/29 = +82.8 pts; b = 24, c = 0 discordant pairs.
    # Levels: 10 profile levels (0..8 x 0.01, all the same flags) and the pooled median 0.5 (δ = 0.45,
    # every configuration good); the top-10%/25% quantiles are 0.95 itself (δ = 0, already a level).
    # Every level ties at the largest |z|, so the claim quotes the declared δ itself.
    assert v.startswith("The search was easier with BN than without BN: of the 29 configurations run in both arms "
                        "(the one that set the best score left out), 90% reach within 1 pt of the best accuracy (the "
                        "declared δ) with BN and 7% without BN: +83 pts (95% CI +")
    assert "simultaneous over 11 quality levels from the best score down to the median; test over all of them " \
           "p < 0.001)." in v
    assert s.outcome == "easier"
    d, lo, hi = s.metric("good_fraction", A.DELTA)
    assert d == pytest.approx(24 / 29)
    # The interval is Tango's at the test's critical value c, the larger of two. The sign-flip null's:
    # b = 24 discordant pairs all one way, so |z| = |2B - 24| / sqrt(24) and P(|z| > c) < 0.05 first for
    # c = 10 / sqrt(24) = 2.0412 (B <= 6 or >= 18: 2 * 0.011330 = 0.0227; B <= 7 or >= 17 would be
    # 2 * 0.031957 = 0.0639). Bonferroni's over 11 levels: z at 1 - 0.05 / 22 = 0.997727 is 2.8376.
    c = s.primary["critical"]
    assert 10 / math.sqrt(24) < 2.8376
    assert c == pytest.approx(2.8376, abs=1e-4)
    # Tango's score statistic written out (Tango 1998, eq. 3): at the ends it equals -+c.
    def tango(delta, b=24, cc=0, n=29):
        A_, B_, C_ = 2 * n, -b - cc + (2 * n - b + cc) * delta, -cc * delta * (1 - delta)
        p01 = (math.sqrt(B_ * B_ - 4 * A_ * C_) - B_) / (2 * A_)
        return (b - cc - n * delta) / math.sqrt(n * (2 * p01 + delta * (1 - delta)))
    assert tango(lo) == pytest.approx(c, abs=1e-6) and (hi == 1.0 or tango(hi) == pytest.approx(-c, abs=1e-6))
    # 1/g = 29/26 = 1.1 and 29/2 = 14.5
    assert "needs 1.1 trials (95% CI" in v and "14.5 trials (95% CI" in v
    assert "cannot tell" not in v and v.endswith("These conclusions hold for this search space.")


def test_verdict_cannot_tell_names_the_trials_that_would_settle_it():
    # BN on good in configs 0..4, BN off in 5..9, 20 configs. Config 0 (first 0.95) is the reference:
    # left out, b = 4, c = 5 over 19 configs -> difference -1/19 = -5 pts; exact McNemar p = 1.
    on = [0.95] * 5 + [0.5] * 15
    off = [0.5] * 5 + [0.95] * 5 + [0.5] * 10
    s = summarize(trials(on, off))
    assert s.test("good_fraction", "p_value")[0] >= 0.05
    assert s.outcome == "cannot tell"
    assert "difference -5 pts" in s.verdict and "cannot tell" in s.verdict
    # Trials needed: the smallest n at which this test (|b - c| > c_crit sqrt(b + c)) has 80% power
    # against a 10-pt difference, with the observed discordant share psi = 9/19 > 0.10:
    # p10 = (psi + 0.1) / 2, p01 = (psi - 0.1) / 2. Enumerated here over every (b, c), independently.
    need = s.primary["trials_needed"]
    psi = 9 / 19
    p10, p01, crit = (psi + 0.1) / 2, (psi - 0.1) / 2, s.primary["critical"]

    def power(n):
        from scipy.stats import multinomial
        tot = 0.0
        for b in range(n + 1):
            for c in range(n + 1 - b):
                if b + c and abs(b - c) > crit * math.sqrt(b + c):
                    tot += multinomial.pmf([b, c, n - b - c], n, [p10, p01, 1 - psi])
        return tot
    assert need >= 19 and power(int(need)) >= 0.8 > power(int(need) - 1)
    assert f"About {need:.0f} configurations per arm would give this test 80% power" in s.verdict
    assert f"--trials {need:.0f}" in s.verdict


def test_verdict_no_practical_difference():
    # 100 paired configs, identical scores in both arms: no discordant pair. Tango's 90% interval with
    # b = c = 0 is +-z^2 / (n + z^2) = 2.705543 / 101.705543 = 0.0266 (n = 99 after the reference)
    # -> within the 10-point margin: equivalent, not "cannot tell".
    sc = [0.95] * 10 + [0.5] * 90
    s = summarize(trials(sc, sc))
    assert s.outcome == "equivalent"
    assert s.primary["eq_hi"] == pytest.approx(1.644854 ** 2 / (99 + 1.644854 ** 2), abs=1e-5)
    assert s.verdict.startswith("No practical difference with BN or without BN")


def test_verdict_uses_the_arm_labels_it_is_given():
    df = trials([0.95] * 27 + [0.5] * 3, [0.95] * 3 + [0.5] * 27)
    df["arm"] = df["arm"].map({"bn-on": "layernorm", "bn-off": "plain"})
    s = summarize(df, arms=("layernorm", "plain"))
    assert s.verdict.startswith("The search was easier with layernorm than with plain")
    assert set(s.metrics["arm"]) == {"layernorm", "plain", A.DELTA}
    assert "BN" not in s.verdict


def test_verdict_regression_wording():
    s = _clear_case(task="regression", scale=0.5)  # R² 0.475 vs 0.25
    v = s.verdict
    assert "within 0.01 of the best validation score" in v
    assert " pt" not in v and "pts" not in v and "accuracy" not in v
    assert "+0.225" in v  # median per-config difference in R² units: 0.475 - 0.25


# ----------------------------------------------------------------------------- edge cases

def test_all_trials_diverged():
    df = trials([0.1] * 6, [0.1] * 6, diverged_on=set(range(6)), diverged_off=set(range(6)))
    s = summarize(df)
    assert s.metric("divergence_rate", "bn-on")[0] == 1.0
    assert s.metric("good_fraction", "bn-on")[0] == 1.0  # every trial ties with the (poor) best
    assert s.test("wilcoxon", "tie_rate")[0] == 1.0
    assert math.isnan(s.test("wilcoxon", "p_value")[0])
    assert s.importance["value"].isna().all()
    assert "cannot tell" in s.verdict and "100% of runs diverged" in s.verdict


def test_one_trial_per_arm():
    s = summarize(trials([0.8], [0.7]))
    assert s.metric("best", "bn-on")[0] == 0.8 and math.isnan(s.metric("std", "bn-on")[0])
    assert s.curves.query("arm == 'bn-on'")["n"].tolist() == [1, 1]  # V and U at n = 1
    assert "cannot tell" in s.verdict


def test_ties_between_arms():
    s = summarize(trials([0.5, 0.6, 0.7, 0.8, 0.9], [0.5, 0.6, 0.7, 0.8, 0.9]))
    assert s.test("wilcoxon", "tie_rate")[0] == 1.0 and s.test("wilcoxon", "win_rate")[0] == 0.0
    assert s.metric("good_fraction", A.DELTA)[0] == 0.0
    assert "cannot tell" in s.verdict


def test_arm_with_zero_good_trials():
    s = summarize(trials([0.99, 0.97, 0.98, 0.95, 0.96], [0.5] * 5))
    # config 0 is the reference; BN off: 0 good of 4
    assert s.metric("good_fraction", "bn-off")[0] == 0.0
    assert s.metric("trials_to_target", "bn-off")[0] == math.inf
    assert s.metric("trials_to_target", "bn-off")[2] == math.inf  # lower bound 0 -> inf
    # Clopper-Pearson upper bound of 0/4: 1 - 0.025^(1/4) = 0.602364 -> at least 1.66 trials
    assert s.metric("trials_to_target", "bn-off")[1] == pytest.approx(1 / 0.602364, abs=1e-5)
    assert "more than 2 trials (95%) without BN" in s.verdict and "never" not in s.verdict
    assert math.isnan(s.metric("lr_window", "bn-off")[0])  # 4 trials after the reference: n/a, not 0


def test_regression_data_set():
    s = summarize(trials([0.41, 0.45, -0.3, 0.44, 0.2], [0.1, 0.45, -2.0, 0.3, 0.0]), task="regression",
                  tolerance=0.05)
    assert s.s_star == 0.45
    # config 1 (0.45 in both arms) is the reference; of configs 0, 2, 3, 4 BN on has 0.41, 0.44 >= 0.40
    assert s.metric("good_fraction", "bn-on")[0] == pytest.approx(0.5)
    assert "accuracy" not in s.verdict


@pytest.mark.parametrize("which", ["bn-off", "both"])
def test_empty_arm(which):
    df = trials([0.9, 0.8, 0.7], [0.6, 0.5, 0.4])
    df = df[df["arm"] != "bn-off"] if which == "bn-off" else df.iloc[0:0]
    s = summarize(df)
    assert s.metric("n_complete", "bn-off")[0] == 0
    assert "cannot be compared" in s.verdict and "cannot tell" in s.verdict
    other = summarize(df, sampler="tpe", paired=False)  # the other code paths give the same answer
    assert other.metric("n_complete", "bn-off")[0] == 0 and "cannot be compared" in other.verdict
    assert not other.paired and other.outcome == "cannot tell"


def test_summarize_is_deterministic_given_seed():
    df = trials(np.linspace(0.5, 0.95, 12), np.linspace(0.3, 0.96, 12))
    a, b = summarize(df, seed=3), summarize(df, seed=3)
    for name in A.TABLE_KEYS:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert a.verdict == b.verdict
    # the seed is really used: with more than 12 discordant pairs the swaps are drawn at random
    gt = np.arange(40) < 25
    gr = np.arange(40) >= 25
    p3 = A.compare_flags(gt[None], gr[None], paired=True, seed=3)["p_adj"][0]
    p4 = A.compare_flags(gt[None], gr[None], paired=True, seed=4)["p_adj"][0]
    assert p3 != p4 and abs(p3 - p4) < 0.05


# ----------------------------------------------------------------------------- repeats

def test_aggregate_repeats_mean_and_t_interval():
    # config 0 is the reference in both repeats: 4 configs left
    r1 = summarize(trials([0.95, 0.5, 0.5, 0.5, 0.5], [0.95, 0.5, 0.5, 0.5, 0.5]))  # g = 0, 0
    r2 = summarize(trials([0.95, 0.95, 0.5, 0.5, 0.5], [0.95, 0.5, 0.5, 0.5, 0.5]))  # g = 0.25, 0
    agg = A.aggregate_repeats([r1, r2])
    assert agg.n_repeats == 2
    # g_on values 0, 0.25: mean 0.125, sd 0.176777, se 0.125, t(0.975, 1) = 12.706205 -> ±1.588276
    assert agg.metric("good_fraction", "bn-on") == pytest.approx((0.125, -1.463276, 1.713276), abs=1e-5)
    # trials to target from the mean good fraction: 1 / 0.125
    assert agg.metric("trials_to_target", "bn-on")[0] == pytest.approx(8.0)
    assert agg.outcome == "cannot tell" and set(agg.heterogeneity.columns) >= {"factor", "level", "repeats"}
    assert set(agg.metrics.columns) >= {"value", "lo", "hi", "repeats"}
    assert "Over 2 repeats" in agg.verdict and "one test over all repeats, McNemar stratified by repeat" in agg.verdict
    # One stratified test over both repeats: discordant pairs pooled, b = 0 + 1, c = 0, n = 4 + 4 ->
    # difference 1/8; one discordant pair, so the exact sign-flip p is 1.
    assert agg.primary["diff"] == pytest.approx(1 / 8) and agg.primary["p_value"] == pytest.approx(1.0)
    assert agg.primary["lo"] < 0 < agg.primary["hi"]
    # no p value is averaged and no quality level of one repeat is mixed with another's
    p_rows = agg.tests[agg.tests["quantity"].isin(["p_value", "p_holm"])]
    assert p_rows["test"].tolist() == ["good_fraction"] and "stratified by repeat" in p_rows["note"].iloc[0]
    assert not (agg.tests["test"] == "quality_level").any()


def test_aggregate_trials_to_target_stays_finite_when_one_repeat_has_no_good_trial():
    r1 = summarize(trials([0.95, 0.95, 0.5, 0.5, 0.5], [0.95] * 5))  # g_on = 1/4 (config 0 left out)
    r2 = summarize(trials([0.5] * 5, [0.99] * 5))                     # g_on = 0
    agg = A.aggregate_repeats([r1, r2])
    assert agg.metric("good_fraction", "bn-on")[0] == pytest.approx(0.125)
    assert agg.metric("trials_to_target", "bn-on")[0] == pytest.approx(8.0)


def test_verdict_names_a_holm_significant_secondary_finding():
    # 12 paired configs: BN is 0.10 better on configs 0..10, both arms share the single best (0.99).
    # Config 11 sets s* and is left out; no other config is within 0.01 of it: g = 0 and 0, no
    # discordant pair. d = 0.10 on 11 pairs and 0 on one -> Wilcoxon on the 11 non-zero d (all > 0):
    # two-sided exact p = 2 / 2^11 = 0.000977; Holm over 2 secondary tests (the other, divergence,
    # has p = 1): 2 * 0.000977 = 0.001953.
    on = [0.5 + 0.01 * i for i in range(11)] + [0.99]
    off = [x - 0.10 for x in on[:11]] + [0.99]
    s = summarize(trials(on, off))
    assert s.metric("good_fraction", "delta")[0] == 0.0
    assert s.test("wilcoxon", "p_value")[0] == pytest.approx(2 / 2 ** 11)
    assert s.test("wilcoxon", "p_holm")[0] == pytest.approx(4 / 2 ** 11)
    # The declared level is at its floor in both arms, but BN is 10 pts ahead in every pair: the profile's
    # lower quality levels show it (the pooled median 0.55 is reached by 6 BN configurations and none without).
    assert s.outcome == "easier"
    assert "Configuration by configuration, BN scores higher in 92% of the pairs" in s.verdict
    assert "Holm-adjusted p = 0.002, a secondary test" in s.verdict


def test_trials_from_two_cpus_produce_a_warning():
    import pandas as pd

    from bnsearch.analysis.summary import hardware_notes

    rows = [{"arm": "bn-on", "state": "COMPLETE", "hardware": "AMD EPYC (avx512)"},
            {"arm": "bn-off", "state": "COMPLETE", "hardware": "AMD EPYC (avx512)"},
            {"arm": "bn-off", "state": "FAIL", "hardware": "Intel Xeon (avx2)"}]
    df = pd.DataFrame(rows)
    assert hardware_notes(df) == []  # a failed trial's machine produced no score: no mix
    df.loc[2, "state"] = "COMPLETE"
    (note,) = hardware_notes(df)
    assert note.startswith("WARNING: these trials ran on 2 different CPUs")
    assert "AMD EPYC (avx512)" in note and "Intel Xeon (avx2)" in note
    assert hardware_notes(df.drop(columns="hardware")) == []  # storage from before trials recorded it


def test_rowwise_bootstrap_equals_the_per_replicate_loop_bit_for_bit():
    """bootstrap_ci computes the common statistics for all replicates at once; the interval must
    be exactly the one the per-replicate loop gives (a lambda wrapper takes the loop path)."""
    from bnsearch.analysis.inference import _diff_of_means, _diff_of_medians, _median, bootstrap_ci

    rng = np.random.default_rng(7)
    for n in (1, 2, 5, 40, 41, 3001):  # 3001 rows: the resamples are processed in several blocks
        a = np.round(rng.normal(0.9, 0.05, n), 3)  # rounded: ties, as real scores have
        b = np.round(rng.normal(0.88, 0.08, n), 3)
        for stat, args, paired in ((_median, (a - b,), False), (_diff_of_means, (a, b), True),
                                   (_diff_of_means, (a, b), False), (_diff_of_medians, (a, b), False)):
            fast = bootstrap_ci(stat, *args, paired=paired, n_boot=1000, seed=3, tag="t")
            loop = bootstrap_ci(lambda *x, f=stat: f(*x), *args, paired=paired, n_boot=1000, seed=3, tag="t")
            assert fast == loop, (n, stat.__name__, paired, fast, loop)
            assert all(np.isfinite(fast))
