"""Shared vocabulary of the analysis: arm names, the `Comparison` container and its long table layout.

Every table of a `Comparison` has one long layout -- key columns, then `value`, `lo`, `hi` -- so that
`aggregate_repeats` can reduce any of them the same way (mean and 95% t-interval across repeats)
and the report layer renders a single-run summary and an aggregated one with the same code.
Per-arm tables carry the two compared arms (by default "bn-on", the treatment, and "bn-off", the
reference) and a "delta" row (treatment minus reference).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from ..arms import DEFAULT_ARMS as ARMS  # the default pair, defined once (arms.py)

DELTA = "delta"
ARM_LABELS = {"bn-on": "BN on", "bn-off": "BN off", DELTA: "Δ"}


def arm_label(arm: str) -> str:
    return ARM_LABELS.get(arm, arm)


# How the verdict speaks of an arm: the default pair's names in words, any other arm by its name.
# Looked up per arm, never by which pair it is: a pair given the other way round reads "without BN"
# first, and a bn-on arm compared with a `none` arm is still "with BN".
_WITH = {"bn-on": "with BN", "bn-off": "without BN"}
_SHORT = {"bn-on": "BN", "bn-off": "no-BN"}


def arm_phrases(arms: tuple[str, str]) -> dict[str, str]:
    """Words for the verdict: 'with BN' / 'without BN' for bn-on / bn-off, 'with <arm>' otherwise."""
    t, r = arms
    return {"what": _SHORT.get(t, t), "with_t": _WITH.get(t, f"with {t}"), "with_r": _WITH.get(r, f"with {r}"),
            "t": _SHORT.get(t, t), "r": _SHORT.get(r, r)}


ADAPTIVE_SAMPLERS = ("tpe", "gp")
MIN_TRIALS_TO_TELL = 5  # per arm; below this the verdict refuses to conclude anything
MIN_IMPORTANCE_TRIALS = 5  # PED-ANOVA on fewer trials returns numbers that mean nothing
N_BOOT = 1000
CONFIDENCE = 0.95
_Q = (100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2)

TABLE_KEYS = {
    "metrics": ["section", "metric", "arm"],
    "curves": ["estimator", "n", "arm"],
    "importance": ["param", "arm"],
    "sensitivity": ["param", "kind", "measure", "arm"],
    "tests": ["test", "quantity"],
    "profile": ["delta", "arm"],
    "heterogeneity": ["factor", "level", "quantity"],
    "trial_budget": ["n", "quantity", "arm"],
}
_VALUE_COLS = ["value", "lo", "hi"]


@dataclass
class Comparison:
    """One arm against the reference (`summarize`'s result), everything the report renders of that
    comparison. One experiment, or R repeats aggregated.

    Tables (long format, see TABLE_KEYS; `lo`/`hi` are NaN where no interval applies):
      metrics      section ("scores" | "robustness"), metric, arm, value, lo, hi
      curves       estimator ("V" | "U" | "best-so-far"), n, arm, value, lo, hi
      importance   param, arm, value, lo, hi
      sensitivity  param, kind ("categorical" | "numeric"), measure, arm, value, lo, hi
      tests        test, quantity, value, lo, hi, note
      profile      delta, arm, value, lo, hi: good fraction over a grid of tolerances
      heterogeneity factor, level, quantity, value, lo, hi: paired difference by hyperparameter level
      trial_budget n, quantity, arm, value, lo, hi: the primary analysis on the first n configurations
                   (s*, δ, the declared-δ and pooled-top-25% differences): how the headline moves with the budget
    For a single run, intervals are the per-statistic 95% CIs (Clopper-Pearson, score, bootstrap); for an aggregate
    they are 95% t-intervals of the mean across repeats (see `interval`).
    """

    experiment: str
    task: str
    sampler: str
    paired: bool  # True only when per-config pairing was actually used by the tests
    tolerance: float
    s_star: float
    params: list[str]
    metrics: pd.DataFrame
    curves: pd.DataFrame
    importance: pd.DataFrame
    sensitivity: pd.DataFrame
    tests: pd.DataFrame
    profile: pd.DataFrame = field(default_factory=pd.DataFrame)
    heterogeneity: pd.DataFrame = field(default_factory=pd.DataFrame)
    trial_budget: pd.DataFrame = field(default_factory=pd.DataFrame)
    arms: tuple = ARMS  # (treatment, reference)
    primary: dict = field(default_factory=dict)  # the primary analysis (analysis.primary) as plain numbers
    context: dict = field(default_factory=dict)  # n_val, baseline, reference model scores
    tolerance_source: str = ""
    outcome: str = ""  # easier | harder | equivalent | cannot tell
    verdict: str = ""
    n_repeats: int = 1
    interval: str = "95% CI per statistic (Clopper-Pearson for one share, score intervals for differences, percentile bootstrap otherwise)"
    notes: list[str] = field(default_factory=list)
    # Adaptive samplers (tpe, gp): trials-to-target across repeats (survival.AdaptiveResult), the
    # primary outcome in place of the good fraction; None for random/QMC search.
    adaptive: object = None

    def metric(self, metric: str, arm: str) -> tuple[float, float, float]:
        """(value, lo, hi) of one metrics row; NaNs when absent."""
        return _lookup(self.metrics, (self.metrics["metric"] == metric) & (self.metrics["arm"] == arm))

    def test(self, test: str, quantity: str) -> tuple[float, float, float]:
        return _lookup(self.tests, (self.tests["test"] == test) & (self.tests["quantity"] == quantity))

    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in TABLE_KEYS}

    def to_json(self, meta: Mapping | None = None) -> dict:
        """Plain JSON-able dict (NaN and inf become null): setup, verdict, notes and every table as records."""
        clean = json_safe
        return {
            "experiment": self.experiment, "task": self.task, "sampler": self.sampler, "paired": self.paired,
            "tolerance": clean(self.tolerance), "s_star": clean(self.s_star), "n_repeats": self.n_repeats,
            "arms": list(self.arms), "tolerance_source": self.tolerance_source, "outcome": self.outcome,
            "primary": {k: clean(v) for k, v in self.primary.items()},
            "context": {k: clean(v) for k, v in self.context.items()},
            "interval": self.interval, "verdict": self.verdict, "notes": list(self.notes),
            "adaptive": self.adaptive.to_json() if self.adaptive is not None else None,
            "meta": {k: clean(v) for k, v in (meta or {}).items()},
            "tables": {name: records(t) for name, t in self.tables().items()},
        }

    def __repr__(self) -> str:
        return (f"<bnsearch Comparison {self.experiment!r}: task {self.task}, sampler {self.sampler}, "
                f"{self.n_repeats} repeat(s)>\n{self.verdict}")

    def _repr_markdown_(self) -> str:
        return "> " + self.verdict


def _lookup(table: pd.DataFrame, mask) -> tuple[float, float, float]:
    if table.empty or not mask.any():
        return (math.nan, math.nan, math.nan)
    row = table[mask].iloc[0]
    return (float(row["value"]), float(row["lo"]), float(row["hi"]))


# ----------------------------------------------------------------------------- helpers

def signed_text(x: float, decimals: int = 1) -> str:
    """x with its sign, except that a value rounding to zero prints as an unsigned 0: "-0.0" would read
    as a difference below zero, "+0.0" as one above it."""
    text = f"{x:+.{decimals}f}"
    return f"{0:.{decimals}f}" if float(text) == 0 else text


def _rng(seed: int, tag: str) -> np.random.Generator:
    # One independent stream per statistic, so adding a bootstrap elsewhere never shifts this one.
    return np.random.default_rng([int(seed), zlib.crc32(tag.encode())])


def _floats(values) -> np.ndarray:
    return np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)


def complete_trials(df: pd.DataFrame, arm: str | None = None) -> pd.DataFrame:
    """COMPLETE trials with a finite score (diverged ones included: they are the fragility measured)."""
    if df.empty:
        return df
    mask = df["state"].astype(str) == "COMPLETE"
    if arm is not None:
        mask &= df["arm"].astype(str) == arm
    out = df[mask]
    return out[np.isfinite(_floats(out["score"]))].sort_values("number", kind="stable")


# ----------------------------------------------------------------------------- JSON

def json_safe(x):
    """A value JSON can hold: NaN and inf become null (JSON has neither), numpy scalars and paths
    plain values, recursively through dicts, lists and tuples."""
    from pathlib import PurePath

    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.generic):
        return json_safe(x.item())
    if isinstance(x, PurePath):
        return str(x)
    return x


def records(table: pd.DataFrame | None) -> list[dict] | None:
    """A table as JSON-able records (NaN and inf as null)."""
    import json

    if table is None:
        return None
    return json.loads(table.replace([np.inf, -np.inf], np.nan).to_json(orient="records"))
