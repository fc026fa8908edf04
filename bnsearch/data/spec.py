"""What every data module shares, so each can import it without cycles: the config's DataSpec, the
Dataset a trial trains on, the arrays before the split (_Arrays) and DataError (numpy only at import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


class DataError(ValueError):
    """Bad data input (unknown data set, unreadable CSV, missing target column ...); callers catch it
    as data.DataError."""


@dataclass(frozen=True)
class DataSpec:
    dataset: str = "digits"
    path: str | None = None
    target: str | None = None
    task: str | None = None  # csv only: "classification" | "regression"; inferred when None
    inputs: str = "standardize"  # or "raw"
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    drop: tuple[str, ...] | None = None  # csv only: columns that are not features (None, not (): see Settings.to_dict)


# Everything is turned into in-memory float32 tensors once, because a trial is hundreds of tiny
# steps and a DataLoader's per-sample indexing would cost more than the arithmetic.
@dataclass
class Dataset:
    name: str
    task: str  # "classification" | "regression"
    X_train: "torch.Tensor"  # float32 (n, d)
    y_train: "torch.Tensor"  # int64 (n,) for classification, float32 (n,) for regression
    X_val: "torch.Tensor"
    y_val: "torch.Tensor"
    X_test: "torch.Tensor"
    y_test: "torch.Tensor"
    # What the arrays were made from: "sha256:<hex>" of the very bytes parsed (a user's file), or
    # "builtin:<name>". A worker compares it with the digest its experiment recorded (check_recorded).
    digest: str | None = None
    facts: dict | None = None  # what loading did to the table (data_line): rows dropped, columns imputed ...

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_outputs(self) -> int:
        """Classes for classification, 1 for regression."""
        if self.task == "regression":
            return 1
        return int(max(self.y_train.max(), self.y_val.max(), self.y_test.max()).item()) + 1

    def to(self, device) -> "Dataset":
        moved = {k: getattr(self, k).to(device) for k in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")}
        return Dataset(self.name, self.task, **moved, digest=self.digest, facts=self.facts)


def _few(items, n: int = 5) -> str:
    """The first n items quoted, and how many more: an error line stays short for 100,000 of them."""
    items = [str(i) for i in items]
    shown = ", ".join(repr(i) for i in items[:n])
    return shown + (f" and {len(items) - n:,} more" if len(items) > n else "")


@dataclass
class _Arrays:
    """A data set before the split: what _split_scaled and Dataset are made from."""
    X: np.ndarray
    y: np.ndarray
    task: str
    names: list[str] | None  # encoded feature names (None for the built-in sets)
    digest: str
    facts: dict
    labels: list[str] | None = None  # class label of each code, for messages (None: the codes are the labels)
