"""The adaptive samplers' outcome (analysis/survival.py), one `AdaptiveResult` per comparison:
km.csv, best_so_far.csv, trials_to_target.csv, km.png, best_so_far.png, the report.md section and
the terminal rows. Every number comes from the results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ..analysis import arm_label
from ..analysis.survival import AdaptiveResult, bound, settings_text, signed
from .format import arm_colors, md_table, pyplot, save_figure, with_meta

PNGS = ("km.png", "best_so_far.png")


def _trials(x: float) -> str:
    if isinstance(x, float) and math.isinf(x):
        return "> budget"
    return "n/a" if not np.isfinite(x) else f"{x:.0f}"


def _p_cell(p: float) -> str:
    return "n/a" if not np.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3g}")


def _p_text(p: float) -> str:
    return "p n/a" if not np.isfinite(p) else ("p < 0.001" if p < 0.001 else f"p = {p:.3g}")


def _median_cell(s, budget: int) -> str:
    def end(x):
        return f">{budget}" if isinstance(x, float) and math.isinf(x) else _trials(x)

    return f"{end(s.median)} [{end(s.median_lo)}, {end(s.median_hi)}]"


def compact_rows(res: AdaptiveResult) -> list[list[str]]:
    """Rows for the terminal's key-numbers table (arm, arm, Δ). The Δ of the mean-trials row and the
    p below it come from the one paired sign-flip test (its interval excludes 0 iff p < 0.05)."""
    t, r = res.arms
    st, sr = res.per_arm[t], res.per_arm[r]
    d, lo, hi = res.paired_diff
    g, glo, ghi = res.gap
    cls = res.task == "classification"
    fmt = (lambda x: signed(100 * x)) if cls else (lambda x: signed(x, 3))
    pairs = res.pairs if res.pairs is not None and len(res.pairs) else None
    mean_t = f"{pairs['treatment'].mean():.1f}" if pairs is not None else f"{st.rmst:.1f}"
    mean_r = f"{pairs['reference'].mean():.1f}" if pairs is not None else f"{sr.rmst:.1f}"
    rows = [
        ["reached the target", f"{st.reached}/{st.repeats}", f"{sr.reached}/{sr.repeats}", ""],
        ["median trials to target", _median_cell(st, res.budget), _median_cell(sr, res.budget), "descriptive (KM)"],
        [f"mean trials (≤ {res.budget}), paired", mean_t, mean_r,
         f"{signed(d)} [{bound(lo)},{bound(hi)}]" if np.isfinite(lo) else signed(d)],
        ["sign-flip p (paired)", "", "", _p_cell(res.paired_p)],
        [f"best after {res.budget}", f"{res.best_at_budget[t][0]:.4f}", f"{res.best_at_budget[r][0]:.4f}",
         f"{fmt(g)} [{fmt(glo)},{fmt(ghi)}]" if np.isfinite(glo) else fmt(g)],
    ]
    if res.speedup is not None and len(res.speedup) == 2:
        sp = res.speedup.set_index("arm")
        rows.append([f"{res.sampler.upper()} speed-up vs random"] +
                    [f"{sp.loc[a, 'speedup']:.1f}x" if np.isfinite(sp.loc[a, "speedup"]) else
                     f"> {sp.loc[a, 'random_lo'] / sp.loc[a, 'adaptive_median']:.1f}x"
                     if sp.loc[a, "random_k"] == 0 and np.isfinite(sp.loc[a, "adaptive_median"]) else "n/a"
                     for a in (t, r)]
                    + [""])
    return rows


def write_csvs(results: Mapping[str, AdaptiveResult], out_dir, meta: Mapping) -> list[Path]:
    """km.csv, best_so_far.csv, trials_to_target.csv: every comparison's rows, named by its arms."""
    from ..files import atomic_write
    from .export import csv_safe, recorded_meta

    out = Path(out_dir)
    meta = recorded_meta(meta)
    frames: dict[str, list[pd.DataFrame]] = {"km.csv": [], "best_so_far.csv": [], "trials_to_target.csv": []}
    for res in results.values():
        pair = {"treatment": res.arms[0], "reference": res.arms[1], "target": res.target}
        frames["km.csv"].append(res.km_table().assign(**pair))
        frames["best_so_far.csv"].append(res.curves.assign(**pair))
        frames["trials_to_target.csv"].append(
            pd.concat([res.summary_rows(), res.times.assign(budget=res.budget)], ignore_index=True).assign(**pair))
    first = next(iter(results.values()))
    extra = {"sampler_settings": settings_text(first.sampler_settings)} if first.sampler_settings else {}
    paths = []
    for name, parts in frames.items():
        table = csv_safe(with_meta(pd.concat(parts, ignore_index=True), {**meta, **extra}))
        paths.append(atomic_write(out / name, lambda tmp, table=table: table.to_csv(tmp, index=False)))
    return paths


def _plot_km(ax, res: AdaptiveResult, title: str, colors: dict) -> None:
    for a in res.arms:
        km = res.per_arm[a].km
        s = res.per_arm[a]
        ax.step(km["n"], km["reached"], where="post", color=colors[a],
                label=f"{arm_label(a)}: median {_trials(s.median)} ({s.reached}/{s.repeats} reached)")
        ax.fill_between(km["n"], km["lo"], km["hi"], step="post", color=colors[a], alpha=0.15)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, res.budget)
    ax.set_xlabel("trial n")
    ax.set_ylabel("share of repeats that reached the target")
    d, lo, hi = res.paired_diff
    ax.set_title(f"{title}\nKaplan–Meier, shaded: pointwise 95% band; target {res.target:.4g}\n"
                 f"paired mean Δ trials {signed(d)} [{bound(lo)}, {bound(hi)}], sign-flip {_p_text(res.paired_p)}",
                 fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)


def _plot_best_so_far(ax, res: AdaptiveResult, title: str, colors: dict) -> None:
    for a in res.arms:
        c = res.curves[res.curves["arm"] == a]
        ax.plot(c["n"], c["mean"], color=colors[a], label=f"{arm_label(a)} (mean of {int(c['repeats'].max())} repeats)")
        ax.fill_between(c["n"], c["lo"], c["hi"], color=colors[a], alpha=0.2)
        ax.plot(c["n"], c["sim_lo"], color=colors[a], ls=":", lw=1)
        ax.plot(c["n"], c["sim_hi"], color=colors[a], ls=":", lw=1)
    ax.axhline(res.target, color="grey", lw=1, ls="--", label="target")
    # The first few trials span most of the score range; from ~a tenth of the budget on, the
    # differences that matter are a point or two, so the axis starts there.
    late = res.curves[res.curves["n"] >= max(3, res.budget // 10)]
    lows = late[["lo", "sim_lo", "mean"]].to_numpy(float)
    highs = late[["hi", "sim_hi", "mean"]].to_numpy(float)
    if np.isfinite(lows).any() and np.isfinite(highs).any():
        lo, hi = np.nanmin(lows), max(np.nanmax(highs), res.target)
        pad = 0.1 * (hi - lo) or 0.01
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("trial n")
    ax.set_ylabel("best validation score so far")
    ax.set_title(f"{title}\nshaded: pointwise 95% t band; dotted: simultaneous 95% (bootstrap sup-t)\n"
                 "y axis fitted from a tenth of the budget on", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)


def write_plots(results: Mapping[str, AdaptiveResult], out_dir, experiment: str, arms) -> list[Path]:
    """km.png and best_so_far.png, one panel per comparison."""
    plt = pyplot()
    colors = arm_colors(arms)
    out = Path(out_dir)
    paths = []
    for draw, name, what in ((_plot_km, "km.png", "trials to target"),
                             (_plot_best_so_far, "best_so_far.png", "best so far across repeats")):
        fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
        for ax, res in zip(axes[0], results.values()):
            draw(ax, res, f"{experiment}: {res.sampler.upper()}, {what}", colors)
        paths.append(save_figure(fig, out / name))
    return paths


def markdown_section(res: AdaptiveResult, label: str = "") -> str:
    """The report.md section of one comparison: the outcome's table and how it was defined."""
    t, r = res.arms
    lines = [f"## Trials to target ({res.sampler.upper()}, {res.repeats} repeats per arm)"
             + (f": {label}" if label else ""), "",
             md_table(["", arm_label(t), arm_label(r), "Δ [95% CI]"], compact_rows(res))]
    lines += ["",
              f"- target: validation score ≥ {res.target:.4g}, the {100 * res.quantile:.0f}th percentile of all "
              f"{res.n_pooled} completed trials of both arms and every repeat (no single arm's maximum)",
              f"- per repeat: the first trial whose best-so-far reaches it; a repeat that never does is censored at "
              f"its last completed trial (budget {res.budget})",
              "- primary, paired by repeat (repeat r of both arms shares its seed and data split): per repeat, "
              "the difference of the restricted trials to target min(T, τ), τ the budget (or the shorter of the "
              f"two repeats), over {res.n_pairs} repeats; "
              + ("exact sign-flip test (all sign patterns)" if res.paired_exact else
                 "sign-flip test (Monte Carlo, seeded)")
              + f" of the mean difference, {_p_text(res.paired_p)}; the 95% CI is every shift that test "
              "accepts, so it excludes 0 exactly when p < 0.05",
              "- descriptive: median with 95% CI, Kaplan–Meier (lifelines; pointwise exponential Greenwood band); "
              f"the unpaired log-rank {_p_text(res.logrank_p)} (ignores the pairing, not used for the verdict); "
              "best score after the budget: paired t-interval across repeats",
              "- good fractions and their tests elsewhere in this report are descriptive only: adaptive draws are "
              "not independent"]
    if res.speedup is not None:
        lines.append(f"- speed-up vs random: median trials to the same target of a random search of the same space "
                     f"({res.speedup_source or 'stored experiment'}; geometric median at its share of trials at the "
                     f"target) / the {res.sampler.upper()} median; interval: the bounds divided (conservative)")
    if res.sampler_settings:
        lines.append(f"- sampler: {settings_text(res.sampler_settings)}")
    lines.append("")
    return "\n".join(lines)
