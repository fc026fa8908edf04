"""Arms of an experiment: named, validated overrides of the model and data settings (docs/design.md, Arms).

Every arm of an experiment trains the same paired list of configurations with the same seeds; arms
differ only in what their spec overrides:

    norm       none | batchnorm | layernorm
    placement  before | after   (the norm relative to the activation)
    inputs     raw | standardize (None: the experiment's data.inputs)

The default experiment is today's pair ``bn-on`` (batchnorm) and ``bn-off`` (none), reference
``bn-off``. More arms are named in ``[experiment] arms = [...]``, either by a token name that says
what it is (``<norm>`` or ``<norm>+<inputs>``, e.g. ``bn-on+raw``, ``ln+std``) or by any name defined
in an ``[arms.<name>]`` table with ``norm``/``placement``/``inputs`` keys.

No torch import here: the config (and so `bnsearch --help`) parses arms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

NORMS = ("none", "batchnorm", "layernorm")
PLACEMENTS = ("before", "after")
INPUTS = ("raw", "standardize")

DEFAULT_ARMS = ("bn-on", "bn-off")
DEFAULT_REFERENCE = "bn-off"

# Token names: the first part fixes the norm and its placement, an optional "+<inputs>" the scaling.
NORM_TOKENS = {
    "bn-on": ("batchnorm", "before"), "bn-off": ("none", "before"), "bn-after": ("batchnorm", "after"),
    "ln": ("layernorm", "before"), "ln-after": ("layernorm", "after"),
}
INPUT_TOKENS = {"raw": "raw", "std": "standardize"}
ARM_KEYS = ("norm", "placement", "inputs")
# A study is "<experiment>/<arm>" and exports name files after arms: no "/", nothing a shell mangles.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+\-]{0,40}")
RESERVED = ("delta",)  # the analysis tables' difference row


class ArmError(ValueError):
    """A bad arm definition; the config layer prefixes the file name."""


@dataclass(frozen=True)
class ArmSpec:
    name: str
    norm: str = "none"
    placement: str = "before"
    inputs: str | None = None  # None: follow data.inputs

    def model_kwargs(self) -> dict[str, str]:
        """Keyword arguments of train()/build_mlp() for this arm."""
        return {"norm": self.norm, "placement": self.placement}

    def data(self, spec):
        """The experiment's DataSpec with this arm's input scaling (same split, its own scaling)."""
        return spec if self.inputs is None or self.inputs == spec.inputs else replace(spec, inputs=self.inputs)

    def key(self) -> tuple:
        return (self.norm, self.placement, self.inputs)

    def describe(self, default_inputs: str | None = None) -> str:
        inputs = self.inputs or default_inputs
        norm = self.norm if self.norm == "none" else f"{self.norm} {self.placement} activation"
        return f"norm {norm}" + (f", inputs {inputs}" if inputs else "")

    def to_table(self) -> dict[str, str]:
        d = {"norm": self.norm, "placement": self.placement}
        if self.inputs is not None:
            d["inputs"] = self.inputs
        return d


DEFAULT_SPECS = (ArmSpec("bn-on", "batchnorm"), ArmSpec("bn-off", "none"))


def from_name(name: str) -> ArmSpec | None:
    """The spec a token name stands for, or None when the name is not made of tokens."""
    parts = name.split("+")
    if len(parts) > 2 or parts[0] not in NORM_TOKENS:
        return None
    if len(parts) == 2 and parts[1] not in INPUT_TOKENS:
        return None
    norm, placement = NORM_TOKENS[parts[0]]
    return ArmSpec(name, norm, placement, INPUT_TOKENS[parts[1]] if len(parts) == 2 else None)


def check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in RESERVED:
        raise ArmError(f"{where}: arm name {name!r} must be 1-41 letters, digits, '.', '_', '+' or '-' "
                       f"(no '/'), and not {', '.join(RESERVED)}")
    return name


def _from_table(name: str, table: Any) -> ArmSpec:
    where = f"arms.{name}"
    if not isinstance(table, dict):
        raise ArmError(f"{where}: must be a table with keys {', '.join(ARM_KEYS)}")
    unknown = sorted(set(table) - set(ARM_KEYS))
    if unknown:
        raise ArmError(f"{where}.{unknown[0]}: unknown key; allowed: {', '.join(ARM_KEYS)}")
    for key, allowed in (("norm", NORMS), ("placement", PLACEMENTS), ("inputs", INPUTS)):
        if key in table and table[key] not in allowed:
            raise ArmError(f"{where}.{key}: must be one of {', '.join(allowed)} (got {table[key]!r})")
    spec = ArmSpec(name, table.get("norm", "none"), table.get("placement", "before"), table.get("inputs"))
    builtin = from_name(name)
    # The report words a token name from the name ("with BN" for bn-on), so a token name must keep its
    # meaning. A table that repeats it is allowed: to_config writes one for every arm of a stored config.
    if builtin is not None and builtin.key() != spec.key():
        raise ArmError(f"{where}: {name!r} is a built-in arm name ({builtin.describe()}) and cannot be redefined "
                       f"as {spec.describe()}; choose another name for this arm")
    return spec


def parse_arms(names: Any, reference: Any, tables: Mapping[str, Any] | None) -> tuple[tuple[ArmSpec, ...], str]:
    """Validated (arms, reference) from ``experiment.arms``, ``experiment.reference`` and ``[arms]``.

    Raises ArmError naming the key and what is allowed.
    """
    tables = dict(tables or {})
    if names is None:
        if tables:
            raise ArmError(f"arms.{next(iter(tables))}: an [arms.<name>] table needs experiment.arms listing it")
        specs = DEFAULT_SPECS
    else:
        if not isinstance(names, list) or len(names) < 2:
            raise ArmError("experiment.arms: must be a list of at least two arm names, "
                           "e.g. [\"bn-off+raw\", \"bn-on+raw\"]")
        if len(set(names)) != len(names):
            raise ArmError(f"experiment.arms: duplicate arm names in {names}")
        specs_l = []
        for name in names:
            check_name(name, "experiment.arms")
            spec = _from_table(name, tables[name]) if name in tables else from_name(name)
            if spec is None:
                raise ArmError(
                    f"experiment.arms: {name!r} is neither a token name (<norm>[+<inputs>] with norm one of "
                    f"{', '.join(NORM_TOKENS)} and inputs one of {', '.join(INPUT_TOKENS)}) "
                    f"nor defined in an [arms.{name}] table")
            specs_l.append(spec)
        for name in tables:
            if name not in names:
                raise ArmError(f"arms.{name}: not listed in experiment.arms; add it or drop the table")
        seen: dict[tuple, str] = {}
        for s in specs_l:
            if s.key() in seen:
                raise ArmError(f"experiment.arms: {seen[s.key()]!r} and {s.name!r} are the same arm "
                               f"({s.describe()}); drop one")
            seen[s.key()] = s.name
        specs = tuple(specs_l)
    arm_names = [s.name for s in specs]
    if reference is None:
        reference = DEFAULT_REFERENCE if DEFAULT_REFERENCE in arm_names else arm_names[0]
    if reference not in arm_names:
        raise ArmError(f"experiment.reference: {reference!r} is not one of the arms ({', '.join(arm_names)})")
    return specs, reference


def is_default(specs: Iterable[ArmSpec], reference: str) -> bool:
    return tuple(specs) == DEFAULT_SPECS and reference == DEFAULT_REFERENCE


def to_config(specs: Iterable[ArmSpec], reference: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(keys for [experiment], the [arms] section) that parse back to the same arms; empty for the default
    pair, so every experiment stored before arms existed keeps its config hash."""
    specs = tuple(specs)
    if is_default(specs, reference):
        return {}, {}
    return ({"arms": [s.name for s in specs], "reference": reference},
            {s.name: s.to_table() for s in specs})


def get(specs: Iterable[ArmSpec], name: str) -> ArmSpec:
    for s in specs:
        if s.name == name:
            return s
    raise ArmError(f"--arm: no arm {name!r} in this experiment; arms: {', '.join(s.name for s in specs)}")


def two_by_two(specs: Iterable[ArmSpec], default_inputs: str) -> dict[tuple[str, bool], str] | None:
    """{(inputs, has_norm): arm name} when the arms hold exactly one inputs x (none vs one norm) square."""
    specs = tuple(specs)
    cells: dict[tuple[str, bool], str] = {}
    norms = {s.key()[:2] for s in specs if s.norm != "none"}
    if len(norms) != 1:
        return None
    for s in specs:
        key = (s.inputs or default_inputs, s.norm != "none")
        if key in cells:
            return None
        cells[key] = s.name
    if {k[0] for k in cells} != set(INPUTS) or len(cells) != 4:
        return None
    return cells
