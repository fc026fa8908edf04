"""Where the treatment helps: the paired score difference by level of each hyperparameter
(docs/design.md, Heterogeneity).

Cells: every value of each categorical hyperparameter, the depth (layers) and batch size values,
and learning-rate decades within each optimizer. Per cell: pairs, median d, win rate among the
non-tied pairs with its Clopper-Pearson interval (it inverts the same binomial test), and the sign-test p value; all cells together form one
family for Holm's adjustment, and a crossover is claimed only from Holm-significant cells of
opposite sign within one factor.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from .common import CONFIDENCE, _floats
from .primary import ALPHA, holm

MIN_CELL_PAIRS = 5
QUANTITIES = ("n_pairs", "median_d", "win_rate", "p_value", "p_holm")


def _cells(pairs: pd.DataFrame, params: Mapping[str, bool]) -> list[tuple[str, str, float, np.ndarray]]:
    """(factor, level, sort key, d of the pairs in that cell)."""
    out = []
    d = pairs["d"].to_numpy(float)
    for p, categorical in params.items():
        if p not in pairs or p == "lr":
            continue
        col = pairs[p]
        if not categorical and col.nunique() > 8:
            continue  # wide numeric ranges (width) are covered by sensitivity, not cut into cells here
        for level in sorted(col.dropna().unique(), key=lambda v: (str(type(v)), v)):
            mask = (col == level).to_numpy()
            key = float(level) if isinstance(level, (int, float, np.number)) else math.nan
            out.append((p, str(level), key, d[mask]))
    if "lr" in pairs:
        decade = np.floor(np.log10(_floats(pairs["lr"])))
        groups = pairs["optimizer"].astype(str) if "optimizer" in pairs else pd.Series("", index=pairs.index)
        for opt in sorted(groups.unique()):
            for dec in sorted(set(decade[np.isfinite(decade)])):
                mask = ((groups == opt).to_numpy()) & (decade == dec)
                if mask.any():
                    factor = f"lr ({opt})" if opt else "lr"
                    out.append((factor, f"1e{int(dec)}..1e{int(dec) + 1}", dec, d[mask]))
    return out


def heterogeneity_table(pairs: pd.DataFrame, params: Mapping[str, bool]) -> pd.DataFrame:
    """Long table factor, level, quantity, value, lo, hi (lo/hi on the win rate only)."""
    rows = []
    for factor, level, _key, d in _cells(pairs, params):
        d = d[np.isfinite(d)]
        wins, losses = int((d > 0).sum()), int((d < 0).sum())
        if d.size < MIN_CELL_PAIRS:
            p, win, lo, hi = math.nan, math.nan, math.nan, math.nan
        elif wins + losses == 0:
            p, win, lo, hi = 1.0, math.nan, math.nan, math.nan
        else:
            test = stats.binomtest(wins, wins + losses, 0.5)
            ci = test.proportion_ci(CONFIDENCE, method="exact")  # Clopper-Pearson: inverts the same binomial as the sign test
            p, win, lo, hi = float(test.pvalue), wins / (wins + losses), float(ci.low), float(ci.high)
        base = {"factor": factor, "level": level}
        rows += [{**base, "quantity": "n_pairs", "value": float(d.size), "lo": math.nan, "hi": math.nan},
                 {**base, "quantity": "median_d", "value": float(np.median(d)) if d.size else math.nan,
                  "lo": math.nan, "hi": math.nan},
                 {**base, "quantity": "win_rate", "value": win, "lo": lo, "hi": hi},
                 {**base, "quantity": "p_value", "value": p, "lo": math.nan, "hi": math.nan}]
    table = pd.DataFrame(rows, columns=["factor", "level", "quantity", "value", "lo", "hi"])
    if table.empty:
        return table
    pv = table[table["quantity"] == "p_value"]
    adj = holm(pv["value"].to_numpy(float))
    extra = pv.assign(quantity="p_holm", value=adj)
    return pd.concat([table, extra], ignore_index=True)


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: factor, level, n_pairs, median_d, win_rate, win_lo, win_hi, p_value, p_holm."""
    if table.empty:
        return pd.DataFrame(columns=["factor", "level", *QUANTITIES, "win_lo", "win_hi"])
    cells = list(dict.fromkeys(zip(table["factor"], table["level"])))
    rows = []
    for f, lv in cells:
        t = table[(table["factor"] == f) & (table["level"] == lv)].set_index("quantity")
        row = {"factor": f, "level": lv}
        for q in QUANTITIES:
            row[q] = float(t.loc[q, "value"]) if q in t.index else math.nan
        row["win_lo"] = float(t.loc["win_rate", "lo"]) if "win_rate" in t.index else math.nan
        row["win_hi"] = float(t.loc["win_rate", "hi"]) if "win_rate" in t.index else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def crossovers(table: pd.DataFrame, alpha: float = ALPHA) -> list[dict]:
    """Factors with a Holm-significant cell where the treatment wins and another where it loses."""
    w = wide(table)
    out = []
    for factor, g in w.groupby("factor", sort=False):
        sig = g[g["p_holm"] < alpha]
        helps, hurts = sig[sig["win_rate"] > 0.5], sig[sig["win_rate"] < 0.5]
        if len(helps) and len(hurts):
            out.append({"factor": factor, "helps": helps["level"].tolist(), "hurts": hurts["level"].tolist()})
    return out
