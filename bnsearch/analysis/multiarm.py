"""N arms: every arm against the declared reference with the two-arm statistics, plus the epoch-budget
analysis and, for an inputs x norm 2x2, the interaction (docs/design.md, Arms).

Pure: a trials DataFrame and the experiment's arm list in, an `ArmsAnalysis` out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pandas as pd

from .budget import budget_grid, budget_table, budget_verdict, compute_curves, default_pairs
from .common import N_BOOT, Comparison
from .interaction import cell_scores, interaction_table, interaction_verdict
from .summary import comparison_tolerance, summarize
from .tolerance import failure_cutoff


@dataclass
class ArmsAnalysis:
    """What the N-arm report renders.

    arms           arm names in config order; ``reference`` is one of them
    descriptions   arm -> "norm batchnorm before activation, inputs raw"
    comparisons    arm -> Comparison of that arm (as bn-on) against the reference (as bn-off)
    budget         budget_table(): every robustness metric at every epoch budget, per arm
    compute        compute_curves(): expected best score vs training seconds
    pairs          (arm, versus) pairs of the budget analysis: every arm against the reference, and in a
                   2x2 also the norm against no norm at each input scaling (BN's own advantage)
    budget_verdicts  (arm, versus) -> one sentence (faster training or robustness?)
    interaction    interaction_table() for a 2x2 of inputs x norm, else None
    """

    arms: list[str]
    reference: str
    epochs: int
    descriptions: dict[str, str]
    comparisons: dict[str, Comparison]
    budget: pd.DataFrame
    compute: pd.DataFrame
    budget_verdicts: dict[tuple[str, str], str]
    pairs: list[tuple[str, str]] = field(default_factory=list)
    interaction: pd.DataFrame | None = None
    interaction_verdict: str = ""
    cells: dict | None = None
    notes: list[str] = field(default_factory=list)

    def arm_table(self) -> pd.DataFrame:
        """Per arm at the full budget (good = within tolerance of the best of *all* arms): n, good
        fraction, divergence, expected best-of-5; against the reference Δ good and median Δ as the
        two-arm comparison states them (so the report shows one interval per quantity)."""
        b = self.budget[self.budget["epochs"] == self.epochs]
        rows = []
        for arm in self.arms:
            row: dict = {"arm": arm, "setup": self.descriptions.get(arm, "")}
            for metric in ("n_complete", "good_fraction", "diverged_rate", "failed_rate", "expected_best",
                           "good_delta", "median_d"):
                versus = self.reference if metric in ("good_delta", "median_d") else ""
                m = b[(b["arm"] == arm) & (b["metric"] == metric) & (b["versus"].fillna("") == versus)]
                got = _from_comparison(self.comparisons.get(arm), metric) if versus else None
                if got is None:
                    got = tuple(float(m[c].iloc[0]) if len(m) else math.nan for c in ("value", "lo", "hi"))
                row[metric], row[f"{metric}_lo"], row[f"{metric}_hi"] = got
            rows.append(row)
        return pd.DataFrame(rows)


# Where the two-arm Comparison keeps the paired differences (paired design first, then unpaired).
_COMPARISON_KEYS = {"good_delta": [("good_fraction", "diff")],
                    "median_d": [("wilcoxon", "median_d"), ("mann_whitney", "median_diff")]}


def _from_comparison(summary: Comparison | None, metric: str) -> tuple[float, float, float] | None:
    if summary is None:
        return None
    for test, quantity in _COMPARISON_KEYS[metric]:
        got = summary.test(test, quantity)
        if math.isfinite(got[0]):
            return got
    return None


def analyse_arms(df: pd.DataFrame, *, arms: Sequence[str], reference: str, epochs: int, tolerance: float | None,
                 distributions: Mapping, paired: bool, sampler: str, task: str, seed: int = 0,
                 descriptions: Mapping[str, str] | None = None, cells: Mapping | None = None,
                 norm_label: str = "BN", summaries: Mapping[str, Comparison] | None = None,
                 n_boot: int = N_BOOT, n_val: int | None = None, baseline: float | None = None,
                 class_counts=None, metric: str = "accuracy") -> ArmsAnalysis:
    """Every non-reference arm against ``reference`` (``summarize(..., arms=(arm, reference))``),
    the budget analysis over all arms, and the interaction when ``cells`` names a 2x2.

    ``summaries`` may hand in comparisons already made (e.g. aggregated over repeats). ``tolerance``:
    the config's δ, or None to derive it from the validation noise (``n_val``) exactly as `summarize`
    does for each pair, so the budget's full-budget row is the comparison's primary analysis."""
    arms = list(arms)
    comparisons = dict(summaries) if summaries is not None else {
        a: summarize(df, distributions=distributions, tolerance=tolerance, paired=paired, sampler=sampler,
                     task=task, seed=seed, n_boot=n_boot, arms=(a, reference), n_val=n_val, baseline=baseline,
                     class_counts=class_counts, metric=metric)
        for a in arms if a != reference}
    grid = budget_grid(epochs)
    pairs = default_pairs(arms, reference)
    if cells:
        for inputs in ("raw", "standardize"):
            pair = (cells[(inputs, True)], cells[(inputs, False)])
            if pair not in pairs:
                pairs.append(pair)
    # Each pair is judged with the δ its two-arm summary uses, so the budget's full-budget row is the
    # summary's primary analysis, number for number; the per-arm rows use the δ of all arms together.
    noise = {"n_val": n_val, "task": task, "class_counts": class_counts, "metric": metric}
    tolerances = {p: comparison_tolerance(df, p, tolerance=tolerance, **noise) for p in pairs}
    budget = budget_table(df, arms=arms, reference=reference, epochs=epochs,
                          tolerance=comparison_tolerance(df, arms, tolerance=tolerance, **noise),
                          grid=grid, pairs=pairs, n_boot=n_boot, seed=seed, tolerances=tolerances,
                          floor=failure_cutoff(baseline, n_val, task, class_counts, metric))
    compute = compute_curves(df, arms=arms, epochs=epochs, grid=grid, n_boot=n_boot, seed=seed)
    verdicts = {(a, r): budget_verdict(df, budget, arm=a, reference=r, epochs=epochs, tolerance=tolerances[(a, r)],
                                       n_boot=n_boot, seed=seed, task=task) for a, r in pairs}
    out = ArmsAnalysis(arms, reference, epochs, dict(descriptions or {}), comparisons, budget, compute, verdicts,
                       pairs=pairs, cells=dict(cells) if cells else None)
    if cells:
        out.interaction = interaction_table(cell_scores(df, cells), n_boot=n_boot, seed=seed)
        out.interaction_verdict = interaction_verdict(out.interaction, norm_label)
    if "val_curve" not in df.columns or df["val_curve"].isna().all():
        out.notes.append("no per-epoch curves stored: budgets below the full one are empty")
    return out
