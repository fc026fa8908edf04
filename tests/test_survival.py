"""Trials-to-target across repeats for adaptive samplers (bnsearch/analysis/survival.py).

Expected values are worked out by hand in the comments; lifelines and scipy's permutation_test are
the references the hand-written parts are checked against.
"""

import math

import numpy as np
import pytest
from scipy import stats

from bnsearch.analysis.survival import (DEFAULT_ADAPTIVE_REPEATS, MAX_EXACT_PAIRS, adaptive_sentences,
                                        analyse_trajectories, best_so_far_band, bound, geometric_median,
                                        geometric_reached, outcome_word, paired_restricted, primary_test,
                                        random_search_median, sign_flip_test, signed, speedup_over_random,
                                        time_to_target)

WORDS = {"with_t": "with BN", "with_r": "without BN"}
ARMS = ("bn-on", "bn-off")


def _traj(reach_at: int | None, length: int) -> np.ndarray:
    """Scores 0 until trial `reach_at` (1-based) scores 1; `length` completed trials."""
    s = np.zeros(length)
    if reach_at is not None:
        s[reach_at - 1] = 1.0
    return s


# Six repeats per arm, budget 8 trials, target 1.0.
#   bn-on : reached at 1, 2, 5, 5; one repeat completed only 4 trials (censored at 4); one never (8+)
#   bn-off: reached at 3, 6; four never (8+)
ON = [_traj(1, 8), _traj(2, 8), _traj(None, 4), _traj(5, 8), _traj(5, 8), _traj(None, 8)]
OFF = [_traj(3, 8), _traj(6, 8), _traj(None, 8), _traj(None, 8), _traj(None, 8), _traj(None, 8)]


@pytest.fixture(scope="module")
def hand():
    return analyse_trajectories({"bn-on": ON, "bn-off": OFF}, ARMS, sampler="tpe", budget=8, target=1.0, seed=0)


def test_times_are_first_trial_at_target_and_censored_at_the_repeats_own_length(hand):
    assert time_to_target([0.1, 0.5, 0.9, 0.95], 0.9) == (3, True)
    assert time_to_target([0.1, 0.5], 0.9) == (2, False)
    on = hand.times[hand.times["arm"] == "bn-on"]
    assert on["trials"].tolist() == [1, 2, 4, 5, 5, 8]
    assert on["reached"].tolist() == [True, True, False, True, True, False]


def test_kaplan_meier_by_hand(hand):
    # S(n) = prod over event times t <= n of (1 - d_t / n_t), n_t = repeats still at risk at t:
    #   t=1: 6 at risk, 1 reaches  -> S = 5/6            = 0.833333
    #   t=2: 5 at risk, 1 reaches  -> S = 5/6 * 4/5      = 2/3
    #   t=4: the 4-trial repeat leaves (censored), no event
    #   t=5: 3 at risk (5, 5, 8+), 2 reach -> S = 2/3 * 1/3 = 2/9 = 0.222222
    # "reached by n" = 1 - S(n).
    km = hand.per_arm["bn-on"].km.set_index("n")
    expect = {0: 0, 1: 1 / 6, 2: 1 / 3, 3: 1 / 3, 4: 1 / 3, 5: 7 / 9, 8: 7 / 9}
    for n, v in expect.items():
        assert km.loc[n, "reached"] == pytest.approx(v, abs=1e-12)
    assert km.loc[5, "at_risk"] == 3
    # Pointwise band at n = 2 (exponential Greenwood, lifelines' default):
    #   Greenwood sum = 1/(6*5) + 1/(5*4) = 1/30 + 1/20 = 1/12
    #   v = (1/12) / log(2/3)^2 = 0.083333 / 0.164402 = 0.506894;  z*sqrt(v) = 1.959964 * 0.711965 = 1.395425
    #   S bounds = (2/3)^exp(+1.395425) = (2/3)^4.03668 = 0.194617,  (2/3)^exp(-1.395425) = (2/3)^0.247728 = 0.904434
    #   reached bounds = 1 - those: 0.095566 .. 0.805383
    assert km.loc[2, "lo"] == pytest.approx(1 - 0.904434, abs=1e-5)
    assert km.loc[2, "hi"] == pytest.approx(1 - 0.194617, abs=1e-5)
    s = hand.per_arm["bn-on"]
    # Median: the first n with S(n) <= 1/2 -> n = 5.
    assert s.median == 5
    # Restricted mean up to 8 = area under S: 1*1 + 1*(5/6) + 3*(2/3) + 3*(2/9) = 1 + 0.8333 + 2 + 0.6667 = 4.5
    assert s.rmst == pytest.approx(4.5)
    on = hand.times[hand.times["arm"] == "bn-on"]
    # bn-off: 2 of 6 reach, at 3 and 6: S = 5/6 then 4/6; the median is never reached.
    off = hand.per_arm["bn-off"]
    assert math.isinf(off.median) and off.reached == 2
    # RMST: 3*1 + 3*(5/6) + 2*(4/6) = 3 + 2.5 + 1.3333 = 6.8333
    assert off.rmst == pytest.approx(6.833333, abs=1e-6)


def test_logrank_by_hand(hand):
    # Descriptive only now (unpaired), still lifelines' number.
    # Pooled event times; at each, E_on = d * n_on / n and V = d (n_on/n)(n_off/n)(n-d)/(n-1):
    #   t=1: n_on 6, n_off 6, d 1 (on)      E = 6/12 = 0.5         V = 36/144 * 11/11  = 0.25
    #   t=2: n_on 5, n_off 6, d 1 (on)      E = 5/11 = 0.454545    V = 30/121 * 10/10  = 0.247934
    #   t=3: n_on 4, n_off 6, d 1 (off)     E = 4/10 = 0.4         V = 24/100          = 0.24
    #   (t=4: an on repeat censored)
    #   t=5: n_on 3, n_off 5, d 2 (on, on)  E = 2*3/8 = 0.75       V = 2*15/64 * 6/7   = 0.401786
    #   t=6: n_on 1, n_off 5, d 1 (off)     E = 1/6 = 0.166667     V = 5/36            = 0.138889
    #   O_on = 4, E_on = 2.271212, O - E = 1.728788, V = 1.278609
    #   chi2 = 1.728788^2 / 1.278609 = 2.337469; p = P(chi2_1 > 2.337469) = 0.126295
    assert hand.o_minus_e == pytest.approx(1.728788, abs=1e-6)
    assert hand.logrank_chi2 == pytest.approx(2.337469, abs=1e-5)
    assert hand.logrank_p == pytest.approx(0.126295, abs=1e-5)


def test_paired_primary_by_hand(hand):
    # Pairs by repeat, horizon tau = the shorter of the two repeats (8, except repeat 2: 4 trials of bn-on):
    #   repeat   0  1  2  3  4  5
    #   bn-on    1  2  4  5  5  8      (repeat 2 never reached it in its 4 trials: min(T, 4) = 4)
    #   bn-off   3  6  4  8  8  8      (repeat 2: not reached by trial 4 -> 4)
    #   d       -2 -4  0 -3 -3  0      mean -12/6 = -2
    pairs = hand.pairs.set_index("repeat")
    assert pairs["horizon"].tolist() == [8, 8, 4, 8, 8, 8]
    assert pairs["diff"].tolist() == [-2, -4, 0, -3, -3, 0]
    # Exact sign-flip: 2^6 = 64 patterns; |sum| reaches |-12| only with the four untied signs all
    # equal (2 ways) times either sign on each of the two zeros (4 ways) -> p = 8/64 = 0.125.
    assert hand.paired_p == pytest.approx(0.125, abs=1e-12)
    # Interval: accept D when at least ceil(0.05 * 64) = 4 patterns are as extreme for d - D.
    #   D = -4: x = (2, 0, 4, 1, 1, 4): |sum| = 12 is reached by the two all-equal patterns and the
    #   two that flip only the 0 (the -4 pair) -> 4 -> accepted; just below -4 only the 2 -> rejected.
    #   D = 0: 8 patterns (above) -> accepted; just above 0 every d - D is negative, only 2 -> rejected.
    d, lo, hi = hand.paired_diff
    assert (d, lo, hi) == (pytest.approx(-2), pytest.approx(-4), pytest.approx(0))
    assert hand.outcome == "cannot tell" and outcome_word(hand) == "cannot tell"
    assert hand.rmst_diff == hand.paired_diff  # the old name reads the paired interval


def test_sign_flip_p_and_interval_by_hand():
    # 9 untied differences, all negative, and one tie: only the two all-equal sign patterns of the
    # 9 are as extreme -> p = 2 / 2^9 = 0.00390625 (the tie's sign does not matter).
    d = np.r_[-np.arange(1, 10), 0.0]
    sf = sign_flip_test(d)
    assert sf.p == pytest.approx(2 / 2 ** 9, abs=1e-15) and sf.exact and sf.nonzero == 9
    assert sf.p == pytest.approx(stats.permutation_test((d,), np.mean, permutation_type="samples",
                                                         n_resamples=np.inf).pvalue, abs=1e-15)
    # d = 1..7 (n = 7, 128 patterns, accept when >= ceil(6.4) = 7 are as extreme). Flipping the set
    # M keeps |sum(d - D)| when D lies between the means of d over M and over the rest, so:
    #   D = 2: x = (-1, 0, 1, 2, 3, 4, 5): sets with sum <= 0: {}, {-1}, {0}, {-1,0}, {-1,1}, {-1,0,1},
    #   and their complements -> 12 patterns -> p = 12/128 = 0.094: accepted.
    #   D just below 2: the sets {0}, {-1,1}, {-1,0,1} (subset means exactly 2) drop out -> 6: rejected.
    #   By symmetry about the mean 4 the upper end is 6. p(0) = 2/128 (only the all-equal patterns).
    sf = sign_flip_test(np.arange(1.0, 8.0))
    assert (sf.mean, sf.lo, sf.hi, sf.p) == (4.0, 2.0, 6.0, pytest.approx(2 / 128))
    for delta, accepted in ((2.0, True), (1.999, False), (6.0, True), (6.001, False)):
        p = stats.permutation_test((np.arange(1.0, 8.0) - delta,), np.mean, permutation_type="samples",
                                   n_resamples=np.inf).pvalue
        assert (p >= 0.05) == accepted, (delta, p)
    # Five pairs can never reject (2/32 > 0.05): every shift is accepted.
    sf = sign_flip_test([-5.0, -4, -3, -2, -1])
    assert sf.p == pytest.approx(2 / 32) and sf.lo == -np.inf and sf.hi == np.inf and sf.min_p > 0.05


def test_sign_flip_test_and_interval_agree_on_random_cases():
    """The interval excludes 0 exactly when p < 0.05, exact and Monte Carlo, ties or not; the p
    value is scipy's exact one; and any shift D is inside exactly when the test of d - D accepts."""
    rng = np.random.default_rng(2024)
    checked = {"exact": 0, "monte carlo": 0, "rejected": 0}
    for case in range(400):
        n = int(rng.integers(2, 25))
        shift = rng.choice([0.0, 2.0, 5.0])
        d = (np.round(rng.normal(shift, 6, n)) if case % 2 else rng.normal(shift, 6, n))  # ties / none
        sf = sign_flip_test(d, seed=case)
        assert sf.exact == (n <= MAX_EXACT_PAIRS)
        assert (sf.lo <= 0 <= sf.hi) == (sf.p >= 0.05), (d, sf)
        assert sf.lo <= sf.mean <= sf.hi
        checked["exact" if sf.exact else "monte carlo"] += 1
        checked["rejected"] += sf.p < 0.05
        if sf.exact and n <= 10:
            ref = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf).pvalue
            assert sf.p == pytest.approx(ref, rel=1e-9, abs=1e-12)
        for delta in rng.uniform(sf.mean - 12, sf.mean + 12, 3):
            shifted = sign_flip_test(d - delta, seed=case)  # the same sign patterns
            assert (sf.lo <= delta <= sf.hi) == (shifted.p >= 0.05), (d, delta, sf, shifted.p)
    assert min(checked.values()) >= 20  # both regimes (exact up to MAX_EXACT_PAIRS) and rejections seen


def test_monte_carlo_sign_flip_is_seeded_and_close_to_exact():
    rng = np.random.default_rng(5)
    d = np.round(rng.normal(1.5, 4, 18))
    a, b = sign_flip_test(d, seed=1), sign_flip_test(d, seed=1)
    assert not a.exact and (a.p, a.lo, a.hi) == (b.p, b.lo, b.hi)
    exact = sign_flip_test(d, max_exact=18)
    assert exact.exact and abs(a.p - exact.p) < 4 * math.sqrt(exact.p * (1 - exact.p) / 20_000) + 1e-4


def test_pairs_share_the_shorter_horizon_and_drop_unmatched_repeats():
    trajs = {"bn-on": [_traj(3, 8), _traj(None, 5), _traj(7, 8), np.array([])],
             "bn-off": [_traj(5, 8), _traj(6, 8), _traj(2, 8), _traj(1, 8)]}
    pairs = paired_restricted(trajs, ARMS, 1.0)
    # repeat 1: bn-on ran 5 trials, so both are restricted to 5; bn-off's hit at 6 counts as 5.
    # repeat 3: bn-on has no completed trial -> no pair.
    assert pairs["repeat"].tolist() == [0, 1, 2]
    assert pairs["horizon"].tolist() == [8, 5, 8]
    assert pairs["diff"].tolist() == [3 - 5, 5 - 5, 7 - 2]


def test_no_minus_zero():
    assert signed(-0.04) == "0.0" and signed(-1e-12) == "0.0" and signed(-0.06) == "-0.1"
    assert bound(-0.033) == "-0.033" and bound(0.0) == "0.0" and bound(-2.25) == "-2.2"
    # A repeat-by-repeat difference that averages to (almost) zero reads 0.0 in every text.
    on = [_traj(3, 10), _traj(5, 10), _traj(4, 10), _traj(6, 10), _traj(2, 10), _traj(8, 10)]
    off = [_traj(5, 10), _traj(3, 10), _traj(6, 10), _traj(4, 10), _traj(8, 10), _traj(2, 10)]
    res = analyse_trajectories({"bn-on": on, "bn-off": off}, ARMS, sampler="tpe", budget=10, target=1.0, n_boot=20)
    text = " ".join(adaptive_sentences(res, WORDS, sampler="tpe", task="classification"))
    assert res.paired_diff[0] == 0 and "-0.0" not in text and "difference of 0.0 trials" in text


def test_geometric_closed_form_agrees_with_kaplan_meier_on_random_search_repeats():
    # A random search draws i.i.d., so the trial it first reaches the target is geometric with
    # p = the good fraction at the target: P(reached by n) = 1 - (1 - p)^n.
    rng = np.random.default_rng(7)
    budget, repeats = 30, 400
    arm = [np.round(rng.beta(5, 2, budget) * 360) / 360 for _ in range(repeats)]  # accuracy-like ties
    other = [np.round(rng.beta(5, 2, budget) * 360) / 360 for _ in range(repeats)]
    res = analyse_trajectories({"bn-on": arm, "bn-off": other}, ARMS, sampler="random", budget=budget, n_boot=50)
    allv = np.concatenate(arm + other)
    p = float(np.mean(allv >= res.target))  # the good fraction at the target
    km = res.per_arm["bn-on"].km
    ns = km["n"].to_numpy()
    closed = geometric_reached(p, ns)
    assert np.max(np.abs(km["reached"].to_numpy() - closed)) < 0.05
    inside = (km["lo"].to_numpy() - 1e-9 <= closed) & (closed <= km["hi"].to_numpy() + 1e-9)
    assert inside.mean() >= 0.9  # pointwise 95% bands
    assert abs(res.per_arm["bn-on"].median - geometric_median(p)) <= 1
    # RMST of the geometric: sum_{n=0}^{B-1} (1-p)^n
    closed_rmst = (1 - (1 - p) ** budget) / p
    assert res.per_arm["bn-on"].rmst == pytest.approx(closed_rmst, rel=0.1)


def test_geometric_median_follows_lifelines_convention():
    # (1 - 0.5)^1 = 0.5 <= 1/2 -> 1; p = 0.1: 0.9^6 = 0.531, 0.9^7 = 0.478 -> 7
    assert geometric_median(0.5) == 1 and geometric_median(0.1) == 7
    assert math.isinf(geometric_median(0.0))


def _toy_search(rng, budget, offset, lift=0.0):
    """An adaptive toy on a 1-D landscape: samples near the incumbent with growing probability
    (so trials are not independent), accuracy-like scores on 360 validation rows."""
    best_x, best_s, out = None, -np.inf, []
    for i in range(budget):
        if best_x is not None and rng.random() < min(0.8, i / 15):
            x = float(np.clip(best_x + rng.normal(0, 0.08), 0, 1))
        else:
            x = rng.random()
        s = 0.95 - 1.5 * (x - 0.3) ** 2 + lift + offset + rng.normal(0, 0.03)
        s = np.round(np.clip(s, 0, 1) * 360) / 360
        out.append(s)
        if s > best_s:
            best_x, best_s = x, s
    return np.array(out)


def _draw(rng, repeats, budget, lift=0.0):
    # Repeat r of both arms shares its data split: a shared offset per repeat.
    off = rng.normal(0, 0.02, repeats)
    return {"bn-on": [_toy_search(rng, budget, off[r], lift) for r in range(repeats)],
            "bn-off": [_toy_search(rng, budget, off[r]) for r in range(repeats)]}


def _claims_consistent_with_at_most(claims: int, draws: int, level: float = 0.05) -> bool:
    # The sign-flip test is exact, so its true false-claim rate is at most 5%; a simulated rate is
    # that plus binomial noise (SE 0.7 pts at 1000 draws). Fail only if the rate is significantly above.
    return stats.binomtest(claims, draws, level, alternative="greater").pvalue > 0.01


def _geometric_draw(rng, repeats, budget, p_ref, p_treat, rho):
    """Trials-to-target drawn directly: geometric in each arm (p per trial), arms of a repeat tied
    by a Gaussian copula with correlation rho (the shared seed and data split), written as score
    trajectories (1 at the hit, 0 before; target 1) so they go through the product's functions."""
    z0 = rng.standard_normal(repeats)
    out = {}
    for arm, p in (("bn-on", p_treat), ("bn-off", p_ref)):
        z = math.sqrt(rho) * z0 + math.sqrt(1 - rho) * rng.standard_normal(repeats)
        t = np.ceil(np.log1p(-stats.norm.cdf(z)) / math.log1p(-p)).astype(int)
        out[arm] = [_traj(int(k) if k <= budget else None, budget) for k in np.maximum(t, 1)]
    return out


def test_aa_paired_adaptive_test_false_claim_rate_at_most_5_percent():
    """A/A through primary_test: (1) the toy adaptive search, both arms the same, a shared offset per
    repeat; (2) geometric trials-to-target with correlation 0.8 within a repeat. Directional claims
    come only with an interval that excludes 0."""
    rng = np.random.default_rng(11)
    rates = {}
    for name, draws, make in (("toy adaptive search", 1000, lambda: _draw(rng, DEFAULT_ADAPTIVE_REPEATS, 30)),
                              ("geometric, rho 0.8", 2000, lambda: _geometric_draw(
                                  rng, DEFAULT_ADAPTIVE_REPEATS, 30, 0.1, 0.1, 0.8))):
        claims = 0
        for _ in range(draws):
            test = primary_test(make(), ARMS, target=None if name.startswith("toy") else 1.0)
            _, lo, hi = test.diff
            assert (test.outcome in ("faster", "slower")) == (not lo <= 0 <= hi)
            claims += test.outcome in ("faster", "slower")
        rates[name] = claims / draws
        print(f"A/A, {name}, {DEFAULT_ADAPTIVE_REPEATS} paired repeats of 30 trials, {draws} draws: "
              f"false-claim rate {claims / draws:.1%}")
        assert _claims_consistent_with_at_most(claims, draws)


def test_planted_effect_is_found_and_points_the_right_way():
    rng = np.random.default_rng(12)
    draws = 200
    out = [primary_test(_draw(rng, DEFAULT_ADAPTIVE_REPEATS, 30, lift=0.05), ARMS).outcome for _ in range(draws)]
    print(f"power, toy search with a lift of 5 pts, {DEFAULT_ADAPTIVE_REPEATS} paired repeats, {draws} draws: "
          f"{out.count('faster') / draws:.1%} found faster, {out.count('slower')} slower")
    assert out.count("faster") >= 0.8 * draws and out.count("slower") == 0
    # The reverse: the lift on the reference is found as slower.
    rev = [primary_test({"bn-on": d["bn-off"], "bn-off": d["bn-on"]}, ARMS).outcome
           for d in (_draw(rng, DEFAULT_ADAPTIVE_REPEATS, 30, lift=0.05) for _ in range(40))]
    assert rev.count("slower") >= 30 and rev.count("faster") == 0


def test_best_so_far_band_and_gap_at_budget():
    rng = np.random.default_rng(3)
    trajs = [rng.random(20) for _ in range(10)]
    band = best_so_far_band(trajs, 20, "bn-on", seed=1)
    m = np.array([np.maximum.accumulate(t) for t in trajs])
    assert np.allclose(band["mean"], m.mean(axis=0))
    half = stats.t.ppf(0.975, 9) * m.std(axis=0, ddof=1) / math.sqrt(10)
    assert np.allclose(band["hi"] - band["mean"], half)
    ok = half > 0
    # the simultaneous band is at least as wide as the pointwise one
    assert np.all(band["sim_hi"].to_numpy()[ok] >= band["hi"].to_numpy()[ok] - 1e-12)
    res = analyse_trajectories({"bn-on": trajs, "bn-off": [t * 0.9 for t in trajs]}, ARMS, sampler="tpe",
                               n_boot=100)
    diff = m[:, -1] - 0.9 * m[:, -1]  # paired by repeat
    g, lo, hi = res.gap
    assert g == pytest.approx(diff.mean())
    assert hi - g == pytest.approx(stats.t.ppf(0.975, 9) * diff.std(ddof=1) / math.sqrt(10))


def test_speedup_over_random():
    # Adaptive medians: bn-on 2 trials, bn-off 4. Random search: p = 0.1 in both arms ->
    # geometric median 7 (0.9^7 = 0.478 <= 1/2 < 0.9^6) -> speed-ups 7/2 = 3.5 and 7/4 = 1.75:
    # the sampler's edge is smaller where the landscape is easier.
    ad = analyse_trajectories({"bn-on": [_traj(2, 10), _traj(1, 10), _traj(3, 10)],
                               "bn-off": [_traj(4, 10), _traj(3, 10), _traj(5, 10)]},
                              ARMS, sampler="tpe", budget=10, target=1.0, n_boot=50)
    random_scores = np.r_[np.ones(10), np.zeros(90)]
    sp = speedup_over_random(ad, {"bn-on": random_scores, "bn-off": random_scores}).set_index("arm")
    assert sp.loc["bn-on", "random_median"] == 7
    assert sp.loc["bn-on", "speedup"] == pytest.approx(3.5)
    assert sp.loc["bn-off", "speedup"] == pytest.approx(1.75)
    assert sp.loc["bn-on", "lo"] <= 3.5 <= sp.loc["bn-on", "hi"]
    m, lo, hi = random_search_median(random_scores, 1.0)
    assert lo <= m <= hi


def test_verdict_sentences_name_the_outcome_and_never_good_fraction_tests(hand):
    text = " ".join(adaptive_sentences(hand, WORDS, sampler="tpe", task="classification"))
    assert text.startswith("TPE, 6 repeats per arm of 8 trials")
    assert "sign-flip test over 6 paired repeats, p = 0.125" in text and "median of 5 trials" in text
    # cannot tell, with the interval (which includes 0, printed without a minus sign) right behind it
    assert "cannot tell" in text and "95% CI -4.0 to 0.0" in text and "-0.0" not in text
    assert "sooner with BN than" in text and "reached the target sooner" not in text
    assert "good fraction" not in text.lower().replace("good-fraction tests are not", "")
    # 4 untied pairs cannot reach p < 0.05 (2/16 = 0.125): the verdict says so
    assert "no outcome can reach p < 0.05" in text and "6 are needed" in text
    one = " ".join(adaptive_sentences(None, WORDS, sampler="gp", task="classification", n_repeats=1))
    assert "--repeats 10" in one and "cannot tell" in one
    few = primary_test({"bn-on": [ON[0]], "bn-off": [OFF[0]]}, ARMS)
    assert few.outcome == "too few repeats"


def test_directional_verdict_only_with_an_interval_excluding_zero():
    # Ten repeats, bn-on sooner in 9, one tie (as in the tpe sample's times): exact p = 2/2^9.
    on = [_traj(t, 40) for t in (16, 1, 3, 9, None, 13, 4, 32, 8, 1)]
    off = [_traj(t, 40) for t in (39, 15, 6, 20, None, 14, 18, 39, 27, 2)]
    res = analyse_trajectories({"bn-on": on, "bn-off": off}, ARMS, sampler="tpe", budget=40, target=1.0, n_boot=20)
    assert res.paired_p == pytest.approx(2 / 2 ** 9) and res.outcome == "faster" and outcome_word(res) == "easier"
    d, lo, hi = res.paired_diff
    assert d == pytest.approx(-9.3) and lo < hi < 0
    text = " ".join(adaptive_sentences(res, WORDS, sampler="tpe", task="classification"))
    assert ("The search reached the target sooner with BN than without BN (exact sign-flip test over 10 paired "
            "repeats, p = 0.004)") in text
    assert f"a difference of -9.3 trials per repeat (95% CI {bound(lo)} to {bound(hi)}" in text
    assert "9 repeats reached it sooner with BN, 0 later, 1 tied" in text
    # Swapping the arms flips the direction and mirrors the interval.
    swapped = analyse_trajectories({"bn-on": off, "bn-off": on}, ARMS, sampler="tpe", budget=40, target=1.0,
                                   n_boot=20)
    assert swapped.outcome == "slower" and outcome_word(swapped) == "harder"
    assert swapped.paired_diff == pytest.approx((-d, -hi, -lo))


def test_sampler_settings_are_pinned_and_stored(tmp_path):
    import optuna

    from bnsearch.config import load_config
    from bnsearch.search import prepare_experiment
    from bnsearch.search.plan import TPE_SETTINGS, make_sampler, sampler_settings

    s = load_config().with_overrides(sampler="tpe", paired=False, trials=3, name="pin")
    tpe = make_sampler(s)
    # Optuna 5.0's defaults, written out: multivariate TPE with constant liar, 10 random startup trials
    assert tpe._multivariate is True and tpe._constant_liar is True and tpe._n_startup_trials == 10
    stored = sampler_settings(s)
    assert stored["name"] == "TPESampler" and stored["optuna_version"] == optuna.__version__
    assert {k: stored[k] for k in TPE_SETTINGS} == TPE_SETTINGS and stored["seed"] == s.seed
    arm = prepare_experiment(s, f"sqlite:///{tmp_path}/x.db", ["bn-on"])[0]
    assert arm.study.user_attrs["sampler_settings"] == stored
    gp = sampler_settings(s.with_overrides(sampler="gp"))
    assert gp["name"] == "GPSampler" and gp["n_startup_trials"] == 10


def test_adaptive_samplers_default_to_ten_repeats_and_the_count_is_no_identity(tmp_path):
    from bnsearch.config import ADAPTIVE_REPEATS, ConfigError, load_config, load_config_text, to_toml

    base = load_config()
    assert base.default_repeats() == 1
    tpe = base.with_overrides(sampler="tpe", paired=False)
    assert tpe.default_repeats() == ADAPTIVE_REPEATS == DEFAULT_ADAPTIVE_REPEATS
    set12 = load_config_text(to_toml(tpe).replace("[search]", "[search]\nrepeats = 12", 1), "x.toml")
    assert set12.default_repeats() == 12 and set12.config_hash() == tpe.config_hash()
    assert load_config_text(to_toml(set12), "y.toml").repeats == 12
    with pytest.raises(ConfigError, match="search.repeats"):
        load_config_text(to_toml(tpe).replace("[search]", "[search]\nrepeats = 0", 1), "z.toml")


def test_report_path_for_adaptive_repeats(tmp_path):
    """summarize + aggregate_repeats + attach_adaptive, then the exports: the verdict is the
    trials-to-target one, the good-fraction tests are marked descriptive, km/best_so_far written."""
    import pandas as pd
    from rich.console import Console

    from bnsearch import analysis as A
    from bnsearch import report as R
    from bnsearch.report import survival as report_survival
    from bnsearch.analysis.summary import attach_adaptive

    rng = np.random.default_rng(5)
    dist = {"lr": __import__("optuna").distributions.FloatDistribution(1e-4, 1, log=True)}
    dfs = []
    for r in range(4):
        rows = []
        for arm, lift in (("bn-on", 0.03), ("bn-off", 0.0)):
            for i, s in enumerate(np.clip(rng.normal(0.85 + lift, 0.05, 15), 0, 1)):
                rows.append({"experiment": "x" if r == 0 else f"x-rep{r}", "arm": arm, "number": i,
                             "state": "COMPLETE", "config_index": pd.NA, "seed": i, "score": float(s),
                             "test_score": float(s), "diverged": False, "epochs_run": 3, "seconds": 0.1,
                             "lr": 10.0 ** rng.uniform(-4, 0)})
        dfs.append(pd.DataFrame(rows))
    sums = [A.summarize(df, distributions=dist, tolerance=0.01, paired=False, sampler="tpe", task="classification",
                        n_boot=50) for df in dfs]
    s = A.aggregate_repeats(sums)
    res = attach_adaptive(s, dfs, budget=15, sampler_settings={"name": "TPESampler", "optuna_version": "5.1.0",
                                                                "multivariate": True})
    assert s.adaptive is res and s.verdict.startswith("TPE, 4 repeats per arm of 15 trials")
    assert s.outcome in ("easier", "harder", "cannot tell")
    notes = s.tests.loc[s.tests["test"] == "good_fraction", "note"]
    assert notes.str.startswith("descriptive only").all() and not notes.str.contains("PRIMARY").any()
    assert any("TPESampler(multivariate=True) under Optuna 5.1.0" in n for n in s.notes)
    assert s.to_json()["adaptive"]["repeats"] == 4
    console = Console(record=True, width=120)
    view = R.Comparisons(["bn-on", "bn-off"], "bn-off", {"bn-on": s})
    R.print_report(view, console, {})
    text = console.export_text()
    assert "median trials to target" in text and "good fraction" not in text.split("Key numbers")[1].split("\n")[3]
    files = (report_survival.write_csvs({"bn-on": res}, tmp_path, {"experiment": "x"})
             + report_survival.write_plots({"bn-on": res}, tmp_path, "x", ["bn-on", "bn-off"]))
    assert sorted(f.name for f in files) == ["best_so_far.csv", "best_so_far.png", "km.csv", "km.png",
                                             "trials_to_target.csv"]
    km = pd.read_csv(tmp_path / "km.csv")
    assert set(km["arm"]) == {"bn-on", "bn-off"} and km["n"].max() == 15
    assert set(km["treatment"]) == {"bn-on"} and set(km["reference"]) == {"bn-off"}
    assert "![km](km.png)" in R.markdown_text(view, {}, files, tmp_path)


def test_trials_beyond_the_budget_are_not_counted():
    # Two workers may both ask for the last trial: the 41st of a 40-trial repeat must not count.
    late = np.r_[np.zeros(40), 1.0]
    res = analyse_trajectories({"bn-on": [late, np.zeros(40)], "bn-off": [np.zeros(40), np.zeros(40)]}, ARMS,
                               sampler="tpe", budget=40, target=1.0, n_boot=20)
    assert res.per_arm["bn-on"].reached == 0 and res.n_pooled == 160


def test_random_twin_is_the_same_space_searched_at_random(tmp_path):
    from bnsearch import api
    from bnsearch.config import load_config
    from bnsearch.search import open_storage, prepare_experiment

    url = f"sqlite:///{tmp_path}/t.db"
    base = load_config().with_overrides(trials=2)
    prepare_experiment(base.with_overrides(sampler="tpe", paired=False, name="ad"), url)
    prepare_experiment(base.with_overrides(name="other-space", epochs=3), url)  # trains differently
    assert api.random_twin(open_storage(url), "ad") is None
    prepare_experiment(base.with_overrides(name="rnd", seed=4), url)
    assert api.random_twin(open_storage(url), "ad") == "rnd"


def test_speedup_enters_the_verdict_and_exports(tmp_path):
    import pandas as pd

    from bnsearch import analysis as A
    from bnsearch.report import survival as report_survival
    from bnsearch.analysis.summary import attach_adaptive

    rows = []
    for r in range(3):
        for arm in ARMS:
            for i, s in enumerate(_traj([2, 1, 3][r] if arm == "bn-on" else [4, 3, 5][r], 10)):
                rows.append({"experiment": "x", "arm": arm, "number": i, "state": "COMPLETE", "score": s,
                             "diverged": False, "rep": r})
    df = pd.DataFrame(rows)
    dfs = [df[df["rep"] == r] for r in range(3)]
    s = A.summarize(dfs[0], distributions={}, tolerance=0.01, paired=False, sampler="tpe", task="classification",
                    n_boot=20)
    rnd = pd.DataFrame({"arm": np.repeat(ARMS, 100), "state": "COMPLETE", "number": np.tile(np.arange(100), 2),
                        "score": np.tile(np.r_[np.ones(10), np.zeros(90)], 2)})
    res = attach_adaptive(s, dfs, budget=10, n_boot=20, random_df=rnd, random_source="experiment 'rnd'")
    sp = res.speedup.set_index("arm")
    # target = 90th percentile of 60 scores (6 ones) = linear interpolation at 0.9 * 59 = 53.1 -> 0.1
    # rank 53 is 0, rank 54 is 1 -> 0.1: random p = 10/100 -> median 7; TPE medians 2 and 4
    assert sp.loc["bn-on", "speedup"] == pytest.approx(3.5) and sp.loc["bn-off", "speedup"] == pytest.approx(1.75)
    assert "Against a random search of the same space (experiment 'rnd')" in s.verdict
    assert "3.5x" in s.verdict
    assert "speedup_over_random" in set(res.summary_rows()["quantity"])
    assert any("speed-up vs random" in row[0] for row in report_survival.compact_rows(res))
