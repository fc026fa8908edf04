"""The one encoding every table's features go through (a user's file, R, OpenML): missing values, one-hot
text columns, the caps that refuse id-like columns, fill_missing after the split, and data_line's summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .spec import DataError

if TYPE_CHECKING:
    import pandas as pd

# The policy (docs/design.md, Real tables):
# - rows whose target is missing are dropped (by the loaders, before encoding);
# - a numeric feature with missing values keeps them as NaN here and gains a 0/1 "was missing"
#   column; the NaNs are filled with the training split's median after the split (fill_missing),
#   so validation and test rows never shape the fill;
# - a categorical feature (text, category or mixed) is one-hot encoded, its missing values a level
#   of their own; a two-level column becomes one 0/1 column. Above MAX_LEVELS levels in one column
#   or MAX_COLUMNS encoded columns in all, the table is refused: such a column is usually an id or
#   free text, and a one-hot of it would swamp the model.
MAX_LEVELS = 100  # US states (51) and similar codes fit; ids and free text do not
MAX_COLUMNS = 1000
MISSING_LEVEL = "(missing)"


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


def encode_features(frame: "pd.DataFrame", where: str, facts: dict | None = None) -> tuple[np.ndarray, list[str]]:
    """Features as float64 (n, d) and the encoded column names, by the module's policy. Numeric
    NaNs stay NaN (fill_missing fills them after the split); `where` names the table in errors.
    `facts`, when given, receives the columns imputed, one-hot encoded (with their level counts)
    and left out as constant."""
    import pandas as pd

    blocks: list[np.ndarray] = []
    names: list[str] = []
    imputed: list[str] = []
    one_hot: dict[str, int] = {}
    constant: list[str] = []
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
                imputed.append(str(col))
            if len(names) > MAX_COLUMNS:
                break
            continue
        text = s.astype(object).where(s.notna(), MISSING_LEVEL).astype(str)
        codes, levels = pd.factorize(text, sort=True)
        if len(levels) > MAX_LEVELS:
            raise DataError(f"{where}: categorical column {str(col)!r} has {len(levels)} levels (at most "
                            f"{MAX_LEVELS} are one-hot encoded); drop it, group rare levels or encode it as numbers")
        if len(levels) <= 1:
            constant.append(str(col))
            continue  # a constant column carries nothing
        one_hot[str(col)] = len(levels)
        if len(levels) == 2:
            blocks.append((codes == 1).astype(np.float64)[:, None])
            names.append(f"{col}={levels[1]}")
        else:
            blocks.append(np.eye(len(levels))[codes])
            names.extend(f"{col}={lv}" for lv in levels)
        if len(names) > MAX_COLUMNS:
            break
    if len(names) > MAX_COLUMNS:
        text = [str(c) for c in frame.columns if _categorical(frame[c])]
        numeric = frame.shape[1] - len(text)
        if not text:  # the message used to blame one-hot encoding and categorical columns there were none of
            raise DataError(f"{where}: {numeric:,} numeric columns give more than {MAX_COLUMNS} feature columns (a "
                            "column with gaps adds a missing-value flag), too many for this search; keep the "
                            "informative ones (data.drop / --drop COL leaves one out) or reduce them first, "
                            "e.g. with PCA")
        raise DataError(f"{where}: one-hot encoding gives more than {MAX_COLUMNS} feature columns ({numeric:,} "
                        f"numeric columns and {len(text):,} text columns such as {text[0]!r}); drop high-cardinality "
                        "categorical columns or encode them as numbers")
    if not blocks:
        raise DataError(f"{where}: no usable feature column (all constant or empty)")
    if facts is not None:
        facts.update(imputed=imputed, one_hot=one_hot, constant=constant)
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


def data_line(facts: dict | None) -> str | None:
    """What loading did to the data, in one line: rows used and dropped, features after encoding,
    columns imputed. None when nothing was recorded (experiments stored before it was)."""
    if not facts or "features" not in facts:
        return None
    parts = [f"{facts.get('source', 'data')}: {facts['rows'] - facts.get('rows_dropped', 0):,} rows used"
             f" ({facts.get('rows_dropped', 0):,} without a target dropped)"]
    one_hot = facts.get("one_hot") or {}
    encoded = f", {len(one_hot)} text column(s) one-hot encoded" if one_hot else ""
    parts.append(f"{facts['features']:,} features after encoding{encoded}")
    parts.append(f"{len(facts.get('imputed') or []):,} column(s) imputed")
    if facts.get("dropped_columns"):
        parts.append(f"{len(facts['dropped_columns'])} column(s) left out by data.drop")
    if facts.get("split"):
        parts.append("split {:,} / {:,} / {:,} (train / validation / test)".format(*facts["split"]))
    return "; ".join(parts)
