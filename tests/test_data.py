import numpy as np
import pytest
import torch

from bnsearch.data import BUILTIN, DataError, DataSpec, load_dataset


@pytest.mark.parametrize("name", [n for n in BUILTIN if n != "csv"])
def test_builtin_sets_split_60_20_20(name):
    d = load_dataset(DataSpec(dataset=name), seed=0)
    n = len(d.y_train) + len(d.y_val) + len(d.y_test)
    assert abs(len(d.y_val) - 0.2 * n) <= 1 and abs(len(d.y_test) - 0.2 * n) <= 1
    assert d.X_train.dtype == torch.float32
    assert d.task == ("regression" if name == "diabetes" else "classification")


def test_splits_are_seeded_and_stratified():
    a, b, c = (load_dataset(DataSpec(dataset="digits"), seed=s) for s in (0, 0, 1))
    assert torch.equal(a.X_train, b.X_train) and not torch.equal(a.X_train, c.X_train)
    full = np.bincount(np.concatenate([a.y_train, a.y_val, a.y_test]), minlength=10) / 1797
    for part in (a.y_train, a.y_val, a.y_test):  # every class keeps its share within 1 pt
        assert np.abs(np.bincount(part.numpy(), minlength=10) / len(part) - full).max() < 0.01


def test_standardize_uses_training_statistics_only():
    d = load_dataset(DataSpec(dataset="wine"), seed=0)
    assert torch.allclose(d.X_train.mean(0), torch.zeros(13), atol=1e-5)
    assert torch.allclose(d.X_train.std(0, unbiased=False), torch.ones(13), atol=1e-4)
    assert d.X_val.mean(0).abs().max() > 1e-3  # validation is scaled with train stats, not its own


def test_skewed_raw_inputs_span_wild_scales():
    d = load_dataset(DataSpec(dataset="skewed", inputs="raw"), seed=0)
    spans = d.X_train.abs().max(0).values
    assert spans.max() / spans.min() > 1e4 and spans[1] > 5e4 and spans[0] <= 1.0


def test_csv_with_target(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    lines = ["a,b,c,label"] + [f"{r[0]},{r[1]},{r[2]},{'yes' if r[0] > 0 else 'no'}" for r in x]
    (tmp_path / "d.csv").write_text("\n".join(lines))
    d = load_dataset(DataSpec(dataset="csv", path=str(tmp_path / "d.csv"), target="label"), seed=0)
    assert d.task == "classification" and d.n_outputs == 2 and d.n_features == 3


@pytest.mark.parametrize("body, message", [
    ("a,b\n" + "1,2\n" * 20, "no target column 'label'"),
    ("a,b,label\n" + "".join(f"x{i},2,{i % 2}\n" for i in range(120)), "categorical column 'a' has 120 levels"),
])
def test_bad_csv(tmp_path, body, message):
    (tmp_path / "d.csv").write_text(body)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_dataset(DataSpec(dataset="csv", path=str(tmp_path / "d.csv"), target="label"))


def test_parquet_is_read_like_csv(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(50, 3)), columns=["a", "b", "c"])
    frame["label"] = np.where(frame["a"] > 0, "yes", "no")
    frame.to_parquet(tmp_path / "d.parquet")
    frame.to_csv(tmp_path / "d.csv", index=False)
    pq = load_dataset(DataSpec(dataset="csv", path=str(tmp_path / "d.parquet"), target="label"), seed=0)
    csv = load_dataset(DataSpec(dataset="csv", path=str(tmp_path / "d.csv"), target="label"), seed=0)
    assert pq.n_features == 3 and pq.n_outputs == 2
    assert torch.allclose(pq.X_train, csv.X_train) and torch.equal(pq.y_val, csv.y_val)


def test_mnist1d_is_the_canonical_set_and_leaves_global_rng_alone():
    import random

    np.random.seed(123)
    random.seed(123)
    expect_np, expect_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    d = load_dataset(DataSpec(dataset="mnist1d"), seed=0)
    assert (np.random.random(), random.random()) == (expect_np, expect_py)
    n = len(d.y_train) + len(d.y_val) + len(d.y_test)
    assert n == 5000 and d.n_features == 40 and d.n_outputs == 10
    # 500 examples of each digit, as the MNIST-1D paper's generator makes them
    counts = np.bincount(np.concatenate([d.y_train, d.y_val, d.y_test]), minlength=10)
    assert (counts == 500).all()


def _csv(tmp_path, body: str, target: str = "label", task: str | None = None) -> DataSpec:
    (tmp_path / "d.csv").write_text(body)
    return DataSpec(dataset="csv", path=str(tmp_path / "d.csv"), target=target, task=task)


@pytest.mark.parametrize("body, target, task, message", [
    ("a,b,label\n" + "".join(f"{i},{i % 7},yes\n" for i in range(30)), "label", None,
     "target 'label' has a single class ('yes'); a classifier needs at least two"),
    ("a,b,label\n" + "".join(f"{'inf' if i == 4 else i},{i % 7},{i % 2}\n" for i in range(30)), "label", None,
     "non-finite values (inf) in feature columns ['a']"),
    ("a,b,label\n" + "".join(f"{i},{'-1e999' if i == 2 else i % 7},{i % 2}\n" for i in range(30)), "label", None,
     "non-finite values (inf) in feature columns ['b']"),
    ("a,b,y\n" + "".join(f"{i},{i % 7},{'inf' if i == 9 else i * 0.5}\n" for i in range(30)), "y", "regression",
     "non-finite values (inf) in target 'y'"),
    # 30 whole-number values: a quantity more often than 30 class labels, so ask instead of guessing.
    ("a,b,y\n" + "".join(f"{i},{i % 7},{100 + i}\n" for i in range(30)), "y", None,
     'target \'y\' holds whole numbers with 30 distinct values; set data.task = "regression"'),
    ("a,b,y\n" + "".join(f"{i},{i % 7},3.5\n" for i in range(30)), "y", "regression", "target 'y' is constant"),
])
def test_bad_csv_values_are_one_line_errors(tmp_path, body, target, task, message):
    with pytest.raises(DataError) as info:
        load_dataset(_csv(tmp_path, body, target, task))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_integer_target_loads_as_regression_when_told(tmp_path):
    body = "a,b,y\n" + "".join(f"{i},{i % 7},{100 + i}\n" for i in range(30))
    d = load_dataset(_csv(tmp_path, body, "y", "regression"))
    assert d.task == "regression" and d.n_outputs == 1
    # Few whole-number values are still class labels (e.g. 0/1/2), as before.
    body = "a,b,y\n" + "".join(f"{i},{i % 7},{i % 3}\n" for i in range(30))
    assert load_dataset(_csv(tmp_path, body, "y")).task == "classification"


# --------------------------------------------------------------------------- prepared-split cache

FIELDS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")


def _same(a, b) -> bool:
    return a.name == b.name and a.task == b.task and all(
        getattr(a, k).dtype == getattr(b, k).dtype and torch.equal(getattr(a, k), getattr(b, k)) for k in FIELDS)


def test_prepared_split_cache_is_bit_exact_and_a_damaged_file_is_rebuilt(tmp_path, monkeypatch):
    from bnsearch.data import split as data  # the module whose _prepared load_prepared reads

    monkeypatch.setenv("BNSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_prepared", {})
    spec = DataSpec(dataset="skewed", inputs="raw")
    fresh = load_dataset(spec, seed=3)
    assert _same(data.load_prepared(spec, 3), fresh)
    (file,) = (tmp_path / "cache" / "data").glob("split-skewed-*.npz")
    data._prepared.clear()
    assert _same(data.load_prepared(spec, 3), fresh)  # read back from the file
    assert not _same(data.load_prepared(spec, 4), fresh)  # another seed is another file
    assert len(list((tmp_path / "cache" / "data").glob("split-skewed-*.npz"))) == 2
    file.write_bytes(b"not an npz")
    data._prepared.clear()
    assert _same(data.load_prepared(spec, 3), fresh)  # a damaged file is a missed shortcut, then rewritten
    assert data.read_split(file) is not None
    assert not list((tmp_path / "cache" / "data").glob("*.tmp*"))


def test_a_users_csv_is_never_copied_into_the_cache_and_an_edit_is_a_new_split(tmp_path, monkeypatch):
    from bnsearch.data import split as data

    monkeypatch.setenv("BNSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_prepared", {})
    rng = np.random.default_rng(0)
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n" + "".join(f"{a},{b},{int(a > 0)}\n" for a, b in rng.normal(size=(60, 2))))
    spec = DataSpec(dataset="csv", path=str(path), target="label")
    first = data.load_prepared(spec, 0)
    assert data.load_prepared(spec, 0) is first and not (tmp_path / "cache").exists()
    path.write_text(path.read_text().replace("label\n", "label\n5,5,1\n", 1))  # one more row
    assert len(data.load_prepared(spec, 0).y_train) + len(data.load_prepared(spec, 0).y_val) \
        + len(data.load_prepared(spec, 0).y_test) == 61


def test_a_second_process_reads_split_and_reference_without_importing_scikit_learn(tmp_path):
    import json
    import os
    import subprocess
    import sys

    code = ("import json, sys; from bnsearch.config import load_config; from bnsearch.api import reference_context; "
            "from bnsearch.data import load_prepared; s = load_config(None); d = load_prepared(s.data, s.seed); "
            "print(json.dumps([reference_context(s), 'sklearn' in sys.modules, d.X_train.sum().item()]))")
    env = {**os.environ, "BNSEARCH_CACHE_DIR": str(tmp_path / "cache")}
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                      check=True, timeout=300).stdout) for _ in range(2)]
    assert runs[0][1] is True and runs[1][1] is False  # built with scikit-learn once, then read back
    assert runs[0][0] == runs[1][0] and runs[0][2] == runs[1][2]
    assert runs[1][0]["reference"]["model"] == "logistic regression" and runs[1][0]["n_val"] > 0


def test_an_empty_cache_dir_setting_turns_the_cache_off(tmp_path, monkeypatch):
    from bnsearch.data import split as data

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BNSEARCH_CACHE_DIR", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(data, "_prepared", {})
    assert data.cache_dir() is None
    assert _same(data.load_prepared(DataSpec(dataset="iris"), 1), load_dataset(DataSpec(dataset="iris"), 1))
    assert list(tmp_path.iterdir()) == []
