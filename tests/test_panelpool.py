"""The panel's pooled analyses beyond the headline (analysis/panelpool.py): sub-spaces, epoch budgets,
influence and the 2x2, on small constructed trials frames (no training). Every expected value is
derived here independently: counts by hand, pooling with statsmodels' combine_effects."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects

from bnsearch.analysis import panelpool as pp
from bnsearch.analysis.primary import tango_interval

Z = stats.norm.ppf(0.975)


def trials(configs, arms=("bn-on", "bn-off")):
    """A trials frame as search.load_trials builds it: configs is a list of dicts with the
    hyperparameters and one score per arm (key = arm name), optionally a curve per arm (key
    "<arm>:curve", the validation score after each epoch)."""
    rows, number = [], 0
    for i, c in enumerate(configs):
        for arm in arms:
            curve = c.get(f"{arm}:curve")
            rows.append({"experiment": "x", "arm": arm, "number": number, "state": "COMPLETE", "config_index": i,
                         "seed": i, "score": c[arm], "diverged": False,
                         "epochs_run": len(curve) if curve else None, "val_curve": curve,
                         **{k: v for k, v in c.items() if k not in arms and ":" not in k}})
            number += 1
    df = pd.DataFrame(rows)
    df["config_index"] = df["config_index"].astype("Int64")
    return df


def variance(n, b, c):
    lo, hi = tango_interval(b, c, n)
    return ((hi - lo) / (2 * Z)) ** 2


def hand_pool(effects, variances):
    """Paule-Mandel pooling and its HKSJ interval, by statsmodels (not the module's helper)."""
    with np.errstate(all="ignore"):  # statsmodels divides by Q, which is 0 for identical effects
        res = combine_effects(np.asarray(effects, float), np.asarray(variances, float), method_re="pm")
        _, _, _, hk = res.conf_int(use_t=True)
    return res.mean_effect_re, hk


# Data set "a" (s* is configuration 0, left out). The other eight, (init, BN on, BN off):
#   1 kaiming .90 .80 | 2 kaiming .85 .50 | 3 xavier .88 .86 | 4 xavier .70 .87
#   5 normal  .60 .30 | 6 normal  .89 .40 | 7 uniform .20 .10 | 8 uniform .50 .55
# The 16 compared scores sorted: .10 .20 .30 .40 .50 .50 .55 .60 .70 .80 .85 .86 .87 .88 .89 .90;
# the 75th percentile ("lower") is element floor(0.75 * 15) = 11: .86. Top quarter with BN on:
# 1, 3, 6; with BN off: 3, 4.
#   all eight: b = {1, 6} = 2, c = {4} = 1, shares 3/8 and 2/8, effect +1/8
#   careful (1-4): b = {1} = 1, c = {4} = 1, shares 2/4 and 2/4, effect 0
#   careless (5-8): b = {6} = 1, c = 0, shares 1/4 and 0/4, effect +1/4
# A threshold of the careful configurations' own (.87, element floor(0.75 * 7) = 5 of their eight
# scores) would give b = {1, 3} = 2, c = {4} = 1 there instead: the whole data set's bar matters.
A = [("kaiming", 1.00, .95), ("kaiming", .90, .80), ("kaiming", .85, .50), ("xavier", .88, .86),
     ("xavier", .70, .87), ("normal", .60, .30), ("normal", .89, .40), ("uniform", .20, .10),
     ("uniform", .50, .55)]
ADAM = {1, 2, 5, 7}  # the optimizer of each configuration: adam here, sgd elsewhere


def dataset(spec, shift=0.0):
    return trials([{"init": init, "optimizer": "adam" if i in ADAM else "sgd", "layers": 1 + i % 3,
                    "bn-on": on + shift * (i % 2), "bn-off": off} for i, (init, on, off) in enumerate(spec)])


SPACE = {"init": ("kaiming", "xavier", "normal", "uniform"), "optimizer": ("sgd", "adam"), "layers": (1, 2, 3),
         "activation": ("relu", "tanh")}


def test_subspace_counts_by_hand():
    subs = pp.declared_subspaces(SPACE)
    rows = pp.subspace_rows(dataset(A), subs).set_index("subspace")
    expect = {pp.ALL: (8, 2, 1), "careful inits (kaiming, xavier)": (4, 1, 1),
              "careless inits (normal, uniform)": (4, 1, 0)}
    for name, (n, b, c) in expect.items():
        r = rows.loc[name]
        assert (r.n, r.top_b, r.top_c) == (n, b, c), name
        assert r.top_threshold == pytest.approx(.86)
        assert r.effect == pytest.approx((b - c) / n)
        assert r.variance == pytest.approx(variance(n, b, c))
    assert rows.loc[pp.ALL, ["top_on", "top_off"]].tolist() == pytest.approx([3 / 8, 2 / 8])
    assert rows.loc["careless inits (normal, uniform)", ["top_on", "top_off"]].tolist() == pytest.approx([1 / 4, 0])
    # adam: 1, 2, 5, 7 -> b = {1} (top with BN only), c = none; sgd: 3, 4, 6, 8 -> b = {6}, c = {4}
    assert rows.loc["optimizer = adam", ["n", "top_b", "top_c"]].tolist() == [4, 1, 0]
    assert rows.loc["optimizer = sgd", ["n", "top_b", "top_c"]].tolist() == [4, 1, 1]
    # depth 1 + i % 3: depth 1 = {3, 6}, depth 2 = {1, 4, 7}, depth 3 = {2, 5, 8}
    assert rows.loc["layers = 1", ["n", "top_b", "top_c"]].tolist() == [2, 1, 0]
    assert rows.loc["layers = 2", ["n", "top_b", "top_c"]].tolist() == [3, 1, 1]


def test_subspaces_pooled_and_compared_match_statsmodels():
    subs = pp.declared_subspaces(SPACE, named=["activation"])
    assert [s.name for s in subs][-2:] == ["activation = relu", "activation = tanh"]
    # three data sets: BN's advantage on the odd configurations grows with the shift
    frames = {"a": dataset(A), "b": dataset(A, 0.05), "c": dataset(A, 0.3)}
    rows = pd.concat([pp.subspace_rows(f, subs).assign(dataset=k) for k, f in frames.items()], ignore_index=True)
    pooled = pp.pool_subspaces(rows).set_index("subspace")
    for name in ("careful inits (kaiming, xavier)", "careless inits (normal, uniform)"):
        r = rows[rows["subspace"] == name]
        mean, hk = hand_pool(r["effect"], [variance(*x) for x in r[["n", "top_b", "top_c"]].to_numpy()])
        assert pooled.loc[name, "pooled"] == pytest.approx(mean)
        assert pooled.loc[name, "k"] == 3
        assert pooled.loc[name, "hk_low"] <= pooled.loc[name, "pooled"] <= pooled.loc[name, "hk_high"]
    # the activation column is absent from these trials: no configuration falls in those sub-spaces
    assert pooled.loc["activation = relu", "k"] == 0 and "nothing pooled" in pooled.loc["activation = relu", "note"]

    diff = pp.subspace_difference(rows, pp.CAREFUL, pp.CARELESS)
    care = rows[rows["subspace"].str.startswith(pp.CAREFUL)].set_index("dataset")
    less = rows[rows["subspace"].str.startswith(pp.CARELESS)].set_index("dataset")
    d = care["effect"] - less["effect"]
    v = care["variance"] + less["variance"]
    assert diff.rows.set_index("dataset")["effect"].to_dict() == pytest.approx(d.to_dict())
    mean, _ = hand_pool(d, v)
    assert diff.pm.pooled == pytest.approx(mean)
    with pytest.raises(ValueError, match="can share configurations"):
        pp.subspace_difference(rows, pp.CAREFUL, "optimizer = adam")


def curves_dataset(seed, epochs=6, n=12):
    """Configuration 0 is the best at every budget (s*); the others' curves are seeded draws, BN on
    rising faster early, so the budgets differ."""
    rng = np.random.default_rng(seed)
    configs = []
    for i in range(n):
        c = {"init": "kaiming"}
        for arm, speed in (("bn-on", 0.9), ("bn-off", 0.45)):
            top = 0.99 if i == 0 else rng.uniform(0.3, 0.9)
            curve = [round(top * (1 - math.exp(-speed * (e + 1))), 4) if i else 0.99 for e in range(epochs)]
            c[arm], c[f"{arm}:curve"] = curve[-1], curve
        configs.append(c)
    return trials(configs)


def test_pooled_budget_rows_equal_hand_pooled():
    epochs = 6
    frames = {f"d{k}": curves_dataset(k, epochs) for k in range(4)}
    assert pp.budget_points(epochs) == [2, 5, 6]
    rows = pd.concat([pp.budget_rows(f, epochs=epochs).assign(dataset=k) for k, f in frames.items()],
                     ignore_index=True)
    pooled = pp.pool_budgets(rows).set_index("epochs")
    for e in (2, 5):
        effects, variances = [], []
        for f in frames.values():
            on = f[f.arm == "bn-on"].set_index("config_index")["val_curve"].map(lambda c: c[e - 1])
            off = f[f.arm == "bn-off"].set_index("config_index")["val_curve"].map(lambda c: c[e - 1])
            on, off = on.drop(index=0).to_numpy(float), off.drop(index=0).to_numpy(float)  # s* left out
            thr = np.quantile(np.concatenate([on, off]), 0.75, method="lower")
            n, b, c = on.size, int(((on >= thr) & (off < thr)).sum()), int(((on < thr) & (off >= thr)).sum())
            effects.append((b - c) / n)
            variances.append(variance(n, b, c))
        mean, hk = hand_pool(effects, variances)
        assert pooled.loc[e, "pooled"] == pytest.approx(mean)
        with np.errstate(all="ignore"):
            tau2 = combine_effects(np.asarray(effects), np.asarray(variances), method_re="pm").tau2
        if tau2 > 0:  # Paule-Mandel with tau2 > 0: the HKSJ interval is statsmodels' own
            assert [pooled.loc[e, "hk_low"], pooled.loc[e, "hk_high"]] == pytest.approx(list(hk))
    # the full budget is the recorded score: the same row the headline (all configurations) counts
    full = pp.budget_rows(frames["d0"], epochs=epochs).set_index("epochs").loc[epochs]
    whole = pp.subspace_rows(frames["d0"], []).iloc[0]
    assert (full.n, full.top_b, full.top_c) == (whole.n, whole.top_b, whole.top_c)
    text = pp.budget_sentence(pooled.reset_index())
    assert "after 2 epochs" in text and f"at the full {epochs}" in text


def test_leave_one_out_flags_the_data_set_that_flips_the_answer():
    # five data sets with a small, precise negative effect and one far above them: pooled with it, the
    # random-effects interval spans 0 and the point is positive; without it, clearly negative
    rows = pd.DataFrame({"dataset": list("abcdef"), "effect": [-.03, -.04, -.02, -.03, -.05, .5],
                         "variance": [1e-4, 1.2e-4, 1e-4, 1.5e-4, 1e-4, 1e-4], "n": 100})
    loo = pp.leave_one_out(rows).set_index("left_out")
    full, full_hk = hand_pool(rows["effect"], rows["variance"])
    assert full > 0 and full_hk[0] < 0 < full_hk[1]
    for k in rows.index:
        mean, hk = hand_pool(rows["effect"].drop(index=k), rows["variance"].drop(index=k))
        r = loo.loc[rows.loc[k, "dataset"]]
        assert r.pooled == pytest.approx(mean)
        assert r.changes_headline == (not hk[0] < 0 < hk[1])
    assert loo.index[loo["changes_headline"]].tolist() == ["f"]
    assert loo.loc["f", "sign_flips"] and loo.loc["f", "direction"] == -1
    assert "without f" in pp.influence_sentence(loo.reset_index())


def test_interaction_on_the_pooled_scale_by_hand():
    cells = {("raw", False): "A", ("raw", True): "B", ("standardize", False): "C", ("standardize", True): "D"}
    # configuration 0 sets s* (left out); the other eight's 32 scores are 21 x .1 and 11 x .9, so the
    # 75th percentile ("lower": element floor(0.75 * 31) = 23 of them sorted) is .9
    grid = [(.99, .1, .1, .1), (.1, .9, .9, .9), (.1, .9, .9, .9), (.1, .1, .9, .9), (.1, .1, .9, .1),
            (.1, .1, .1, .9), (.1, .1, .1, .1), (.1, .1, .1, .1), (.1, .9, .1, .1)]
    df = trials([dict(zip("ABCD", s)) for s in grid], arms=tuple("ABCD"))
    rows = pp.interaction_rows(df, cells).set_index("quantity")
    top = np.array(grid[1:]) >= .9
    a, b, c, d = top.T
    assert rows.loc["interaction", "n"] == 8
    assert rows.loc["norm_gain_raw", "effect"] == pytest.approx(b.mean() - a.mean())  # 3/8
    assert rows.loc["norm_gain_std", "effect"] == pytest.approx(d.mean() - c.mean())  # 0
    i = (d.astype(int) - c) - (b.astype(int) - a)
    assert rows.loc["interaction", "effect"] == pytest.approx(i.mean())
    assert rows.loc["interaction", "variance"] == pytest.approx(np.var([*i, 1, -1], ddof=1) / 10)
    # pooled across data sets like every other quantity
    stacked = pd.concat([rows.reset_index().assign(dataset=k) for k in "xy"], ignore_index=True)
    assert pp.pool_interaction(stacked).set_index("quantity").loc["interaction", "pooled"] == pytest.approx(i.mean())


def test_declared_subspaces_refuse_an_unknown_hyperparameter():
    with pytest.raises(ValueError, match="'momentum' is not a categorical hyperparameter"):
        pp.declared_subspaces(SPACE, named=["momentum"])
