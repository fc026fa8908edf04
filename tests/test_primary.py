"""The primary endpoint, its intervals and tests, the tolerance, the simultaneous bands and the
heterogeneity tables, checked against published or hand-computed values (arithmetic in comments)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from bnsearch import analysis as A
from bnsearch.analysis.primary import _tango_z


def test_exact_conditional_interval_agrees_with_exact_mcnemar():
    # b = 6, c = 0 of n = 30: p = 2 * 0.5^6 = 0.03125; Clopper-Pearson lower bound of 6/6 is
    # 0.025^(1/6) = 0.540696, so the difference's lower end is 6/30 * (2 * 0.540696 - 1) = 0.016278.
    assert A.exact_mcnemar(6, 0) == pytest.approx(0.03125)
    lo, hi = A.paired_exact_interval(6, 0, 30)
    assert lo == pytest.approx(0.2 * (2 * 0.025 ** (1 / 6) - 1), abs=1e-9) and hi == pytest.approx(0.2)
    # the interval excludes 0 exactly when p < 0.05, over every split of up to 25 discordant pairs
    for m in range(1, 26):
        for b in range(m + 1):
            lo, hi = A.paired_exact_interval(b, m - b, 50)
            assert (lo > 0 or hi < 0) == (A.exact_mcnemar(b, m - b) < 0.05), (b, m - b)
    assert A.paired_exact_interval(0, 0, 10) == (0.0, 0.0) and A.exact_mcnemar(0, 0) == 1.0


def test_tango_score_interval():
    # At delta = 0 the score statistic is McNemar's: (b - c) / sqrt(b + c) = 4 / sqrt(6)
    assert _tango_z(0.0, 5, 1, 20) == pytest.approx(4 / math.sqrt(6))
    # No discordant pair: the bounds solve n d / (1 - d) = z^2, i.e. d = z^2 / (n + z^2)
    z = 1.959964
    assert A.tango_interval(0, 0, 50) == pytest.approx((-z * z / (50 + z * z), z * z / (50 + z * z)), abs=1e-6)
    # the bounds are where the score statistic equals -+z (the test it inverts)
    lo, hi = A.tango_interval(5, 1, 20)
    assert _tango_z(lo, 5, 1, 20) == pytest.approx(z, abs=1e-5)
    assert _tango_z(hi, 5, 1, 20) == pytest.approx(-z, abs=1e-5)


def test_newcombe_interval_published_example_and_its_test():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 - 48/80 -> 0.0524 to 0.3339
    assert A.newcombe_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    # the test that the interval inverts: at its p, the interval's lower end touches 0
    p = A.newcombe_p(56, 70, 48, 80)
    assert 0 < p < 0.05
    assert A.newcombe_interval(56, 70, 48, 80, 1 - p)[0] == pytest.approx(0.0, abs=1e-6)
    assert A.newcombe_p(3, 10, 3, 10) == 1.0


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01 = 0.03, 2 * 0.03 = 0.06, max(0.06, 1 * 0.04) = 0.06
    assert A.holm([0.01, 0.04, 0.03, math.nan])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(A.holm([0.01, 0.04, 0.03, math.nan])[3])


def test_sample_size_by_hand():
    # Fleiss: d = 0.2, pbar = 0.2: (1.959964 sqrt(2 * 0.2 * 0.8) + 0.841621 sqrt(0.21 + 0.09))^2 / 0.04
    # = (1.108713 + 0.460975)^2 / 0.04 = 61.60
    n, what = A.trials_needed_unpaired(0.3, 0.1, 0.1)
    assert n == pytest.approx(61.599, abs=1e-2) and what == "a difference"
    # Connor, p10 = 0.1, p01 = 0.02: psi = 0.12, d = 0.08:
    # (1.959964 sqrt(0.12) + 0.841621 sqrt(0.12 - 0.0064))^2 / 0.0064 = (0.678951 + 0.283665)^2 / 0.0064
    # = 0.926630 / 0.0064 = 144.79
    n, what = A.trials_needed_paired(0.1, 0.02, 0.05)
    assert n == pytest.approx(144.79, abs=0.01) and what == "a difference"


def test_noise_tolerance_by_hand():
    # s* = 0.975 on 360 rows: k = 351, p = 353/364 = 0.969780, SE = sqrt(p(1-p)/364) = 0.0089730,
    # 2 SE = 0.017946 = 6.46 rows -> 7 rows = 7/360
    assert A.noise_tolerance(0.975, 360, "classification") == pytest.approx(7 / 360)
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
