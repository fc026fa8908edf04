"""The primary endpoint, its intervals and tests, the tolerance, the simultaneous bands and the
heterogeneity tables, checked against published or hand-computed values (arithmetic in comments)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from bnsearch import analysis as A


def test_tango_interval_published_example():
    # Fagerland, Lydersen & Laake (2014), Stat Med 33:2850, airway hyper-responsiveness example:
    # (a, b, c, d) = (1, 1, 7, 12), n = 21; Tango's asymptotic score interval -0.517 to -0.026.
    lo, hi = A.tango_interval(1, 7, 21)
    assert (round(lo, 3), round(hi, 3)) == (-0.517, -0.026)
    # No discordant pair: the bounds solve n d / (1 - d) = z^2, i.e. d = z^2 / (n + z^2)
    z = 1.959964
    assert A.tango_interval(0, 0, 50) == pytest.approx((-z * z / (50 + z * z), z * z / (50 + z * z)), abs=1e-6)
    # a larger critical value gives a wider interval (so coverage at z_0.975 bounds every printed one)
    wide = A.tango_interval(1, 7, 21, z=2.5)
    assert wide[0] < lo and wide[1] > hi


def test_mee_score_interval_published_example():
    # Newcombe (1998), Stat Med 17:873, example (a): 56/70 - 48/80, Mee's score interval 0.0533 to 0.3377
    lo, hi = A.score_interval_2indep(56, 70, 48, 80)
    assert (round(lo, 4), round(hi, 4)) == (0.0533, 0.3377)
    # at a difference of 0 its statistic is the pooled z: 7/20 - 3/25 = 0.23, pooled p = 10/45,
    # SE = sqrt(0.222222 * 0.777778 * (1/20 + 1/25)) = 0.124722 -> z = 1.844100
    from bnsearch.analysis.primary import _mn_z
    assert _mn_z(0.0, 7, 20, 3, 25) == pytest.approx(1.844100, abs=1e-5)


def test_exact_power_by_hand():
    # n = 2 pairs, p10 = 0.5, p01 = 0, critical value 1: only b = 2 (|2| > sqrt 2) rejects: 0.25
    from bnsearch.analysis.primary import _power_paired
    assert _power_paired(2, 0.5, 0.0, 1.0) == pytest.approx(0.25)
    # n = 3, p10 = p01 = 0.5, critical 1.5: (b, c) = (3, 0) or (0, 3): |3| > 1.5 sqrt 3 = 2.598 -> 2/8
    assert _power_paired(3, 0.5, 0.5, 1.5) == pytest.approx(0.25)


def test_max_statistic_test_by_hand():
    # one level, 6 pairs all discordant one way: every one of the 2^6 swaps is enumerated and only the
    # two all-same patterns reach |z| = sqrt 6, so p = 2/64 = 0.03125 (exact McNemar's p)
    gt, gr = np.ones(6, bool), np.zeros(6, bool)
    res = A.compare_flags(gt[None], gr[None], paired=True)
    assert res["exact"] and res["p_adj"][0] == pytest.approx(2 / 64) == A.exact_mcnemar(6, 0)
    # the critical value is the next |z| below sqrt 6, 4 / sqrt 6 (P(|z| > 4/sqrt 6) = 2/64 < 0.05,
    # P(|z| > 2/sqrt 6) = 14/64 >= 0.05), raised to z_0.975 = 1.96 because that is larger
    assert res["critical"] == pytest.approx(1.959964, abs=1e-6)
    # two identical levels: the max over them has the same null, so the same p
    two = A.compare_flags(np.stack([gt, gt]), np.stack([gr, gr]), paired=True)
    assert two["p_adj"] == pytest.approx([2 / 64, 2 / 64])


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01 = 0.03, 2 * 0.03 = 0.06, max(0.06, 1 * 0.04) = 0.06
    assert A.holm([0.01, 0.04, 0.03, math.nan])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(A.holm([0.01, 0.04, 0.03, math.nan])[3])


def test_noise_tolerance_by_hand():
    # s* = 0.975 on 360 rows: k = 351, p = 353/364 = 0.969780, SE = sqrt(p(1-p)/364) = 0.0089730,
    # 2 SE = 0.017946 = 6.46 rows -> 7 rows = 7/360
    assert A.noise_tolerance(0.975, 360, "classification") == pytest.approx(7 / 360)
    # with 10 contenders within 2 SE of s*: E[max of 10 normals] = 1.538753 (published tables, e.g.
    # Harter 1961), so δ = (2 + 1.538753) * 0.0089730 = 0.031753 = 11.43 rows -> 12 rows
    assert A.expected_max_normal(10) == pytest.approx(1.538753, abs=1e-6)
    scores = [0.975] * 10 + [0.5] * 50
    assert A.noise_tolerance(0.975, 360, "classification", scores=scores) == pytest.approx(12 / 360)
    # R² 0.5 on 100 rows: 2 * (1 - 0.5) * sqrt(2/100) = 0.141421
    assert A.noise_tolerance(0.5, 100, "regression") == pytest.approx(0.141421, abs=1e-6)
    assert math.isnan(A.noise_tolerance(0.9, None, "classification"))


def test_simultaneous_band_by_hand():
    # 4 scores 0.2, 0.4, 0.6, 0.8 on [0, 1]; DKW epsilon = sqrt(ln(2/0.05) / (2 * 4)) = 0.679050.
    # The lower curve at n = 1 is the mean under the CDF shifted up by epsilon: CDF 0.679 on [0, 0.2),
    # 0.929 on [0.2, 0.4), 1 after: integral of 1 - F = 0.2 * 0.320950 + 0.2 * 0.070950 = 0.078380.
    c = A.simultaneous_curve([0.2, 0.4, 0.6, 0.8], [1, 2], "classification")
    assert c.loc[0, "value"] == pytest.approx(0.5) and c.loc[0, "lo"] == pytest.approx(0.078380, abs=1e-6)
    assert c.loc[0, "hi"] == pytest.approx(1 - 0.078380, abs=1e-6)  # symmetric scores, symmetric band
    assert c.loc[1, "value"] == pytest.approx(A.v_estimate([0.2, 0.4, 0.6, 0.8], 2))


def _crossover_pairs():
    # 16 SGD configs: BN loses by 0.05 at lr 1e-4..1e-3 (8 pairs), wins by 0.05 at lr 0.1..1 (8 pairs)
    lrs = [2e-4] * 8 + [0.2] * 8
    d = [-0.05] * 8 + [0.05] * 8
    return pd.DataFrame({"config_index": range(16), "on": 0.5 + np.array(d), "off": 0.5, "d": d,
                         "optimizer": "sgd", "lr": lrs})


def test_heterogeneity_and_crossover_by_hand():
    table = A.heterogeneity_table(_crossover_pairs(), {"optimizer": True, "lr": False})
    w = A.wide(table).set_index(["factor", "level"])
    # optimizer = sgd: 8 wins, 8 losses -> sign test p = 1; each lr decade: 8 of 8 one way -> p = 2/256
    assert w.loc[("optimizer", "sgd"), "p_value"] == 1.0
    assert w.loc[("lr (sgd)", "1e-4..1e-3"), "p_value"] == pytest.approx(2 / 256)
    assert w.loc[("lr (sgd)", "1e-1..1e0"), "win_rate"] == 1.0
    # Holm over 3 tests: 3 * 0.0078125 = 0.0234375 for both decade cells
    assert w.loc[("lr (sgd)", "1e-1..1e0"), "p_holm"] == pytest.approx(3 * 2 / 256)
    assert A.crossovers(table) == [{"factor": "lr (sgd)", "helps": ["1e-1..1e0"], "hurts": ["1e-4..1e-3"]}]


def test_verdict_names_the_crossover():
    p = _crossover_pairs()
    rows = []
    for arm, col in (("bn-on", "on"), ("bn-off", "off")):
        for _, r in p.iterrows():
            rows.append({"experiment": "x", "arm": arm, "number": int(r["config_index"]), "state": "COMPLETE",
                         "config_index": int(r["config_index"]), "score": float(r[col]), "test_score": 0.5,
                         "diverged": False, "optimizer": "sgd", "lr": float(r["lr"])})
    df = pd.DataFrame(rows)
    dist = {"optimizer": CategoricalDistribution(["sgd", "adam"]), "lr": FloatDistribution(1e-4, 1.0, log=True)}
    s = A.summarize(df, distributions=dist, tolerance=0.01, paired=True, sampler="random",
                    task="classification", n_boot=100)
    assert "It depends on lr (sgd): BN helps at 1e-1..1e0 and hurts at 1e-4..1e-3" in s.verdict


def test_aa_without_crossover_claims():
    # identical arms: no cell can be significant, so no crossover sentence
    p = _crossover_pairs().assign(d=0.0)
    assert A.crossovers(A.heterogeneity_table(p, {"optimizer": True, "lr": False})) == []


def test_reference_is_the_lowest_config_among_ties():
    # s* = 0.9 in arm a (config 5) and arm b (config 2): the reference is config 2 of arm b
    scores = {"a": np.array([0.1, 0.9]), "b": np.array([0.9, 0.3])}
    order = {"a": np.array([1, 5]), "b": np.array([2, 7])}
    m = A.reference_mask(scores, order)
    assert m["a"].tolist() == [False, False] and m["b"].tolist() == [True, False]


def test_reference_context_from_the_split():
    from bnsearch.api import reference_context
    from bnsearch.config import load_config

    settings = load_config()  # the built-in default: digits, no tolerance set
    assert settings.tolerance is None
    ctx = reference_context(settings)
    # digits: 1797 rows; sklearn rounds test sizes up: ceil(1797 * 0.2) = 360 test rows, then the validation
    # share of the remaining 1437 is 0.2 / 0.8 = 0.25 -> ceil(359.25) = 360 validation rows
    assert ctx["n_val"] == 360
    assert 0.09 < ctx["baseline"] < 0.12  # ten balanced classes: the majority class is about 1/10
    assert ctx["reference"]["model"] == "logistic regression" and ctx["reference"]["val_score"] > 0.9


def test_tolerance_is_analysis_only():
    from bnsearch.config import load_config

    s = load_config()
    assert s.with_overrides(tolerance=0.05).config_hash() == s.config_hash()
