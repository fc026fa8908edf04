"""The panel's pooled answers beyond the headline, end to end: a tiny stored 2x2 panel (3 built-in data
sets x 4 arms x 10 configurations x 3 epochs, ~15 s) run by the real command, and every row of
panel_subspaces.csv, panel_budget.csv, panel_interaction.csv and panel_influence.csv recomputed here
from the trials as Optuna stored them (pandas, pooled by statsmodels' combine_effects), the numbers
the terminal and report.md print checked against those rows, a bad panel.subspaces refused before
anything is stored, and an unpaired panel's page saying the extras do not apply."""

import math
import re

import numpy as np
import optuna
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects

from bnsearch.analysis.primary import tango_interval
from conftest import run_cli

CONFIG = """
[panel]
name = "pp"
datasets = ["wine", "breast_cancer", "diabetes"]
subspaces = {subspaces}

[experiment]
seed = 0
tolerance = 0.02
arms = ["bn-off+raw", "bn-on+raw", "bn-off+std", "bn-on+std"]
reference = "bn-off+std"

[search]
trials = 10

[search.space]
layers     = {{ low = 1, high = 2 }}
width      = {{ low = 8, high = 32, log = true }}
activation = ["relu", "tanh"]
init       = ["kaiming", "xavier", "normal", "uniform"]
lr         = {{ low = 1e-3, high = 1.0, log = true }}
optimizer  = ["sgd", "adam"]
batch_size = [32, 64]

[train]
epochs = 3
"""
SLUGS = ("wine", "breast_cancer", "diabetes")
ON, OFF = "bn-on+std", "bn-off+std"  # the pair the headline compares: BN at the reference's inputs
CELLS = {"A": "bn-off+raw", "B": "bn-on+raw", "C": "bn-off+std", "D": "bn-on+std"}
EPOCHS = 3
SUBSPACES = {  # name as the CSV writes it: (hyperparameter, levels), declared from the space alone
    "careful inits (kaiming, xavier)": ("init", {"kaiming", "xavier"}),
    "careless inits (normal, uniform)": ("init", {"normal", "uniform"}),
    "optimizer = sgd": ("optimizer", {"sgd"}), "optimizer = adam": ("optimizer", {"adam"}),
    "layers = 1": ("layers", {1}), "layers = 2": ("layers", {2}),
    "activation = relu": ("activation", {"relu"}), "activation = tanh": ("activation", {"tanh"}),
}
DIFF = "careful inits − careless inits"
Z = stats.norm.ppf(0.975)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pooled-panel")
    cfg = tmp / "pp.toml"
    cfg.write_text(CONFIG.format(subspaces='["activation"]'))
    url = f"sqlite:///{tmp / 'p.db'}"
    r = run_cli("panel", str(cfg), "--storage", url, "--out", str(tmp / "out"), "--jobs", "2", cwd=tmp)
    assert r.returncode == 0, r.stderr
    out = tmp / "out"
    return {"url": url, "out": out, "stdout": r.stdout, "report": (out / "report.md").read_text(),
            **{name: pd.read_csv(out / f"{name}.csv") for name in
               ("panel", "pooled", "panel_subspaces", "panel_budget", "panel_interaction", "panel_influence")}}


# --------------------------------------------------------------------------- by hand

def trials(url, slug):
    """Every complete trial of one data set with a finite score, straight from the Optuna studies."""
    rows = []
    for arm in CELLS.values():
        study = optuna.load_study(study_name=f"pp-{slug}/{arm}", storage=url)
        for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]):
            rows.append({"arm": arm, "config": t.user_attrs["config_index"], "score": t.value,
                         "curve": t.user_attrs["val_score"], "ran": t.user_attrs["epochs_run"], **t.params})
    df = pd.DataFrame(rows)
    return df[np.isfinite(df["score"].astype(float))]


def scores(df, arms, epoch=None):
    """config x arm scores (at a budget of `epoch` epochs: the curve there, or the final score of a run
    that stopped by then), without the configuration whose trial scored best over these arms (ties:
    the lowest configuration), which sets s* and is good by construction."""
    df = df[df["arm"].isin(arms)]
    if epoch is not None and epoch < EPOCHS:
        df = df.assign(score=[c[epoch - 1] if ran > epoch else s for c, ran, s in zip(df["curve"], df["ran"],
                                                                                   df["score"])])
    wide = df.pivot(index="config", columns="arm", values="score")[list(arms)].dropna()
    best = df.sort_values(["score", "config"], ascending=[False, True])["config"].iloc[0]
    params = df.drop_duplicates("config").set_index("config")[["init", "optimizer", "layers", "activation"]]
    return wide.drop(index=best).join(params)


def top(wide, arms):
    """Each configuration's place in the top quarter, per arm: reaches the 75th percentile (numpy's
    "lower") of the compared scores of all `arms` pooled."""
    thr = np.quantile(wide[list(arms)].to_numpy().ravel(), 0.75, method="lower")
    return wide[list(arms)] >= thr, thr


def tango_variance(n, b, c):
    lo, hi = tango_interval(int(b), int(c), int(n))
    return ((hi - lo) / (2 * Z)) ** 2


def pooled(effects, variances):
    """Paule-Mandel by statsmodels: the estimate, the HKSJ 95% CI with its scale never below 1, and the
    95% prediction interval pooled +- t_{k-2} sqrt(tau2 + se^2)."""
    effects, variances = np.asarray(effects, float), np.asarray(variances, float)
    with np.errstate(all="ignore"):  # statsmodels divides by Q, 0 for identical effects
        res = combine_effects(effects, variances, method_re="pm")
    k, m = len(effects), res.mean_effect_re
    hk = stats.t.ppf(0.975, k - 1) * max(res.sd_eff_w_re, res.sd_eff_w_re_hksj)
    pi = stats.t.ppf(0.975, k - 2) * math.sqrt(res.tau2 + res.sd_eff_w_re ** 2) if k >= 3 else math.nan
    return {"pooled": m, "hk_low": m - hk, "hk_high": m + hk, "pi_low": m - pi, "pi_high": m + pi,
            "tau2": res.tau2}


def check_pooled(row, effects, variances):
    want = pooled(effects, variances)
    assert row["k"] == len(effects)
    for key in ("pooled", "hk_low", "hk_high", "pi_low", "pi_high"):
        assert row[key] == pytest.approx(want[key], abs=1e-9), key
    assert row["tau2"] == pytest.approx(want["tau2"], abs=1e-9)


def rows_of(table, key, value):
    """The per-data-set rows of one group (in SLUGS order) and its pooled row."""
    g = table[table[key] == value].set_index("dataset")
    return g.loc[list(SLUGS)], g.loc["pooled"]


# --------------------------------------------------------------------------- the CSVs

def test_subspace_rows_recomputed_from_the_stored_trials(stored):
    hand = {}
    for slug in SLUGS:
        w = scores(trials(stored["url"], slug), (ON, OFF))
        t, thr = top(w, (ON, OFF))
        groups = {"all configurations": np.ones(len(w), bool)} | {
            name: w[param].isin(levels).to_numpy() for name, (param, levels) in SUBSPACES.items()}
        for name, m in groups.items():
            on, off = t[ON].to_numpy()[m], t[OFF].to_numpy()[m]
            hand[name, slug] = (int(m.sum()), int((on & ~off).sum()), int((~on & off).sum()), thr)
    table = stored["panel_subspaces"]
    assert list(dict.fromkeys(table["subspace"])) == ["all configurations", *SUBSPACES, DIFF]
    for name in ["all configurations", *SUBSPACES]:
        per, pool = rows_of(table, "subspace", name)
        for slug, r in per.iterrows():
            n, b, c, thr = hand[name, slug]
            assert (r["n"], r["top_b"], r["top_c"]) == (n, b, c), (name, slug)
            assert r["top_threshold"] == pytest.approx(thr)
            assert r["effect"] == pytest.approx((b - c) / n)
            assert r["variance"] == pytest.approx(tango_variance(n, b, c))
        check_pooled(pool, per["effect"], per["variance"])
        assert pool["configs"] == per["n"].sum()
    # The whole space is the headline: the same pairs, counts and pooled value as panel.csv and pooled.csv,
    # which so compare BN at standardized inputs (bn-on+std vs bn-off+std), not the first listed arm.
    whole, whole_pool = rows_of(table, "subspace", "all configurations")
    panel = stored["panel"].set_index("slug").loc[list(SLUGS)]
    assert whole[["n", "top_b", "top_c"]].to_numpy().tolist() == panel[["n", "top_b", "top_c"]].to_numpy().tolist()
    pm = stored["pooled"].query("method == 'random effects, Paule-Mandel' and quantity == 'pooled difference, "
                                "HKSJ 95% CI'").iloc[0]
    assert (whole_pool["pooled"], whole_pool["hk_low"]) == pytest.approx((pm["value"], pm["lo"]))
    # careful minus careless: each data set's difference, variances added, then pooled
    care, _ = rows_of(table, "subspace", "careful inits (kaiming, xavier)")
    less, _ = rows_of(table, "subspace", "careless inits (normal, uniform)")
    per, pool = rows_of(table, "subspace", DIFF)
    assert per["effect"].to_numpy() == pytest.approx((care["effect"] - less["effect"]).to_numpy())
    assert per["variance"].to_numpy() == pytest.approx((care["variance"] + less["variance"]).to_numpy())
    check_pooled(pool, per["effect"], per["variance"])


def test_budget_rows_recomputed_from_the_stored_curves(stored):
    table = stored["panel_budget"]
    assert sorted(set(table["epochs"])) == [2, EPOCHS]  # 5 epochs is past this panel's budget
    for e in (2, EPOCHS):
        per, pool = rows_of(table, "epochs", e)
        for slug, r in per.iterrows():
            t, thr = top(scores(trials(stored["url"], slug), (ON, OFF), epoch=e), (ON, OFF))
            n, b, c = len(t), int((t[ON] & ~t[OFF]).sum()), int((~t[ON] & t[OFF]).sum())
            assert (r["n"], r["top_b"], r["top_c"]) == (n, b, c), (e, slug)
            assert r["top_threshold"] == pytest.approx(thr)
            assert r["variance"] == pytest.approx(tango_variance(n, b, c))
        check_pooled(pool, per["effect"], per["variance"])
    full, _ = rows_of(table, "epochs", EPOCHS)
    whole, _ = rows_of(stored["panel_subspaces"], "subspace", "all configurations")
    assert full["effect"].tolist() == pytest.approx(whole["effect"].tolist())  # the full budget is the headline


def test_interaction_recomputed_from_the_four_arms(stored):
    table = stored["panel_interaction"]
    contrasts = {"standardize_gain": ("C", "A"), "norm_gain_raw": ("B", "A"), "norm_gain_std": ("D", "C")}
    for q in [*contrasts, "interaction"]:
        per, pool = rows_of(table, "quantity", q)
        for slug, r in per.iterrows():
            # s* over all four arms left out; the top quarter of all four cells' scores
            t, _ = top(scores(trials(stored["url"], slug), tuple(CELLS.values())), tuple(CELLS.values()))
            g = {k: t[a].to_numpy().astype(int) for k, a in CELLS.items()}
            n = len(t)
            assert r["n"] == n
            if q == "interaction":
                i = (g["D"] - g["C"]) - (g["B"] - g["A"])
                assert r["effect"] == pytest.approx(i.mean())
                # the mean's variance with one pseudo-configuration at +1 and one at -1
                assert r["variance"] == pytest.approx(np.var([*i, 1, -1], ddof=1) / (n + 2))
            else:
                x, y = contrasts[q]
                b, c = int(((g[x] == 1) & (g[y] == 0)).sum()), int(((g[x] == 0) & (g[y] == 1)).sum())
                assert r["effect"] == pytest.approx((b - c) / n)
                assert r["variance"] == pytest.approx(tango_variance(n, b, c))
        check_pooled(pool, per["effect"], per["variance"])


def test_influence_rows_pool_all_but_one_data_set(stored):
    panel = stored["panel"].set_index("slug")
    loo = stored["panel_influence"].set_index("left_out")
    assert sorted(loo.index) == sorted(SLUGS)
    full = pooled(panel["effect"], panel["variance"])
    full_dir = np.sign(full["hk_low"]) if np.sign(full["hk_low"]) == np.sign(full["hk_high"]) else 0
    for slug in SLUGS:
        rest = panel.drop(index=slug)
        want = pooled(rest["effect"], rest["variance"])
        r = loo.loc[slug]
        assert (r["k"], r["pooled"], r["hk_low"], r["hk_high"]) == pytest.approx(
            (2, want["pooled"], want["hk_low"], want["hk_high"]))
        d = np.sign(want["hk_low"]) if np.sign(want["hk_low"]) == np.sign(want["hk_high"]) else 0
        assert (r["direction"], bool(r["changes_headline"])) == (d, d != full_dir)


# --------------------------------------------------------------------------- what is printed

def pts(x):
    s = f"{100 * x:+.1f}"
    return "0.0" if s in ("+0.0", "-0.0") else s


def test_terminal_and_page_print_the_csv_rows(stored):
    subs = stored["panel_subspaces"]
    pool = subs[subs["dataset"] == "pooled"].set_index("subspace")
    out = stored["stdout"]
    assert "effect by sub-space, pooled" in out
    for name, r in pool.iterrows():
        label = name.split(" (")[0]
        # the compact terminal table: label, data sets, pooled, HKSJ interval
        assert re.search(rf"{re.escape(label)}\s+{int(r['k'])}\s+{re.escape(pts(r['pooled']))}\s+"
                         rf"{re.escape(pts(r['hk_low']))} to {re.escape(pts(r['hk_high']))}", out), name
        # report.md: the full row, with the prediction interval
        assert (f"| {name} | {int(r['k'])} |" in stored["report"]
                and f"| {pts(r['pooled'])} | {pts(r['hk_low'])} to {pts(r['hk_high'])} | "
                    f"{pts(r['pi_low'])} to {pts(r['pi_high'])} |" in stored["report"]), name
    verdict = stored["report"].splitlines()[2]
    careful = pool.loc["careful inits (kaiming, xavier)"]
    assert "Within careful inits (kaiming, xavier)" in verdict
    assert f"{pts(careful['pooled'])} pts (95% CI {pts(careful['hk_low'])} to {pts(careful['hk_high'])}, 3 data sets" \
        in verdict
    budget = stored["panel_budget"].query("dataset == 'pooled'").set_index("epochs")
    assert f"after 2 epochs {pts(budget.loc[2, 'pooled'])} pts (95% CI {pts(budget.loc[2, 'hk_low'])} to " in verdict
    inter = stored["panel_interaction"].query("dataset == 'pooled'").set_index("quantity")
    assert "Does BN stand in for input scaling?" in verdict
    assert f"interaction {pts(inter.loc['interaction', 'pooled'])} pts, 95% CI" in verdict
    loo = stored["panel_influence"]
    moved = loo[loo["changes_headline"]]
    assert ("No single data set changes the headline" in verdict) == moved.empty
    for name in ("## BN's effect by sub-space, pooled", "## Faster training, or more robust?",
                 "## Inputs × BN, pooled", "## Influence: each data set left out"):
        assert name in stored["report"], name
    assert "the headline compares bn-on+std with bn-off+std" in stored["report"]
    assert (stored["out"] / "subspaces.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- refusals, unpaired

def test_a_bad_subspace_name_is_refused_before_anything_is_stored(tmp_path):
    from bnsearch.config import ConfigError
    from bnsearch.panel import load_panel

    cfg = tmp_path / "bad.toml"
    cfg.write_text(CONFIG.format(subspaces='["momentum"]'))
    r = run_cli("panel", str(cfg), "--storage", f"sqlite:///{tmp_path / 'p.db'}", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    assert "panel.subspaces" in r.stderr and "'momentum'" in r.stderr and "activation" in r.stderr, r.stderr
    assert not (tmp_path / "p.db").exists()
    cfg.write_text(CONFIG.format(subspaces='"activation"'))
    with pytest.raises(ConfigError, match="panel.subspaces: give a list"):
        load_panel(cfg)


def test_an_unpaired_panel_says_the_extras_do_not_apply(tmp_path):
    from bnsearch.analysis.panel import attach_extras, panel_extras, pool_panel
    from bnsearch.panel import load_panel
    from bnsearch.report.panel import extra_tables, markdown

    cfg = tmp_path / "pp.toml"
    cfg.write_text(CONFIG.format(subspaces="[]"))
    rows = [{"slug": s, "dataset": s, "paired": False, "n": 40, "n_off": 40, "top_k_on": k, "top_k_off": 10}
            for s, k in zip(SLUGS, (14, 12, 16))]
    res = pool_panel(rows)
    attach_extras(res, panel_extras({}, distributions={}, arms=(ON, OFF), epochs=EPOCHS, paired=False))
    assert "Sub-spaces and epoch budgets are not pooled: each arm was searched by an adaptive sampler" in res.verdict
    page = markdown(res, load_panel(cfg))
    assert "## Sub-spaces, epoch budgets and inputs × norm" in page and "Not pooled for this panel" in page
    assert "## Influence: each data set left out" in page  # leaving one out needs no pairs
    assert set(extra_tables(res)) == {"panel_influence.csv"}
