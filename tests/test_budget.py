"""Budget analysis and the 2x2 interaction against hand-computed cases."""

import math

import numpy as np
import pandas as pd
import pytest

from bnsearch.analysis.budget import (budget_grid, budget_table, budget_verdict, compute_curves, scores_at,
                                      seconds_at)
from bnsearch.analysis.interaction import cell_scores, interaction_table, interaction_verdict


def _trial(arm, i, curve, *, score=None, diverged=False, seconds=1.0, state="COMPLETE"):
    return {"experiment": "x", "arm": arm, "number": i, "state": state, "config_index": i, "seed": i,
            "score": (curve[-1] if score is None else score) if state == "COMPLETE" else math.nan,
            "test_score": math.nan, "diverged": diverged, "epochs_run": len(curve), "seconds": seconds,
            "val_curve": list(curve) if state == "COMPLETE" else None}


def _frame(rows):
    df = pd.DataFrame(rows)
    df["config_index"] = df["config_index"].astype("Int64")
    df["epochs_run"] = df["epochs_run"].astype("Int64")
    return df


def test_grid():
    assert budget_grid(1) == [1]
    assert budget_grid(3) == [1, 2, 3]
    g = budget_grid(20)
    assert g[0] == 1 and g[-1] == 20 and g == sorted(set(g)) and len(g) <= 8


def test_scores_and_seconds_at_a_budget():
    df = _frame([
        _trial("a", 0, [0.1, 0.5, 0.9]),
        # Diverged in epoch 2 and recorded with a final score of 0.05 (not its last curve value):
        # a run of 2 or 3 epochs would have stopped there with that score; a 1-epoch run would not.
        _trial("a", 1, [0.3, 0.2], score=0.05, diverged=True, seconds=4.0),
    ])
    assert list(scores_at(df, 1, 3)) == [0.1, 0.3]
    assert list(scores_at(df, 2, 3)) == [0.5, 0.05]
    assert list(scores_at(df, 3, 3)) == [0.9, 0.05]
    # seconds pro rata of the epochs a run of that budget trains: 1.0 * 1/3, 4.0 * 1/2; then capped at the run.
    assert seconds_at(df, 1) == pytest.approx([1 / 3, 2.0])
    assert seconds_at(df, 3) == pytest.approx([1.0, 4.0])


def test_budget_table_hand_computed():
    # Two arms, four configurations, 2 epochs, tolerance 0.
    rows = [
        _trial("t", 0, [0.8, 0.9]), _trial("t", 1, [0.8, 0.8]), _trial("t", 2, [0.5, 0.6]),
        _trial("t", 3, [0.2], score=0.1, diverged=True),
        _trial("r", 0, [0.4, 0.9]), _trial("r", 1, [0.3, 0.7]), _trial("r", 2, [0.6, 0.7]), _trial("r", 3, [0.1, 0.2]),
        _trial("r", 4, [0.5, 0.5], state="FAIL"),
    ]
    tab = budget_table(_frame(rows), arms=["t", "r"], reference="r", epochs=2, tolerance=0.0, n_boot=200, best_of=4)

    def val(e, arm, metric, versus=""):
        m = tab[(tab["epochs"] == e) & (tab["arm"] == arm) & (tab["metric"] == metric) & (tab["versus"] == versus)]
        return float(m["value"].iloc[0])

    # Epoch 1: t = .8 .8 .5 .1 (the diverged run stopped in epoch 1 with its final score .1),
    # r = .4 .3 .6 .1; s* = .8, set by config 0 (lowest index of the tie), which good counts leave out:
    # t good 1/3 (config 1), r good 0/3.
    assert val(1, "*", "s_star") == 0.8
    assert val(1, "t", "good_fraction") == pytest.approx(1 / 3) and val(1, "r", "good_fraction") == 0.0
    # t's diverged run stopped in epoch 1: diverged by budget 1 already.
    assert val(1, "t", "diverged_rate") == 0.25 and val(1, "r", "diverged_rate") == 0.0
    # Paired d = .4 .5 -.1 0 (every pair counts): the 10 Walsh averages -.1 -.05 0 .15 .2 .2 .25 .4 .45 .5
    # have median .2 (Hodges-Lehmann); Δ good over configs 1-3 = 1/3 - 0 (b = 1, c = 0).
    assert val(1, "t", "median_d", "r") == pytest.approx(0.2)
    assert val(1, "t", "good_delta", "r") == pytest.approx(1 / 3) and val(1, "t", "n_pairs", "r") == 4
    # Epoch 2: t = .9 .8 .6 .1 (final score of the diverged run), r = .9 .7 .7 .2; s* = .9 set by
    # config 0, left out: nothing else reaches .9.
    assert val(2, "t", "good_fraction") == 0.0 and val(2, "r", "good_fraction") == 0.0
    # d = 0 .1 -.1 -.1: Walsh averages -.1 -.1 -.1 -.05 -.05 0 0 0 .05 .1, median (-.05 + 0)/2 = -.025.
    assert val(2, "t", "median_d", "r") == pytest.approx(-0.025)
    assert val(2, "t", "good_delta", "r") == 0.0
    # 1 of r's 5 trials failed; t none. n_complete counts scored trials.
    assert val(2, "r", "failed_rate") == 0.2 and val(2, "t", "failed_rate") == 0.0 and val(2, "r", "n_complete") == 4
    # Expected best of 4 (V-estimate, draws with replacement) of t at epoch 2, sorted .1 .6 .8 .9:
    # weights (i/4)^4 - ((i-1)/4)^4 = 1/256, 15/256, 65/256, 175/256.
    want = (0.1 * 1 + 0.6 * 15 + 0.8 * 65 + 0.9 * 175) / 256
    assert val(2, "t", "expected_best") == pytest.approx(want)


def _pairs(n, t_curve, r_curve):
    return [_trial("t", i, t_curve) for i in range(n)] + [_trial("r", i, r_curve) for i in range(n)]


@pytest.mark.parametrize("t_curve,r_curve,phrase", [
    # t is good at once, r only later: the advantage is speed.
    ([0.9, 0.9, 0.9], [0.5, 0.7, 0.9], "consistent with faster training"),
    # r never catches up: robustness.
    ([0.9, 0.9, 0.9], [0.5, 0.5, 0.5], "robustness, not only faster training"),
    ([0.5, 0.5, 0.5], [0.9, 0.9, 0.9], "disadvantage holds at the full budget"),
])
def test_budget_verdict_separates_speed_from_robustness(t_curve, r_curve, phrase):
    df = _frame(_pairs(30, t_curve, r_curve))
    tab = budget_table(df, arms=["t", "r"], reference="r", epochs=3, tolerance=0.01, n_boot=200)
    v = budget_verdict(df, tab, arm="t", reference="r", epochs=3, tolerance=0.01, n_boot=200)
    assert phrase in v and v.startswith("t vs r by epoch budget")


def test_budget_verdict_needs_enough_pairs():
    df = _frame(_pairs(4, [0.9, 0.9], [0.5, 0.5]))
    tab = budget_table(df, arms=["t", "r"], reference="r", epochs=2, tolerance=0.01, n_boot=100)
    assert "too few" in budget_verdict(df, tab, arm="t", reference="r", epochs=2, tolerance=0.01, n_boot=100)


def test_budget_verdict_refuses_when_intervals_overlap():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        a, b = rng.uniform(0.5, 0.9, size=2)
        rows += [_trial("t", i, [a, a]), _trial("r", i, [b, b])]
    df = _frame(rows)
    tab = budget_table(df, arms=["t", "r"], reference="r", epochs=2, tolerance=0.01, n_boot=200)
    assert "neither budget separates the arms" in budget_verdict(df, tab, arm="t", reference="r", epochs=2, tolerance=0.01, n_boot=200)


def test_compute_curve_hand_computed():
    # Arm t: scores .2 .4 at 1 epoch, seconds 2 and 4 for 2-epoch runs -> 1 and 2 s per 1-epoch run.
    df = _frame([_trial("t", 0, [0.2, 0.6], seconds=2.0), _trial("t", 1, [0.4, 0.8], seconds=4.0)])
    c = compute_curves(df, arms=["t"], epochs=2, n_boot=100)
    one = c[(c["epochs"] == 1)].set_index("n")
    # n=1: mean .3 at 1.5 s; n=2: V = .2 * 1/4 + .4 * 3/4 = .35 at 3 s.
    assert one.loc[1, "value"] == pytest.approx(0.3) and one.loc[1, "seconds"] == pytest.approx(1.5)
    assert one.loc[2, "value"] == pytest.approx(0.35) and one.loc[2, "seconds"] == pytest.approx(3.0)
    two = c[(c["epochs"] == 2)].set_index("n")
    assert two.loc[2, "seconds"] == pytest.approx(6.0)


CELLS = {("raw", False): "A", ("raw", True): "B", ("standardize", False): "C", ("standardize", True): "D"}


def test_interaction_hand_computed():
    scores = {"A": [0.2, 0.4, 0.3], "B": [0.5, 0.6, 0.7], "C": [0.8, 0.9, 0.7], "D": [0.9, 0.9, 0.9]}
    rows = [_trial(arm, i, [s]) for arm, v in scores.items() for i, s in enumerate(v)]
    rows.append(_trial("A", 3, [0.5]))  # config 3 ran only in A: not a full 2x2 row, dropped
    cells = cell_scores(_frame(rows), CELLS)
    assert list(cells.index) == [0, 1, 2]
    tab = interaction_table(cells, n_boot=500).set_index("quantity")
    # Means: A .3, B .6, C .8, D .9.
    want = {"standardize_gain": 0.5, "norm_gain_raw": 0.3, "norm_gain_std": 0.1,
            "interaction": 0.1 - 0.3, "recovered_share": 0.3 / 0.5}
    for q, v in want.items():
        assert tab.loc[q, "value"] == pytest.approx(v)
        assert tab.loc[q, "lo"] <= v + 1e-12 and v - 1e-12 <= tab.loc[q, "hi"]
    # C - A = .6 .5 .4: mean .5, sd .1, SE .1/sqrt 3 = 0.057735, t = 8.660254 on 2 df. With 2 df the
    # t CDF is 1/2 + t / (2 sqrt(2 + t^2)): sf = 1/2 - 8.660254 / (2 * 8.774964) = 0.006536 -> p = 0.013072.
    # Its interval: .5 -+ t(0.975, 2) SE = .5 -+ 4.302653 * 0.057735 = (0.251586, 0.748414).
    assert tab.loc["standardize_gain", "p_value"] == pytest.approx(0.013072, abs=1e-6)
    assert (tab.loc["standardize_gain", "lo"], tab.loc["standardize_gain", "hi"]) == \
        pytest.approx((0.251586, 0.748414), abs=1e-6)
    # the ratio keeps its bootstrap interval and has no test
    assert math.isnan(tab.loc["recovered_share", "p_value"])
    assert tab.loc["standardize_gain", "n_configs"] == 3
    assert "Too few" in interaction_verdict(tab.reset_index())  # 3 configurations: no verdict
    # The same three configurations twice: the same means, and enough configurations to state them.
    v = interaction_verdict(interaction_table(pd.concat([cells, cells], ignore_index=True), n_boot=500))
    assert "recovers 60%" in v and "+50.0 pts" in v


def test_interaction_with_no_gain_to_recover_and_empty():
    same = pd.DataFrame({"A": [0.5, 0.6] * 3, "B": [0.7, 0.8] * 3, "C": [0.5, 0.6] * 3, "D": [0.7, 0.8] * 3})
    tab = interaction_table(same, n_boot=100).set_index("quantity")
    assert math.isnan(tab.loc["recovered_share", "value"]) and tab.loc["norm_gain_std", "value"] == pytest.approx(0.2)
    assert "does not show a gain" in interaction_verdict(tab.reset_index())
    empty = interaction_table(pd.DataFrame(columns=list("ABCD"), dtype=float))
    assert "Too few" in interaction_verdict(empty)


def test_full_budget_row_is_the_verdict_s_primary_analysis():
    """At the full budget the budget layer runs the same analysis on the same inputs as the two-arm
    summary (derived δ included), so the numbers and the direction are identical."""
    from bnsearch.analysis.multiarm import analyse_arms

    rng = np.random.default_rng(2)
    rows = []
    for i in range(40):
        q = rng.uniform(0.3, 0.9)
        rows.append(_trial("bn-on", i, [q * 0.8, min(q + 0.05, 0.97)]))
        rows.append(_trial("bn-off", i, [q * 0.7, q - 0.02 * (i % 3)]))
    df = _frame(rows)
    a = analyse_arms(df, arms=["bn-on", "bn-off"], reference="bn-off", epochs=2, tolerance=None, n_val=360,
                     distributions={}, paired=True, sampler="random", task="classification", n_boot=50)
    s = a.comparisons["bn-on"]
    b = a.budget[(a.budget["epochs"] == 2) & (a.budget["versus"] == "bn-off")].set_index("metric")
    assert (b.loc["good_delta", "value"], b.loc["good_delta", "lo"], b.loc["good_delta", "hi"]) == \
        (s.primary["diff"], s.primary["lo"], s.primary["hi"])
    assert b.loc["primary_p", "value"] == s.primary["p_value"]
    assert b.loc["direction", "value"] == {"easier": 1, "harder": -1}.get(s.outcome, 0)
    v = a.budget_verdicts[("bn-on", "bn-off")]
    assert ("at the full 2 easier" in v) == (s.outcome == "easier")


def test_unpaired_trials_get_per_arm_budgets_and_no_pair_rows():
    """Trials without a configuration index (an unpaired random search) cannot be paired: the budget
    table keeps the per-arm rows and has no pair rows, instead of failing."""
    rows = [_trial("t", i, [0.5, 0.6 + 0.01 * i]) for i in range(6)] + [_trial("r", i, [0.4, 0.5]) for i in range(6)]
    df = _frame(rows)
    df["config_index"] = pd.array([pd.NA] * len(df), dtype="Int64")
    tab = budget_table(df, arms=["t", "r"], reference="r", epochs=2, tolerance=0.01, n_boot=50)
    assert (tab["metric"] == "good_fraction").any() and not (tab["versus"] == "r").any()
