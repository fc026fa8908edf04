"""Rendering of an experiment's analysis, for any number of arms (the pair is one comparison):
format (numbers, colours), tables (what every renderer shows), terminal, markdown, plots, survival
(adaptive samplers) and export (the files). Nothing here trains or computes a statistic."""

from .export import COMPARISON_CSVS, publish, report_json, trials_table, write_csvs, write_trials_jsonl
from .format import arm_colors, pyplot
from .markdown import markdown_text
from .plots import PlotRun, budget_plot_jobs, comparison_plot_jobs
from .tables import Comparisons, compact_rows, report_tables, setup_lines
from .terminal import answer, answer_line, print_arms, print_report, study_table

__all__ = ["COMPARISON_CSVS", "Comparisons", "PlotRun", "answer", "answer_line", "arm_colors", "budget_plot_jobs",
           "compact_rows", "comparison_plot_jobs", "markdown_text", "print_arms", "print_report", "publish",
           "pyplot", "report_json", "report_tables", "setup_lines", "study_table", "trials_table", "write_csvs",
           "write_trials_jsonl"]
