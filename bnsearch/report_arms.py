"""Rendering of the N-arm layer (analysis.multiarm.ArmsAnalysis): terminal, CSV, PNG and markdown.

Every arm keeps one colour in every plot (`arm_colors`). For the default pair the two-arm report of
report.py stays the main report and only the budget section is added; for more arms this module
renders the whole report.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from .analysis.multiarm import ArmsAnalysis
from .report import PlotRun, pyplot

_FIXED = {"bn-on": "tab:blue", "bn-off": "tab:orange"}  # the colours report.py gives the default pair
_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
            "tab:gray", "tab:olive", "tab:cyan")


def arm_colors(arms: Sequence[str]) -> dict[str, str]:
    """One colour per arm, the same in every plot of an experiment (config order after the fixed pair)."""
    colors = {a: _FIXED[a] for a in arms if a in _FIXED}
    free = [c for c in _PALETTE if c not in colors.values()]
    for a in arms:
        if a not in colors:
            colors[a] = free.pop(0) if free else "black"
    return colors


def _pct(v: float, signed: bool = False) -> str:
    if not math.isfinite(v):
        return "–"
    return f"{100 * v:+.1f}" if signed else f"{100 * v:.1f}"


def _with_ci(v: float, lo: float, hi: float, signed: bool = False) -> str:
    s = _pct(v, signed)
    if math.isfinite(lo) and math.isfinite(hi):
        s += f" [{_pct(lo, signed)}, {_pct(hi, signed)}]"
    return s


def _role(summary, arm: str, role: int) -> str:
    """The label a comparison uses for ``arm``: its own name, or bn-on/bn-off as the pair's roles."""
    labels = set(summary.metrics["arm"].astype(str)) if not summary.metrics.empty else set()
    return arm if arm in labels else ("bn-on", "bn-off")[role]


def comparison_line(arm: str, reference: str, summary) -> str:
    """The two-arm statistics of one comparison in one sentence, with the arms' own names."""
    if summary.paired:
        win = summary.test("wilcoxon", "win_rate")[0]
        ties = summary.test("wilcoxon", "tie_rate")[0]
        med, lo, hi = summary.test("wilcoxon", "median_d")
        p = summary.test("wilcoxon", "p_value")[0]
        pairs = (f"{arm} scores higher than {reference} in {_pct(win)}% of the paired configurations "
                 f"(ties {_pct(ties)}%; Hodges-Lehmann shift {_with_ci(med, lo, hi, True)} pts, Wilcoxon p = {p:.3g})")
    else:
        med, lo, hi = summary.test("mann_whitney", "median_diff")
        p = summary.test("mann_whitney", "p_value")[0]
        pairs = (f"median score difference {arm} - {reference} {_with_ci(med, lo, hi, True)} pts "
                 f"(Mann-Whitney p = {p:.3g})")
    g, glo, ghi = summary.test("good_fraction", "diff")
    gp = summary.test("good_fraction", "p_value")[0]
    # The p belongs to the test over every quality level; the interval to the declared δ alone (it
    # excludes 0 only when the test rejects at that level), so each is named for what it answers.
    return (f"{arm} vs {reference}: {pairs}; good fraction at the declared δ {_with_ci(g, glo, ghi, True)} pts "
            f"(simultaneous 95% CI); test over all quality levels p = {gp:.3g}.")


def _budget_cell(b: pd.DataFrame, e: int, arm: str, metric: str, versus: str = "", signed: bool = False,
                 ci: bool = True) -> str:
    m = b[(b["epochs"] == e) & (b["arm"] == arm) & (b["metric"] == metric) & (b["versus"].fillna("") == versus)]
    if m.empty:
        return "–"
    r = m.iloc[0]
    return _with_ci(float(r["value"]), float(r["lo"]), float(r["hi"]), signed) if ci else _pct(float(r["value"]))


def _budget_rows(a: ArmsAnalysis) -> tuple[list[str], list[list[str]]]:
    """Per budget: each arm's good % and diverged %, against the best of all arms at that budget."""
    b = a.budget
    headers = ["epochs", *(f"good {x} %" for x in a.arms), *(f"diverged {x} %" for x in a.arms)]
    rows = [[str(e), *(_budget_cell(b, e, x, "good_fraction") for x in a.arms),
             *(_budget_cell(b, e, x, "diverged_rate", ci=False) for x in a.arms)]
            for e in sorted(set(b["epochs"]))]
    return headers, rows


def _pair_rows(a: ArmsAnalysis) -> tuple[list[str], list[list[str]]]:
    """Per budget and pair: Δ good (good judged within the pair) and median paired Δ, with CIs."""
    b = a.budget
    headers = ["epochs", *(f"Δ good {x} − {r}" for x, r in a.pairs), *(f"median Δ {x} − {r}" for x, r in a.pairs)]
    rows = [[str(e), *(_budget_cell(b, e, x, "good_delta", r, True) for x, r in a.pairs),
             *(_budget_cell(b, e, x, "median_d", r, True) for x, r in a.pairs)]
            for e in sorted(set(b["epochs"]))]
    return headers, rows


def _arm_rows(a: ArmsAnalysis) -> tuple[list[str], list[list[str]]]:
    t = a.arm_table()
    headers = ["arm", "setup", "n", "good %", "diverged %", "best of 5 %", f"Δ good vs {a.reference}",
               f"median Δ vs {a.reference}"]
    rows = []
    for _, r in t.iterrows():
        ref = r["arm"] == a.reference
        rows.append([r["arm"] + (" (reference)" if ref else ""), r["setup"],
                     "–" if not math.isfinite(r["n_complete"]) else str(int(r["n_complete"])),
                     _with_ci(r["good_fraction"], r["good_fraction_lo"], r["good_fraction_hi"]),
                     _with_ci(r["diverged_rate"], r["diverged_rate_lo"], r["diverged_rate_hi"]),
                     _with_ci(r["expected_best"], r["expected_best_lo"], r["expected_best_hi"]),
                     "–" if ref else _with_ci(r["good_delta"], r["good_delta_lo"], r["good_delta_hi"], True),
                     "–" if ref else _with_ci(r["median_d"], r["median_d_lo"], r["median_d_hi"], True)])
    return headers, rows


def _interaction_rows(a: ArmsAnalysis) -> tuple[list[str], list[list[str]]]:
    rows = []
    for _, r in a.interaction.iterrows():
        share = r["quantity"] == "recovered_share"
        v = _with_ci(r["value"], r["lo"], r["hi"], signed=not share)
        rows.append([r["quantity"], v + (" %" if share else " pts"),
                     "–" if not math.isfinite(r["p_value"]) else f"{r['p_value']:.3g}", str(int(r["n_configs"]))])
    return ["quantity", "value [95% CI]", "Wilcoxon p", "configs"], rows


def _cells_line(a: ArmsAnalysis) -> str:
    c = a.cells
    return (f"A = {c[('raw', False)]}, B = {c[('raw', True)]}, C = {c[('standardize', False)]}, "
            f"D = {c[('standardize', True)]}; standardize_gain = C − A, norm_gain_raw = B − A, "
            "norm_gain_std = D − C, interaction = (D − C) − (B − A), recovered_share = (B − A)/(C − A), "
            "all on mean scores")


# ----------------------------------------------------------------------------- terminal

def print_arms(a: ArmsAnalysis, console, full: bool = False) -> None:
    """The N-arm layer; the budget and interaction tables only with `full` (their sentences always)."""
    from rich.table import Table

    def table(title, headers, rows):
        t = Table(title=title)
        for i, h in enumerate(headers):
            t.add_column(h, justify="left" if i < 2 else "right")
        for r in rows:
            t.add_row(*r)
        console.print(t)

    if not a.is_default_pair:
        table(f"arms (full budget, {a.epochs} epochs; good = within tolerance of the best of all arms)", *_arm_rows(a))
        for arm, s in a.comparisons.items():  # the calibrated two-arm verdict of each comparison
            console.print(f"[bold]{arm} vs {a.reference}:[/] {s.verdict or comparison_line(arm, a.reference, s)}",
                          highlight=False)
    if full:
        table("robustness vs training budget (good = within tolerance of the best of all arms at that budget)",
              *_budget_rows(a))
        table("advantage vs training budget, pts (the primary analysis at each budget; 95% CIs)", *_pair_rows(a))
    for sentence in a.budget_verdicts.values():
        console.print(f"[bold]budget:[/] {sentence}", highlight=False)
    if a.interaction is not None:
        if full:
            table("inputs × normalisation interaction", *_interaction_rows(a))
            console.print(_cells_line(a), highlight=False, style="dim")
        console.print(f"[bold]interaction:[/] {a.interaction_verdict}", highlight=False)
    if full:
        for note in a.notes:
            console.print(f"note: {note}", style="dim", highlight=False)


# ----------------------------------------------------------------------------- files

def _meta_cols(frame: pd.DataFrame, meta: Mapping) -> pd.DataFrame:
    from .report import _with_meta

    return _with_meta(frame, meta)


def write_budget_csvs(a: ArmsAnalysis, out_dir, meta: Mapping) -> list[Path]:
    """budget.csv and compute.csv (their plots: budget_plot_jobs)."""
    from .files import atomic_write

    out = Path(out_dir)
    return [atomic_write(out / name, lambda tmp, t=_meta_cols(frame, meta): t.to_csv(tmp, index=False))
            for name, frame in (("budget.csv", a.budget), ("compute.csv", a.compute))]


def budget_plot_jobs(a: ArmsAnalysis, out_dir) -> list:
    """budget.png and compute.png, as report.PlotRun jobs."""
    return [functools.partial(_plot_budget, a, Path(out_dir)), functools.partial(_plot_compute, a, Path(out_dir))]


def _plot_budget(a: ArmsAnalysis, out: Path) -> list[Path]:
    plt = pyplot()
    colors = arm_colors(a.arms)
    b = a.budget
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for arm in a.arms:
        g = b[(b["arm"] == arm) & (b["metric"] == "good_fraction")].sort_values("epochs")
        ax1.plot(g["epochs"], g["value"], marker="o", color=colors[arm], label=arm)
        ax1.fill_between(g["epochs"], g["lo"].astype(float), g["hi"].astype(float), color=colors[arm], alpha=0.15)
    for k, (arm, ref) in enumerate(a.pairs):
        # The arm's colour; a pair against another arm than the reference is dashed.
        d = b[(b["arm"] == arm) & (b["versus"] == ref) & (b["metric"] == "good_delta")].sort_values("epochs")
        ls = "-" if ref == a.reference else "--"
        ax2.plot(d["epochs"], d["value"], marker="o", ls=ls, color=colors[arm], label=f"{arm} − {ref}")
        ax2.fill_between(d["epochs"], d["lo"].astype(float), d["hi"].astype(float), color=colors[arm], alpha=0.1)
    ax2.axhline(0, color="grey", lw=1)
    for ax, title, metric in ((ax1, "share of good configurations (vs best of all arms)", "good_fraction"),
                              (ax2, "advantage in the good share (95% CI)", "good_delta")):
        _log_x(ax, b.loc[b["metric"] == metric, "value"])
        ax.set_xlabel("training budget (epochs)")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle("advantage vs training budget")
    return [_save(fig, out / "budget.png")]


def _plot_compute(a: ArmsAnalysis, out: Path) -> list[Path]:
    c = a.compute
    if c.empty:
        return []
    plt = pyplot()
    colors = arm_colors(a.arms)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    short = min(set(c["epochs"]) - {a.epochs}, default=None, key=lambda e: abs(e - max(2, a.epochs // 10)))
    for arm in a.arms:
        full = c[(c["arm"] == arm) & (c["epochs"] == a.epochs)]
        ax.plot(full["seconds"], full["value"], marker="o", ms=3, color=colors[arm], label=f"{arm}, {a.epochs} ep")
        ax.fill_between(full["seconds"], full["lo"].astype(float), full["hi"].astype(float), color=colors[arm],
                        alpha=0.15)
        if short is not None:
            s = c[(c["arm"] == arm) & (c["epochs"] == short)]
            ax.plot(s["seconds"], s["value"], ls="--", color=colors[arm], label=f"{arm}, {short} ep")
    _log_x(ax, c["value"].where(c["seconds"] > 0))
    ax.set_xlabel("cumulative training seconds (n trials × mean seconds per trial)")
    ax.set_ylabel("expected best validation score")
    ax.set_title("tuning curves against compute")
    ax.legend(fontsize=7)
    return [_save(fig, out / "compute.png")]


def _log_x(ax, drawn: pd.Series, base: float = 10) -> None:
    # With nothing finite on an axis (one trial per arm estimates no share) matplotlib cannot put it
    # on a log scale and raises while saving; the empty panel says why instead.
    if pd.to_numeric(drawn, errors="coerce").replace([math.inf, -math.inf], math.nan).notna().any():
        ax.set_xscale("log", base=base)
    else:
        ax.text(0.5, 0.65, "too few complete trials for an estimate", transform=ax.transAxes, ha="center",
                va="center", color="grey")
        ax.set_xticks([])
        ax.set_yticks([])


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from .files import atomic_write

    try:
        fig.tight_layout()
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120))
    finally:
        plt.close(fig)


def _plot_tuning(a: ArmsAnalysis, out: Path) -> list[Path]:
    c = a.compute[a.compute["epochs"] == a.epochs]
    if c.empty:
        return []
    plt = pyplot()
    colors = arm_colors(a.arms)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for arm in a.arms:
        k = c[c["arm"] == arm]
        ax.plot(k["n"], k["value"], marker="o", ms=3, color=colors[arm], label=arm)
        ax.fill_between(k["n"], k["lo"].astype(float), k["hi"].astype(float), color=colors[arm], alpha=0.15)
    _log_x(ax, c["value"], base=2)
    ax.set_xlabel("trials (random search)")
    ax.set_ylabel("expected best validation score")
    ax.set_title("tuning curves (V-estimate, 95% bootstrap band)")
    ax.legend(fontsize=8)
    return [_save(fig, out / "tuning_curves.png")]


def _relabel(table: pd.DataFrame, arm: str, reference: str) -> pd.DataFrame:
    """Role labels (bn-on = the compared arm, bn-off = the reference) to the arms' names. A table that
    already carries the names is returned as it is: mapping it would swap arms whose own names are
    bn-on/bn-off in the other role."""
    if table.empty or "arm" not in table:
        return table
    labels = set(table["arm"].astype(str))
    if arm in labels and reference in labels:
        return table
    roles = {"bn-on": arm, "bn-off": reference}
    return table.assign(arm=table["arm"].astype(str).map(lambda x: roles.get(x, x)))


def publish_arms(report, out_dir, *, csv: bool = True, plots: bool = True) -> list[Path]:
    """Every file of an N-arm experiment; returns the files written."""
    from .files import atomic_write
    from .report import trials_table, write_trials_jsonl

    a: ArmsAnalysis = report.arms
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(report.meta)
    files: list[Path] = []
    if csv:
        # Per-epoch curves stay in storage (and budget.csv): a list per cell would bloat trials.csv.
        frames = {"trials.csv": trials_table(report.df.drop(columns=["val_curve"], errors="ignore")),
                  "arms.csv": a.arm_table()}
        frames["comparison_metrics.csv"] = pd.concat(
            [_relabel(s.metrics, arm, a.reference).assign(treatment=arm, reference=a.reference)
             for arm, s in a.comparisons.items()], ignore_index=True)
        frames["comparison_tests.csv"] = pd.concat(
            [s.tests.assign(treatment=arm, reference=a.reference) for arm, s in a.comparisons.items()],
            ignore_index=True)
        if a.interaction is not None:
            frames["interaction.csv"] = a.interaction
        for name, frame in frames.items():
            table = _meta_cols(frame, meta)
            files.append(atomic_write(out / name, lambda tmp: table.to_csv(tmp, index=False)))
        files.append(write_trials_jsonl(getattr(report, "records", []), out, meta))
    if csv:
        files += write_budget_csvs(a, out, meta)
    if plots:
        with PlotRun([*budget_plot_jobs(a, out), functools.partial(_plot_tuning, a, out)]) as run:
            files += [p for paths in run.finish() for p in paths]
    if csv and plots:
        text = markdown_arms(a, meta, files)
        files.append(atomic_write(out / "report.md", lambda tmp: tmp.write_text(text)))
    return files


# ----------------------------------------------------------------------------- markdown

def _md(headers, rows) -> str:
    from .report import _md_table

    return _md_table(headers, rows)


def budget_markdown(a: ArmsAnalysis) -> str:
    parts = ["## Faster, or more robust? (epoch budgets)", "",
             "Every metric re-read at each training budget from the stored per-epoch validation curves "
             "(a run's score at epoch e equals that of an e-epoch run: no LR schedule, same batches). "
             "Good = within the tolerance of the best score of all arms *at that budget*.", "",
             _md(*_budget_rows(a)), "", "Advantage of each pair (the primary analysis at each budget: Δ good at the "
             "declared δ with its simultaneous interval; median Δ = Hodges-Lehmann shift of the paired scores with "
             "its Wilcoxon interval), points, 95% CIs:", "", _md(*_pair_rows(a)), ""]
    parts += [f"> {s}" for s in a.budget_verdicts.values()]
    parts += ["", "![advantage vs training budget](budget.png)", "",
              "![tuning curves against compute](compute.png)", ""]
    return "\n".join(parts)


def append_markdown(path: Path, a: ArmsAnalysis) -> None:
    """Add the budget section to report.py's two-arm report.md."""
    from .files import atomic_write

    path = Path(path)
    text = path.read_text().rstrip("\n") + "\n\n" + budget_markdown(a)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def markdown_arms(a: ArmsAnalysis, meta: Mapping, files: Sequence = ()) -> str:
    exp = meta.get("experiment", "")
    parts = [f"# bnsearch report: {exp}", "",
             f"{len(a.arms)} arms, reference **{a.reference}**, {a.epochs} epochs; config {meta.get('config_hash')}, "
             f"seed {meta.get('seed')}, bnsearch {meta.get('bnsearch_version')}, torch {meta.get('torch_version')}, "
             f"optuna {meta.get('optuna_version')}, storage {meta.get('storage')}"
             + (f", {meta.get('repeats')} repeats (comparisons aggregated; budgets and interaction from the first)"
                if (meta.get("repeats") or 1) > 1 else "") + ".", ""]
    parts += ["## Verdict", ""]
    if a.interaction is not None:
        parts += [f"> {a.interaction_verdict}", ">"]
    parts += [f"> {s}" for s in a.budget_verdicts.values()] + [""]
    parts += ["## Arms", "", _md(*_arm_rows(a)), "", "## Every arm against the reference", ""]
    for arm, s in a.comparisons.items():
        parts += [f"- **{arm} vs {a.reference}**: {s.verdict or ''}", f"  ({comparison_line(arm, a.reference, s)})"]
    parts += ["", budget_markdown(a)]
    if a.interaction is not None:
        parts += ["## Inputs × normalisation interaction", "", _cells_line(a) + ".", "",
                  _md(*_interaction_rows(a)), "", f"> {a.interaction_verdict}", ""]
    parts += ["![tuning curves](tuning_curves.png)", ""]
    if a.notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in a.notes] + [""]
    if files:
        parts += ["## Files", "", ", ".join(f"`{Path(f).name}`" for f in files), ""]
    return "\n".join(parts)


def arms_json(a: ArmsAnalysis) -> dict:
    """Plain JSON-able dict of the N-arm layer (for `summary --json`)."""
    import json

    import numpy as np

    def records(t):
        return json.loads(t.replace([np.inf, -np.inf], np.nan).to_json(orient="records")) if t is not None else None

    return {"arms": a.arms, "reference": a.reference, "descriptions": a.descriptions,
            "comparisons": {arm: {"verdict": s.verdict, "numbers": comparison_line(arm, a.reference, s)}
                            for arm, s in a.comparisons.items()},
            "budget_verdicts": [{"arm": arm, "versus": ref, "verdict": v} for (arm, ref), v in a.budget_verdicts.items()],
            "interaction_verdict": a.interaction_verdict,
            "arm_table": records(a.arm_table()), "budget": records(a.budget), "interaction": records(a.interaction)}
