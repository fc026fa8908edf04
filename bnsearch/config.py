"""TOML config -> validated Settings.

Validation is strict because a typo in a search space silently changes the experiment: every
unknown key is an error, and every message names the file, the key and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import optuna.distributions as od

from . import arms as _arms
from .data import BUILTIN, DataSpec

DEFAULT_SOURCE = "<built-in default>"
SAMPLERS = ("random", "qmc", "tpe", "gp")
DEVICES = ("auto", "cpu", "cuda")
ACTIVATIONS = ("relu", "tanh", "gelu", "sigmoid")
INITS = ("kaiming", "xavier", "normal", "uniform")
OPTIMIZERS = ("sgd", "adam")

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
             "val_fraction": float, "test_fraction": float},
    "search": {"sampler": str, "trials": int, "paired": bool, "space": dict},
    "train": {"epochs": int, "device": str},
    "arms": {},  # [arms.<name>] tables: keys are arm names, checked by arms.parse_arms
}


class ConfigError(ValueError):
    """A config that cannot be used; the message is one line naming file, key and fix."""


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
        data = {k: v for k, v in vars(self.data).items() if v is not None}
        # The default pair adds nothing, so experiments stored before arms existed keep their hash.
        exp_arms, arm_tables = _arms.to_config(self.arms, self.reference)
        d = {
            "experiment": {"name": self.name, "seed": self.seed,
                           **({"tolerance": self.tolerance} if self.tolerance is not None else {}), **exp_arms},
            "data": data,
            "search": {"sampler": self.sampler, "trials": self.trials, "paired": self.paired, "space": space},
            "train": {"epochs": self.epochs, "device": self.device},
        }
        if arm_tables:
            d["arms"] = arm_tables
        return d

    def arm_names(self) -> list[str]:
        return [a.name for a in self.arms]

    def config_hash(self) -> str:
        """Identity of the experiment: everything that changes results. The budget and the device
        are left out so `--trials` can extend a study and a GPU machine can join a CPU one."""
        d = self.to_dict()
        d["search"].pop("trials")
        d["experiment"].pop("tolerance", None)  # analysis only: re-judging the same trials is no new experiment
        d["train"].pop("device")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def with_overrides(self, **kw: Any) -> "Settings":
        kw = {k: v for k, v in kw.items() if v is not None}
        if "trials" in kw and kw["trials"] < 1:
            raise ConfigError(f"--trials must be at least 1 (got {kw['trials']})")
        if "sampler" in kw and kw["sampler"] not in SAMPLERS:
            raise ConfigError(f"--sampler: unknown sampler {kw['sampler']!r}; choose one of {', '.join(SAMPLERS)}")
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
        return float(value)
    if typ is int and isinstance(value, bool) or not isinstance(value, typ):
        raise ConfigError(f"{src}: {key}: expected {typ.__name__}, got {value!r}")
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
    if tolerance is not None and tolerance < 0:
        raise ConfigError(f"{src}: experiment.tolerance: must be >= 0 (got {tolerance})")

    dataset = dat.get("dataset", "digits")
    if dataset not in BUILTIN:
        raise ConfigError(f"{src}: data.dataset: unknown data set {dataset!r}; allowed: {', '.join(BUILTIN)}")
    inputs = dat.get("inputs", "standardize")
    if inputs not in ("standardize", "raw"):
        raise ConfigError(f"{src}: data.inputs: must be \"standardize\" or \"raw\" (got {inputs!r})")
    task = dat.get("task")
    if task is not None and task not in ("classification", "regression"):
        raise ConfigError(f"{src}: data.task: must be \"classification\" or \"regression\" (got {task!r})")
    if dataset == "csv" and not (dat.get("path") and dat.get("target")):
        raise ConfigError(f"{src}: data: dataset = \"csv\" needs data.path and data.target")
    if dataset != "csv" and any(k in dat for k in ("path", "target", "task")):
        raise ConfigError(f"{src}: data: path/target/task apply only to dataset = \"csv\"")
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
    data = DataSpec(dataset, path, dat.get("target"), task, inputs, vf, tf)

    sampler = sea.get("sampler", "random")
    if sampler not in SAMPLERS:
        raise ConfigError(f"{src}: search.sampler: unknown sampler {sampler!r}; allowed: {', '.join(SAMPLERS)}")
    trials = sea.get("trials", s.trials)
    if trials < 1:
        raise ConfigError(f"{src}: search.trials: must be at least 1 (got {trials})")
    paired = sea.get("paired", sampler in ("random", "qmc"))
    if paired and sampler in ("tpe", "gp"):
        raise ConfigError(f"{src}: search.paired: {sampler} tunes each arm adaptively; set paired = false or sampler = \"random\"")
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
                    arm_specs, reference)


def default_text() -> str:
    return resources.files("bnsearch").joinpath("default.toml").read_text()


def load_config_text(text: str, src: str) -> Settings:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{src}: not valid TOML ({exc})") from None
    return parse_config(doc, src)


def load_config(path: str | Path | None = None) -> Settings:
    """Settings from a TOML file, or the built-in default (digits) when path is None."""
    if path is None:
        return load_config_text(default_text(), DEFAULT_SOURCE)
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: config file not found; pass an existing .toml file or omit it for the built-in default")
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory; pass a .toml config file")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config ({exc})") from None
    return load_config_text(text, str(p))
