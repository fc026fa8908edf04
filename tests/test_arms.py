"""Arms: config syntax and validation, N-arm pairing in real storage, per-arm data, old two-arm storage."""

import json
import math

import numpy as np
import optuna
import pandas as pd
import pytest
import torch

from bnsearch import api
from bnsearch.arms import ArmSpec, DEFAULT_SPECS, two_by_two
from bnsearch.config import ConfigError, load_config, load_config_text, to_toml
from bnsearch.data import DataSpec, load_dataset
from bnsearch.search import SearchError, load_trials, prepare_experiment, run_worker
from conftest import CONFIGS, run_cli

SMOKE = (CONFIGS / "smoke.toml").read_text()


def _with(exp_lines: str, extra: str = "") -> str:
    return SMOKE.replace('tolerance = 0.02\n', f'tolerance = 0.02\n{exp_lines}\n') + extra


def test_default_is_todays_pair_and_keeps_the_config_hash():
    s = load_config_text(SMOKE, "smoke")
    assert s.arms == DEFAULT_SPECS and s.reference == "bn-off" and s.arm_names() == ["bn-on", "bn-off"]
    assert "arms" not in s.to_dict() and "arms" not in s.to_dict()["experiment"]
    spelled_out = load_config_text(_with('arms = ["bn-on", "bn-off"]\nreference = "bn-off"'), "x")
    assert spelled_out.config_hash() == s.config_hash()
    assert load_config().arm_names() == ["bn-on", "bn-off"]


def test_token_names_tables_and_round_trip():
    s = load_config_text(_with('arms = ["bn-off+raw", "bn-on+std", "ln-after", "my.arm"]\nreference = "bn-off+raw"',
                               '\n[arms."my.arm"]\nnorm = "batchnorm"\nplacement = "after"\ninputs = "raw"\n'), "x")
    assert [a.key() for a in s.arms] == [("none", "before", "raw"), ("batchnorm", "before", "standardize"),
                                         ("layernorm", "after", None), ("batchnorm", "after", "raw")]
    back = load_config_text(to_toml(s), "back")
    assert back.arms == s.arms and back.reference == "bn-off+raw" and back.config_hash() == s.config_hash()
    # Reference defaults to bn-off when listed, else the first arm.
    assert load_config_text(_with('arms = ["ln", "bn-on"]'), "x").reference == "ln"


@pytest.mark.parametrize("exp,extra,needle", [
    ('arms = ["bn-on"]', "", "at least two"),
    ('arms = ["bn-on", "bn-on"]', "", "duplicate"),
    ('arms = ["bn-on", "groupnorm"]', "", "neither a token name"),
    ('arms = ["bn-on", "bn-off+scaled"]', "", "neither a token name"),
    ('arms = ["bn-on", "a/b"]', "", "no '/'"),
    ('arms = ["bn-on", "delta"]', "", "arm name"),
    ('arms = ["bn-on", "bn-off"]\nreference = "ln"', "", "experiment.reference"),
    ('arms = ["bn-on", "x"]', '\n[arms.x]\nnorm = "batchnorm"\n', "same arm"),
    ('arms = ["bn-on", "x"]', '\n[arms.x]\nnorm = "batch"\n', "arms.x.norm"),
    ('arms = ["bn-on", "x"]', '\n[arms.x]\nlayers = 3\n', "arms.x.layers: unknown key"),
    ('arms = ["bn-on", "bn-off"]', '\n[arms.y]\nnorm = "layernorm"\n', "arms.y: not listed"),
    ("", '\n[arms.y]\nnorm = "layernorm"\n', "needs experiment.arms"),
    ('arms = "bn-on"', "", "experiment.arms: expected list"),
])
def test_bad_arms_are_one_line_errors(exp, extra, needle):
    with pytest.raises(ConfigError) as e:
        load_config_text(_with(exp, extra), "cfg.toml")
    msg = str(e.value)
    assert msg.startswith("cfg.toml: ") and needle in msg and "\n" not in msg


def test_two_by_two_detection():
    s = load_config_text(_with('arms = ["bn-off+raw", "bn-on+raw", "bn-off+std", "bn-on+std"]'), "x")
    assert two_by_two(s.arms, s.data.inputs) == {("raw", False): "bn-off+raw", ("raw", True): "bn-on+raw",
                                                ("standardize", False): "bn-off+std",
                                                ("standardize", True): "bn-on+std"}
    assert two_by_two(DEFAULT_SPECS, "standardize") is None
    assert two_by_two([ArmSpec("a"), ArmSpec("b", "batchnorm"), ArmSpec("c", "layernorm")], "raw") is None


def test_arms_share_the_split_and_differ_only_in_scaling():
    spec = DataSpec(dataset="skewed", inputs="raw")
    raw = load_dataset(ArmSpec("r", inputs="raw").data(spec), 0)
    std = load_dataset(ArmSpec("s", inputs="standardize").data(spec), 0)
    assert torch.equal(raw.y_train, std.y_train) and torch.equal(raw.y_val, std.y_val)
    # Same rows in the same order: standardizing the raw training split with its own statistics
    # gives the standardized arm's inputs.
    X = raw.X_train.double()
    assert torch.allclose((X - X.mean(0)) / X.std(0, unbiased=False), std.X_train.double(), atol=1e-4)
    assert ArmSpec("d").data(spec) is spec


THREE = 'arms = ["bn-off", "bn-on+raw", "ln-after"]\nreference = "bn-off"'


def test_n_arm_pairing_and_a_worker_serving_every_arm(tmp_path):
    url = f"sqlite:///{tmp_path / 'bn.db'}"
    settings = load_config_text(_with(THREE), "three").with_overrides(trials=4, name="three")
    prepared = prepare_experiment(settings, url, settings.arm_names())
    assert [a.arm for a in prepared] == ["bn-off", "bn-on+raw", "ln-after"]
    assert [a.spec.norm for a in prepared] == ["none", "batchnorm", "layernorm"]
    assert run_worker(url, "three", settings.arm_names()) == 12  # one worker, every arm
    assert [a.arm for a in api.worker_arms("three", storage=url)] == settings.arm_names()
    with pytest.raises(SearchError, match="has no arm 'bn-on'; arms: bn-off, bn-on\\+raw, ln-after"):
        api.worker_arms("three", arm="bn-on", storage=url)
    df = load_trials(url, "three", settings.arm_names())
    assert (df["state"] == "COMPLETE").all() and len(df) == 12
    params = list(settings.distributions())
    per_arm = {arm: sorted(map(tuple, g[["config_index", "seed", *params]].astype(str).to_numpy()))
               for arm, g in df.groupby("arm")}
    assert per_arm["bn-off"] == per_arm["bn-on+raw"] == per_arm["ln-after"] and len(per_arm["bn-off"]) == 4
    assert df["val_curve"].map(len).eq(df["epochs_run"]).all()
    # The arms really train different networks on the same configurations.
    scores = df.pivot(index="config_index", columns="arm", values="score")
    assert not np.allclose(scores["bn-off"], scores["ln-after"])
    report = api.show_summary(experiment="three", storage=url)
    a = report.arms
    assert a.arms == ["bn-off", "bn-on+raw", "ln-after"] and set(a.comparisons) == {"bn-on+raw", "ln-after"}
    assert set(a.budget_verdicts) == {("bn-on+raw", "bn-off"), ("ln-after", "bn-off")}
    assert a.interaction is None and sorted(set(a.budget["epochs"])) == [1, 2, 3]
    files = api.export(experiment="three", storage=url, out=tmp_path / "out")
    names = {f.name for f in files}
    assert {"trials.csv", "trials.jsonl", "arms.csv", "budget.csv", "compute.csv", "budget.png", "report.md"} <= names
    md = (tmp_path / "out" / "report.md").read_text()
    assert "ln-after vs bn-off" in md and "advantage" in md
    r = run_cli("summary", "--experiment", "three", "--storage", url, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["arms"]
    assert got["arms"] == ["bn-off", "bn-on+raw", "ln-after"] and len(got["budget_verdicts"]) == 2


def test_unknown_arm_is_rejected_before_storage_is_touched(tmp_path):
    url = f"sqlite:///{tmp_path / 'bn.db'}"
    settings = load_config_text(_with(THREE), "three")
    with pytest.raises(SearchError, match="no arm 'bn-on'"):
        prepare_experiment(settings, url, ["bn-on"])
    assert not (tmp_path / "bn.db").exists()


def test_cli_study_by_arm_and_bad_arm(tmp_path, write_config):
    cfg = write_config(_with(THREE).replace("trials = 6", "trials = 2"))
    url = f"sqlite:///{tmp_path / 'bn.db'}"
    r = run_cli("study", str(cfg), "--arm", "ln-after", "--storage", url, "--jobs", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ln-after" in r.stdout and "2/2" in r.stdout
    r = run_cli("study", str(cfg), "--arm", "bn-on", "--storage", url, "--jobs", "1", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no arm 'bn-on'" in r.stderr
    r = run_cli("study", str(cfg), "--storage", url, cwd=tmp_path)
    assert r.returncode == 2 and "exactly one of --bn" in r.stderr


def _old_trial(arm: str, i: int, score: float, curve: list | None, params: dict, dists: dict) -> optuna.trial.FrozenTrial:
    attrs = {"arm": arm, "config_index": i, "seed": 100 + i, "diverged": False, "epochs_run": 3,
             "train_loss": [1.0, 0.8, 0.6], "test_score": score, "seconds": 0.5}
    if curve is not None:
        attrs["val_score"] = curve
    return optuna.trial.create_trial(params=params, distributions=dists, value=score, user_attrs=attrs)


def test_old_two_arm_storage_still_loads(tmp_path):
    """Studies written the way bnsearch stored them before arms existed: today's names and attrs,
    a config without arms; one trial even lacks its per-epoch curve."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    settings = load_config_text(SMOKE, "smoke").with_overrides(name="old")
    dists = settings.distributions()
    sampler = optuna.samplers.RandomSampler(seed=0)
    configs = [optuna.create_study(sampler=sampler).ask(dists).params for _ in range(6)]
    storage = optuna.storages.RDBStorage(url)
    for arm, base in (("bn-on", 0.9), ("bn-off", 0.6)):
        study = optuna.create_study(storage=storage, study_name=f"old/{arm}", direction="maximize")
        for k, v in {"bnsearch": 1, "experiment": "old", "arm": arm, "bn": arm == "bn-on",
                     "config_toml": to_toml(settings), "config_hash": settings.config_hash(), "seed": 0,
                     "paired": True, "sampler": "random", "budget": 6}.items():
            study.set_user_attr(k, v)
        for i, params in enumerate(configs):
            score = base + 0.01 * i
            curve = None if (arm, i) == ("bn-off", 5) else [score - 0.2, score - 0.1, score]
            study.add_trial(_old_trial(arm, i, score, curve, params, {k: dists[k] for k in params}))
    report = api.show_summary(experiment="old", storage=url)
    s = report.summary
    assert report.arms.arms == ["bn-on", "bn-off"] and report.arms.reference == "bn-off"
    # Hand-computed: every pair has d = (0.9 + 0.01 i) - (0.6 + 0.01 i) = 0.3, BN on wins all 6.
    assert s.test("wilcoxon", "median_d")[0] == pytest.approx(0.3)
    assert s.test("wilcoxon", "win_rate")[0] == 1.0
    b = report.arms.budget
    d1 = b[(b["epochs"] == 1) & (b["metric"] == "median_d") & (b["versus"] == "bn-off")]
    # At epoch 1 the curves read 0.7 + 0.01 i vs 0.4 + 0.01 i (config 5 of bn-off has no curve and drops out).
    assert float(d1["value"].iloc[0]) == pytest.approx(0.3)
    n1 = b[(b["epochs"] == 1) & (b["metric"] == "n_complete") & (b["arm"] == "bn-off")]
    assert int(n1["value"].iloc[0]) == 5
    assert math.isfinite(report.arms.arm_table().set_index("arm").loc["bn-on", "good_fraction"])
    files = api.export(experiment="old", storage=url, out=tmp_path / "out")
    assert {"summary.csv", "tests.csv", "budget.csv", "budget.png", "report.md"} <= {f.name for f in files}
    assert "Faster, or more robust?" in (tmp_path / "out" / "report.md").read_text()


def test_comparison_labels_stay_with_their_arms_when_arms_are_named_bn_on_and_bn_off_in_other_roles():
    """An experiment whose reference is bn-on (and whose compared arm is bn-off) keeps each arm's rows
    under its own name in summary.csv (a relabelling by role once swapped them)."""
    import pandas as pd
    from bnsearch.analysis import summarize
    from bnsearch.report import Comparisons
    from bnsearch.report.export import comparison_frames

    rows = []
    for arm, scores in (("bn-off", [0.9, 0.8, 0.7, 0.6, 0.5]), ("bn-on", [0.5, 0.4, 0.3, 0.2, 0.1])):
        for i, s in enumerate(scores):
            rows.append({"experiment": "x", "arm": arm, "number": i, "state": "COMPLETE", "config_index": i,
                         "score": s, "test_score": s, "diverged": False})
    df = pd.DataFrame(rows)
    s = summarize(df, distributions={}, tolerance=0.01, paired=True, sampler="random", task="classification",
                  arms=("bn-off", "bn-on"), n_boot=20)
    out = comparison_frames(Comparisons(["bn-on", "bn-off"], "bn-on", {"bn-off": s}))["summary.csv"]
    best = out[(out["metric"] == "best")].set_index("arm")["value"]
    assert best["bn-off"] == 0.9 and best["bn-on"] == 0.5
    assert set(out["treatment"]) == {"bn-off"} and set(out["reference"]) == {"bn-on"}
    assert out.loc[(out["metric"] == "best") & (out["arm"] == "delta"), "value"].iloc[0] == pytest.approx(0.4)


_THREE_ARMS = """
[experiment]
name = "{name}"
seed = 0
tolerance = 0.02
arms = {arms}
reference = "{reference}"
{tables}
[data]
dataset = "iris"

[search]
trials = 5

[search.space]
layers = {{ low = 1, high = 2 }}
width  = {{ low = 8, high = 16, log = true }}
lr     = {{ low = 1e-3, high = 1.0, log = true }}

[train]
epochs = 2
"""


def test_every_experiment_exports_the_same_files_whatever_its_arms(tmp_path):
    """The default pair, the same pair under other names and three arms: one report path, one file set."""
    from bnsearch.config import load_config_text

    def run(name, arms, reference, norms):
        tables = "".join(f'\n[arms.{a}]\nnorm = "{n}"\n' for a, n in zip(arms, norms))
        text = _THREE_ARMS.format(name=name, arms=json.dumps(arms), reference=reference, tables=tables)
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(text)
        load_config_text(text, str(cfg))
        report = api.run_compare(cfg, storage=f"sqlite:///{tmp_path / 'r.db'}", out=tmp_path / name, jobs=1)
        return sorted(f.name for f in report.files)

    pair = run("pair", ["bn-on", "bn-off"], "bn-off", ["batchnorm", "none"])
    renamed = run("renamed", ["with", "without"], "without", ["batchnorm", "none"])
    three = run("three", ["plain", "bn", "ln"], "plain", ["none", "batchnorm", "layernorm"])
    assert pair == renamed == three
    assert {"summary.csv", "tests.csv", "arms.csv", "budget.csv", "tuning_curves.png", "score_vs_lr.png",
            "report.md"} <= set(pair)
    tests = pd.read_csv(tmp_path / "three" / "tests.csv")
    assert set(zip(tests["treatment"], tests["reference"])) == {("bn", "plain"), ("ln", "plain")}


def test_the_verdict_names_each_arm_by_itself_not_by_which_pair_it_is():
    from bnsearch.analysis.common import arm_phrases

    assert arm_phrases(("bn-on", "bn-off")) == {"what": "BN", "with_t": "with BN", "with_r": "without BN",
                                                "t": "BN", "r": "no-BN"}
    reversed_pair = arm_phrases(("bn-off", "bn-on"))
    assert (reversed_pair["with_t"], reversed_pair["with_r"]) == ("without BN", "with BN")
    mixed = arm_phrases(("bn-on", "none"))
    assert (mixed["with_t"], mixed["with_r"], mixed["what"]) == ("with BN", "with none", "BN")
