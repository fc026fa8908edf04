"""The tables every renderer shows, as (title, headers, rows of strings): the terminal, markdown and
JSON outputs are built from these, so they always show the same numbers.

Per comparison (one non-reference arm against the reference, an `analysis.Comparison`): the key
numbers, the setup and one table per section, with a column per arm and a Δ column. Over all arms
(`analysis.multiarm.ArmsAnalysis`): one row per arm, the epoch budgets and the 2x2 interaction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from ..analysis import DELTA, Comparison, arm_label, curve_grid
from ..analysis.heterogeneity import wide as heterogeneity_wide
from ..analysis.multiarm import ArmsAnalysis
from .format import NA, cell, fmt, kind_of, pts, with_ci


@dataclass
class Comparisons:
    """Every non-reference arm against the reference, in config order: the pair is one comparison.

    An arm's own numbers (its column in a table) come from its comparison with the reference; the
    reference's from the first comparison. Each comparison counts the configurations completed in
    both of its arms, so with failed trials the reference's numbers can differ slightly between
    comparisons: each comparison's own tables (the CSVs, --full) show them all."""

    arms: list[str]
    reference: str
    by_arm: dict[str, Comparison]

    @property
    def first(self) -> Comparison:
        return next(iter(self.by_arm.values()))

    def own(self, arm: str) -> Comparison:
        return self.by_arm.get(arm, self.first)

    def rows(self, table: str, arm: str) -> pd.DataFrame:
        t = getattr(self.own(arm), table)
        return t[t["arm"] == arm] if not t.empty else t

    def label(self, arm: str) -> str:
        """How a comparison is named where there are several; nothing where there is one."""
        return f"{arm_label(arm)} vs {arm_label(self.reference)}" if len(self.by_arm) > 1 else ""


ESTIMATOR_NAMES = {
    "V": "expected best of n (V-estimate, with replacement; 95% simultaneous band, opda DKW)",
    "U": "expected best of n (U-estimate, without replacement; no band)",
    "best-so-far": "best score so far, in trial order (adaptive sampler)",
}
ESTIMATOR_SHORT = {"V": "expected best of n (V-est.)", "U": "expected best of n (U-est.)",
                   "best-so-far": "best so far"}
_LABELS = {
    "n_trials": "trials (all states)", "n_complete": "completed trials", "best": "best score",
    "median": "median score", "p25": "25th percentile", "p75": "75th percentile", "mean": "mean score",
    "std": "std of scores", "test_at_best": "test score of best config", "good_count": "good trials",
    "good_fraction": "good fraction g", "trials_to_target": "trials to target 1/g",
    "divergence_rate": "diverged rate", "failed_rate": "failed-to-train rate", "lr_window": "LR window (decades)",
}


def _label(metric: str) -> str:
    if metric.startswith("lr_window ("):
        return "LR window, " + metric[len("lr_window ("):-1] + " (decades)"
    return _LABELS.get(metric, metric)


SECTION_TITLES = {"scores": "Scores", "robustness": "Robustness", "curves": "Tuning curve",
                  "importance": "Importance", "sensitivity": "Sensitivity", "tests": "Tests",
                  "profile": "Tolerance profile", "heterogeneity": "Where it differs (paired d by hyperparameter level)"}


def _by_arm(table: pd.DataFrame, keys: list[str]) -> list[tuple[tuple, dict[str, pd.Series]]]:
    """Group a long per-arm table into (key, {arm: row}) in first-seen order."""
    out: dict[tuple, dict[str, pd.Series]] = {}
    for _, row in table.iterrows():
        out.setdefault(tuple(row[k] for k in keys), {})[row["arm"]] = row
    return list(out.items())


def report_tables(summary: Comparison) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows of strings) per section; shared by the terminal and markdown reports."""
    columns = (*summary.arms, DELTA)
    arm_headers = [arm_label(a) for a in columns]
    sections = []

    for section in ("scores", "robustness"):
        part = summary.metrics[summary.metrics["section"] == section]
        rows = []
        for (metric,), arms in _by_arm(part, ["metric"]):
            kind = kind_of(metric)
            rows.append([_label(metric)] +
                        [cell(arms.get(a), kind, signed=a == DELTA) for a in columns])
        sections.append((SECTION_TITLES[section], ["Metric", *arm_headers], rows))

    # Terminal/markdown show the n = 1, 2, 4, ... grid; curves.csv keeps every point.
    rows = []
    curves = summary.curves
    if not curves.empty:
        n_max = int(curves["n"].max())
        shown = set(curve_grid(n_max))
        for (est, n), arms in _by_arm(curves[curves["n"].isin(shown)], ["estimator", "n"]):
            rows.append([ESTIMATOR_SHORT.get(est, str(est)), str(int(n))] +
                        [cell(arms.get(a), "score", signed=a == DELTA) for a in columns])
    sections.append((SECTION_TITLES["curves"], ["Estimator", "n", *arm_headers], rows))

    rows = []
    imp = summary.importance
    if not imp.empty:
        order = (imp[imp["arm"] == summary.arms[0]].sort_values("value", ascending=False, na_position="last")["param"].tolist())
        grouped = dict(_by_arm(imp, ["param"]))
        for p in order + [k[0] for k in grouped if k[0] not in order]:
            arms = grouped.get((p,), {})
            rows.append([str(p)] + [cell(arms.get(a), "score", signed=a == DELTA) for a in columns])
    sections.append((SECTION_TITLES["importance"], ["Parameter", *arm_headers], rows))

    rows = []
    for (param, _kind, measure), arms in _by_arm(summary.sensitivity, ["param", "kind", "measure"]):
        rows.append([str(param), str(measure)] + [cell(arms.get(a), "score", signed=a == DELTA) for a in columns])
    sections.append((SECTION_TITLES["sensitivity"], ["Parameter", "Measure", *arm_headers], rows))

    rows = []
    for _, row in summary.tests.iterrows():
        kind = kind_of(row["quantity"])
        signed = row["quantity"] in ("diff", "median_d", "median_diff")
        interval = (f"[{fmt(row['lo'], kind, signed)}, {fmt(row['hi'], kind, signed)}]"
                    if pd.notna(row["lo"]) and pd.notna(row["hi"]) else "")
        rows.append([str(row["test"]), str(row["quantity"]), fmt(row["value"], kind, signed), interval,
                     str(row.get("note") or "")])
    sections.append((SECTION_TITLES["tests"], ["Test", "Quantity", "Value", "Interval", "Note"], rows))

    rows = []
    for (delta,), arms in _by_arm(summary.profile, ["delta"]) if not summary.profile.empty else []:
        rows.append([fmt(delta, "score")] + [cell(arms.get(a), "pct", signed=a == DELTA) for a in columns])
    sections.append((SECTION_TITLES["profile"], ["tolerance δ", *[f"good fraction, {h}" for h in arm_headers]], rows))

    rows = []
    for _, r in heterogeneity_wide(summary.heterogeneity).iterrows():
        win = fmt(r["win_rate"], "pct")
        if pd.notna(r["win_lo"]):
            win += f" [{fmt(r['win_lo'], 'pct')}, {fmt(r['win_hi'], 'pct')}]"
        rows.append([str(r["factor"]), str(r["level"]), fmt(r["n_pairs"], "int"), fmt(r["median_d"], "score", True),
                     win, fmt(r["p_value"], "p"), fmt(r["p_holm"], "p")])
    sections.append((SECTION_TITLES["heterogeneity"], ["Factor", "Level", "Pairs", "Median d", "Win rate [95% CI]",
                                                       "Sign test p", "Holm p"], rows))
    return sections


def setup_lines(summary: Comparison, meta: Mapping) -> list[str]:
    lines = [
        f"experiment {summary.experiment or meta.get('experiment', '')} · task {summary.task} · "
        f"sampler {summary.sampler} · {'paired' if summary.paired else 'unpaired'} · "
        f"{arm_label(summary.arms[0])} vs {arm_label(summary.arms[1])}",
        f"good = within δ = {summary.tolerance:.4g} of s* = {fmt(summary.s_star, 'score')} (best of both arms; "
        f"{summary.tolerance_source or 'set'}); the configuration that sets s* is left out of the counts; "
        f"s* rises with the number of trials, so every good fraction is specific to this search's budget "
        f"(trial_budget.csv)",
        "primary analysis: good fraction at every quality level from s* down to the median score "
        f"({summary.primary.get('n_levels', 0)} levels); max-statistic test with the arms swapped "
        + ("within pairs" if summary.primary.get("paired", summary.paired) else "between trials")
        + "; " + ("Tango" if summary.primary.get("paired", summary.paired) else "Mee")
        + f" score intervals at its critical value {summary.primary.get('critical', math.nan):.2f} (simultaneous over "
        "every level: the larger of the sign-flip null's and Bonferroni's); a direction quotes the rejecting level "
        "with the largest |z|; "
        f"no practical difference = every level's 90% interval within ±{100 * summary.primary.get('margin', math.nan):.0f} pts, "
        "tuning curves within δ, not at the floor",
        "every other difference is secondary: Holm-adjusted p values in tests.csv (p_holm)",
        f"intervals: {summary.interval}",
    ]
    ctx = summary.context
    if ctx.get("reference_model"):
        what = " (balanced accuracy)" if ctx.get("metric") == "balanced_accuracy" else ""
        lines.append(f"context{what}: {ctx['reference_model']} on the same split scores "
                     f"{ctx.get('reference_val_score', math.nan):.4f} (validation), "
                     f"{ctx.get('reference_test_score', math.nan):.4f} (test); a constant predictor "
                     f"{ctx.get('baseline', math.nan):.4f}")
    versions = " · ".join(f"{k} {meta[k]}" for k in ("config_hash", "bnsearch_version", "torch_version",
                                                     "optuna_version", "seed") if k in meta)
    if versions:
        lines.append(versions)
    lines += [f"note: {n}" for n in summary.notes]
    if getattr(summary, "adaptive", None) is not None:  # its primary outcome is in the notes (survival.py)
        lines = [x for x in lines if not x.startswith("primary analysis:")]
    return lines


def compact_rows(summary: Comparison) -> list[list[str]]:
    """The default terminal view: a few key numbers per arm, Δ with its interval, fits 80 columns."""
    t, r = summary.arms
    m = summary.metric

    def pct(metric):
        return [fmt(m(metric, a)[0], "pct") for a in (t, r)] + [pts(*m(metric, DELTA))]

    def ttt(a):
        v, lo, hi = m("trials_to_target", a)
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return f"> {lo:.0f}" if np.isfinite(lo) else "n/a"
        # a decimal below 10 trials: whole trials printed intervals like [2–2] that looked zero-width
        short = (lambda x: f"{x:.1f}" if x < 10 else f"{x:.0f}")
        band = f" [{short(lo)}–{short(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else ""
        return f"{v:.1f}{band}"

    rows = [["good fraction", *pct("good_fraction")]]
    rows.append(["trials to a good one", ttt(t), ttt(r), ""])
    rows.append(["diverged", *pct("divergence_rate")])
    if np.isfinite(m("failed_rate", t)[0]):
        rows.append(["failed to train", *pct("failed_rate")])
    rows.append(["best score"] + [fmt(m("best", a)[0], "score") for a in (t, r)] +
                [fmt(m("best", DELTA)[0], "score", True)])
    rows.append(["median score"] + [fmt(m("median", a)[0], "score") for a in (t, r)] +
                [fmt(m("median", DELTA)[0], "score", True)])
    windows = summary.metrics[summary.metrics["metric"].str.startswith("lr_window")]
    for name in dict.fromkeys(windows["metric"]):
        label = "LR window" + (" " + name[len("lr_window ("):-1] if "(" in name else "") + " (dec.)"
        rows.append([label] + [fmt(m(name, a)[0], "one") for a in (t, r)] + [fmt(m(name, DELTA)[0], "one", True)])
    if getattr(summary, "adaptive", None) is not None:  # adaptive: trials to target across repeats replace g, 1/g
        from .survival import compact_rows as adaptive_rows

        rows = adaptive_rows(summary.adaptive) + rows[2:]
    return rows


# ----------------------------------------------------------------------------- over all arms

def comparison_line(arm: str, reference: str, summary) -> str:
    """The two-arm statistics of one comparison in one sentence, with the arms' own names."""
    if summary.paired:
        win = summary.test("wilcoxon", "win_rate")[0]
        ties = summary.test("wilcoxon", "tie_rate")[0]
        med, lo, hi = summary.test("wilcoxon", "median_d")
        p = summary.test("wilcoxon", "p_value")[0]
        pairs = (f"{arm} scores higher than {reference} in {_share(win)}% of the paired configurations "
                 f"(ties {_share(ties)}%; Hodges-Lehmann shift {with_ci(med, lo, hi, 'pts', True)} pts, Wilcoxon p = {p:.3g})")
    else:
        med, lo, hi = summary.test("mann_whitney", "median_diff")
        p = summary.test("mann_whitney", "p_value")[0]
        pairs = (f"median score difference {arm} - {reference} {with_ci(med, lo, hi, 'pts', True)} pts "
                 f"(Mann-Whitney p = {p:.3g})")
    g, glo, ghi = summary.test("good_fraction", "diff")
    gp = summary.test("good_fraction", "p_value")[0]
    # The p belongs to the test over every quality level; the interval to the declared δ alone (it
    # excludes 0 only when the test rejects at that level), so each is named for what it answers.
    return (f"{arm} vs {reference}: {pairs}; good fraction at the declared δ {with_ci(g, glo, ghi, 'pts', True)} pts "
            f"(simultaneous 95% CI); test over all quality levels p = {gp:.3g}.")


def _budget_cell(b: pd.DataFrame, e: int, arm: str, metric: str, versus: str = "", signed: bool = False,
                 ci: bool = True) -> str:
    m = b[(b["epochs"] == e) & (b["arm"] == arm) & (b["metric"] == metric) & (b["versus"].fillna("") == versus)]
    if m.empty:
        return NA
    r = m.iloc[0]
    return with_ci(float(r["value"]), float(r["lo"]), float(r["hi"]), "pts", signed) if ci else _share(float(r["value"]))


def budget_rows(a: ArmsAnalysis) -> tuple[list[str], list[list[str]]]:
    """Per budget: each arm's good % and diverged %, against the best of all arms at that budget."""
    b = a.budget
    headers = ["epochs", *(f"good {x} %" for x in a.arms), *(f"diverged {x} %" for x in a.arms)]
    rows = [[str(e), *(_budget_cell(b, e, x, "good_fraction") for x in a.arms),
             *(_budget_cell(b, e, x, "diverged_rate", ci=False) for x in a.arms)]
            for e in sorted(set(b["epochs"]))]
    return headers, rows


def pair_rows(a: ArmsAnalysis) -> tuple[list[str], list[list[str]]]:
    """Per budget and pair: Δ good (good judged within the pair) and median paired Δ, with CIs."""
    b = a.budget
    headers = ["epochs", *(f"Δ good {x} − {r}" for x, r in a.pairs), *(f"median Δ {x} − {r}" for x, r in a.pairs)]
    rows = [[str(e), *(_budget_cell(b, e, x, "good_delta", r, True) for x, r in a.pairs),
             *(_budget_cell(b, e, x, "median_d", r, True) for x, r in a.pairs)]
            for e in sorted(set(b["epochs"]))]
    return headers, rows


def arm_rows(a: ArmsAnalysis) -> tuple[list[str], list[list[str]]]:
    t = a.arm_table()
    headers = ["arm", "setup", "n", "good %", "diverged %", "best of 5 %", f"Δ good vs {a.reference}",
               f"median Δ vs {a.reference}"]
    rows = []
    for _, r in t.iterrows():
        ref = r["arm"] == a.reference
        rows.append([r["arm"] + (" (reference)" if ref else ""), r["setup"],
                     NA if not math.isfinite(r["n_complete"]) else str(int(r["n_complete"])),
                     with_ci(r["good_fraction"], r["good_fraction_lo"], r["good_fraction_hi"], 'pts'),
                     with_ci(r["diverged_rate"], r["diverged_rate_lo"], r["diverged_rate_hi"], 'pts'),
                     with_ci(r["expected_best"], r["expected_best_lo"], r["expected_best_hi"], 'pts'),
                     NA if ref else with_ci(r["good_delta"], r["good_delta_lo"], r["good_delta_hi"], 'pts', True),
                     NA if ref else with_ci(r["median_d"], r["median_d_lo"], r["median_d_hi"], 'pts', True)])
    return headers, rows


def interaction_rows(a: ArmsAnalysis) -> tuple[list[str], list[list[str]]]:
    rows = []
    for _, r in a.interaction.iterrows():
        share = r["quantity"] == "recovered_share"
        v = with_ci(r["value"], r["lo"], r["hi"], 'pts', not share)
        rows.append([r["quantity"], v + (" %" if share else " pts"),
                     NA if not math.isfinite(r["p_value"]) else f"{r['p_value']:.3g}", str(int(r["n_configs"]))])
    return ["quantity", "value [95% CI]", "Wilcoxon p", "configs"], rows


def cells_line(a: ArmsAnalysis) -> str:
    c = a.cells
    return (f"A = {c[('raw', False)]}, B = {c[('raw', True)]}, C = {c[('standardize', False)]}, "
            f"D = {c[('standardize', True)]}; standardize_gain = C − A, norm_gain_raw = B − A, "
            "norm_gain_std = D − C, interaction = (D − C) − (B − A), recovered_share = (B − A)/(C − A), "
            "all on mean scores")


def _share(v: float) -> str:
    return fmt(v, "pts")
