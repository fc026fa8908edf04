"""The terminal report, for any number of arms: verdict first, a key-numbers table per comparison
that fits 80 columns, then the budget and interaction sentences; `full` adds the setup and every
table. The CLI prints the one-line answer (answer_line) last."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ..analysis import Comparison, arm_label
from .format import fmt, pts
from .tables import (ESTIMATOR_NAMES, Comparisons, arm_rows, budget_rows, cells_line, compact_rows,
                     interaction_rows, pair_rows, report_tables, setup_lines)

_LEFT = ("Note", "Test", "Quantity", "Measure", "Estimator", "Factor", "Level", "arm", "setup", "quantity")


def _table(console, title: str, headers, rows, *, wrap: bool = True) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 or h in _LEFT else "right",
                         overflow="fold" if wrap else "ellipsis", no_wrap=not wrap)
    for row in rows:
        table.add_row(*row)
    if not rows:
        table.add_row(*(["(no data)"] + [""] * (len(headers) - 1)))
    print_fitted(console, table, title, [(row[0], list(zip(headers[1:], row[1:]))) for row in rows], whole=not wrap)


def too_wide(console, table, *, whole: bool) -> bool:
    """Whether `table` cannot be read at this console's width: a cell would be cut (`whole`: every cell
    must stay on one line) or a word split, which leaves columns of single characters or none at all."""
    from rich.measure import Measurement

    m = Measurement.get(console, console.options.update(max_width=1_000_000), table)
    return (m.maximum if whole else m.minimum) > console.width


def print_fitted(console, table, title: str, records, *, whole: bool) -> None:
    """`table`, or, on a terminal too narrow for it, the same cells as one block per row: `records`
    holds (heading, [(column header, cell), ...]) per row; empty cells are left out."""
    from rich.text import Text

    if not too_wide(console, table, whole=whole):
        console.print(table)
        return
    console.print(Text(title, style="italic"))
    for heading, cells in records:
        console.print(Text(str(heading), style="bold"))
        for header, value in cells:
            if value:
                console.print(Text(f"  {header}: {value}" if header else f"  {value}"))


def _key_numbers(console, summary: Comparison) -> None:
    t, r = summary.arms
    # Δ of a rate is in points, of a score in the score's own units: the title claims no one unit.
    title = ("Key numbers (good fraction: the primary analysis at δ; Δ [95% CI], rates in pts)"
             if getattr(summary, "adaptive", None) is None else  # adaptive: survival.compact_rows
             "Key numbers (trials to target across repeats: the primary outcome; Δ with 95% CI)")
    # An interval is never wrapped over two lines: a table that does not fit whole turns into blocks.
    _table(console, title, ["", arm_label(t), arm_label(r), "Δ [95% CI]"], compact_rows(summary), wrap=False)


def print_report(view: Comparisons, console, meta: Mapping | None = None, *, arms=None, repeats: int = 1,
                 full: bool = False) -> None:
    """Every comparison's verdict and key numbers, then what holds over all arms (`arms`, an
    analysis.multiarm.ArmsAnalysis, or None for adaptive samplers)."""
    from rich.panel import Panel

    meta = meta or {}
    title = f"bnsearch: {meta.get('experiment') or view.first.experiment}"
    if repeats > 1:
        title += f" ({repeats} repeats)"
    console.print(f"[bold]{title}[/bold]")
    for arm, summary in view.by_arm.items():
        label = view.label(arm)
        # Wrapped at 100 columns at most: piped output has a 1000-column console (so tables are never
        # truncated), where an unwrapped paragraph would be one unreadable line.
        console.print(Panel(summary.verdict, title="Verdict" + (f": {label}" if label else ""), title_align="left",
                            width=min(console.width, 100)))
        _key_numbers(console, summary)
        if not full:  # the δ it rests on
            console.print(setup_lines(summary, meta)[1], style="dim", highlight=False)
            continue
        for line in setup_lines(summary, meta):
            console.print(line, style="dim", highlight=False)
        for name, headers, rows in report_tables(summary):
            _table(console, name + (f" ({label})" if label else ""), headers, rows)
    if not full:
        console.print("the setup, the notes and every table: --full; every number: the CSVs compare and export write",
                      style="dim", highlight=False)
    else:
        console.print("Tuning-curve estimators: " + "; ".join(f"{k}: {v}" for k, v in ESTIMATOR_NAMES.items()),
                      style="dim", highlight=False)
    if arms is not None:
        print_arms(arms, console, full=full)


def print_arms(a, console, full: bool = False) -> None:
    """What holds over all arms: one row per arm (with `full`), the epoch budgets and the 2x2
    interaction (their tables with `full`, their sentences always)."""
    if full:
        _table(console, f"arms (full budget, {a.epochs} epochs; good = within tolerance of the best of all arms)",
               *arm_rows(a))
        _table(console, "robustness vs training budget (good = within tolerance of the best of all arms at that "
               "budget)", *budget_rows(a))
        _table(console, "advantage vs training budget, pts (the primary analysis at each budget; 95% CIs)",
               *pair_rows(a))
    for sentence in a.budget_verdicts.values():
        console.print(f"[bold]budget:[/] {sentence}", highlight=False)
    if a.interaction is not None:
        if full:
            _table(console, "inputs × normalisation interaction", *interaction_rows(a))
            console.print(cells_line(a), highlight=False, style="dim")
        console.print(f"[bold]interaction:[/] {a.interaction_verdict}", highlight=False)
    if full:
        for note in a.notes:
            console.print(f"note: {note}", style="dim", highlight=False)


def answer(view: Comparisons) -> str:
    """Every comparison's answer_line, in one line."""
    if len(view.by_arm) == 1:
        return answer_line(view.first)
    return "; ".join(answer_line(s, arm) for arm, s in view.by_arm.items())


def answer_line(summary: Comparison, arm: str | None = None) -> str:
    """The verdict's outcome in one line, with the number it rests on (the last line of the output)."""
    from ..analysis.common import arm_phrases
    from ..analysis.verdict import threshold_text

    w = arm_phrases(summary.arms)
    pr = summary.primary
    who = f"{arm} vs {summary.arms[1]}: " if arm else ""
    out = summary.outcome or "cannot tell"
    if getattr(summary, "adaptive", None) is not None:
        return f"{who}{out} (trials to target across repeats; see the verdict)"
    d, lo, hi, p = (pr.get(k, math.nan) for k in ("diff", "lo", "hi", "p_value"))
    if not np.isfinite(d):
        nums = "no completed trials to compare"
    elif summary.n_repeats == 1:
        ptext = f"test over all quality levels p {'< 0.001' if p < 0.001 else '= ' + fmt(p, 'p')}"
        at_declared = f"{pts(d)} pts at the declared δ, 95% CI {pts(lo)} to {pts(hi)}"
        if out in ("easier", "harder") and pr.get("quoted_kind") != "declared":
            # a direction quotes the level that shows it; the declared δ follows, labelled
            level = threshold_text(summary, pr["quoted_threshold"], short=True)
            nums = (f"{pts(pr['quoted_diff'])} pts at {level}, 95% CI {pts(pr['quoted_lo'])} to "
                    f"{pts(pr['quoted_hi'])}; {at_declared}; {ptext}")
        else:
            nums = f"{at_declared}; {ptext}"
    else:
        nums = f"{pts(d)} pts, 95% interval across repeats {pts(lo)} to {pts(hi)}"
    text = {"easier": f"the search is easier {w['with_t']}", "harder": f"the search is harder {w['with_t']}",
            "equivalent": "no practical difference"}.get(out, "cannot tell")
    return f"{who}{text} ({nums})"


# ----------------------------------------------------------------------------- study progress table

def study_table(arms, title: str = "study", seconds: float | None = None):
    """Rich table of what storage holds for each arm: counts, best score, its test score, time per trial."""
    import statistics

    from optuna.trial import TrialState
    from rich.table import Table

    from ..search import arm_state

    table = Table(title=title + (f" ({seconds:.1f} s wall)" if seconds is not None else ""))
    for col in ("arm", "complete", "diverged", "errored", "best val", "test of best", "median s/trial"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    best_configs = []
    for arm in arms:
        st = arm_state(arm)
        complete = arm.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = max(complete, key=lambda t: t.value) if complete else None
        secs = [t.user_attrs.get("seconds", 0.0) for t in complete]
        table.add_row(
            arm.arm, f"{st.complete}/{st.budget}", str(st.diverged), str(st.errored),
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
