"""The panel: per-data-set variance, pooling against hand arithmetic, the command end to end, and
resume after the command is killed in the middle of the panel."""

import math
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from bnsearch.panel import discordant_variance, load_panel, pool_panel, unpaired_variance
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

def test_variance_by_hand():
    # n = 20 pairs, b = 5 good only with BN, c = 1 good only without:
    # p_b = 0.25, p_c = 0.05, var = (0.25 + 0.05 - 0.2^2) / 20 = 0.26 / 20 = 0.013
    assert discordant_variance(20, 5, 1) == pytest.approx(0.013, abs=1e-15)
    # No discordant pair: the variance would be 0 (infinite weight); floored at 1/(4 n^2).
    assert discordant_variance(10, 0, 0) == pytest.approx(1 / 400)
    # All pairs discordant one way: (1 - 1) / n = 0, floored too.
    assert discordant_variance(8, 8, 0) == pytest.approx(1 / 256)
    assert math.isnan(discordant_variance(0, 0, 0))
    # Unpaired (adaptive samplers): 10 of 20 vs 5 of 25: 0.5 * 0.5 / 20 + 0.2 * 0.8 / 25 = 0.0125 + 0.0064
    assert unpaired_variance(20, 10, 25, 5) == pytest.approx(0.0189, abs=1e-15)
    assert unpaired_variance(20, 0, 25, 0) == pytest.approx(1 / (4 * 25 ** 2))


def _row(slug, n, b, c, **traits):
    # good_on - good_off equals (b - c) / n for any concordant count; put all concordant pairs as "both bad".
    return {"slug": slug, "dataset": slug, "n": n, "b": b, "c": c, "diff": (b - c) / n, "good_on": b / n,
            "good_off": c / n, "lo": math.nan, "hi": math.nan, "outcome": "cannot tell", **traits}


def test_pool_panel_dersimonian_laird_by_hand():
    rows = [_row("A", 20, 8, 2, log10_rows=3.0, features=10, classes=2, scale_spread=1.0, raw_inputs=0),
            _row("B", 25, 5, 5, log10_rows=3.5, features=20, classes=3, scale_spread=2.0, raw_inputs=0),
            _row("C", 16, 6, 1, log10_rows=4.0, features=30, classes=2, scale_spread=5.0, raw_inputs=1)]
    res = pool_panel(rows)

    # Effects y = (b - c) / n: 0.3, 0.0, 0.3125.
    # Variances (p_b + p_c - (p_b - p_c)^2) / n:
    #   A: (0.4 + 0.1 - 0.09) / 20            = 0.0205
    #   B: (0.2 + 0.2 - 0) / 25               = 0.016
    #   C: (0.375 + 0.0625 - 0.09765625) / 16 = 0.021240234375
    v = [0.0205, 0.016, 0.021240234375]
    y = [0.3, 0.0, 0.3125]
    assert res.datasets["variance"].tolist() == pytest.approx(v)
    # Fixed-effect weights w = 1/v: 48.7805, 62.5, 47.0805; sum 158.3610
    w = [1 / 0.0205, 1 / 0.016, 1 / 0.021240234375]
    sw = w[0] + w[1] + w[2]
    y_fe = (w[0] * 0.3 + w[1] * 0.0 + w[2] * 0.3125) / sw  # 0.185316
    q = w[0] * (0.3 - y_fe) ** 2 + w[1] * (0.0 - y_fe) ** 2 + w[2] * (0.3125 - y_fe) ** 2  # 3.549520
    c = sw - (w[0] ** 2 + w[1] ** 2 + w[2] ** 2) / sw  # 104.671223
    tau2 = (q - 2) / c  # Q > k - 1 = 2, so no truncation: 0.0148037
    ws = [1 / (vi + tau2) for vi in v]
    mu = (ws[0] * y[0] + ws[1] * y[1] + ws[2] * y[2]) / (ws[0] + ws[1] + ws[2])  # 0.193912
    se = (1 / (ws[0] + ws[1] + ws[2])) ** 0.5  # 0.106279
    assert (y_fe, q, c, tau2, mu, se) == pytest.approx((0.1853158, 3.5495204, 104.6712228, 0.0148037, 0.1939122,
                                                        0.1062789), rel=1e-6)
    dl = res.dl
    assert dl.k == 3
    assert dl.q == pytest.approx(q, rel=1e-9)
    assert dl.tau2 == pytest.approx(tau2, rel=1e-9)
    assert dl.pooled == pytest.approx(mu, rel=1e-9)
    assert dl.se == pytest.approx(se, rel=1e-9)
    assert (dl.ci_low, dl.ci_high) == pytest.approx((mu - 1.959963984540054 * se, mu + 1.959963984540054 * se))
    assert dl.i2 == pytest.approx((q - 2) / q)  # 0.43654
    # Prediction interval: mu +- t_{k-2 = 1, 0.975} sqrt(tau2 + se^2), t = 12.7062047
    half = 12.706204736174707 * (tau2 + se ** 2) ** 0.5
    assert (dl.pi_low, dl.pi_high) == pytest.approx((mu - half, mu + half), rel=1e-9)

    # The headline is Paule-Mandel; the weights in panel.csv are its weights, summing to 1.
    assert res.pm.method == "pm" and res.datasets["weight"].sum() == pytest.approx(1.0)
    assert res.bayes is not None and res.bayes.p_better + res.bayes.p_equivalent + res.bayes.p_worse == pytest.approx(1)
    assert set(res.moderators["trait"]) == {"log10_rows", "features", "classes", "scale_spread", "raw_inputs"}
    assert "Across 3 data sets" in res.verdict and "prediction interval" in res.verdict
    table = res.pooled_table()
    row = table[(table["method"] == "random effects, DerSimonian-Laird") & (table["quantity"] == "pooled difference")]
    assert row["value"].item() == pytest.approx(mu)


def test_pool_panel_without_an_estimate():
    res = pool_panel([_row("A", 20, 8, 2), {**_row("B", 1, 0, 0), "n": 0, "diff": math.nan}])
    assert res.pm is None and "nothing is pooled" in " ".join(res.notes)
    assert res.verdict.startswith("Too few data sets")


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
    pooled = pd.read_csv(tmp_path / "out" / "pooled.csv")
    assert {"random effects, Paule-Mandel", "random effects, DerSimonian-Laird"} <= set(pooled["method"])
    assert set(_counts(url, load_panel(cfg)).values()) == {4}


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
