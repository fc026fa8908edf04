"""The files of a report, the same set for every experiment whatever its arms are called or how many
there are: the trials (trials.csv, trials.jsonl), every comparison's tables (one CSV per table, a
row per arm and comparison), the tables over all arms (arms.csv, budget.csv, compute.csv, and
interaction.csv for an inputs x norm 2x2), the adaptive samplers' outcome (km.csv, best_so_far.csv,
trials_to_target.csv), the PNGs and report.md. Each file is written whole or not at all."""

from __future__ import annotations

import math

import json
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from ..files import atomic_write
from .format import json_safe, records, with_meta
from .markdown import markdown_text
from .plots import PlotRun, budget_plot_jobs, comparison_plot_jobs
from .tables import Comparisons, comparison_line

TRIAL_COLUMNS = ["experiment", "arm", "number", "state", "config_index"]
RESULT_COLUMNS = ["score", "test_score", "diverged", "epochs_run", "seconds", "seed", "val_curve"]
# file name -> the comparison's table it holds
COMPARISON_CSVS = {"summary.csv": "metrics", "curves.csv": "curves", "importance.csv": "importance",
                   "sensitivity.csv": "sensitivity", "tests.csv": "tests", "tolerance_profile.csv": "profile",
                   "heterogeneity.csv": "heterogeneity", "trial_budget.csv": "trial_budget"}


def portable(text):
    """A path, or a URL holding one (sqlite:////home/me/x.db, journal:/home/me/x.log), as exported
    files record it: relative to the working folder when it lies under it, else with the home folder
    as ~, else unchanged. A shared report must not carry the user's name and folder layout."""
    import os
    import re

    m = re.fullmatch(r"((?:[A-Za-z][\w+.-]*:)(?:///)?)?(/(?!/).*)", text, re.S) if isinstance(text, str) else None
    if m is None:
        return text
    scheme, path = m.group(1) or "", m.group(2)
    for base, shown in ((os.getcwd(), ""), (os.path.expanduser("~"), "~/")):
        base = base.rstrip("/")
        if base and path.startswith(base + "/"):  # not "/" itself: every path would be "under" it
            return scheme + shown + path[len(base) + 1:]
    return text


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell_safe(x):
    if not isinstance(x, str) or len(x) < 2 or not x.startswith(_FORMULA):
        return x
    try:
        float(x)  # a number such as -0.5 is data, not a formula
        return x
    except ValueError:
        return "'" + x  # a spreadsheet shows the text instead of evaluating it


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every text cell and header that a spreadsheet would run as a formula (a leading
    = + - @, tab or carriage return) prefixed with a quote. Names, paths and study names come from
    the user; commas, quotes and newlines need nothing here, pandas quotes those fields."""
    out = frame.rename(columns=_cell_safe)
    for j, dt in enumerate(out.dtypes):
        if pd.api.types.is_object_dtype(dt) or pd.api.types.is_string_dtype(dt) or isinstance(dt, pd.CategoricalDtype):
            out.isetitem(j, out.iloc[:, j].map(_cell_safe))
    return out


def recorded_meta(meta: Mapping) -> dict:
    """The provenance columns as exported files record them: paths and storage URLs via `portable`."""
    return {k: portable(v) if k in ("storage", "config", "source") else v for k, v in dict(meta).items()}


def trials_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every trial, all states: ids, parameters, results, then any other columns."""
    known = TRIAL_COLUMNS + RESULT_COLUMNS
    params = [c for c in df.columns if c not in known]
    order = [c for c in TRIAL_COLUMNS if c in df.columns] + params + [c for c in RESULT_COLUMNS if c in df.columns]
    return df[order]


def comparison_frames(view: Comparisons) -> dict[str, pd.DataFrame]:
    """Every comparison's tables, one frame per file: the rows of each comparison, labelled with its
    `treatment` and `reference` (the arm column holds the arms' names and "delta")."""
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in COMPARISON_CSVS}
    for arm, s in view.by_arm.items():
        pair = {"treatment": s.arms[0], "reference": s.arms[1]}
        for name, table in COMPARISON_CSVS.items():
            frame = getattr(s, table)
            if table == "metrics":
                if "repeats" not in frame.columns:  # per-row count of repeats (1 for a single run)
                    frame = frame.assign(repeats=s.n_repeats)
                # the outcome with the level it rests on, so no row pairs a direction with an
                # interval that includes 0 (the good-fraction Δ row is the declared δ's)
                q = {k: s.primary.get(f"quoted_{k}", math.nan) for k in ("threshold", "delta", "diff", "lo", "hi")}
                if getattr(s, "adaptive", None) is not None:  # trials to the target, paired by repeat
                    d, lo, hi = s.adaptive.paired_diff
                    q = {"threshold": s.adaptive.target, "delta": math.nan, "diff": d, "lo": lo, "hi": hi}
                frame = frame.assign(task=s.task, sampler=s.sampler, paired=s.paired, tolerance=s.tolerance,
                                     s_star=s.s_star, outcome=s.outcome,
                                     **{f"outcome_{k}": v for k, v in q.items()})
            frames[name].append(frame.assign(**pair))
    return {name: pd.concat(parts, ignore_index=True) for name, parts in frames.items()}


def write_csvs(report, out_dir, meta: Mapping) -> list[Path]:
    """trials.csv, the comparisons' tables and the tables over all arms."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = recorded_meta(meta)
    meta.setdefault("experiment", report.comparisons.first.experiment)
    # Per-epoch curves stay in storage (and budget.csv): a list per cell would bloat trials.csv.
    frames = {"trials.csv": trials_table(report.df.drop(columns=["val_curve"], errors="ignore")),
              **comparison_frames(report.comparisons)}
    a = report.arms
    if a is not None:
        frames.update({"arms.csv": a.arm_table(), "budget.csv": a.budget, "compute.csv": a.compute})
        if a.interaction is not None:
            frames["interaction.csv"] = a.interaction
    paths = []
    for name, frame in frames.items():
        table = csv_safe(with_meta(frame, meta))
        paths.append(atomic_write(out / name, lambda tmp, table=table: table.to_csv(tmp, index=False)))
    return paths


def write_trials_jsonl(rows: Sequence[Mapping], out_dir, meta: Mapping) -> Path:
    """trials.jsonl: one JSON object per stored trial with everything storage holds for it (the
    per-epoch curves included) plus the experiment's provenance under "meta"."""
    provenance = json_safe(recorded_meta(meta))

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as f:
            for rec in rows:
                f.write(json.dumps({**json_safe(dict(rec)), "meta": provenance}, allow_nan=False) + "\n")

    return atomic_write(Path(out_dir) / "trials.jsonl", write)


def publish(report, out_dir, *, csv: bool = True, plots: bool = True) -> list[Path]:
    """Write the report's CSVs, PNGs and report.md to out_dir; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    view, meta = report.comparisons, recorded_meta(report.meta)
    experiment = meta.get("experiment") or view.first.experiment
    jobs = comparison_plot_jobs(report.df, view, out, experiment) if plots else []
    if plots and report.arms is not None:
        jobs += budget_plot_jobs(report.arms, out)
    files: list[Path] = []
    with PlotRun(jobs) as run:  # a forked child starts drawing while the CSVs are written here
        if csv:
            files += write_csvs(report, out, meta)
            files.append(write_trials_jsonl(report.records, out, meta))
        drawn = run.finish()
    files += [p for paths in drawn for p in paths]
    adaptive = {arm: s.adaptive for arm, s in view.by_arm.items() if getattr(s, "adaptive", None) is not None}
    if adaptive:
        from .survival import write_csvs as survival_csvs
        from .survival import write_plots as survival_plots

        files += survival_csvs(adaptive, out, meta) if csv else []
        files += survival_plots(adaptive, out, experiment, view.arms) if plots else []
    if csv and plots:
        # report.md in one write: a failure between two writes would leave it without a section.
        text = markdown_text(view, meta, files, out, arms=report.arms, repeats=int(meta.get("repeats") or 1),
                             data=getattr(report, "data", None))
        files.append(atomic_write(out / "report.md", lambda tmp: tmp.write_text(text, encoding="utf-8")))
    return files


def report_json(report) -> dict:
    """`summary --json`: the first comparison's setup, verdict and tables at the top level (the pair's
    only one), every comparison under "comparisons", and the tables over all arms under "arms"."""
    view = report.comparisons
    obj = view.first.to_json(report.meta)
    obj["data"] = getattr(report, "data", None)  # what loading did to the data (data.data_line)
    obj["comparisons"] = {arm: {"reference": view.reference, "outcome": s.outcome, "verdict": s.verdict,
                                "numbers": comparison_line(arm, view.reference, s)}
                          for arm, s in view.by_arm.items()}
    a = report.arms
    if a is not None:
        obj["arms"] = {"arms": a.arms, "reference": a.reference, "descriptions": a.descriptions,
                       "budget_verdicts": [{"arm": arm, "versus": ref, "verdict": v}
                                           for (arm, ref), v in a.budget_verdicts.items()],
                       "interaction_verdict": a.interaction_verdict, "arm_table": records(a.arm_table()),
                       "budget": records(a.budget), "interaction": records(a.interaction)}
    return obj
