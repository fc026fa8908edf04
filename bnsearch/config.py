"""TOML config -> validated Settings.

Validation is strict because a typo in a search space silently changes the experiment: every
unknown key is an error, and every message names the file, the key and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import optuna.distributions as od

from . import arms as _arms
from .data import BUILTIN, DataSpec, data_digest, not_regular

DEFAULT_SOURCE = "<built-in default>"
SAMPLERS = ("random", "qmc", "tpe", "gp")
DEVICES = ("auto", "cpu", "cuda")
ACTIVATIONS = ("relu", "tanh", "gelu", "sigmoid")
INITS = ("kaiming", "xavier", "normal", "uniform")
OPTIMIZERS = ("sgd", "adam")
# The classification score every trial is ranked by (data.metric). Balanced accuracy (the mean of the
# per-class recalls, scikit-learn's definition) is for imbalanced tables, where plain accuracy barely
# separates a trained model from always predicting the majority class. Regression is always R^2.
METRICS = ("accuracy", "balanced_accuracy")
DEFAULT_METRIC = "accuracy"

# Value used when a hyperparameter is dropped from [search.space]: a sensible, commonly used MLP.
PARAM_DEFAULTS: dict[str, Any] = {
    "layers": 2, "width": 128, "activation": "relu", "init": "kaiming",
    "lr": 1e-3, "optimizer": "adam", "batch_size": 64,
}
PARAM_TYPES: dict[str, type] = {
    "layers": int, "width": int, "activation": str, "init": str,
    "lr": float, "optimizer": str, "batch_size": int,
}
ALLOWED_CHOICES = {"activation": ACTIVATIONS, "init": INITS, "optimizer": OPTIMIZERS}
INT_BOUNDS = {"layers": (1, 16), "width": (1, 8192), "batch_size": (1, 65536)}

SCHEMA: dict[str, dict[str, Any]] = {
    "experiment": {"name": str, "seed": int, "tolerance": float, "arms": list, "reference": str},
    "data": {"dataset": str, "path": str, "target": str, "task": str, "inputs": str,
             "val_fraction": float, "test_fraction": float, "metric": str, "drop": list},
    "search": {"sampler": str, "trials": int, "paired": bool, "repeats": int, "space": dict},
    "train": {"epochs": int, "device": str},
    "arms": {},  # [arms.<name>] tables: keys are arm names, checked by arms.parse_arms
}


class ConfigError(ValueError):
    """A config that cannot be used; the message is one line naming file, key and fix."""


# --------------------------------------------------------------------------- limits (docs/design.md, Limits)

MAX_TRIALS = 100_000      # per arm: a plan this size takes minutes to write and days to train on a laptop
MAX_JOBS = 64
JOBS_PER_CORE = 4         # more only oversubscribes; the default is one per core
WORKER_BYTES = 512 << 20  # one worker process (Python, torch, Optuna, the data): ~420 MB RSS measured
PLAN_BYTES = 20 << 10     # per planned trial while planning and reading back (~2 KB measured, 10x margin)
MAX_SEED = 2**32 - 1      # numpy/scikit-learn seeds are 32-bit
TOLERANCE_MAX = 0.5       # a share of the score scale (accuracy, R^2): 0.01 = 1 point


def _memory_bytes() -> int | None:
    """Memory available to new processes (Linux MemAvailable), else physical memory, else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def max_jobs() -> tuple[int, str]:
    """The most worker processes this machine takes, and why (cores or memory)."""
    cores = os.cpu_count() or 1
    limits = [(MAX_JOBS, f"the maximum {MAX_JOBS}"), (JOBS_PER_CORE * cores, f"{JOBS_PER_CORE} per core x {cores} cores")]
    mem = _memory_bytes()
    if mem is not None:
        limits.append((max(1, mem // WORKER_BYTES), f"{mem / 2**30:.1f} GiB free memory / "
                                                     f"{WORKER_BYTES / 2**30:.1f} GiB per worker"))
    return min(limits)


def max_trials() -> tuple[int, str]:
    mem = _memory_bytes()
    limits = [(MAX_TRIALS, f"the maximum {MAX_TRIALS:,} per arm")]
    if mem is not None:
        limits.append((max(1, mem // 4 // PLAN_BYTES), f"a quarter of {mem / 2**30:.1f} GiB free memory"))
    return min(limits)


def check_jobs(jobs: int | None) -> None:
    if jobs is None:
        return
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1 (got {jobs})")
    limit, why = max_jobs()
    if jobs > limit:
        raise ConfigError(f"--jobs {jobs} is more than this machine can run (at most {limit}: {why}); "
                          f"use --jobs {os.cpu_count() or 1} (one per core)")


def _check_trials(trials: int, key: str) -> None:
    if trials < 1:
        raise ConfigError(f"{key} must be at least 1 (got {trials})")
    limit, why = max_trials()
    if trials > limit:
        raise ConfigError(f"{key} {trials} is too many (at most {limit:,} per arm: {why}); "
                          "use fewer, or several experiments")


def _check_seed(seed: int, key: str) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{key} must be between 0 and {MAX_SEED} (got {seed})")


def _check_tolerance(tolerance: float, key: str) -> None:
    if not 0 <= tolerance <= TOLERANCE_MAX:
        hint = f" (for {tolerance:g} points write {tolerance / 100:g})" if 1 <= tolerance <= 50 else ""
        raise ConfigError(f"{key} must be between 0 and {TOLERANCE_MAX} (a share of the score scale: "
                          f"0.01 = 1 point){hint}; got {tolerance:g}")


# Settings that change how results are analysed, not what is trained: not part of the identity,
# so they can change on a finished experiment (docs/design.md, Experiment identity).
ANALYSIS_ONLY = ("experiment.tolerance",)
# Not identity either: the budget may grow, a GPU machine may join a CPU one, and the data are
# identified by their contents (data.sha256), not by where the file lies.
# Repeats are separate experiments (seed + r), so their number is no part of any one's identity.
NOT_IDENTITY = ("search.trials", "search.repeats", "train.device", "data.path", *ANALYSIS_ONLY)

# An adaptive sampler's trajectory is one observation, so `compare` runs this many independent
# seeded searches per arm unless the config or --repeats says otherwise (power: docs/design.md §6).
ADAPTIVE_REPEATS = 10
MAX_REPEATS = 1000



def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key != "search.space" and not key.startswith("search.space."):
            out.update(_flat(v, key + "."))
        elif key == "search.space":
            out.update({f"search.space.{n}": x for n, x in v.items()})
        else:
            out[key] = v
    return out


def identity_conflict(stored_attrs: dict[str, Any], settings: "Settings") -> str | None:
    """Why `settings` is not the experiment stored with these study user attrs (None: it is).

    Compares the stored config (its TOML, written by to_toml) key by key, so the refusal names
    every key that differs. Studies written before data.sha256 existed (legacy) identified CSV data
    by its path; for them the path still counts, until this check passes once and the digest is
    stored."""
    text = stored_attrs.get("config_toml")
    if text is None:
        return None
    try:
        old = _flat(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, RecursionError, MemoryError):
        return "the stored config is not readable TOML"
    new = _flat(settings.to_dict())
    legacy = "data_sha256" not in stored_attrs
    skip = tuple(k for k in NOT_IDENTITY if not (legacy and k == "data.path"))
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key in skip:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, list):
            a = list(a)
        if a != b:
            diffs.append(f"{key} ({_show(a)} stored, {_show(b)} now)")
    if not legacy and stored_attrs["data_sha256"] != settings.data_digest():
        if settings.data.dataset == "csv":
            diffs.append(f"the contents of the data file {settings.data.path} (stored "
                         f"{stored_attrs['data_sha256'][:19]}, now {settings.data_digest()[:19]})")
        elif old.get("data.dataset") == new.get("data.dataset"):
            # A built-in set has no file: its digest is its name, which data.dataset already names.
            diffs.append(f"the data (stored {stored_attrs['data_sha256'][:40]}, now {settings.data_digest()[:40]})")
    return "; ".join(diffs) or None


def _show(v: Any) -> str:
    return "unset" if v is None else json.dumps(v) if isinstance(v, (str, list)) else str(v)


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "int" | "float" | "categorical" | "fixed"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    value: Any = None  # for kind == "fixed"

    def distribution(self) -> od.BaseDistribution | None:
        if self.kind == "int":
            return od.IntDistribution(int(self.low), int(self.high), log=self.log)
        if self.kind == "float":
            return od.FloatDistribution(float(self.low), float(self.high), log=self.log)
        if self.kind == "categorical":
            return od.CategoricalDistribution(list(self.choices))
        return None

    def describe(self) -> str:
        if self.kind in ("int", "float"):
            return f"{self.low:g} .. {self.high:g}" + (" (log)" if self.log else "")
        if self.kind == "categorical":
            return ", ".join(map(str, self.choices))
        return f"fixed: {self.value}"


@dataclass(frozen=True)
class Settings:
    name: str = "digits-mlp"
    seed: int = 0
    tolerance: float | None = None  # None: derived from validation noise at analysis time
    data: DataSpec = field(default_factory=DataSpec)
    sampler: str = "random"
    trials: int = 60
    paired: bool = True
    space: dict[str, Param] = field(default_factory=dict)
    epochs: int = 20
    device: str = "auto"
    source: str = DEFAULT_SOURCE
    arms: tuple = _arms.DEFAULT_SPECS  # ArmSpec per arm (docs/design.md, Arms)
    reference: str = _arms.DEFAULT_REFERENCE
    repeats: int | None = None  # search.repeats; None: ADAPTIVE_REPEATS for tpe/gp, else 1 (default_repeats)
    # data.metric. Kept out of DataSpec: it changes how outputs are scored, not the split, so the
    # prepared-split cache (keyed by the DataSpec) is shared by both metrics.
    metric: str = DEFAULT_METRIC

    def distributions(self) -> dict[str, od.BaseDistribution]:
        """The searched hyperparameters (fixed ones are not Optuna parameters)."""
        return {n: p.distribution() for n, p in self.space.items() if p.kind != "fixed"}

    def fixed_params(self) -> dict[str, Any]:
        fixed = {n: p.value for n, p in self.space.items() if p.kind == "fixed"}
        return {n: fixed.get(n, PARAM_DEFAULTS[n]) for n in PARAM_DEFAULTS if n not in self.distributions()}

    def to_dict(self) -> dict[str, Any]:
        """Plain TOML-able dict; `load_config_text(to_toml(...))` gives back an equal Settings."""
        space: dict[str, Any] = {}
        for n, p in self.space.items():
            if p.kind in ("int", "float"):
                space[n] = {"low": p.low, "high": p.high, "log": p.log}
            elif p.kind == "categorical":
                space[n] = list(p.choices)
            else:
                space[n] = p.value
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self.data).items() if v is not None}
        # Written only when not the default, so experiments stored before data.metric existed (all
        # accuracy) keep their config hash and identity; a changed metric is a different experiment,
        # since every stored score is in it.
        if self.metric != DEFAULT_METRIC:
            data["metric"] = self.metric
        # The default pair adds nothing, so experiments stored before arms existed keep their hash.
        exp_arms, arm_tables = _arms.to_config(self.arms, self.reference)
        d = {
            "experiment": {"name": self.name, "seed": self.seed,
                           **({"tolerance": self.tolerance} if self.tolerance is not None else {}), **exp_arms},
            "data": data,
            "search": {"sampler": self.sampler, "trials": self.trials, "paired": self.paired,
                       **({"repeats": self.repeats} if self.repeats is not None else {}), "space": space},
            "train": {"epochs": self.epochs, "device": self.device},
        }
        if arm_tables:
            d["arms"] = arm_tables
        return d

    def default_repeats(self) -> int:
        """Repeats `compare` runs without --repeats: search.repeats, else ADAPTIVE_REPEATS for an
        adaptive sampler (one trajectory is one observation), else 1."""
        if self.repeats is not None:
            return self.repeats
        return ADAPTIVE_REPEATS if self.sampler in ("tpe", "gp") else 1

    def arm_names(self) -> list[str]:
        return [a.name for a in self.arms]

    def data_digest(self) -> str:
        return data_digest(self.data)

    def config_hash(self) -> str:
        """Identity of the experiment: everything that changes what is trained, with the data
        identified by their contents. Left out: the budget and the device (so `--trials` can extend
        a study and a GPU machine can join a CPU one), the CSV's path (a copied project folder is the
        same experiment) and analysis-only settings such as tolerance (docs/design.md, Experiment
        identity)."""
        d = {k: v for k, v in _flat(self.to_dict()).items() if k not in NOT_IDENTITY}
        d["data.sha256"] = self.data_digest()
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def with_overrides(self, **kw: Any) -> "Settings":
        kw = {k: v for k, v in kw.items() if v is not None}
        if "trials" in kw:
            _check_trials(kw["trials"], "--trials")
        if "seed" in kw:
            _check_seed(kw["seed"], "--seed")
        if "tolerance" in kw:
            _check_tolerance(kw["tolerance"], "--tolerance")
        if "sampler" in kw and kw["sampler"] not in SAMPLERS:
            raise ConfigError(f"--sampler: unknown sampler {kw['sampler']!r}; choose one of {', '.join(SAMPLERS)}")
        if "epochs" in kw and not (isinstance(kw["epochs"], int) and 1 <= kw["epochs"] <= 10000):
            raise ConfigError(f"--epochs must be between 1 and 10000 (got {kw['epochs']})")
        if "device" in kw and kw["device"] not in DEVICES:
            raise ConfigError(f"--device: must be one of {', '.join(DEVICES)} (got {kw['device']!r})")
        return replace(self, **kw)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def to_toml(settings: Settings) -> str:
    # Our configs are two levels deep with scalar/list/inline-table leaves, so a 15-line writer
    # is enough and avoids a dependency; test_config checks the round trip.
    lines: list[str] = []
    d = settings.to_dict()
    for section, body in d.items():
        space = body.pop("space", None) if section == "search" else None
        lines.append(f"[{section}]")
        # Arm names may hold '.' or '+', which a bare TOML key cannot: quote them.
        lines += [f"{_toml_value(k) if section == 'arms' else k} = {_toml_value(v)}" for k, v in body.items()]
        lines.append("")
        if space is not None:
            lines.append("[search.space]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in space.items()]
            lines.append("")
    return "\n".join(lines)


def _check_type(src: str, key: str, value: Any, typ: type) -> Any:
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) < 2**1023 else math.inf
    if typ is int and isinstance(value, bool) or not isinstance(value, typ):
        raise ConfigError(f"{src}: {key}: expected {typ.__name__}, got {value!r}")
    if typ is float and not math.isfinite(value):
        raise ConfigError(f"{src}: {key}: must be a finite number (got {value!r})")
    return value


def _parse_param(src: str, name: str, raw: Any) -> Param:
    key = f"search.space.{name}"
    typ = PARAM_TYPES[name]
    if isinstance(raw, dict):
        unknown = set(raw) - {"low", "high", "log"}
        if unknown:
            raise ConfigError(f"{src}: {key}: unknown key {sorted(unknown)[0]!r}; a range has low, high and log")
        if typ is str:
            raise ConfigError(f"{src}: {key}: is categorical; give a list of choices from {', '.join(ALLOWED_CHOICES[name])}")
        if "low" not in raw or "high" not in raw:
            raise ConfigError(f"{src}: {key}: a range needs both low and high")
        low = _check_type(src, f"{key}.low", raw["low"], typ)
        high = _check_type(src, f"{key}.high", raw["high"], typ)
        log = _check_type(src, f"{key}.log", raw.get("log", False), bool)
        if not low < high:
            raise ConfigError(f"{src}: {key}: low must be < high (got {low} and {high}); use a single value to fix it")
        if log and low <= 0:
            raise ConfigError(f"{src}: {key}: low must be > 0 when log = true")
        if name in INT_BOUNDS:
            lo, hi = INT_BOUNDS[name]
            if low < lo or high > hi:
                raise ConfigError(f"{src}: {key}: must lie within {lo} .. {hi}")
        if name == "lr" and low <= 0:
            raise ConfigError(f"{src}: {key}: learning rates must be > 0")
        return Param(name, "int" if typ is int else "float", low, high, log)
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(f"{src}: {key}: empty list of choices")
        values = tuple(_check_value(src, key, name, v) for v in raw)
        if len(set(values)) != len(values):
            raise ConfigError(f"{src}: {key}: duplicate choices in {list(raw)}")
        if len(values) == 1:
            return Param(name, "fixed", value=values[0])
        return Param(name, "categorical", choices=values)
    return Param(name, "fixed", value=_check_value(src, key, name, raw))


def _check_value(src: str, key: str, name: str, v: Any) -> Any:
    v = _check_type(src, key, v, PARAM_TYPES[name])
    if name in ALLOWED_CHOICES and v not in ALLOWED_CHOICES[name]:
        raise ConfigError(f"{src}: {key}: unknown value {v!r}; allowed: {', '.join(ALLOWED_CHOICES[name])}")
    if name in INT_BOUNDS and not INT_BOUNDS[name][0] <= v <= INT_BOUNDS[name][1]:
        lo, hi = INT_BOUNDS[name]
        raise ConfigError(f"{src}: {key}: {v} is outside {lo} .. {hi}")
    if name == "lr" and v <= 0:
        raise ConfigError(f"{src}: {key}: learning rates must be > 0 (got {v})")
    return v


def parse_config(doc: dict[str, Any], src: str) -> Settings:
    for section, body in doc.items():
        if section not in SCHEMA:
            raise ConfigError(f"{src}: unknown section [{section}]; allowed: {', '.join(SCHEMA)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{src}: {section}: must be a table [{section}]")
        for key, value in body.items():
            if section == "arms":
                continue
            if key not in SCHEMA[section]:
                raise ConfigError(f"{src}: {section}.{key}: unknown key; allowed: {', '.join(SCHEMA[section])}")
            if key != "space":
                body[key] = _check_type(src, f"{section}.{key}", value, SCHEMA[section][key])

    exp, dat, sea, tra = (doc.get(s, {}) for s in ("experiment", "data", "search", "train"))
    s = Settings(source=src)

    name = exp.get("name", s.name)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,80}", name):
        raise ConfigError(f"{src}: experiment.name: {name!r} must be letters, digits, '.', '_' or '-' (no '/')")
    tolerance = exp.get("tolerance", s.tolerance)
    # None: derived from the validation noise (analysis/tolerance.py). An experiment stored by an
    # older version stays readable whatever it held.
    if tolerance is not None and not src.startswith("storage:"):
        _check_tolerance(tolerance, f"{src}: experiment.tolerance:")
    _check_seed(exp.get("seed", 0), f"{src}: experiment.seed:")

    dataset = dat.get("dataset", "digits")
    if dataset.startswith(("r:", "openml:")):
        from .data import name_problem

        if (problem := name_problem(dataset)) is not None:
            raise ConfigError(f"{src}: data.dataset: {problem}")
    elif dataset not in BUILTIN:
        raise ConfigError(f"{src}: data.dataset: unknown data set {dataset!r}; allowed: {', '.join(BUILTIN)}, "
                          "r:<package>/<name> (bnsearch datasets), openml:<id>")
    inputs = dat.get("inputs", "standardize")
    if inputs not in ("standardize", "raw"):
        raise ConfigError(f"{src}: data.inputs: must be \"standardize\" or \"raw\" (got {inputs!r})")
    task = dat.get("task")
    if task is not None and task not in ("classification", "regression"):
        raise ConfigError(f"{src}: data.task: must be \"classification\" or \"regression\" (got {task!r})")
    if dataset == "csv" and not (dat.get("path") and dat.get("target")):
        raise ConfigError(f"{src}: data: dataset = \"csv\" needs data.path and data.target")
    if dataset != "csv" and any(k in dat for k in ("path", "target", "task", "drop")):
        raise ConfigError(f"{src}: data: path/target/task/drop apply only to dataset = \"csv\"")
    drop = dat.get("drop")
    if drop is not None and not (drop and all(isinstance(c, str) and c for c in drop) and len(set(drop)) == len(drop)):
        raise ConfigError(f"{src}: data.drop: must list column names, each once (got {str(drop)[:200]})")
    path = dat.get("path")
    if path is not None and src not in (DEFAULT_SOURCE,) and not Path(path).is_absolute() and not src.startswith("storage:"):
        # Relative CSV paths are relative to the config file, like every other tool's includes.
        path = str((Path(src).parent / path).resolve())
    vf, tf = dat.get("val_fraction", 0.2), dat.get("test_fraction", 0.2)
    for key, f in (("val_fraction", vf), ("test_fraction", tf)):
        if not 0 < f < 1:
            raise ConfigError(f"{src}: data.{key}: must be between 0 and 1 (got {f})")
    if vf + tf >= 0.9:
        raise ConfigError(f"{src}: data: val_fraction + test_fraction must leave at least 10% for training")
    data = DataSpec(dataset, path, dat.get("target"), task, inputs, vf, tf, tuple(drop) if drop else None)
    metric = dat.get("metric", DEFAULT_METRIC)
    if metric not in METRICS:
        raise ConfigError(f"{src}: data.metric: unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
    known_task = task or (BUILTIN[dataset][0] if dataset in BUILTIN and dataset != "csv" else None)
    if known_task is None and dataset.startswith("r:"):
        from .data import CURATED

        known_task = CURATED[dataset[2:]].task if dataset[2:] in CURATED else "classification"
    if metric != DEFAULT_METRIC and known_task == "regression":
        # A table whose task is only known once loaded (a CSV without data.task, openml) is refused
        # by the trainer (train.check_metric) instead.
        raise ConfigError(f"{src}: data.metric: {metric} applies to classification; {dataset!r} is a regression "
                          "task, scored by R^2: remove data.metric")

    sampler = sea.get("sampler", "random")
    if sampler not in SAMPLERS:
        raise ConfigError(f"{src}: search.sampler: unknown sampler {sampler!r}; allowed: {', '.join(SAMPLERS)}")
    trials = sea.get("trials", s.trials)
    _check_trials(trials, f"{src}: search.trials:")
    paired = sea.get("paired", sampler in ("random", "qmc"))
    if paired and sampler in ("tpe", "gp"):
        raise ConfigError(f"{src}: search.paired: {sampler} tunes each arm adaptively; set paired = false or sampler = \"random\"")
    repeats = sea.get("repeats")
    if repeats is not None and not (isinstance(repeats, int) and 1 <= repeats <= MAX_REPEATS):
        raise ConfigError(f"{src}: search.repeats: must be a whole number from 1 to {MAX_REPEATS} (got {repeats!r})")
    raw_space = sea.get("space")
    if raw_space is None:
        raw_space = tomllib.loads(default_text())["search"]["space"]
    if not isinstance(raw_space, dict):
        raise ConfigError(f"{src}: search.space: must be a table")
    space: dict[str, Param] = {}
    for pname, raw in raw_space.items():
        if pname not in PARAM_TYPES:
            raise ConfigError(f"{src}: search.space.{pname}: unknown hyperparameter; allowed: {', '.join(PARAM_TYPES)}")
        space[pname] = _parse_param(src, pname, raw)
    if not any(p.kind != "fixed" for p in space.values()):
        raise ConfigError(f"{src}: search.space: nothing to search; give at least one range or list")

    epochs = tra.get("epochs", s.epochs)
    if not 1 <= epochs <= 10000:
        raise ConfigError(f"{src}: train.epochs: must be between 1 and 10000 (got {epochs})")
    device = tra.get("device", "auto")
    if device not in DEVICES:
        raise ConfigError(f"{src}: train.device: must be one of {', '.join(DEVICES)} (got {device!r})")

    try:
        arm_specs, reference = _arms.parse_arms(exp.get("arms"), exp.get("reference"), doc.get("arms"))
    except _arms.ArmError as exc:
        raise ConfigError(f"{src}: {exc}") from None

    return Settings(name, exp.get("seed", 0), tolerance, data, sampler, trials, paired, space, epochs, device, src,
                    arm_specs, reference, repeats, metric)


def default_text() -> str:
    return resources.files("bnsearch").joinpath("default.toml").read_text()


# The largest example config is 2 kB. Well-formed TOML can still make the parser's work grow with the
# square of a line (a dotted key of n parts costs ~n², measured: 19 s for 64 kB, memory exhausted at
# 256 kB), so both the file and the dots on one line are bounded before tomllib sees them; at these
# limits the worst file parses in about a second.
CONFIG_MAX_BYTES = 256 << 10
CONFIG_MAX_LINE_DOTS = 128


def parse_toml(text: str, src: str) -> dict:
    """tomllib.loads with its input bounded and every way it fails on hostile input one ConfigError."""
    for n, line in enumerate(text.splitlines(), 1):
        if line.count(".") > CONFIG_MAX_LINE_DOTS and not line.lstrip().startswith("#"):
            raise ConfigError(f"{src}: line {n} has more than {CONFIG_MAX_LINE_DOTS} dots (a key that deep makes "
                              "parsing take minutes); shorten the key, or put list items on lines of their own")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{src}: not valid TOML ({exc})") from None
    except (RecursionError, MemoryError):  # tomllib recurses once per level of [ or {
        raise ConfigError(f"{src}: not a usable config (arrays or tables nested too deeply to parse); "
                          "a config nests a few levels at most") from None


def load_config_text(text: str, src: str) -> Settings:
    return parse_config(parse_toml(text, src), src)


TABLE_SUFFIXES = (".csv", ".parquet")


def table_config(path: str | Path, target: str | None, task: str | None = None, *, name: str | None = None,
                 drop: list[str] | None = None) -> Settings:
    """The built-in default search on a data file of the user's: `bnsearch compare data.csv --target label`
    without writing a TOML file. The experiment is named after the file, or `name` (--name);
    `drop` (--drop) lists columns that are not features."""
    p = Path(path)
    if not target:
        raise ConfigError(f"{p}: a data file needs the label column: add --target COLUMN "
                          "(or write a config with [data] dataset = \"csv\", path, target)")
    # Refused here, while the path is still the one the user typed (resolving it below follows links).
    if p.exists() and not p.is_file():
        raise not_regular(p)
    doc = tomllib.loads(default_text())
    doc["data"] = {"dataset": "csv", "path": str(p.resolve()), "target": target, **({"task": task} if task else {}),
                   **({"drop": list(drop)} if drop else {})}
    if name is not None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,80}", name):
            raise ConfigError(f"--name: {name!r} must start with a letter or digit and hold only letters, digits, "
                              "'.', '_' or '-' (at most 81)")
        doc["experiment"]["name"] = name
    else:
        stem = re.sub(r"[^A-Za-z0-9_.\-]+", "-", p.stem).strip("-.")[:80] or "data"
        doc["experiment"]["name"] = stem if re.match(r"[A-Za-z0-9]", stem) else f"data-{stem}"
    return parse_config(doc, str(p))


def load_config(path: "str | Path | Settings | None" = None) -> Settings:
    """Settings from a TOML file, or the built-in default (digits) when path is None (Settings pass through)."""
    if isinstance(path, Settings):
        return path
    if path is None:
        return load_config_text(default_text(), DEFAULT_SOURCE)
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: config file not found; pass an existing .toml file or omit it for the built-in default")
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory; pass a .toml config file")
    # A device (/dev/zero) never ends and a FIFO blocks until a writer comes: only a regular file is
    # opened, and no more than a config's size limit is read.
    import stat

    limit = CONFIG_MAX_BYTES
    try:
        if not stat.S_ISREG(p.stat().st_mode):
            raise ConfigError(f"{p}: is not a regular file (a device, pipe or socket); pass a .toml config file")
        with p.open("rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ConfigError(f"{p}: is larger than {limit >> 10} KiB, too large for a config; pass the .toml config file")
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config ({exc})") from None
    return load_config_text(text, str(p))
