"""Every PNG of a report, for any number of arms: each arm keeps one colour (format.arm_colors) in
every plot, and a plot of differences draws one line per comparison (the pair draws one).

Each builder returns a figure, or None when it has nothing to draw. `PlotRun` draws them on two cores.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..offload import Forked
from ..analysis import DELTA, arm_label
from ..analysis.heterogeneity import wide as heterogeneity_wide
from ..analysis.multiarm import ArmsAnalysis
from .format import arm_colors, pyplot, save_figure
from .tables import Comparisons


def _threshold_lines(ax, view: Comparisons, vertical: bool) -> None:
    """The good threshold s* − δ of every comparison (one for the pair)."""
    seen = set()
    for arm, s in view.by_arm.items():
        x = s.s_star - s.tolerance
        if not np.isfinite(x) or round(x, 12) in seen:
            continue
        seen.add(round(x, 12))
        label = "good threshold s* − δ" + (f" ({view.label(arm)})" if view.label(arm) else "")
        (ax.axvline if vertical else ax.axhline)(x, color="grey", ls="--", lw=1, label=label)


def _tuning_curves(plt, view: Comparisons, complete: pd.DataFrame, colors: dict):
    curves = pd.concat([view.rows("curves", a) for a in view.arms], ignore_index=True)
    if curves.empty:
        return None
    deltas = {arm: s.curves[(s.curves["arm"] == DELTA) & (s.curves["estimator"] == "V")].sort_values("n")
              for arm, s in view.by_arm.items() if not s.curves.empty}
    deltas = {a: d for a, d in deltas.items() if not d.empty}
    estimators = list(dict.fromkeys(curves["estimator"]))
    panels = len(estimators) + bool(deltas)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.8), squeeze=False)
    for ax, est in zip(axes[0], estimators):
        for arm in view.arms:
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
    if deltas:
        ax = axes[0][-1]
        for arm, d in deltas.items():
            color = colors[arm] if len(deltas) > 1 else "tab:green"
            ax.plot(d["n"], d["value"], marker="o", ms=3, color=color,
                    label=f"{arm_label(arm)} − {arm_label(view.reference)}")
            if d["lo"].notna().any():
                ax.fill_between(d["n"], d["lo"].astype(float), d["hi"].astype(float), color=color, alpha=0.2)
        ax.axhline(0, color="grey", lw=1)
        ax.set_xscale("log", base=2)
        what = (f"{arm_label(next(iter(deltas)))} − {arm_label(view.reference)}" if len(deltas) == 1
                else f"each arm − {arm_label(view.reference)}")
        ax.set_title(f"Δ expected best of n ({what})\nshaded: 95% simultaneous band (the arms' 97.5% bands)",
                     fontsize=9)
        ax.set_xlabel("trials n")
        ax.grid(alpha=0.3)
        if len(deltas) > 1:
            ax.legend(fontsize=8)
    return fig


def _score_vs_lr(plt, view: Comparisons, complete: pd.DataFrame, colors: dict):
    if "lr" not in complete.columns or not len(complete):
        return None
    fig, axes = plt.subplots(1, len(view.arms), figsize=(5 * len(view.arms), 3.8), sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], view.arms):
        t = complete[complete["arm"] == arm]
        ax.set_title(arm_label(arm))
        if t.empty:  # a log axis with no data cannot be drawn
            ax.text(0.5, 0.5, "no completed trials", transform=ax.transAxes, ha="center", color="grey")
            continue
        div = t["diverged"].fillna(False).astype(bool) if "diverged" in t else pd.Series(False, index=t.index)
        ax.scatter(t.loc[~div, "lr"].astype(float), t.loc[~div, "score"].astype(float), s=14,
                   color=colors[arm], label="trained")
        # Always in the legend, "diverged (0)" included: a panel without it read as "not counted".
        ax.scatter(t.loc[div, "lr"].astype(float), t.loc[div, "score"].astype(float), s=18, marker="x",
                   color="tab:red", label=f"diverged ({int(div.sum())})")
        s = view.own(arm)
        if np.isfinite(s.s_star - s.tolerance):
            ax.axhline(s.s_star - s.tolerance, color="grey", ls="--", lw=1, label="good threshold s* − δ")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("validation score")
    return fig


def _score_edf(plt, view: Comparisons, complete: pd.DataFrame, colors: dict):
    if not len(complete):
        return None
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for arm in view.arms:
        s = np.sort(complete.loc[complete["arm"] == arm, "score"].astype(float).to_numpy())
        if s.size:
            ax.step(s, np.arange(1, s.size + 1) / s.size, where="post", color=colors[arm], label=arm_label(arm))
    _threshold_lines(ax, view, vertical=True)
    ax.set_xlabel("validation score")
    ax.set_ylabel("share of trials ≤ score")
    ax.set_title("empirical distribution function of the validation scores", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _importance(plt, view: Comparisons, complete: pd.DataFrame, colors: dict):
    imp = pd.concat([view.rows("importance", a) for a in view.arms], ignore_index=True)
    if imp.empty or not imp["value"].notna().any():
        return None
    params = list(dict.fromkeys(imp["param"]))
    y = np.arange(len(params))
    k_arms = len(view.arms)
    height = 0.8 / k_arms
    fig, ax = plt.subplots(figsize=(6, (0.25 * k_arms + 0.1) * len(params) + 1.5))
    for k, arm in enumerate(view.arms):
        vals = imp[imp["arm"] == arm].set_index("param")["value"].reindex(params).astype(float).fillna(0)
        ax.barh(y + (k - (k_arms - 1) / 2) * height, vals, height=height, color=colors[arm], label=arm_label(arm))
    ax.set_yticks(y, params)
    ax.invert_yaxis()
    ax.set_xlabel("importance (normalised)")
    ax.set_title("PED-ANOVA importance (share of score variation), per arm", fontsize=9)
    ax.legend()
    return fig


def _tolerance_profile(plt, view: Comparisons, complete: pd.DataFrame, colors: dict):
    prof = pd.concat([view.rows("profile", a) for a in view.arms], ignore_index=True)
    if prof.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for arm in view.arms:
        c = prof[prof["arm"] == arm].sort_values("delta")
        ax.plot(c["delta"], c["value"], marker="o", ms=3, color=colors[arm], label=arm_label(arm))
        ax.fill_between(c["delta"], c["lo"].astype(float), c["hi"].astype(float), color=colors[arm], alpha=0.15)
    for tol in dict.fromkeys(round(s.tolerance, 12) for s in view.by_arm.values()):
        ax.axvline(tol, color="grey", ls="--", lw=1, label=f"δ used = {tol:.3g}")
    ax.set_xlabel("tolerance δ (good = within δ of s*)")
    ax.set_ylabel("good fraction")
    ax.set_title("good fraction at every quality level; Δ: simultaneous 95% intervals of the test", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _heterogeneity(plt, view: Comparisons, complete: pd.DataFrame, colors: dict):
    blocks = []
    for arm, s in view.by_arm.items():
        het = heterogeneity_wide(s.heterogeneity)
        het = het[het["win_rate"].notna()] if not het.empty else het
        if not het.empty:
            blocks.append((arm, het))
    if not blocks:
        return None
    levels = max(int((het["factor"] == f).sum()) for _, het in blocks for f in set(het["factor"]))
    heights = [0.6 * len(set(het["factor"])) + 1.0 for _, het in blocks]
    fig, axes = plt.subplots(len(blocks), 1, figsize=(1.3 * levels + 2.5, sum(heights) + 0.6), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (arm, het) in zip(axes[:, 0], blocks):
        factors = list(dict.fromkeys(het["factor"]))
        grid = np.full((len(factors), levels), np.nan)
        labels = [[""] * levels for _ in factors]
        for i, f in enumerate(factors):
            for j, (_, r) in enumerate(het[het["factor"] == f].iterrows()):
                grid[i, j] = r["win_rate"]
                labels[i][j] = f"{r['level']}\n{100 * r['win_rate']:.0f}%" + ("*" if r["p_holm"] < 0.05 else "")
        im = ax.imshow(grid, cmap="RdBu", vmin=0, vmax=1, aspect="auto")
        for i in range(len(factors)):
            for j in range(levels):
                if labels[i][j]:
                    # RdBu is dark at both ends: white text there, black in the pale middle
                    dark = np.isfinite(grid[i, j]) and abs(grid[i, j] - 0.5) > 0.3
                    ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=7,
                            color="white" if dark else "black")
        ax.set_yticks(range(len(factors)), factors)
        ax.set_xticks([])
        fig.colorbar(im, ax=ax, label=f"share of pairs where {arm_label(arm)} scores higher")
        ax.set_title(("paired win rate by hyperparameter level (* Holm-adjusted sign test p < 0.05)"
                      + (f"\n{view.label(arm)}" if view.label(arm) else "")), fontsize=9)
    return fig


# (builder, file, title); each builder returns None when it has nothing to draw
PLOTS = ((_tuning_curves, "tuning_curves.png", "how good a search of n random trials gets"),
         (_score_vs_lr, "score_vs_lr.png", "validation score of every trial against its learning rate"),
         (_score_edf, "score_edf.png", "distribution of scores"),
         (_importance, "importance.png", "which hyperparameters matter"),
         (_tolerance_profile, "tolerance_profile.png", "tolerance profile"),
         (_heterogeneity, "heterogeneity.png", "where the arms differ"))


def comparison_plot_jobs(df: pd.DataFrame, view: Comparisons, out_dir, experiment: str) -> list[Callable[[], list[Path]]]:
    """One job per PNG of PLOTS: tuning_curves.png, score_vs_lr.png (if lr was searched),
    score_edf.png, importance.png (if any importance is defined), tolerance_profile.png,
    heterogeneity.png. Each draws, saves and returns its file ([] when it has nothing to draw)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    colors = arm_colors(view.arms)
    complete = df[(df["state"].astype(str) == "COMPLETE") & pd.to_numeric(df["score"], errors="coerce").notna()] \
        if len(df) else df

    def job(build, name, title) -> list[Path]:
        fig = build(pyplot(), view, complete, colors)
        return [] if fig is None else [save_figure(fig, out / name, f"{experiment or 'experiment'}: {title}")]

    return [functools.partial(job, *plot) for plot in PLOTS]


# ----------------------------------------------------------------------------- epoch budgets

def budget_plot_jobs(a: ArmsAnalysis, out_dir) -> list[Callable[[], list[Path]]]:
    """budget.png and compute.png."""
    return [functools.partial(_plot_budget, a, Path(out_dir)), functools.partial(_plot_compute, a, Path(out_dir))]


def _plot_budget(a: ArmsAnalysis, out: Path) -> list[Path]:
    plt = pyplot()
    colors = arm_colors(a.arms)
    b = a.budget
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for arm in a.arms:
        g = b[(b["arm"] == arm) & (b["metric"] == "good_fraction")].sort_values("epochs")
        ax1.plot(g["epochs"], g["value"], marker="o", color=colors[arm], label=arm_label(arm))
        ax1.fill_between(g["epochs"], g["lo"].astype(float), g["hi"].astype(float), color=colors[arm], alpha=0.15)
    for arm, ref in a.pairs:
        # The arm's colour; a pair against another arm than the reference is dashed.
        d = b[(b["arm"] == arm) & (b["versus"] == ref) & (b["metric"] == "good_delta")].sort_values("epochs")
        ls = "-" if ref == a.reference else "--"
        ax2.plot(d["epochs"], d["value"], marker="o", ls=ls, color=colors[arm],
                 label=f"{arm_label(arm)} − {arm_label(ref)}")
        ax2.fill_between(d["epochs"], d["lo"].astype(float), d["hi"].astype(float), color=colors[arm], alpha=0.1)
    ax2.axhline(0, color="grey", lw=1)
    for ax, title, metric in ((ax1, "share of good configurations (vs best of all arms)", "good_fraction"),
                              (ax2, "advantage in the good share (95% CI)", "good_delta")):
        _log_x(ax, b.loc[b["metric"] == metric, "value"])
        ax.set_xlabel("training budget (epochs)")
        ax.set_title(title)
        ax.legend(fontsize=8)
    return [save_figure(fig, out / "budget.png", "advantage vs training budget")]


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
        ax.plot(full["seconds"], full["value"], marker="o", ms=3, color=colors[arm],
                label=f"{arm_label(arm)}, {a.epochs} ep")
        ax.fill_between(full["seconds"], full["lo"].astype(float), full["hi"].astype(float), color=colors[arm],
                        alpha=0.15)
        if short is not None:
            s = c[(c["arm"] == arm) & (c["epochs"] == short)]
            ax.plot(s["seconds"], s["value"], ls="--", color=colors[arm], label=f"{arm_label(arm)}, {short} ep")
    _log_x(ax, c["value"].where(c["seconds"] > 0))
    ax.set_xlabel("cumulative training seconds (n trials × mean seconds per trial)")
    ax.set_ylabel("expected best validation score")
    ax.set_title("tuning curves against compute")
    ax.legend(fontsize=7)
    return [save_figure(fig, out / "compute.png")]


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


# ----------------------------------------------------------------------------- drawing on two cores

class PlotRun:
    """Plot jobs on two cores: drawing the PNGs was the longest part of a report (~1.4-1.8 s of a
    2-core run's last ~3.5 s, with the other core idle). Made at once, a forked child (offload.Forked)
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
