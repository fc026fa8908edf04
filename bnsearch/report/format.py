"""How every renderer writes a number: one formatter for values and intervals, one colour per arm,
one markdown table, one figure saver. A missing value is always "n/a", never 0 or a dash."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..analysis.common import json_safe, records, signed_text  # noqa: F401  (the one JSON cleaner)

_PCT = {"good_fraction", "divergence_rate", "failed_rate", "win_rate", "tie_rate", "loss_rate", "prob_on_better",
        "diff", "equivalence"}
_INT = {"n_trials", "n_complete", "good_count", "n_pairs", "n_on", "n_off", "trials_needed"}
_ONE_DECIMAL = {"trials_to_target", "lr_window"}
NA = "n/a"
DPI = 110


def fmt(value: float, kind: str, signed: bool = False) -> str:
    """One number: kind "pct" (a share, printed in %; a signed one is a difference in pts), "pts" (a
    share in points, no unit), "int",
    "one" (one decimal), "p" (a p value), "stat", or "score" (four decimals)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NA  # undefined, never shown as 0
    value = float(value)
    if math.isinf(value):
        return ("+" if signed and value > 0 else "-" if value < 0 else "") + "∞"
    sign = "+" if signed else ""
    if signed and kind in ("pct", "pts", "one", "score"):
        text = signed_text(100 * value if kind in ("pct", "pts") else value, 4 if kind == "score" else 1)
        return text + (" pts" if kind == "pct" else "")
    if kind == "pct":
        return f"{100 * value:{sign}.1f}" + (" pts" if signed else "%")
    if kind == "pts":  # a share in points, the unit named by the table's header
        return f"{100 * value:{sign}.1f}"
    if kind == "int":
        return f"{value:{sign}.0f}" if value == round(value) else f"{value:{sign}.1f}"
    if kind in ("one", "stat"):
        return f"{value:{sign}.1f}"
    if kind == "p":
        return "< 0.001" if value < 0.001 else f"{value:.3f}"
    return f"{value:{sign}.4f}"


def kind_of(name: str) -> str:
    if name in _PCT:
        return "pct"
    if name in _INT:
        return "int"
    if name in _ONE_DECIMAL or name.startswith("lr_window"):
        return "one"
    if name == "p_value":
        return "p"
    if name == "statistic":
        return "stat"
    return "score"


def cell(row: Mapping | None, kind: str, signed: bool = False) -> str:
    """A table row's value with its interval, "value [lo, hi]"."""
    if row is None:
        return NA
    return with_ci(row["value"], row.get("lo", math.nan), row.get("hi", math.nan), kind, signed)


def with_ci(value: float, lo: float, hi: float, kind: str = "pct", signed: bool = False) -> str:
    text = fmt(value, kind, signed)
    if pd.notna(lo) and pd.notna(hi):
        text += f" [{fmt(lo, kind, signed)}, {fmt(hi, kind, signed)}]"
    return text


def pts(value: float, lo: float = math.nan, hi: float = math.nan) -> str:
    """A difference of shares in points, compact enough for an 80-column table: "+30.0 [+18.0,+44.0]"."""
    if not np.isfinite(value):
        return NA
    text = signed_text(100 * value)
    if np.isfinite(lo) and np.isfinite(hi):
        text += f" [{signed_text(100 * lo)},{signed_text(100 * hi)}]"
    return text


_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
            "tab:gray", "tab:olive", "tab:cyan")


def arm_colors(arms: Sequence[str]) -> dict[str, str]:
    """One colour per arm in config order, the same in every plot of an experiment."""
    return {a: (_PALETTE[i] if i < len(_PALETTE) else "black") for i, a in enumerate(dict.fromkeys(arms))}


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(x: str) -> str:
        return str(x).replace("|", "\\|")

    lines = ["| " + " | ".join(map(esc, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows] or []
    if not rows:
        lines.append("| (no data) |" + " |" * (len(headers) - 1))
    return "\n".join(lines)


def with_meta(frame: pd.DataFrame, meta: Mapping) -> pd.DataFrame:
    """Constant provenance columns. The experiment seed is named `experiment_seed` everywhere, since
    trials.csv already has a per-trial training `seed`; other collisions get a `meta_` prefix."""
    out = frame.copy()
    for key, value in meta.items():
        col = "experiment_seed" if key == "seed" else key
        if col in out.columns:
            if key in ("experiment", "repeats"):
                continue  # the table's own column already says it
            col = f"meta_{key}"
        out[col] = value
    return out


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, title: str | None = None) -> Path:
    """Every PNG the same way: optional title, tight layout, DPI, written whole or not at all."""
    from ..files import atomic_write

    plt = pyplot()
    try:
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI))
    finally:
        plt.close(fig)
