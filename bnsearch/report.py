"""Reports: rich tables, CSVs, PNG plots and a markdown page from a `Summary` (docs/design.md, Reports).

Rendering only: nothing here trains or computes statistics. The terminal and markdown renderers
share one table builder (`report_tables`), so both always show the same numbers. A summary
aggregated over repeats has the same tables (value = mean, lo/hi = interval across repeats), so
every renderer accepts it unchanged.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ._fork import Forked
from .analysis import ARMS, DELTA, Summary, arm_label, curve_grid
from .analysis.heterogeneity import wide as heterogeneity_wide

ARM_COLUMNS = (*ARMS, DELTA)
TRIAL_COLUMNS = ["experiment", "arm", "number", "state", "config_index"]
RESULT_COLUMNS = ["score", "test_score", "diverged", "epochs_run", "seconds", "seed", "val_curve"]

_PCT = {"good_fraction", "divergence_rate", "failed_rate", "win_rate", "tie_rate", "loss_rate", "prob_on_better",
        "diff", "equivalence"}
_INT = {"n_trials", "n_complete", "good_count", "n_pairs", "n_on", "n_off", "trials_needed"}
_ONE_DECIMAL = {"trials_to_target", "lr_window"}
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


def _arm_columns(summary: Summary) -> tuple:
    return (*summary.arms, DELTA)
SECTION_TITLES = {"scores": "Scores", "robustness": "Robustness", "curves": "Tuning curve",
                  "importance": "Importance", "sensitivity": "Sensitivity", "tests": "Tests",
                  "profile": "Tolerance profile", "heterogeneity": "Where it differs (paired d by hyperparameter level)"}


# ----------------------------------------------------------------------------- formatting

def _fmt(value: float, kind: str, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"  # undefined, never shown as 0
    value = float(value)
    if math.isinf(value):
        return ("+" if signed and value > 0 else "-" if value < 0 else "") + "∞"
    sign = "+" if signed else ""
    if kind == "pct":
        return f"{100 * value:{sign}.1f}" + (" pp" if signed else "%")
    if kind == "int":
        return f"{value:{sign}.0f}" if value == round(value) else f"{value:{sign}.1f}"
    if kind == "one":
        return f"{value:{sign}.1f}"
    if kind == "p":
        return "< 0.001" if value < 0.001 else f"{value:.3f}"
    if kind == "stat":
        return f"{value:{sign}.1f}"
    return f"{value:{sign}.4f}"


def _kind(name: str) -> str:
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


def _cell(row: pd.Series | None, kind: str, signed: bool = False) -> str:
    if row is None:
        return "n/a"
    text = _fmt(row["value"], kind, signed)
    lo, hi = row.get("lo", math.nan), row.get("hi", math.nan)
    if pd.notna(lo) and pd.notna(hi):
        text += f" [{_fmt(lo, kind, signed)}, {_fmt(hi, kind, signed)}]"
    return text


def _by_arm(table: pd.DataFrame, keys: list[str]) -> list[tuple[tuple, dict[str, pd.Series]]]:
    """Group a long per-arm table into (key, {arm: row}) in first-seen order."""
    out: dict[tuple, dict[str, pd.Series]] = {}
    for _, row in table.iterrows():
        out.setdefault(tuple(row[k] for k in keys), {})[row["arm"]] = row
    return list(out.items())


def report_tables(summary: Summary) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows of strings) per section; shared by the terminal and markdown reports."""
    ARM_COLUMNS = _arm_columns(summary)
    ARMS = summary.arms
    arm_headers = [arm_label(a) for a in ARM_COLUMNS]
    sections = []

    for section in ("scores", "robustness"):
        part = summary.metrics[summary.metrics["section"] == section]
        rows = []
        for (metric,), arms in _by_arm(part, ["metric"]):
            kind = _kind(metric)
            rows.append([_label(metric)] +
                        [_cell(arms.get(a), kind, signed=a == DELTA) for a in ARM_COLUMNS])
        sections.append((SECTION_TITLES[section], ["Metric", *arm_headers], rows))

    # Terminal/markdown show the n = 1, 2, 4, ... grid; curves.csv keeps every point.
    rows = []
    curves = summary.curves
    if not curves.empty:
        n_max = int(curves["n"].max())
        shown = set(curve_grid(n_max))
        for (est, n), arms in _by_arm(curves[curves["n"].isin(shown)], ["estimator", "n"]):
            rows.append([ESTIMATOR_SHORT.get(est, str(est)), str(int(n))] +
                        [_cell(arms.get(a), "score", signed=a == DELTA) for a in ARM_COLUMNS])
    sections.append((SECTION_TITLES["curves"], ["Estimator", "n", *arm_headers], rows))

    rows = []
    imp = summary.importance
    if not imp.empty:
        order = (imp[imp["arm"] == ARMS[0]].sort_values("value", ascending=False, na_position="last")["param"].tolist())
        grouped = dict(_by_arm(imp, ["param"]))
        for p in order + [k[0] for k in grouped if k[0] not in order]:
            arms = grouped.get((p,), {})
            rows.append([str(p)] + [_cell(arms.get(a), "score", signed=a == DELTA) for a in ARM_COLUMNS])
    sections.append((SECTION_TITLES["importance"], ["Parameter", *arm_headers], rows))

    rows = []
    for (param, _kind_, measure), arms in _by_arm(summary.sensitivity, ["param", "kind", "measure"]):
        rows.append([str(param), str(measure)] + [_cell(arms.get(a), "score", signed=a == DELTA) for a in ARM_COLUMNS])
    sections.append((SECTION_TITLES["sensitivity"], ["Parameter", "Measure", *arm_headers], rows))

    rows = []
    for _, row in summary.tests.iterrows():
        kind = _kind(row["quantity"])
        signed = row["quantity"] in ("diff", "median_d", "median_diff")
        interval = (f"[{_fmt(row['lo'], kind, signed)}, {_fmt(row['hi'], kind, signed)}]"
                    if pd.notna(row["lo"]) and pd.notna(row["hi"]) else "")
        rows.append([str(row["test"]), str(row["quantity"]), _fmt(row["value"], kind, signed), interval,
                     str(row.get("note") or "")])
    sections.append((SECTION_TITLES["tests"], ["Test", "Quantity", "Value", "Interval", "Note"], rows))

    rows = []
    for (delta,), arms in _by_arm(summary.profile, ["delta"]) if not summary.profile.empty else []:
        rows.append([_fmt(delta, "score")] + [_cell(arms.get(a), "pct", signed=a == DELTA) for a in ARM_COLUMNS])
    sections.append((SECTION_TITLES["profile"], ["tolerance δ", *[f"good fraction, {h}" for h in arm_headers]], rows))

    rows = []
    for _, r in heterogeneity_wide(summary.heterogeneity).iterrows():
        win = _fmt(r["win_rate"], "pct")
        if pd.notna(r["win_lo"]):
            win += f" [{_fmt(r['win_lo'], 'pct')}, {_fmt(r['win_hi'], 'pct')}]"
        rows.append([str(r["factor"]), str(r["level"]), _fmt(r["n_pairs"], "int"), _fmt(r["median_d"], "score", True),
                     win, _fmt(r["p_value"], "p"), _fmt(r["p_holm"], "p")])
    sections.append((SECTION_TITLES["heterogeneity"], ["Factor", "Level", "Pairs", "Median d", "Win rate [95% CI]",
                                                       "Sign test p", "Holm p"], rows))
    return sections


def _setup_lines(summary: Summary, meta: Mapping) -> list[str]:
    lines = [
        f"experiment {summary.experiment or meta.get('experiment', '')} · task {summary.task} · "
        f"sampler {summary.sampler} · {'paired' if summary.paired else 'unpaired'} · "
        f"{arm_label(summary.arms[0])} vs {arm_label(summary.arms[1])}",
        f"good = within δ = {summary.tolerance:.4g} of s* = {_fmt(summary.s_star, 'score')} (best of both arms; "
        f"{summary.tolerance_source or 'set'}); the configuration that sets s* is left out of the counts",
        "primary analysis: good fraction at every quality level from s* down to the median score "
        f"({summary.primary.get('n_levels', 0)} levels); max-statistic test with the arms swapped "
        + ("within pairs" if summary.primary.get("paired", summary.paired) else "between trials")
        + "; " + ("Tango" if summary.primary.get("paired", summary.paired) else "Mee")
        + f" score intervals at its critical value {summary.primary.get('critical', math.nan):.2f} (simultaneous); "
        f"no practical difference = every level's 90% interval within ±{100 * summary.primary.get('margin', math.nan):.0f} pts, "
        "tuning curves within δ, not at the floor",
        "every other difference is secondary: Holm-adjusted p values in tests.csv (p_holm)",
        f"intervals: {summary.interval}",
    ]
    ctx = summary.context
    if ctx.get("reference_model"):
        lines.append(f"context: {ctx['reference_model']} on the same split scores {ctx.get('reference_val_score', math.nan):.4f}"
                     f" (validation), {ctx.get('reference_test_score', math.nan):.4f} (test); a constant predictor "
                     f"{ctx.get('baseline', math.nan):.4f}")
    versions = " · ".join(f"{k} {meta[k]}" for k in ("config_hash", "bnsearch_version", "torch_version",
                                                     "optuna_version", "seed") if k in meta)
    if versions:
        lines.append(versions)
    lines += [f"note: {n}" for n in summary.notes]
    if getattr(summary, "adaptive", None) is not None:  # its primary outcome is in the notes (survival.py)
        lines = [x for x in lines if not x.startswith("primary analysis:")]
    return lines


# ----------------------------------------------------------------------------- terminal

def compact_rows(summary: Summary) -> list[list[str]]:
    """The default terminal view: a few key numbers per arm, Δ with its interval, fits 80 columns."""
    t, r = summary.arms
    m = summary.metric

    def pct(metric):
        row = [_fmt(m(metric, a)[0], "pct") for a in (t, r)]
        d, lo, hi = m(metric, DELTA)
        delta = _fmt(d, "pct", True)
        if np.isfinite(lo) and np.isfinite(hi):
            delta = f"{100 * d:+.1f} [{100 * lo:+.1f},{100 * hi:+.1f}]"
        return row + [delta]

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
    rows.append(["best score"] + [_fmt(m("best", a)[0], "score") for a in (t, r)] +
                [_fmt(m("best", DELTA)[0], "score", True)])
    rows.append(["median score"] + [_fmt(m("median", a)[0], "score") for a in (t, r)] +
                [_fmt(m("median", DELTA)[0], "score", True)])
    windows = summary.metrics[summary.metrics["metric"].str.startswith("lr_window")]
    for name in dict.fromkeys(windows["metric"]):
        label = "LR window" + (" " + name[len("lr_window ("):-1] if "(" in name else "") + " (dec.)"
        rows.append([label] + [_fmt(m(name, a)[0], "one") for a in (t, r)] + [_fmt(m(name, DELTA)[0], "one", True)])
    if getattr(summary, "adaptive", None) is not None:  # adaptive: trials to target across repeats replace g, 1/g
        from .report_survival import compact_rows as adaptive_rows

        rows = adaptive_rows(summary.adaptive) + rows[2:]
    return rows


def print_report(summary: Summary, console, meta: Mapping | None = None, full: bool = False) -> None:
    """Verdict first, then a compact table that fits 80 columns; `full` adds every table."""
    from rich.panel import Panel
    from rich.table import Table

    meta = meta or {}
    title = f"bnsearch: {summary.experiment or meta.get('experiment', '')}"
    if summary.n_repeats > 1:
        title += f" ({summary.n_repeats} repeats)"
    console.print(f"[bold]{title}[/bold]")
    # Wrapped at 100 columns at most: piped output has a 1000-column console (so tables are never
    # truncated), where an unwrapped paragraph would be one unreadable line.
    console.print(Panel(summary.verdict, title="Verdict", title_align="left", width=min(console.width, 100)))
    t, r = summary.arms
    table = Table(title="Key numbers (good fraction: the primary analysis at δ; Δ in pts, 95% CI)"
                  if getattr(summary, "adaptive", None) is None else  # adaptive: report_survival.compact_rows
                  "Key numbers (trials to target across repeats: the primary outcome; Δ with 95% CI)",
                  title_justify="left")
    for i, h in enumerate(["", arm_label(t), arm_label(r), "Δ [95% CI]"]):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    for row in compact_rows(summary):
        table.add_row(*row)
    console.print(table)
    if not full:  # one screen: the δ it rests on, and where the rest is
        console.print(_setup_lines(summary, meta)[1], style="dim", highlight=False)
        console.print("the setup, the notes and every table: --full; every number: the CSVs with --out",
                      style="dim", highlight=False)
        return
    for line in _setup_lines(summary, meta):
        console.print(line, style="dim", highlight=False)
    for name, headers, rows in report_tables(summary):
        table = Table(title=name, title_justify="left", show_lines=False)
        for i, h in enumerate(headers):
            table.add_column(h, justify="left" if i == 0 or h in ("Note", "Test", "Quantity", "Measure", "Estimator",
                                                                   "Factor", "Level")
                             else "right", overflow="fold")
        for row in rows:
            table.add_row(*row)
        if not rows:
            table.add_row(*(["(no data)"] + [""] * (len(headers) - 1)))
        console.print(table)
    console.print("Tuning-curve estimators: " + "; ".join(f"{k}: {v}" for k, v in ESTIMATOR_NAMES.items()),
                  style="dim", highlight=False)


def answer_line(summary: Summary, arm: str | None = None) -> str:
    """The verdict's outcome in one line, with the number it rests on (the last line of the output)."""
    from .analysis.common import arm_phrases

    w = arm_phrases(summary.arms)
    pr = summary.primary
    who = f"{arm} vs {summary.arms[1]}: " if arm else ""
    out = summary.outcome or "cannot tell"
    if getattr(summary, "adaptive", None) is not None:
        return f"{who}{out} (trials to target across repeats; see the verdict)"
    d, lo, hi, p = (pr.get(k, math.nan) for k in ("diff", "lo", "hi", "p_value"))

    def pts(x: float) -> str:
        return f"{100 * x:+.1f}" if np.isfinite(x) else "n/a"
    if not np.isfinite(d):
        nums = "no completed trials to compare"
    elif summary.n_repeats == 1:
        nums = (f"{pts(d)} pts at δ, 95% CI {pts(lo)} to {pts(hi)}; test over all quality levels "
                f"p {'< 0.001' if p < 0.001 else '= ' + _fmt(p, 'p')}")
    else:
        nums = f"{pts(d)} pts, 95% interval across repeats {pts(lo)} to {pts(hi)}"
    text = {"easier": f"the search is easier {w['with_t']}", "harder": f"the search is harder {w['with_t']}",
            "equivalent": "no practical difference"}.get(out, "cannot tell")
    return f"{who}{text} ({nums})"


# ----------------------------------------------------------------------------- CSV

def _with_meta(frame: pd.DataFrame, meta: Mapping) -> pd.DataFrame:
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


def trials_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every trial, all states: ids, parameters, results, then any other columns."""
    known = TRIAL_COLUMNS + RESULT_COLUMNS
    params = [c for c in df.columns if c not in known]
    order = [c for c in TRIAL_COLUMNS if c in df.columns] + params + [c for c in RESULT_COLUMNS if c in df.columns]
    return df[order]


def write_csvs(df: pd.DataFrame, summary: Summary, out_dir, meta: Mapping) -> list[Path]:
    from .files import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(meta)
    meta.setdefault("experiment", summary.experiment)
    setup = {"task": summary.task, "sampler": summary.sampler, "paired": summary.paired,
             "tolerance": summary.tolerance, "s_star": summary.s_star, "outcome": summary.outcome}
    metrics = summary.metrics
    if "repeats" not in metrics.columns:  # one repeat column: per-row count of repeats (1 for a single run)
        metrics = metrics.assign(repeats=summary.n_repeats)
    frames = {
        "trials.csv": trials_table(df),
        "summary.csv": metrics.assign(**setup),
        "curves.csv": summary.curves,
        "importance.csv": summary.importance,
        "sensitivity.csv": summary.sensitivity,
        "tests.csv": summary.tests,
        "tolerance_profile.csv": summary.profile,
        "heterogeneity.csv": summary.heterogeneity,
    }
    paths = []
    for name, frame in frames.items():
        table = _with_meta(frame, meta)
        paths.append(atomic_write(out / name, lambda tmp: table.to_csv(tmp, index=False)))
    return paths


# ----------------------------------------------------------------------------- plots

_COLORS = {"bn-on": "tab:blue", "bn-off": "tab:orange"}


def _plot_tuning_curves(plt, summary: Summary, complete: pd.DataFrame, colors: dict):
    ARMS = summary.arms
    curves = summary.curves[summary.curves["arm"].isin(ARMS)] if not summary.curves.empty else summary.curves
    delta_v = (summary.curves[(summary.curves["arm"] == DELTA) & (summary.curves["estimator"] == "V")]
               .sort_values("n") if not summary.curves.empty else summary.curves)
    if curves.empty:
        return None
    estimators = list(dict.fromkeys(curves["estimator"]))
    panels = len(estimators) + (not delta_v.empty)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.8), squeeze=False)
    for ax, est in zip(axes[0], estimators):
        for arm in ARMS:
            c = curves[(curves["estimator"] == est) & (curves["arm"] == arm)].sort_values("n")
            if c.empty:
                continue
            ax.plot(c["n"], c["value"], marker="o", ms=3, color=colors[arm], label=arm_label(arm))
            if c["lo"].notna().any():
                ax.fill_between(c["n"], c["lo"].astype(float), c["hi"].astype(float), color=colors[arm], alpha=0.2)
        if est in ("V", "U"):
            ax.set_xscale("log", base=2)
        ax.set_title({"V": "expected best of n (V-estimate, with replacement)\nshaded: 95% simultaneous band (opda, DKW)",
                      "U": "expected best of n (U-estimate, without replacement)\nno band",
                      }.get(est, "best score so far (adaptive sampler)"), fontsize=9)
        ax.set_xlabel("trials n")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("expected best validation score")
    axes[0][0].legend()
    for ax in axes[0][1:len(estimators)]:
        ax.sharey(axes[0][0])
    if not delta_v.empty:
        ax = axes[0][-1]
        ax.plot(delta_v["n"], delta_v["value"], marker="o", ms=3, color="tab:green")
        if delta_v["lo"].notna().any():
            ax.fill_between(delta_v["n"], delta_v["lo"].astype(float), delta_v["hi"].astype(float),
                            color="tab:green", alpha=0.2)
        ax.axhline(0, color="grey", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_title(f"Δ expected best of n ({arm_label(ARMS[0])} − {arm_label(ARMS[1])})\n"
                     "shaded: 95% simultaneous band (the arms' 97.5% bands)", fontsize=9)
        ax.set_xlabel("trials n")
        ax.grid(alpha=0.3)
    return fig


def _plot_score_vs_lr(plt, summary: Summary, complete: pd.DataFrame, colors: dict):
    if "lr" not in complete.columns or not len(complete):
        return None
    threshold = summary.s_star - summary.tolerance
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], summary.arms):
        t = complete[complete["arm"] == arm]
        ax.set_title(arm_label(arm))
        if t.empty:  # a log axis with no data cannot be drawn
            ax.text(0.5, 0.5, "no completed trials", transform=ax.transAxes, ha="center", color="grey")
            continue
        div = t["diverged"].fillna(False).astype(bool) if "diverged" in t else pd.Series(False, index=t.index)
        ax.scatter(t.loc[~div, "lr"].astype(float), t.loc[~div, "score"].astype(float), s=14,
                   color=colors[arm], label="trained")
        ax.scatter(t.loc[div, "lr"].astype(float), t.loc[div, "score"].astype(float), s=18, marker="x",
                   color="tab:red", label=f"diverged ({int(div.sum())})")
        if np.isfinite(threshold):
            ax.axhline(threshold, color="grey", ls="--", lw=1, label="good threshold s* − δ")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)  # each panel its own: the diverged count differs between the arms
    axes[0][0].set_ylabel("validation score")
    return fig


def _plot_score_edf(plt, summary: Summary, complete: pd.DataFrame, colors: dict):
    if not len(complete):
        return None
    threshold = summary.s_star - summary.tolerance
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for arm in summary.arms:
        s = np.sort(complete.loc[complete["arm"] == arm, "score"].astype(float).to_numpy())
        if s.size:
            ax.step(s, np.arange(1, s.size + 1) / s.size, where="post", color=colors[arm], label=arm_label(arm))
    if np.isfinite(threshold):
        ax.axvline(threshold, color="grey", ls="--", lw=1, label="s* − δ")
    ax.set_xlabel("validation score")
    ax.set_ylabel("share of trials ≤ score")
    ax.set_title("empirical distribution function of the validation scores", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def _plot_importance(plt, summary: Summary, complete: pd.DataFrame, colors: dict):
    imp = summary.importance
    if imp.empty or not imp.loc[imp["arm"].isin(summary.arms), "value"].notna().any():
        return None
    params = list(dict.fromkeys(imp["param"]))
    y = np.arange(len(params))
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(params) + 1.5))
    for k, arm in enumerate(summary.arms):
        vals = imp[imp["arm"] == arm].set_index("param")["value"].reindex(params).astype(float).fillna(0)
        ax.barh(y + (k - 0.5) * 0.4, vals, height=0.4, color=colors[arm], label=arm_label(arm))
    ax.set_yticks(y, params)
    ax.invert_yaxis()
    ax.set_xlabel("importance (normalised)")
    ax.set_title("PED-ANOVA importance (share of score variation), per arm", fontsize=9)
    ax.legend()
    return fig


def _plot_tolerance_profile(plt, summary: Summary, complete: pd.DataFrame, colors: dict):
    prof = summary.profile
    if prof.empty or not prof["arm"].isin(summary.arms).any():
        return None
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for arm in summary.arms:
        c = prof[prof["arm"] == arm].sort_values("delta")
        ax.plot(c["delta"], c["value"], marker="o", ms=3, color=colors[arm], label=arm_label(arm))
        ax.fill_between(c["delta"], c["lo"].astype(float), c["hi"].astype(float), color=colors[arm], alpha=0.15)
    ax.axvline(summary.tolerance, color="grey", ls="--", lw=1, label=f"δ used = {summary.tolerance:.3g}")
    ax.set_xlabel("tolerance δ (good = within δ of s*)")
    ax.set_ylabel("good fraction")
    ax.set_title("good fraction at every quality level; Δ: simultaneous 95% intervals of the test", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _plot_heterogeneity(plt, summary: Summary, complete: pd.DataFrame, colors: dict):
    het = heterogeneity_wide(summary.heterogeneity)
    het = het[het["win_rate"].notna()] if not het.empty else het
    if het.empty:
        return None
    factors = list(dict.fromkeys(het["factor"]))
    levels = max(int((het["factor"] == f).sum()) for f in factors)
    grid = np.full((len(factors), levels), np.nan)
    labels = [[""] * levels for _ in factors]
    for i, f in enumerate(factors):
        for j, (_, r) in enumerate(het[het["factor"] == f].iterrows()):
            grid[i, j] = r["win_rate"]
            labels[i][j] = f"{r['level']}\n{100 * r['win_rate']:.0f}%" + ("*" if r["p_holm"] < 0.05 else "")
    fig, ax = plt.subplots(figsize=(1.3 * levels + 2.5, 0.6 * len(factors) + 1.6))
    im = ax.imshow(grid, cmap="RdBu", vmin=0, vmax=1, aspect="auto")
    for i in range(len(factors)):
        for j in range(levels):
            if labels[i][j]:
                # RdBu is dark at both ends: white text there, black in the pale middle
                dark = np.isfinite(grid[i, j]) and abs(grid[i, j] - 0.5) > 0.3
                ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_yticks(range(len(factors)), factors)
    ax.set_xticks([])
    fig.colorbar(im, ax=ax, label=f"share of pairs where {arm_label(summary.arms[0])} scores higher")
    ax.set_title("paired win rate by hyperparameter level (* Holm-adjusted sign test p < 0.05)", fontsize=9)
    return fig


# (builder, file, title); each builder returns None when it has nothing to draw
_PLOTS = ((_plot_tuning_curves, "tuning_curves.png", "how good a search of n random trials gets"),
          (_plot_score_vs_lr, "score_vs_lr.png", "validation score of every trial against its learning rate"),
          (_plot_score_edf, "score_edf.png", "distribution of scores"),
          (_plot_importance, "importance.png", "which hyperparameters matter"),
          (_plot_tolerance_profile, "tolerance_profile.png", "tolerance profile"),
          (_plot_heterogeneity, "heterogeneity.png", "where the arms differ"))


def plot_jobs(df: pd.DataFrame, summary: Summary, out_dir) -> list[Callable[[], list[Path]]]:
    """One job per PNG of _PLOTS: tuning_curves.png, score_vs_lr.png (if lr was searched),
    score_edf.png, importance.png (if any importance is defined), tolerance_profile.png,
    heterogeneity.png. Each draws, saves and returns its file ([] when it has nothing to draw)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    colors = dict(zip(summary.arms, ("tab:blue", "tab:orange")))
    exp = summary.experiment or "experiment"
    complete = df[(df["state"].astype(str) == "COMPLETE") & pd.to_numeric(df["score"], errors="coerce").notna()] \
        if len(df) else df

    def job(build, name, title) -> list[Path]:
        from .files import atomic_write

        plt = pyplot()
        fig = build(plt, summary, complete, colors)
        if fig is None:
            return []
        try:
            fig.suptitle(f"{exp}: {title}", fontsize=10)
            fig.tight_layout()
            return [atomic_write(out / name, lambda tmp: fig.savefig(tmp, dpi=110))]
        finally:
            plt.close(fig)

    return [functools.partial(job, *plot) for plot in _PLOTS]


def write_plots(df: pd.DataFrame, summary: Summary, out_dir) -> list[Path]:
    """The PNGs of plot_jobs; returns the files written."""
    return [p for paths in PlotRun(plot_jobs(df, summary, out_dir)).finish() for p in paths]


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    return plt


class PlotRun:
    """Plot jobs on two cores: drawing the PNGs was the longest part of a report (~1.4-1.8 s of a
    2-core run's last ~3.5 s, with the other core idle). Made at once, a forked child (_fork.Forked)
    draws every other job; finish() draws the rest here, after whatever the caller writes meanwhile
    (the CSVs), and returns every job's files in job order. If the child fails in any way its jobs
    are drawn here: same files either way (tested byte for byte)."""

    def __init__(self, jobs: Sequence[Callable[[], list[Path]]], processes: int | None = None):
        self.jobs = list(jobs)
        self.theirs = list(range(1, len(self.jobs), 2))
        theirs = [self.jobs[i] for i in self.theirs]
        parallel = len(self.jobs) > 1 and (processes is None or processes > 1)
        self.child = Forked(lambda: [[str(p) for p in job()] for job in theirs], parallel=parallel)

    @property
    def pid(self) -> int | None:
        return self.child.pid

    def __enter__(self):
        return self

    def __exit__(self, _type, exc, _tb):
        self._stop(exc)

    def _stop(self, exc: BaseException | None) -> None:
        # After a failed write (a full disk) the child may be writing too: killed mid-write it would
        # leave its temporary file behind, so it is left to finish or fail (removing its own) first.
        # An interrupt reaches the child as well and needs no wait.
        if isinstance(exc, Exception) and self.child.pid is not None:
            try:
                self.child._collect(60.0)
            except Exception:
                pass
        self.child.close()

    def finish(self) -> list[list[Path]]:
        results: list[list[Path]] = [[] for _ in self.jobs]
        try:
            for i, job in enumerate(self.jobs):
                if i not in self.theirs:
                    results[i] = list(job())
        except BaseException as exc:
            self._stop(exc)
            raise
        for i, paths in zip(self.theirs, self.child.result()):
            results[i] = [Path(p) for p in paths]
        return results


# ----------------------------------------------------------------------------- markdown

def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(x: str) -> str:
        return str(x).replace("|", "\\|")

    lines = ["| " + " | ".join(map(esc, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows] or []
    if not rows:
        lines.append("| (no data) |" + " |" * (len(headers) - 1))
    return "\n".join(lines)


_PLOT_AFTER = {"Scores": ["score_edf.png", "score_vs_lr.png"], "Tuning curve": ["tuning_curves.png"],
               "Importance": ["importance.png"], "Tolerance profile": ["tolerance_profile.png"],
               SECTION_TITLES["heterogeneity"]: ["heterogeneity.png"]}


def markdown_text(summary: Summary, meta: Mapping | None = None, files: Sequence = (), out_dir=None) -> str:
    """The markdown report: verdict first, then setup, one table per section with its plots, then the files.
    Plot links are relative to `out_dir` (the folder report.md is written to)."""
    meta = meta or {}
    out = Path(out_dir) if out_dir is not None else Path(".")
    files = [Path(f) for f in files]
    pngs = {f.name: f for f in files if f.suffix.lower() == ".png"}

    def rel(path: Path) -> str:
        return Path(os.path.relpath(path.resolve() if path.is_absolute() or path.exists() else out / path,
                                    out.resolve())).as_posix()

    title = f"# bnsearch report: {summary.experiment or meta.get('experiment', '')}"
    if summary.n_repeats > 1:
        title += f" ({summary.n_repeats} repeats)"
    parts = [title, "", "> " + summary.verdict, ""]
    parts += [f"- {line}" for line in _setup_lines(summary, meta)] + [""]
    used = set()
    for name, headers, rows in report_tables(summary):
        parts += [f"## {name}", "", _md_table(headers, rows), ""]
        if name == SECTION_TITLES["curves"]:
            parts += ["; ".join(f"{ESTIMATOR_SHORT[k]}: {v}" for k, v in ESTIMATOR_NAMES.items()) +
                      ". The Δ band is the difference of the two arms' 97.5% bands (simultaneous at 95%).", ""]
        for png in _PLOT_AFTER.get(name, []):
            if png in pngs:
                parts += [f"![{png[:-4].replace('_', ' ')}]({rel(pngs[png])})", ""]
                used.add(png)
    extra = [f for f in files if f.name not in used]
    if extra:
        parts += ["## Files", ""]
        for f in extra:
            link = f"![{f.stem}]({rel(f)})" if f.suffix.lower() == ".png" else f"[{f.name}]({rel(f)})"
            parts.append(f"- {link}")
        parts.append("")
    return "\n".join(parts)


def write_markdown(summary: Summary, out_dir, meta: Mapping | None, files: Sequence) -> Path:
    """report.md in out_dir (see markdown_text)."""
    from .files import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown_text(summary, meta, files, out)
    return atomic_write(out / "report.md", lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ----------------------------------------------------------------------------- study progress table

def study_table(arms, title: str = "study", seconds: float | None = None):
    """Rich table of what storage holds for each arm: counts, best score, its test score, time per trial."""
    import statistics

    from optuna.trial import TrialState
    from rich.table import Table

    from .search import arm_state

    table = Table(title=title + (f" ({seconds:.1f} s wall)" if seconds is not None else ""))
    for col in ("arm", "complete", "diverged", "failed", "best val", "test of best", "median s/trial"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    best_configs = []
    for arm in arms:
        st = arm_state(arm)
        complete = arm.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = max(complete, key=lambda t: t.value) if complete else None
        secs = [t.user_attrs.get("seconds", 0.0) for t in complete]
        table.add_row(
            arm.arm, f"{st.complete}/{st.budget}", str(st.diverged), str(st.failed),
            f"{best.value:.4f}" if best else "-",
            f"{best.user_attrs.get('test_score', float('nan')):.4f}" if best else "-",
            f"{statistics.median(secs):.3f}" if secs else "-",
        )
        if best:
            best_configs.append(f"best {arm.arm}: " + ", ".join(f"{k}={_short(v)}" for k, v in best.params.items()))
    table.caption = "\n".join(best_configs)
    return table


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


# ----------------------------------------------------------------------------- lossless trials export

def _json_safe(x):
    # JSON has no NaN/inf; null keeps every line parseable by any JSON reader.
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.generic):
        return _json_safe(x.item())
    return x


def write_trials_jsonl(records: Sequence[Mapping], out_dir, meta: Mapping) -> Path:
    """trials.jsonl: one JSON object per stored trial with everything storage holds for it (the
    per-epoch curves included) plus the experiment's provenance under "meta"."""
    import json

    from .files import atomic_write

    provenance = _json_safe(dict(meta))

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps({**_json_safe(dict(rec)), "meta": provenance}, allow_nan=False) + "\n")

    return atomic_write(Path(out_dir) / "trials.jsonl", write)
