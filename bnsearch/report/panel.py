"""A panel's files and terminal lines (docs/design.md, Panel): panel.csv, pooled.csv, moderators.csv,
the extras' CSVs, forest.png, subspaces.png and report.md, from a PanelResult (analysis.panel). Nothing
here computes a statistic."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..analysis.panel import _ci, _num, dataset_claim, declared_text, effect_owner, no_negative_zero, pts

if TYPE_CHECKING:
    import pandas as pd

    from ..analysis.panel import PanelResult
    from ..panel import Panel


def _meta(panel: "Panel") -> dict:
    from .. import __version__
    from .export import portable

    return {"panel": panel.name, "config": portable(panel.source), "bnsearch_version": __version__}


PANEL_COLUMNS = [
    "dataset", "slug", "experiment", "inputs", "paired", "n", "n_off",
    # the pooled scale: top quarter of the data set's pooled scores
    "top_threshold", "top_on", "top_off", "top_b", "top_c", "top_k_on", "top_k_off", "effect", "effect_lo",
    "effect_hi", "variance", "se", "weight",
    # the data set's own verdict and the interval that justifies it
    "outcome", "reason", "p_value", "focus_kind", "focus_delta", "focus_threshold", "focus_diff", "focus_lo",
    "focus_hi", "focus_z", "focus_p_adj", "margin",
    # at the declared δ
    "tolerance", "good_on", "good_off", "b", "c", "diff", "lo", "hi",
    # how far the best model is from the constant predictor
    "s_star", "baseline", "fail_cutoff", "headroom", "near_constant",
    "rows", "features", "classes", "majority", "scale_spread", "raw_inputs"]


def write_panel(res: "PanelResult", out_dir: Path, panel: "Panel") -> list[Path]:
    """panel.csv, pooled.csv, moderators.csv, the extras' CSVs (extra_tables), forest.png, subspaces.png
    (paired panels) and report.md, each written whole or not at all."""
    from ..files import atomic_write
    from .export import csv_safe

    out_dir = Path(out_dir)
    meta = _meta(panel)
    files = []
    tables = {"panel.csv": res.datasets[[c for c in PANEL_COLUMNS if c in res.datasets]],
              "pooled.csv": res.pooled_table(), "moderators.csv": res.moderators}
    tables.update(extra_tables(res))
    for fname, table in tables.items():
        table = csv_safe(table.assign(**meta))
        files.append(atomic_write(out_dir / fname, lambda tmp, t=table: t.to_csv(tmp, index=False)))
    files.append(atomic_write(out_dir / "forest.png", lambda tmp: forest_plot(res, tmp)))
    if res.extras is not None and res.extras.subspaces is not None:
        files.append(atomic_write(out_dir / "subspaces.png", lambda tmp: subspace_plot(res, tmp)))
    text = markdown(res, panel)
    files.append(atomic_write(out_dir / "report.md", lambda tmp: tmp.write_text(text, encoding="utf-8")))
    return files


def _arms_text(settings) -> str:
    """Which two of more than two arms the headline compares."""
    from ..panel import compared_arms

    if len(settings.arm_names()) <= 2:
        return ""
    t, r = compared_arms(settings)
    return f"; arms {', '.join(settings.arm_names())}, the headline compares {t} with {r}"


def _mark(r) -> str:
    return " †" if getattr(r, "near_constant", None) is True else ""


def forest_labels(res: "PanelResult") -> list[str]:
    """The forest plot's row labels: the data set, and its own verdict with the interval that
    justifies it (never a direction beside an interval that includes 0)."""
    return [f"{r.slug} (n={r.n}){_mark(r)}\n{dataset_claim(r, short=True)}" for r in res.datasets.itertuples()]


def forest_plot(res: "PanelResult", path: Path) -> None:
    """One row per data set on the pooled scale (its 95% score interval; the marker's area follows its
    pooling weight), labelled with the data set's own verdict and justifying interval; then the
    pooled diamond (HKSJ 95% CI) and the prediction interval for a new data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    df = res.datasets
    k = len(df)
    fig, ax = plt.subplots(figsize=(10, 1.4 + 0.55 * (k + 3)))
    ys = np.arange(k)[::-1] + 3
    w = df["weight"].fillna(0).to_numpy(float)
    sizes = 20 + 180 * (w / w.max() if w.max() > 0 else w)
    for y, r, s in zip(ys, df.itertuples(), sizes):
        lo, hi, e = _num(r.effect_lo), _num(r.effect_hi), _num(r.effect)
        # Coloured by this interval, not by the verdict: the bar drawn is the pooled scale's.
        c = "tab:green" if lo > 0 else "tab:red" if hi < 0 else "0.35"
        if math.isfinite(lo) and math.isfinite(hi):
            ax.plot([100 * lo, 100 * hi], [y, y], color=c, lw=1.5)
        if math.isfinite(e):
            ax.scatter([100 * e], [y], s=s, marker="s", color=c, zorder=3)
    yt, yl = list(ys), forest_labels(res)
    if res.pm is not None:
        m = res.pm
        ax.fill([100 * m.hk_low, 100 * m.pooled, 100 * m.hk_high, 100 * m.pooled],
                [1.5, 1.8, 1.5, 1.2], color="black", zorder=3)
        yt.append(1.5)
        yl.append(f"pooled, Paule–Mandel: {pts(m.pooled)} pts\n({_ci(m.hk_low, m.hk_high)}, Hartung–Knapp)")
        if math.isfinite(m.pi_low):
            ax.plot([100 * m.pi_low, 100 * m.pi_high], [0.6, 0.6], color="black", lw=3, alpha=0.4)
            yt.append(0.6)
            yl.append(f"prediction interval ({pts(m.pi_low)} to {pts(m.pi_high)})")
        ax.axvline(100 * m.pooled, color="black", ls=":", lw=0.8)
    ax.axvline(0, color="0.5", lw=0.8)
    # A share difference lies within ±100 pts; with few data sets the t quantiles carry the pooled and
    # prediction intervals far beyond that, and the axis would squeeze every data set's row.
    lo, hi = ax.get_xlim()
    ax.set_xlim(max(lo, -105.0), min(hi, 105.0))
    ax.set_yticks(yt)
    ax.set_yticklabels(yl, fontsize=7)
    ax.set_ylim(0, k + 3.5)
    ax.set_xlabel(f"Δ share of configurations in the top quarter of the data set's scores, {res.what} − reference "
                  "(points)", fontsize=8)
    i2 = f", I² = {100 * res.pm.i2:.0f}% (from the Paule–Mandel τ²)" if res.pm is not None else ""
    fig.suptitle(f"{res.name}: {res.what} across {k} data sets{i2}", fontsize=10)
    ax.set_title("bars: 95% score interval on the pooled scale, square area ∝ weight; labels: each data set's own "
                 "verdict at its strongest level\n(simultaneous 95% CI); † best model less than δ above the "
                 "failed-to-train cutoff", fontsize=7, color="0.4")
    fig.tight_layout()
    # "tight": the two-line labels of long verdicts must not be cut at the figure's left edge
    fig.savefig(path, dpi=120, format="png", bbox_inches="tight")
    plt.close(fig)


def markdown(res: "PanelResult", panel: "Panel") -> str:
    import pandas as pd
    import re

    def f(x, spec=".1f", scale=100.0):
        x = _num(x)
        return "–" if not math.isfinite(x) else format(scale * x, spec)

    # Names and paths come from the user (config file names, panel and data set names) and a report.md
    # is rendered as HTML by most viewers: a name must never become markup there.
    def one_line(x) -> str:
        return re.sub(r"[\r\n\t\v\f\x00-\x08\x0e-\x1f\x7f]+", " ", str(x))

    def prose(x) -> str:
        # Generated sentences quote names: neutralise what could open HTML ("p < 0.001" stays as is).
        text = re.sub(r"&(?=#?\w+;)", "&amp;", one_line(x))
        return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)

    def name(x) -> str:
        text = one_line(x).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        text = re.sub(r"([\\`*\[\]|~])", r"\\\1", text)
        return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)  # breast_cancer stays as typed

    def cell(x) -> str:
        return prose(x).replace("|", "\\|")

    def code(x) -> str:
        # A code span shows its text literally; the fence must be longer than any run of backticks in it.
        text = one_line(x)
        fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
        return f"{fence} {text} {fence}" if "`" in text else f"{fence}{text}{fence}"

    s = panel.entries[0].settings
    what = res.what
    lines = [f"# Panel {name(res.name)}: {prose(what)} across data sets", "", prose(res.verdict), "",
             f"Config {code(_meta(panel)['config'])}: {len(panel.entries)} data sets, {s.trials} paired configurations "
             f"per arm, {s.epochs} epochs, sampler {s.sampler}, seed {s.seed}{_arms_text(s)}.", "",
             "![forest plot](forest.png)", "", "## Per data set", "",
             "| data set | inputs | n | own verdict, at its strongest level (simultaneous 95% CI) | at the declared δ "
             "(simultaneous 95% CI) | top quarter with / without | Δ top quarter, pts (95% CI) | weight | "
             "best − constant |",
             "|---|---|---:|---|---|---:|---|---:|---|"]
    for r in res.datasets.itertuples():
        head = f"{f(r.headroom, '.1f')} pts (δ = {f(r.tolerance, '.1f')}){_mark(r)}"
        lines.append(f"| {name(r.dataset)} | {name(getattr(r, 'inputs', ''))} | {r.n} | {cell(dataset_claim(r))} | "
                     f"{cell(declared_text(r))} | "
                     f"{f(getattr(r, 'top_on', math.nan), '.0f')}% / {f(getattr(r, 'top_off', math.nan), '.0f')}% | "
                     f"{pts(r.effect)} ({pts(r.effect_lo)} to {pts(r.effect_hi)}) | {f(r.weight, '.1f')}% | {head} |")
    m = f"{100 * res.rope:g}"
    lines += ["", f"Own verdict: the data set's primary analysis ({what} vs the reference over every quality level); "
              "a direction is quoted with the level where the arms differ most (largest |z|), named by its score "
              "threshold, and that level's simultaneous interval, which excludes 0. At the declared δ: the paired "
              "good-fraction difference at the data set's own δ, for reference only (each data set declares a "
              "different δ). Top quarter: the share of configurations scoring at least the 75th percentile of that "
              "data set's scores of both arms, the pooled scale; its 95% interval is Tango's score interval, and "
              "the pooling variance is that interval's half-width back-transformed, ((hi − lo)/(2 × 1.96))². "
              "† the best model (s*) is less than δ above the failed-to-train cutoff (the constant predictor's "
              "score plus 2 SE of its validation noise), so a configuration within δ of the best may be no better "
              "than trivial.",
              "", "## Pooled", "", "| method | quantity | value | interval |", "|---|---|---:|---|"]
    for r in res.pooled_table().itertuples():
        is_pts = r.quantity.startswith("pooled difference") or r.quantity.startswith("prediction interval")
        val = pts(r.value) + " pts" if is_pts else f(r.value, '.3g', 1.0)
        iv = f"{pts(r.lo)} to {pts(r.hi)}" if is_pts else ""
        lines.append(f"| {cell(r.method)} | {cell(r.quantity)} | {val} | {iv} |")
    lines += ["", "HKSJ: Hartung–Knapp–Sidik–Jonkman (t with k − 1 df, scale never below 1), the headline interval. "
              "I² = τ² / (τ² + s²) with Higgins & Thompson's typical within-data-set variance s², from the τ² on "
              f"the same line. The Bayesian signed-rank test uses ROPE ±{m} pts and averages over draws of every "
              "data set's difference from its posterior (Dirichlet, Jeffreys prior), so each data set's sampling "
              "uncertainty is carried.", "",
              *extra_sections(res, cell),
              "## Moderators (meta-regression, one trait at a time)", "",
              "| trait | slope (pts per unit) | 95% CI | p | supported |", "|---|---:|---|---:|---|"]
    for r in res.moderators.itertuples():
        if pd.isna(r.slope):
            lines.append(f"| {cell(r.label)} | – | {cell(r.note)} | – | no |")
        else:
            lines.append(f"| {cell(r.label)} | {pts(r.slope, 2)} | {pts(r.slope_ci_low, 2)} to "
                         f"{pts(r.slope_ci_high, 2)} | {f(r.slope_pvalue, '.2g', 1.0)} | "
                         f"{'yes' if r.supported else 'no'} |")
    lines += ["", "A trait is reported as a moderator only where its slope's 95% CI excludes 0.", ""]
    if res.notes:
        lines += ["## Notes", "", *[f"- {prose(n)}" for n in res.notes], ""]
    lines += ["## Each data set's verdict", ""]
    for r in res.datasets.itertuples():
        said = getattr(r, "verdict", "")
        lines += [f"**{name(r.slug)}** ({code(getattr(r, 'experiment', r.slug))}){_mark(r)}: "
                  f"{prose(no_negative_zero(said if isinstance(said, str) else ''))}", ""]
    lines += ["Each experiment's full report: `bnsearch export --experiment <experiment>` with the same storage.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- beyond the headline

INTERACTION_WORDS = {
    "standardize_gain": "standardized − raw inputs, no norm (C − A)",
    "norm_gain_raw": "norm − none, raw inputs (B − A)",
    "norm_gain_std": "norm − none, standardized inputs (D − C)",
    "interaction": "(D − C) − (B − A)",
}


def extra_tables(res: "PanelResult") -> dict[str, "pd.DataFrame"]:
    """panel_influence.csv and, for paired panels, panel_subspaces.csv (with the careful − careless
    rows), panel_budget.csv and panel_interaction.csv (arms holding the 2x2): each data set's rows of a
    group, then its pooled row (analysis.panel.long_table)."""
    import pandas as pd

    from ..analysis.panel import difference_table, long_table

    out = {}
    if res.influence is not None:
        out["panel_influence.csv"] = res.influence
    x = res.extras
    if x is None or not x.paired:
        return out
    sub = long_table(x.subspace_rows, x.subspaces, "subspace")
    if x.difference is not None:
        sub = pd.concat([sub, difference_table(x.difference)], ignore_index=True)
    out["panel_subspaces.csv"] = sub
    out["panel_budget.csv"] = long_table(x.budget_rows, x.budgets, "epochs")
    if x.interaction is not None:
        out["panel_interaction.csv"] = long_table(x.interaction_rows, x.interaction, "quantity")
    return out


def _subspace_label(name: str) -> str:
    return name.split(" (")[0] if name.startswith(("careful", "careless")) else name


def _subspace_lines(res: "PanelResult") -> list[tuple[str, "pd.Series"]]:
    """(label, pooled row) for every sub-space, then the careful − careless difference."""
    from ..analysis.panel import CAREFUL_VS_CARELESS, difference_table

    x = res.extras
    rows = [(r["subspace"], r) for _, r in x.subspaces.iterrows()]
    if x.difference is not None:
        diff = difference_table(x.difference)
        rows.append((CAREFUL_VS_CARELESS, diff[diff["dataset"] == "pooled"].iloc[0]))
    return rows


def subspace_console(res: "PanelResult"):
    """The compact terminal table of the pooled sub-spaces (a rich Table), or None when none were pooled."""
    from rich import box
    from rich.table import Table

    x = res.extras
    if x is None or x.subspaces is None:
        return None
    title = f"{effect_owner(res)}'s effect by sub-space, pooled (Δ share of top-quarter configurations)"
    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    t.add_column("sub-space")
    t.add_column("data sets", justify="right")
    t.add_column("Δ pts", justify="right")
    t.add_column("95% CI (HKSJ)", justify="right")
    for label, r in _subspace_lines(res):
        t.add_row(_subspace_label(label), str(int(r["k"])), pts(r["pooled"]),
                  f"{pts(r['hk_low'])} to {pts(r['hk_high'])}" if math.isfinite(_num(r["hk_low"])) else "–")
    return t


def subspace_plot(res: "PanelResult", path: Path) -> None:
    """One row per sub-space, forest-like: the pooled effect on the panel's scale (square), its HKSJ 95%
    CI (bar) and the 95% prediction interval (the faint, thicker bar behind it); "all configurations"
    (the headline) on top, the careful − careless difference at the bottom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = _subspace_lines(res)
    k = len(lines)
    fig, ax = plt.subplots(figsize=(9, 1.4 + 0.45 * k))
    labels = []
    for i, (label, r) in enumerate(lines):
        y = k - i
        lo, hi, e = _num(r["hk_low"]), _num(r["hk_high"]), _num(r["pooled"])
        c = "tab:green" if lo > 0 else "tab:red" if hi < 0 else "0.35"
        if math.isfinite(_num(r["pi_low"])):
            ax.plot([100 * _num(r["pi_low"]), 100 * _num(r["pi_high"])], [y, y], color=c, lw=5, alpha=0.15)
        if math.isfinite(lo) and math.isfinite(hi):
            ax.plot([100 * lo, 100 * hi], [y, y], color=c, lw=1.5)
        if math.isfinite(e):
            ax.scatter([100 * e], [y], s=40, marker="D" if i == 0 or i == k - 1 and res.extras.difference
                       else "s", color=c, zorder=3)
        configs = _num(r.get("configs"))
        size = f", {int(configs)} configurations" if math.isfinite(configs) else ""
        labels.append(f"{_subspace_label(label)}\n{int(r['k'])} data sets{size}: {pts(e)} pts")
    ax.axvline(0, color="0.5", lw=0.8)
    lo, hi = ax.get_xlim()
    ax.set_xlim(max(lo, -105.0), min(hi, 105.0))  # a share difference lies within ±100 pts
    ax.set_yticks(range(k, 0, -1))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_ylim(0.3, k + 0.7)
    ax.set_xlabel(f"Δ share of configurations in the top quarter of the data set's scores, {res.what} − reference "
                  "(points)", fontsize=8)
    fig.suptitle(f"{res.name}: {effect_owner(res)}'s effect by sub-space, pooled over data sets", fontsize=10)
    ax.set_title("square: Paule–Mandel pooled effect; bar: its 95% CI (Hartung–Knapp); faint bar: 95% prediction "
                 "interval.\nEvery sub-space counts the top quarter by its whole data set's threshold", fontsize=7,
                 color="0.4")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png", bbox_inches="tight")
    plt.close(fig)


def _interval(lo, hi) -> str:
    return f"{pts(lo)} to {pts(hi)}" if math.isfinite(_num(lo)) else "–"


def extra_sections(res: "PanelResult", cell) -> list[str]:
    """report.md's sections beyond the headline; `cell` escapes text for a table cell."""
    from ..analysis import panelpool as pp
    from ..analysis.panel import interaction_sentence

    x, lines = res.extras, []
    if x is not None and not x.paired:
        lines += ["## Sub-spaces, epoch budgets and inputs × norm", "",
                  f"Not pooled for this panel: {cell(x.why_not)}. They need paired arms (a random or grid sampler "
                  "with `paired = true`).", ""]
    elif x is not None:
        lines += [f"## {cell(effect_owner(res))}'s effect by sub-space, pooled", "",
                  "![sub-spaces](subspaces.png)", "",
                  "| sub-space | data sets | configurations | Δ top quarter, pts | 95% CI (HKSJ) | 95% prediction "
                  "interval | τ² | I² | note |", "|---|---:|---:|---:|---|---|---:|---:|---|"]
        for label, r in _subspace_lines(res):
            configs = _num(r.get("configs"))
            lines.append(f"| {cell(label)} | {int(r['k'])} | {int(configs) if math.isfinite(configs) else '–'} | "
                         f"{pts(r['pooled'])} | {_interval(r['hk_low'], r['hk_high'])} | "
                         f"{_interval(r['pi_low'], r['pi_high'])} | {_fmt(r['tau2'], '.4f')} | "
                         f"{_pct(r['i2'])} | "
                         f"{cell(r['note'] or '')} |")
        careful = [n for n in x.subspaces["subspace"] if n.startswith(pp.CAREFUL)]
        said = [pp.subspace_sentence(x.subspaces, pp.CAREFUL, what=effect_owner(res))] if careful else \
            ["The search space has no careful inits (kaiming, xavier) to pool on their own."]
        if x.difference is not None and x.difference.pm is not None:
            m = x.difference.pm
            said.append(f"Careful minus careless inits, each data set's two sub-space effects subtracted before "
                        f"pooling: {pts(m.pooled)} pts ({_ci(m.hk_low, m.hk_high)}, Hartung–Knapp; {m.k} data sets).")
        lines += ["", " ".join(said), "",
                  "Each sub-space is the same trials (nothing trained again), the paired configurations whose "
                  "hyperparameter takes those levels. A configuration is top quarter when it reaches its whole data "
                  "set's threshold, the same bar as the headline: with a threshold of its own every sub-space would "
                  "put about a quarter of its own scores on top, and sub-spaces could not be compared. Sub-spaces "
                  "were declared from the search space before any score was read. panel_subspaces.csv holds each "
                  "data set's counts and the pooled rows.", ""]
        lines += ["## Faster training, or more robust? The epoch budget, pooled", "",
                  "| epochs | data sets | configurations | Δ top quarter, pts | 95% CI (HKSJ) | 95% prediction "
                  "interval | I² | note |", "|---:|---:|---:|---:|---|---|---:|---|"]
        for _, r in x.budgets.iterrows():
            lines.append(f"| {int(r['epochs'])} | {int(r['k'])} | {int(r['configs'])} | {pts(r['pooled'])} | "
                         f"{_interval(r['hk_low'], r['hk_high'])} | {_interval(r['pi_low'], r['pi_high'])} | "
                         f"{_pct(r['i2'])} | {cell(r['note'] or '')} |")
        lines += ["", cell(pp.budget_sentence(x.budgets, what=effect_owner(res))), "",
                  "At a budget of e epochs every trial is scored by its validation curve at epoch e, and the top "
                  "quarter and the configuration that sets s* are those of that budget; the full budget is the "
                  "headline's count.", ""]
        if x.interaction is not None:
            lines += [f"## Inputs × {cell(x.norm)}, pooled", "",
                      "| quantity | contrast | data sets | Δ top quarter, pts | 95% CI (HKSJ) | "
                      "95% prediction interval | I² |", "|---|---|---:|---:|---|---|---:|"]
            for _, r in x.interaction.iterrows():
                lines.append(f"| {r['quantity']} | {INTERACTION_WORDS.get(r['quantity'], '')} | {int(r['k'])} | "
                             f"{pts(r['pooled'])} | {_interval(r['hk_low'], r['hk_high'])} | "
                             f"{_interval(r['pi_low'], r['pi_high'])} | {_pct(r['i2'])} |")
            lines += ["", cell(interaction_sentence(x.interaction, x.norm)), "",
                      "Cells: A raw inputs without a norm, B raw with it, C standardized without, D standardized "
                      "with; the top quarter is that of all four cells' scores. The interaction is the mean of each "
                      "configuration's (D − C) − (B − A) on the 0/1 top-quarter scale (panel_interaction.csv).", ""]
    if res.influence is not None and len(res.influence):
        lines += ["## Influence: each data set left out", "",
                  "| left out | pooled without it, pts | 95% CI (HKSJ) | 95% prediction interval | direction | "
                  "changes the headline |", "|---|---:|---|---|---|---|"]
        words = {1: "above 0", 0: "includes 0", -1: "below 0"}
        for _, r in res.influence.iterrows():
            lines.append(f"| {cell(r['left_out'])} | {pts(r['pooled'])} | {_interval(r['hk_low'], r['hk_high'])} | "
                         f"{_interval(r['pi_low'], r['pi_high'])} | {words.get(int(r['direction']), '')} | "
                         f"{'yes' if r['changes_headline'] else 'no'} |")
        lines += ["", cell(pp.influence_sentence(res.influence)), ""]
    return lines


def _fmt(x, spec: str) -> str:
    x = _num(x)
    return format(x, spec) if math.isfinite(x) else "–"


def _pct(share) -> str:
    x = _num(share)
    return f"{100 * x:.0f}%" if math.isfinite(x) else "–"
