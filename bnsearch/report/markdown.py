"""report.md, for any number of arms: each comparison's verdict, setup and tables (the pair has one
comparison), the plots after the tables they illustrate, then what holds over all arms (one row per
arm, the epoch budgets, the 2x2 interaction), the adaptive samplers' outcome, and the files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from .format import md_table
from .terminal import answer_line
from .tables import (ESTIMATOR_NAMES, ESTIMATOR_SHORT, SECTION_TITLES, Comparisons, arm_rows, budget_rows,
                     cells_line, comparison_line, interaction_rows, pair_rows, report_tables, setup_lines)

_PLOT_AFTER = {"Scores": ["score_edf.png", "score_vs_lr.png"], "Tuning curve": ["tuning_curves.png"],
               "Importance": ["importance.png"], "Tolerance profile": ["tolerance_profile.png"],
               SECTION_TITLES["heterogeneity"]: ["heterogeneity.png"]}


def markdown_text(view: Comparisons, meta: Mapping | None = None, files: Sequence = (), out_dir=None, *,
                  arms=None, repeats: int = 1, data: Mapping | None = None) -> str:
    """The page. Plot links are relative to `out_dir` (the folder report.md is written to); `data`:
    what loading did to the data (api.Report.data), a section of its own."""
    meta = meta or {}
    out = Path(out_dir) if out_dir is not None else Path(".")
    files = [Path(f) for f in files]
    pngs = {f.name: f for f in files if f.suffix.lower() == ".png"}

    def rel(path: Path) -> str:
        return Path(os.path.relpath(path.resolve() if path.is_absolute() or path.exists() else out / path,
                                    out.resolve())).as_posix()

    title = f"# bnsearch report: {meta.get('experiment') or view.first.experiment}"
    if repeats > 1:
        title += f" ({repeats} repeats)"
    parts = [title, ""]
    several = len(view.by_arm) > 1
    used: set[str] = set()
    for k, (arm, summary) in enumerate(view.by_arm.items()):
        level = "###" if several else "##"
        if several:
            parts += [f"## {view.label(arm)}", ""]
        parts += ["> " + summary.verdict, "", f"**Answer:** {answer_line(summary)}.", ""]
        parts += [f"- {line}" for line in setup_lines(summary, meta)] + [""]
        for name, headers, rows in report_tables(summary):
            parts += [f"{level} {name}", "", md_table(headers, rows), ""]
            if name == SECTION_TITLES["curves"]:
                parts += ["; ".join(f"{ESTIMATOR_SHORT[key]}: {v}" for key, v in ESTIMATOR_NAMES.items()) +
                          ". The Δ band is the difference of the two arms' 97.5% bands (simultaneous at 95%).", ""]
            if k == len(view.by_arm) - 1:  # the plots draw every arm: once, after the last comparison's table
                for png in _PLOT_AFTER.get(name, []):
                    if png in pngs:
                        parts += [f"![{png[:-4].replace('_', ' ')}]({rel(pngs[png])})", ""]
                        used.add(png)
    adaptive = {arm: s.adaptive for arm, s in view.by_arm.items() if getattr(s, "adaptive", None) is not None}
    if adaptive:
        from .survival import PNGS, markdown_section

        for arm, res in adaptive.items():
            parts += [markdown_section(res, view.label(arm))]
        for png in PNGS:
            if png in pngs:
                parts += [f"![{png[:-4].replace('_', ' ')}]({rel(pngs[png])})", ""]
                used.add(png)
    if arms is not None:
        parts += arms_markdown(arms, view)
        used.update(p for p in ("budget.png", "compute.png") if p in pngs)
    parts += data_markdown(data)
    extra = [f for f in files if f.name not in used]
    if extra:
        parts += ["## Files", ""]
        for f in extra:
            link = f"![{f.stem}]({rel(f)})" if f.suffix.lower() == ".png" else f"[{f.name}]({rel(f)})"
            parts.append(f"- {link}")
        parts.append("")
    return "\n".join(parts)


def arms_markdown(a, view: Comparisons) -> list[str]:
    """What holds over all arms: one row per arm, the epoch budgets, the interaction."""
    parts = ["## Arms", "", md_table(*arm_rows(a)), ""]
    for arm, s in view.by_arm.items():
        parts += [f"- {comparison_line(arm, a.reference, s)}"]
    parts += ["", "## Faster, or more robust? (epoch budgets)", "",
              "Every metric re-read at each training budget from the stored per-epoch validation curves "
              "(a run's score at epoch e equals that of an e-epoch run: no LR schedule, same batches). "
              "Good = within the tolerance of the best score of all arms *at that budget*.", "",
              md_table(*budget_rows(a)), "", "Advantage of each pair (the primary analysis at each budget: Δ good at "
              "the declared δ with its simultaneous interval; median Δ = Hodges-Lehmann shift of the paired scores "
              "with its Wilcoxon interval), points, 95% CIs:", "", md_table(*pair_rows(a)), ""]
    parts += [f"> {s}" for s in a.budget_verdicts.values()]
    parts += ["", "![advantage vs training budget](budget.png)", "",
              "![tuning curves against compute](compute.png)", ""]
    if a.interaction is not None:
        parts += ["## Inputs × normalisation interaction", "", cells_line(a) + ".", "",
                  md_table(*interaction_rows(a)), "", f"> {a.interaction_verdict}", ""]
    if a.notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in a.notes] + [""]
    return parts


def data_markdown(data: Mapping | None) -> list[str]:
    """The data as the trials saw them: the one line `summary` prints, then every column it names."""
    from ..data import data_line

    line = data_line(dict(data)) if data else None
    if line is None:
        return []
    parts = ["## Data", "", line + ".", ""]

    def code(name) -> str:  # a user's column name: no backtick or line break may end the span or the item
        return "`" + " ".join(str(name).replace("`", "'").split()) + "`"

    items = [("imputed (training-split median, plus a 0/1 missing flag)", [code(c) for c in data.get("imputed") or []]),
             ("one-hot encoded (levels)", [f"{code(c)} ({n})" for c, n in (data.get("one_hot") or {}).items()]),
             ("constant, left out", [code(c) for c in data.get("constant") or []]),
             ("left out by data.drop / --drop", [code(c) for c in data.get("dropped_columns") or []])]
    parts += [f"- Columns {what}: " + ", ".join(cols) for what, cols in items if cols]
    if data.get("classes"):
        parts.append(f"- Classes: {data['classes']}")
    return parts + [""]
