"""The built-in data sets (scikit-learn's small sets, the synthetic skewed set, MNIST-1D): generated or
bundled offline, so they are identified by name (builtin:<name>), not by a digest of their bytes."""

from __future__ import annotations

import numpy as np

from .spec import DataError, _Arrays

BUILTIN: dict[str, tuple[str, str]] = {
    "digits": ("classification", "8x8 handwritten digits, 1797 x 64, 10 classes (scikit-learn)"),
    "breast_cancer": ("classification", "Wisconsin breast cancer, 569 x 30, 2 classes (scikit-learn)"),
    "wine": ("classification", "wine cultivars, 178 x 13, 3 classes (scikit-learn)"),
    "iris": ("classification", "iris flowers, 150 x 4, 3 classes (scikit-learn)"),
    "diabetes": ("regression", "diabetes progression, 442 x 10, regression (scikit-learn)"),
    "skewed": ("classification", "synthetic, 1500 x 12, 3 classes, features on scales from 1e-1 to 1e5"),
    "mnist1d": ("classification", "MNIST-1D (Greydanus 2020), 5000 x 40, 10 classes, generated offline"),
    "csv": ("from file", "your CSV or Parquet file: set data.path and data.target (text columns are one-hot encoded)"),
}


def _skewed(seed: int, n: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """The seed forum's case: a learnable task whose features live on wildly different scales.

    Informative features come from make_classification, then each column is rescaled by a factor
    between 1e-1 and 1e5 (one column stays in [0, 1]), so raw inputs break unnormalised networks.
    """
    from sklearn.datasets import make_classification

    rng = np.random.default_rng(seed)
    X, y = make_classification(
        n_samples=n, n_features=12, n_informative=8, n_redundant=2, n_classes=3,
        class_sep=1.5, random_state=seed,
    )
    X = (X - X.min(0)) / (X.max(0) - X.min(0))  # every column in [0, 1]
    scales = 10.0 ** rng.uniform(-1, 5, size=X.shape[1])
    scales[0], scales[1] = 1.0, 1e5
    X = X * scales
    X[:, 1] = X[:, 1] * 2 - 1e5  # one feature in [-1e5, 1e5]
    return X, y


def _mnist1d() -> tuple[np.ndarray, np.ndarray]:
    """The canonical MNIST-1D set (the package's default arguments, its fixed seed 42), generated
    locally instead of downloaded. Made for MLP studies: small, but hard enough that architecture
    and optimisation choices separate (linear models reach ~32%, MLPs ~70%).

    The generator seeds NumPy's and Python's global RNGs; both are restored, so loading this data
    set never changes a caller's random state.
    """
    import random

    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise DataError("data.dataset = \"mnist1d\" needs the mnist1d package: pip install mnist1d") from None
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    X = np.concatenate([d["x"], d["x_test"]]).astype(np.float64)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    return X, y


def _builtin_facts(name: str, X: np.ndarray) -> dict:
    return {"source": name, "rows": int(len(X)), "rows_dropped": 0, "dropped_columns": []}


def builtin_arrays(name: str, seed: int) -> _Arrays:
    """One of BUILTIN but "csv", before the split (skewed is drawn from `seed`)."""
    if name == "skewed":
        X, y = _skewed(seed)
        return _Arrays(X, y, "classification", None, f"builtin:{name}", _builtin_facts(name, X))
    if name == "mnist1d":
        X, y = _mnist1d()
        return _Arrays(X, y, "classification", None, f"builtin:{name}", _builtin_facts(name, X))
    from sklearn import datasets as skd

    loader = {"digits": skd.load_digits, "breast_cancer": skd.load_breast_cancer, "wine": skd.load_wine,
              "iris": skd.load_iris, "diabetes": skd.load_diabetes}[name]
    bunch = loader()
    X = bunch.data.astype(np.float64)
    return _Arrays(X, bunch.target, BUILTIN[name][0], None, f"builtin:{name}", _builtin_facts(name, X))
