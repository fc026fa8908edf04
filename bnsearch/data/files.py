"""A user's CSV or Parquet file: read once (the bytes hashed are the bytes parsed), refused unless it is a
regular file, and turned into arrays with the target's task inferred; data_digest identifies the data."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from .encode import encode_features, numbers_as_numbers
from .spec import DataError, DataSpec, _Arrays, _few

# A numeric CSV target with more distinct values than this is not taken for class labels unasked.
MAX_INFERRED_CLASSES = 20


def _file_bytes(path: Path) -> bytes:
    """A user's data file, read once into memory: the bytes hashed are the bytes parsed, so a file
    replaced between the two cannot give a split that the recorded digest does not describe. The
    open is non-blocking and checked on the descriptor (data_digest says why)."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise DataError(f"data.path: data file not found: {path}") from None
    except OSError as exc:
        raise DataError(f"data.path: cannot read {path} ({exc.strerror or exc})") from None
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise not_regular(path)
        try:
            return f.read()
        except OSError as exc:
            raise DataError(f"data.path: cannot read {path} ({exc.strerror or exc})") from None


def _read_table(path: Path):
    """A user's data file: Parquet by its suffix, CSV otherwise; and the SHA-256 of its bytes."""
    import pandas as pd

    kind = "Parquet" if path.suffix.lower() in (".parquet", ".pq") else "CSV"
    raw = _file_bytes(path)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    try:
        frame = pd.read_parquet(io.BytesIO(raw)) if kind == "Parquet" else pd.read_csv(io.BytesIO(raw))
        # pandas renames a repeated CSV header ("label" twice: "label", "label.1"), so the first copy
        # would be the target and the second a feature; the header as written tells.
        names = [str(c) for c in (frame.columns if kind == "Parquet" else
                                  pd.read_csv(io.BytesIO(raw), header=None, nrows=1, dtype=str,
                                              keep_default_na=False).iloc[0])]
    except ImportError as exc:  # pandas needs pyarrow (or fastparquet) for Parquet
        raise DataError(f"data.path: reading {path} as Parquet needs pyarrow ({exc}); pip install pyarrow") from None
    except Exception as exc:  # pandas raises many types; all mean "not a readable file of that kind"
        raise DataError(f"data.path: cannot read {path} as {kind} ({exc.__class__.__name__}: {exc})") from None
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{path}: duplicate column names {repeated[:5]}; give every column its own name")
    if len(frame) == 0:
        raise DataError(f"{path}: has a header but no data rows; add the data")
    return frame, digest


def _nested_columns(frame) -> list[str]:
    """Columns of lists, structs or maps (Parquet's nested types, which pandas hands over as Python
    objects): as text they would be one-hot encoded level by level, or dropped as constant."""
    out = []
    for col in frame.select_dtypes("object").columns:
        values = frame[col].dropna()
        if len(values) and isinstance(values.iloc[0], (list, tuple, dict, set, np.ndarray)):
            out.append(str(col))
    return out


def _load_csv(spec: DataSpec) -> _Arrays:
    import pandas as pd

    if not spec.path:
        raise DataError("data.path is required when data.dataset = \"csv\"; set it to your CSV file")
    path = Path(spec.path)
    if not path.is_file():
        if path.exists():
            raise not_regular(path)
        raise DataError(f"data.path: data file not found: {path}")
    frame, digest = _read_table(path)
    if not spec.target:
        raise DataError("data.target is required for a CSV data set; name the label column")
    if spec.target not in frame.columns:
        cols = ", ".join(map(str, frame.columns[:10]))
        raise DataError(f"{path}: no target column {spec.target!r}; columns are: {cols}")
    drop = list(spec.drop or ())
    if spec.target in drop:
        raise DataError(f"{path}: the target {spec.target!r} cannot be dropped (data.drop / --drop); "
                        "drop only feature columns")
    unknown = [c for c in drop if c not in frame.columns]
    if unknown:
        raise DataError(f"{path}: data.drop / --drop: no column {unknown[0]!r}; columns are: "
                        f"{_few(frame.columns, 10)}")
    frame = frame.drop(columns=drop)
    nested = _nested_columns(frame)
    if nested:
        raise DataError(f"{path}: column(s) {_few(nested)} hold nested values (lists, structs or maps), which "
                        "cannot be encoded as features; flatten them into plain columns or leave them out "
                        f"(--drop {nested[0]}, or data.drop)")
    y_raw = frame.pop(spec.target)
    # Missing values and categorical columns follow encode.py's policy (docs/design.md, Real tables).
    keep = y_raw.notna().to_numpy()
    facts: dict = {"source": path.name, "rows": int(len(keep)), "rows_dropped": int((~keep).sum()),
                   "dropped_columns": [str(c) for c in drop]}
    frame, y_raw = numbers_as_numbers(frame[keep]), y_raw[keep]
    if frame.shape[1] == 0 or len(frame) < 10:
        raise DataError(f"{path}: need at least one feature column and 10 rows with a target")
    num = frame.select_dtypes("number")
    X_num = num.to_numpy(dtype=np.float64, na_value=np.nan)
    bad_cols = [str(c) for c, ok in zip(num.columns, (np.isfinite(X_num) | np.isnan(X_num)).all(axis=0)) if not ok]
    if bad_cols:
        # inf (or a value beyond float64) made every run "diverge" in both arms, silently.
        raise DataError(f"{path}: non-finite values (inf) in feature columns {bad_cols[:5]}; "
                        "replace or drop those rows first")
    X, names = encode_features(frame, str(path), facts)
    numeric = pd.api.types.is_numeric_dtype(y_raw)
    if numeric and not np.isfinite(y_raw.to_numpy(dtype=np.float64)).all():
        raise DataError(f"{path}: non-finite values (inf) in target {spec.target!r}; replace or drop those rows first")
    task = spec.task
    distinct = int(y_raw.nunique())
    if task is None:
        if numeric and y_raw.dtype.kind == "f" and distinct > MAX_INFERRED_CLASSES:
            task = "regression"
        elif numeric and distinct > MAX_INFERRED_CLASSES:
            # Whole numbers with many values (counts, prices, ages) are more often a quantity
            # than class labels; guessing wrong gives a confusing split error, so ask.
            raise DataError(f"{path}: target {spec.target!r} holds whole numbers with {distinct} distinct values; "
                            "set data.task = \"regression\" if it is a quantity, or data.task = \"classification\" "
                            "if these are class labels")
        else:
            task = "classification"
    labels = None
    if task == "classification":
        if distinct < 2:
            raise DataError(f"{path}: target {spec.target!r} has a single class ({str(y_raw.iloc[0])!r}); a classifier "
                            "needs at least two, so pick another target column or add rows of other classes")
        y, levels = pd.factorize(y_raw, sort=True)
        labels = [str(v) for v in levels]
    else:
        if not numeric:
            raise DataError(f"{path}: target {spec.target!r} is not numeric but data.task = \"regression\"")
        y = y_raw.to_numpy(dtype=np.float64)
        if distinct < 2:
            raise DataError(f"{path}: target {spec.target!r} is constant; there is nothing to regress")
    return _Arrays(X, y, task, names, digest, facts, labels)


_digests: dict[tuple[str, int, int], str] = {}


def not_regular(path: "str | Path") -> DataError:
    """The refusal for a data path that exists but is no regular file once links are followed."""
    p = Path(path)
    target = f" (a link to {os.path.realpath(p)})" if p.is_symlink() else ""
    kind = ("a directory" if p.is_dir() else "a FIFO (named pipe)" if p.is_fifo() else "a socket" if p.is_socket()
            else "a device" if p.is_char_device() or p.is_block_device() else "no file it can read")
    return DataError(f"data.path: {p}{target} is not a regular file but {kind}; pass a CSV or Parquet file")


def data_digest(spec: DataSpec) -> str:
    """What identifies the data: the built-in set's name, or the SHA-256 of the CSV file's bytes."""
    import stat

    if spec.dataset != "csv":
        return f"builtin:{spec.dataset}"
    try:
        st = os.stat(spec.path)
    except (OSError, TypeError, ValueError):
        return "unreadable"  # loading the data reports the real problem
    # A FIFO blocks until a writer comes and a device (/dev/zero) never ends: only a regular file is
    # read. The open is non-blocking and checked again on the descriptor, so a file swapped for a
    # FIFO between the stat and the open cannot hang it either.
    if not stat.S_ISREG(st.st_mode):
        raise not_regular(spec.path)
    key = (str(spec.path), st.st_mtime_ns, st.st_size)
    if key not in _digests:
        try:
            fd = os.open(spec.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return "unreadable"
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise not_regular(spec.path)
            h = hashlib.sha256()
            try:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            except OSError:
                return "unreadable"
        _digests[key] = "sha256:" + h.hexdigest()
    return _digests[key]
