"""The panel: the pooled scale's per-data-set effect and variance against hand arithmetic (c = 0
included), pooling, the near-constant mark, the Bayesian test's ROPE and uncertainty, the quoting rule
(no direction beside an interval that includes 0, no negative zero), the command end to end, and
resume after the command is killed in the middle of the panel."""

import math
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from bnsearch.panel import load_panel, paired_effect, pool_panel, top_quarter_counts, unpaired_effect
from conftest import ROOT, killed_on_exit, run_cli

TINY = """
[panel]
name = "tiny"
datasets = {datasets}

[experiment]
seed = 0
tolerance = 0.02

[search]
trials = {trials}

[search.space]
layers     = {{ low = 1, high = 2 }}
width      = {{ low = 8, high = 32, log = true }}
activation = ["relu", "tanh"]
lr         = {{ low = 1e-3, high = 1.0, log = true }}
optimizer  = ["sgd", "adam"]
batch_size = [16, 32]

[train]
epochs = {epochs}
"""


def tiny(tmp_path, datasets='["iris", "wine"]', trials=4, epochs=1):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY.format(datasets=datasets, trials=trials, epochs=epochs))
    return p


# --------------------------------------------------------------------------- arithmetic

Z = 1.959963984540054  # the two-sided 95% normal quantile


def _tango_c0(n, b):
    """Tango's 95% interval for (b - 0)/n worked out by hand. With c = 0 the restricted MLE of p01 is
    0 above b/(2n - b), so the upper bound solves (n d - b)^2 = z^2 n d (1 - d): Wilson's upper bound
    of b/n. Below it p01 = (b - (2n - b) d)/(2n), the score variance is (b - n d)(1 + d), and the
    lower bound solves b - n d = z^2 (1 + d): d = (b - z^2)/(n + z^2) (valid for b > z^2 when that d
    is below b/(2n - b)). With b = c = 0 both bounds are +-z^2/(n + z^2)."""
    if b == 0:
        h = Z * Z / (n + Z * Z)
        return -h, h
    lo = (b - Z * Z) / (n + Z * Z)
    assert 0 < lo < b / (2 * n - b)  # the branch the formula is for
    hi = ((2 * b + Z * Z) + math.sqrt((2 * b + Z * Z) ** 2 - 4 * (n + Z * Z) * b * b / n)) / (2 * (n + Z * Z))
    return lo, hi


def test_paired_effect_and_its_variance_by_hand():
    # c = 0, one way only: 6 of 99 pairs good only with BN (the ceiling case that motivated the change).
    lo, hi = _tango_c0(99, 6)
    e = paired_effect(99, 6, 0)
    assert e["effect"] == pytest.approx(6 / 99)
    assert (e["effect_lo"], e["effect_hi"]) == pytest.approx((lo, hi), abs=1e-9)  # 0.020989, 0.125968
    assert e["variance"] == pytest.approx(((hi - lo) / (2 * Z)) ** 2, rel=1e-8)  # 7.17e-4
    wald = (6 / 99 - (6 / 99) ** 2) / 99  # 5.75e-4: the old variance, too small at c = 0
    assert e["variance"] > wald
    # No discordant pair at all: the Wald variance is 0; the score interval is +-z^2/(n + z^2).
    e = paired_effect(25, 0, 0)
    assert e["effect"] == 0 and e["effect_hi"] == pytest.approx(Z * Z / (25 + Z * Z), abs=1e-9)
    assert e["variance"] == pytest.approx((Z / (25 + Z * Z)) ** 2, rel=1e-8)
    # b and c both > 0: an interval that contains the estimate, and no estimate without pairs.
    e = paired_effect(20, 5, 1)
    assert e["effect_lo"] < 0.2 < e["effect_hi"] and e["variance"] > 0
    assert math.isnan(paired_effect(0, 0, 0)["variance"])
    # Unpaired (adaptive samplers): a score interval too, positive even at 0 of n in both arms.
    u = unpaired_effect(20, 0, 25, 0)
    assert u["effect"] == 0 and u["effect_lo"] < 0 < u["effect_hi"] and u["variance"] > 0


def test_top_quarter_counts_by_hand_and_against_the_primary_analysis():
    import numpy as np

    from bnsearch.analysis.primary import primary_analysis

    # 8 pooled scores; numpy's "lower" 0.75 quantile is the 6th smallest (index floor(0.75 * 7) = 5): 0.8.
    t = [0.9, 0.8, 0.5, 0.6]
    r = [0.7, 0.85, 0.4, 0.3]
    c = top_quarter_counts(t, r, paired=True)
    assert c["top_threshold"] == 0.8
    # pairs (0.9, 0.7): only on; (0.8, 0.85): both; (0.5, 0.4), (0.6, 0.3): neither
    assert (c["top_b"], c["top_c"], c["top_k_on"], c["top_k_off"]) == (1, 0, 2, 1)
    # Real scores: the counts are the primary analysis' own "top 25%" level wherever it kept that level.
    rng = np.random.default_rng(5)
    off = rng.uniform(0.5, 0.9, 60)
    on = np.clip(off + rng.normal(0.03, 0.05, 60), 0, 1)
    res = primary_analysis(on, off, paired=True, s_star=float(max(on.max(), off.max())) + 0.001, tolerance=0.02,
                           n_perm=200)
    level = res.levels[res.levels["kind"] == "top 25%"].iloc[0]
    c = top_quarter_counts(on, off, paired=True)
    assert c["top_threshold"] == pytest.approx(level["threshold"])
    assert (c["top_b"], c["top_c"], c["top_k_on"], c["top_k_off"]) == (level["b"], level["c"], level["k_t"],
                                                                           level["k_r"])


def _row(slug, n, b, c, **extra):
    return {"slug": slug, "dataset": slug, "n": n, "top_b": b, "top_c": c, "outcome": "cannot tell", **extra}


def test_pool_panel_by_hand_with_one_way_pairs():
    """Three data sets whose discordant pairs all go one way (c = 0), so every effect and variance is
    the closed form above, and the DerSimonian-Laird line is checked end to end by hand."""
    rows = [_row("A", 20, 8, 0, log10_rows=3.0, features=10, classes=2, scale_spread=1.0, raw_inputs=0),
            _row("B", 25, 0, 0, log10_rows=3.5, features=20, classes=3, scale_spread=2.0, raw_inputs=0),
            _row("C", 16, 6, 0, log10_rows=4.0, features=30, classes=2, scale_spread=5.0, raw_inputs=1)]
    res = pool_panel(rows)
    y = [0.4, 0.0, 0.375]
    ci = [_tango_c0(20, 8), _tango_c0(25, 0), _tango_c0(16, 6)]
    v = [((hi - lo) / (2 * Z)) ** 2 for lo, hi in ci]  # 0.0125455, 0.0046226, 0.0166244
    assert res.datasets["effect"].tolist() == pytest.approx(y)
    assert res.datasets["variance"].tolist() == pytest.approx(v, rel=1e-8)
    w = [1 / x for x in v]
    sw = sum(w)
    y_fe = sum(wi * yi for wi, yi in zip(w, y)) / sw
    q = sum(wi * (yi - y_fe) ** 2 for wi, yi in zip(w, y))
    tau2 = (q - 2) / (sw - sum(wi * wi for wi in w) / sw)
    ws = [1 / (vi + tau2) for vi in v]
    mu = sum(wi * yi for wi, yi in zip(ws, y)) / sum(ws)
    assert q > 2 and tau2 > 0
    dl = res.dl
    assert (dl.q, dl.tau2, dl.pooled, dl.se) == pytest.approx((q, tau2, mu, (1 / sum(ws)) ** 0.5), rel=1e-7)
    # The headline is Paule-Mandel; panel.csv's weights are its weights.
    assert res.pm.method == "pm" and res.datasets["weight"].sum() == pytest.approx(1.0)
    assert set(res.moderators["trait"]) == {"log10_rows", "features", "classes", "scale_spread", "raw_inputs"}
    assert "Across 3 data sets" in res.verdict and "prediction interval" in res.verdict
    table = res.pooled_table()
    row = table[(table["method"] == "random effects, DerSimonian-Laird")
                & (table["quantity"] == "pooled difference, HKSJ 95% CI")]
    assert row["value"].item() == pytest.approx(mu) and row["lo"].item() == pytest.approx(dl.hk_low)


def test_pool_panel_without_an_estimate():
    res = pool_panel([_row("A", 20, 8, 2), {**_row("B", 0, 0, 0)}])
    assert res.pm is None and "nothing is pooled" in " ".join(res.notes)
    assert res.verdict.startswith("Too few data sets")


def test_near_constant_mark_and_sensitivity_line():
    # s* - baseline below 2 δ: within δ of the best can also be within δ of the constant predictor.
    rows = [_row("hmda", 99, 6, 0, s_star=0.91, baseline=0.88, tolerance=0.02),  # 0.03 < 0.04
            _row("cells", 99, 23, 5, s_star=0.86, baseline=0.64, tolerance=0.08),  # 0.22 >= 0.16
            _row("oj", 99, 21, 8, s_star=0.85, baseline=0.61, tolerance=0.117),  # 0.24 >= 0.234
            _row("edge", 99, 10, 4, s_star=0.70, baseline=0.60, tolerance=0.05),  # 0.10 = 2 δ: not below
            _row("nobase", 99, 9, 3, tolerance=0.05)]
    res = pool_panel(rows)
    df = res.datasets.set_index("slug")
    assert df["near_constant"].to_dict() == {"hmda": True, "cells": False, "oj": False, "edge": False,
                                             "nobase": None}
    assert df.loc["hmda", "headroom"] == pytest.approx(0.03)
    assert "hmda" in res.verdict and "†" in res.verdict
    assert res.pm_clear is not None and res.pm_clear.k == 4
    keep = res.datasets[res.datasets["slug"] != "hmda"]
    from bnsearch.analysis.meta import random_effects

    assert res.pm_clear.pooled == pytest.approx(random_effects(keep, effect="effect", variance="variance").pooled)


def test_bayesian_rope_is_the_verdicts_margin():
    from bnsearch.analysis.primary import EQUIVALENCE_MARGIN

    # Every data set 5 pts ahead on 400 pairs: inside the 10-pt practical margin, so "equivalent",
    # although every one of them is clearly positive.
    rows = [_row(f"d{i}", 400, 30 + i, 10 + i) for i in range(6)]
    res = pool_panel(rows)
    assert res.rope == EQUIVALENCE_MARGIN and res.bayes.rope == EQUIVALENCE_MARGIN
    assert res.bayes.draws > 1 and res.bayes.p_equivalent > 0.9
    assert "ROPE ±10 pts" in res.verdict
    # The old 1-pt ROPE would have called the same panel a clear win; the config may still ask for
    # it, and the report then says the two answer different questions.
    narrow = pool_panel(rows, rope=0.01)
    assert narrow.bayes.p_better > 0.9 and any("differs from the per-data-set" in n for n in narrow.notes)


def test_bayesian_test_carries_each_data_sets_uncertainty():
    # The same point differences (+20 pts) measured on 20 pairs and on 2000 pairs per data set: the
    # small panel must be less sure that the difference exceeds the margin.
    small = pool_panel([_row(f"d{i}", 20, 5, 1) for i in range(5)])
    large = pool_panel([_row(f"d{i}", 2000, 500, 100) for i in range(5)])
    assert small.datasets["effect"].tolist() == pytest.approx(large.datasets["effect"].tolist())
    assert large.bayes.p_better > 0.95
    assert small.bayes.p_better < large.bayes.p_better - 0.1  # measured: 0.84 vs 0.98
    # baycomp on the point values alone cannot tell the two panels apart
    from bnsearch.analysis.meta import bayes_signed_rank

    point = bayes_signed_rank(small.datasets["effect"].to_numpy(), [0.0] * 5, small.rope)
    assert point.draws == 1 and point.p_better > small.bayes.p_better + 0.1


# --------------------------------------------------------------------------- quoting rule

DIRECTIONAL = re.compile(r"\b(easier|harder|raised|lowered)\b")
INTERVAL = re.compile(r"([+-]?\d+(?:\.\d+)?) to ([+-]?\d+(?:\.\d+)?)")
NEG_ZERO = re.compile(r"(?<![\w.])[-−]0(?:\.0+)?(?![\d.])")


def directional_violations(text: str) -> list[str]:
    """Each directional word must be followed, in the same table cell or sentence, by an interval
    that excludes 0 on its side."""
    bad = []
    for chunk in re.split(r"\||(?<=\.) (?=[A-Z])|\n", text):
        for m in DIRECTIONAL.finditer(chunk):
            iv = INTERVAL.search(chunk, m.end())
            up = m.group(1) in ("easier", "raised")
            if iv is None:
                bad.append(chunk)
                continue
            lo, hi = float(iv.group(1)), float(iv.group(2))
            if not ((lo > 0) if up else (hi < 0)):
                bad.append(chunk)
    return bad


def _quoting_rows():
    # Directional outcomes whose declared-δ interval includes 0 (the OJ, HMDA and hpc rows of the
    # issue) but whose strongest level rejects; one whose strongest level is not reported as
    # rejecting; one cannot-tell; and differences that round to a negative zero.
    common = dict(margin=0.10, tolerance=0.05, s_star=0.9, baseline=0.5)
    return [
        _row("oj", 99, 21, 8, outcome="easier", diff=0.131, lo=-0.014, hi=0.277, focus_kind="profile",
             focus_threshold=0.661, focus_diff=0.14, focus_lo=0.03, focus_hi=0.27, **common),
        _row("hmda", 99, 6, 0, outcome="easier", diff=0.061, lo=-0.003, hi=0.152, focus_kind="top 25%",
             focus_threshold=0.8789, focus_diff=0.12, focus_lo=0.02, focus_hi=0.24, **{**common, "baseline": 0.88}),
        _row("worse", 99, 2, 20, outcome="harder", diff=-0.02, lo=-0.004, hi=0.05, focus_kind="top 50%",
             focus_threshold=0.7, focus_diff=-0.18, focus_lo=-0.3, focus_hi=-0.06, **common),
        _row("odd", 99, 10, 4, outcome="easier", diff=0.06, lo=-0.02, hi=0.14, focus_kind="declared",
             focus_threshold=0.85, focus_diff=0.06, focus_lo=-0.02, focus_hi=0.14, **common),
        _row("flat", 99, 3, 3, outcome="cannot tell", diff=-0.0004, lo=-0.0004, hi=0.2, reason="too few",
             focus_diff=-0.001, focus_lo=-0.004, focus_hi=0.1, **common),
    ]


def test_no_direction_beside_an_interval_that_includes_0(tmp_path):
    from bnsearch.panel import dataset_claim, forest_labels, markdown

    res = pool_panel(_quoting_rows())
    claims = {r.slug: dataset_claim(r) for r in res.datasets.itertuples()}
    assert claims["oj"] == "easier: +14 pts at a score ≥ 0.661 (95% CI +3 to +27)"
    assert claims["worse"].startswith("harder: -18 pts at a score ≥ 0.700")
    assert not DIRECTIONAL.search(claims["odd"])  # its own interval includes 0: no direction quoted
    text = markdown(res, load_panel(tiny(tmp_path)))
    own = text.split("## Each data set's verdict")[0]  # what follows is each experiment's own verdict text
    table = [line for line in own.splitlines() if line.startswith("| ")]
    assert len(table) >= 6 and any("at the declared δ" in line for line in table)
    assert "easier on 2 (their simultaneous 95% CIs span +2 to +27 pts" in res.verdict
    for chunk in (res.verdict, *own.splitlines(), *forest_labels(res)):
        assert not directional_violations(chunk), chunk
    # the checker does catch the old layouts: a word beside the declared-δ interval including 0, or none
    assert directional_violations("easier, +13.1 pts (95% CI -1.4 to +27.7)")
    assert directional_violations("Per data set: 11 easier, 0 harder.")
    assert not NEG_ZERO.search(text) and not NEG_ZERO.search(" ".join(forest_labels(res)))
    assert "| 0 pts (0 to +20) |" in text  # -0.04 pts rounds to an unsigned 0


def test_no_negative_zero_in_copied_text():
    from bnsearch.panel import no_negative_zero, pts

    assert (no_negative_zero("95% CI -0.0 to +23.6; -0 pts; -0.05; x-0.0; 10-0")
            == "95% CI 0.0 to +23.6; 0 pts; -0.05; x-0.0; 10-0")
    assert (pts(-0.0004), pts(-0.0004, 0), pts(0.0), pts(-0.012)) == ("0.0", "0", "0.0", "-1.2")


# --------------------------------------------------------------------------- config

def test_panel_config_errors(tmp_path):
    from bnsearch.config import ConfigError

    with pytest.raises(ConfigError, match=r"panel.datasets\[2\].*unknown data set 'nosuch'"):
        load_panel(tiny(tmp_path, datasets='["iris", "nosuch"]'))
    with pytest.raises(ConfigError, match="both be named 'iris'"):
        load_panel(tiny(tmp_path, datasets='["iris", "iris"]'))
    p = load_panel(tiny(tmp_path, datasets='["iris", {dataset = "skewed", inputs = "raw"}, "r:ISLR/OJ"]'))
    assert [e.settings.name for e in p.entries] == ["tiny-iris", "tiny-skewed-raw", "tiny-oj"]
    assert p.entries[1].settings.data.inputs == "raw"
    # The shipped panel: at least 8 real tables plus the skewed case, all parseable.
    shipped = load_panel(ROOT / "configs" / "panel.toml")
    assert sum(e.settings.data.dataset.startswith("r:") for e in shipped.entries) >= 8
    assert any(e.settings.data.dataset == "skewed" and e.settings.data.inputs == "raw" for e in shipped.entries)


def test_panel_cli_bad_input_is_one_line(tmp_path):
    r = run_cli("panel", str(tiny(tmp_path, datasets='["iris", "nosuch"]')), "--storage",
                f"sqlite:///{tmp_path / 'p.db'}", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and "nosuch" in r.stderr
    assert not (tmp_path / "p.db").exists()


# --------------------------------------------------------------------------- end to end

def _counts(url, panel):
    from bnsearch.search import load_trials

    out = {}
    for e in panel.entries:
        df = load_trials(url, e.settings.name, e.settings.arm_names())
        for arm, g in df.groupby("arm"):
            done = g[g["state"] == "COMPLETE"]
            assert done["config_index"].is_unique, (e.slug, arm)  # nothing trained twice
            out[(e.slug, arm)] = len(done)
    return out


def test_panel_end_to_end(tmp_path):
    cfg = tiny(tmp_path)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    r = run_cli("panel", str(cfg), "--storage", url, "--out", str(tmp_path / "out"), "--jobs", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Across 2 data sets" in r.stdout
    for name in ("panel.csv", "pooled.csv", "moderators.csv", "forest.png", "report.md"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    assert (tmp_path / "out" / "forest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = pd.read_csv(tmp_path / "out" / "panel.csv")
    assert rows["slug"].tolist() == ["iris", "wine"] and (rows["n"] == 3).all()  # s*'s configuration left out
    # The pooled scale counts the same 3 pairs: at least a quarter of the 6 scores reach the top quarter.
    assert ((rows["top_k_on"] + rows["top_k_off"]) >= 2).all()
    assert (rows["effect"] == (rows["top_b"] - rows["top_c"]) / rows["n"]).all() and (rows["variance"] > 0).all()
    assert rows["near_constant"].notna().all() and (rows["headroom"] == rows["s_star"] - rows["baseline"]).all()
    pooled = pd.read_csv(tmp_path / "out" / "pooled.csv")
    assert {"random effects, Paule-Mandel", "random effects, DerSimonian-Laird"} <= set(pooled["method"])
    assert "pooled difference, HKSJ 95% CI" in set(pooled["quantity"])
    report = (tmp_path / "out" / "report.md").read_text()
    for chunk in report.split("## Each data set's verdict")[0].splitlines():
        assert not directional_violations(chunk), chunk
    assert not NEG_ZERO.search(report)
    assert set(_counts(url, load_panel(cfg)).values()) == {4}
    # Two arms and no init in the space: the sub-spaces are each optimizer and depth, and the whole
    # space's row is the headline's (tests/test_panel_pooled.py recomputes every row by hand).
    subs = pd.read_csv(tmp_path / "out" / "panel_subspaces.csv")
    assert list(dict.fromkeys(subs["subspace"])) == ["all configurations", "optimizer = sgd", "optimizer = adam",
                                                     "layers = 1", "layers = 2"]
    whole = subs[(subs["subspace"] == "all configurations") & (subs["dataset"] != "pooled")]
    assert whole[["dataset", "top_b", "top_c"]].values.tolist() == rows[["slug", "top_b", "top_c"]].values.tolist()
    assert "The search space has no careful inits" in report and "Within careful inits" not in report
    assert len(pd.read_csv(tmp_path / "out" / "panel_influence.csv")) == 2
    assert pd.read_csv(tmp_path / "out" / "panel_budget.csv")["epochs"].unique().tolist() == [1]
    assert not (tmp_path / "out" / "panel_interaction.csv").exists()  # two arms: no 2x2


def test_panel_resumes_after_kill(tmp_path):
    from bnsearch.search import list_experiments

    cfg = tiny(tmp_path, datasets='["iris", "wine", "breast_cancer"]', trials=6, epochs=3)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    cmd = [sys.executable, "-m", "bnsearch", "panel", str(cfg), "--storage", url, "--out", str(tmp_path / "out"),
           "--jobs", "2"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    killed_mid_panel = False
    with killed_on_exit(proc):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                rows = {(r["experiment"], r["arm"]): r for r in list_experiments(url)}
            except Exception:  # storage not created yet
                rows = {}
            first = [r for (exp, _), r in rows.items() if exp == "tiny-iris"]
            if len(first) == 2 and all(r["complete"] == r["budget"] for r in first):
                os.kill(proc.pid, signal.SIGKILL)  # the command only: its workers must notice on their own
                proc.wait()
                killed_mid_panel = not (tmp_path / "out" / "pooled.csv").exists()
                break
            time.sleep(0.05)
    assert killed_mid_panel, "the panel finished before it could be killed"
    r = run_cli("panel", str(cfg), "--storage", url, "--out", str(tmp_path / "out"), "--jobs", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    counts = _counts(url, load_panel(cfg))
    assert len(counts) == 6 and set(counts.values()) == {6}, counts
    assert len(pd.read_csv(tmp_path / "out" / "panel.csv")) == 3


def test_one_worker_runs_every_experiment_of_the_panel(tmp_path):
    from bnsearch.search import load_trials, run_arms
    from bnsearch.search.worker import _experiment_arm

    assert _experiment_arm("a", "bn-on") == ("a", "bn-on")
    assert _experiment_arm("a", "tiny-wine/bn-off") == ("tiny-wine", "bn-off")
    panel = load_panel(tiny(tmp_path, trials=3))
    url = f"sqlite:///{tmp_path / 'p.db'}"
    first, second = (e.settings for e in panel.entries)
    arms = run_arms(first, url, first.arm_names(), jobs=1, more=[second])
    assert sorted(a.study.study_name for a in arms) == ["tiny-iris/bn-off", "tiny-iris/bn-on", "tiny-wine/bn-off",
                                                       "tiny-wine/bn-on"]
    for s in (first, second):
        df = load_trials(url, s.name, s.arm_names())
        assert (df["state"] == "COMPLETE").sum() == 6
