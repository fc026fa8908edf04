"""Library functions behind the CLI commands: each takes plain arguments and returns data."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import sqlalchemy
from rich.console import Console
from rich.table import Table

from . import search
from .config import ConfigError, Settings, load_config
from .progress import ArmProgress
from .search import ARMS, SearchError, arm_of, arm_state, list_experiments, load_trials  # noqa: F401


class RunFailed(RuntimeError):
    """The run itself failed (exit code 1), as opposed to bad input (exit code 2)."""


def _settings(config: Path | str | None, **overrides) -> Settings:
    return load_config(config).with_overrides(**overrides)


def run_study(config=None, bn: str = "on", *, trials=None, storage=None, seed=None, jobs=None, sampler=None,
              device=None, console: Console | None = None) -> list[search.Arm]:
    """Run (or resume) one arm. Returns the prepared arm, whose study holds the trials."""
    console = console or Console(quiet=True)
    arm = arm_of(bn)
    settings = _settings(config, trials=trials, seed=seed, sampler=sampler, device=device)
    if settings.sampler in ("tpe", "gp") and settings.paired:
        settings = settings.with_overrides(paired=False)
    return _run(settings, storage, [arm], jobs, console)


def _run(settings: Settings, storage, arms: list[str], jobs, console: Console) -> list[search.Arm]:
    t0 = time.perf_counter()
    url = search.storage_url(storage)
    console.print(f"[bold]{settings.name}[/] ({settings.source}, config {settings.config_hash()}) -> {url}")
    prepared: list[search.Arm] = []
    try:
        with ArmProgress(console) as progress:
            def track(arms):
                prepared[:] = arms
                progress(arms)
            search.run_arms(settings, url, arms, jobs=jobs, progress=track)
    except KeyboardInterrupt:
        if prepared:
            console.print(arm_table(prepared, title="saved so far (rerun the same command to resume)"))
        raise
    except RuntimeError as exc:
        raise RunFailed(str(exc)) from None
    console.print(arm_table(prepared, seconds=time.perf_counter() - t0))
    return prepared


def arm_table(arms: list[search.Arm], title: str = "study", seconds: float | None = None) -> Table:
    table = Table(title=title + (f" ({seconds:.1f} s wall)" if seconds is not None else ""))
    for col in ("arm", "complete", "diverged", "failed", "best val", "test of best", "median s/trial"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    best_configs = []
    for arm in arms:
        st = arm_state(arm)
        complete = arm.study.get_trials(deepcopy=False, states=(search.TrialState.COMPLETE,))
        best = max(complete, key=lambda t: t.value) if complete else None
        secs = [t.user_attrs.get("seconds", 0.0) for t in complete]
        table.add_row(
            arm.arm, f"{st.complete}/{st.budget}", str(st.diverged), str(st.failed),
            f"{best.value:.4f}" if best else "-",
            f"{best.user_attrs.get('test_score', float('nan')):.4f}" if best else "-",
            f"{statistics.median(secs):.3f}" if secs else "-",
        )
        if best:
            best_configs.append(f"best {arm.arm}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items()))
    table.caption = "\n".join(best_configs)
    return table


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def run_worker(experiment: str, bn: str | None = None, *, storage=None, device=None,
               console: Console | None = None) -> int:
    """Join an existing experiment (from any machine) and run trials until none is left."""
    console = console or Console(quiet=True)
    arms = [arm_of(bn)] if bn else list(ARMS)
    url = search.storage_url(storage)
    loaded = [search.load_arm(url, experiment, a) for a in arms]  # fails fast on a wrong name or URL
    device = device or loaded[0].settings.device
    console.print(f"worker pid {os.getpid()} joined [bold]{experiment}[/] ({', '.join(arms)}) at {url}")
    with ArmProgress(console) as progress:
        progress(loaded)
        done = search.run_worker(url, experiment, arms, device=device, on_trial=lambda *_: progress(loaded))
    console.print(f"worker finished {done} trials")
    return done


# --------------------------------------------------------------------------- compare / summary / export

def repeat_settings(settings: Settings, repeats: int) -> list[Settings]:
    """Repeat r of an experiment: seed + r, name `<name>-rep<r>` (repeat 0 keeps the plain name, so a
    single run and the first repeat are the same experiment)."""
    if repeats < 1:
        raise ConfigError(f"--repeats must be at least 1 (got {repeats})")
    return [settings if r == 0 else settings.with_overrides(seed=settings.seed + r, name=f"{settings.name}-rep{r}")
            for r in range(repeats)]


def check_out_dir(out: Path) -> Path:
    """Create the export folder and prove it is writable before any training starts."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".bnsearch-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SearchError(f"--out: cannot write to {out} ({exc.strerror or exc}); choose a writable folder") from None
    return out


def run_compare(config=None, *, trials=None, repeats: int = 1, jobs=None, storage=None, out=None, device=None,
                console: Console | None = None) -> "Report":
    """Run what is missing of both arms (for every repeat), then report and export."""
    console = console or Console(quiet=True)
    settings = _settings(config, trials=trials, device=device)
    runs = repeat_settings(settings, repeats)
    out_dir = check_out_dir(Path(out) if out else Path("results") / settings.name)
    search.open_storage(storage)  # a bad URL fails here, before anything else
    for i, s in enumerate(runs):
        if repeats > 1:
            console.rule(f"repeat {i + 1}/{repeats}: {s.name} (seed {s.seed})")
        _run(s, storage, list(ARMS), jobs, console)
    report = build_report(storage, settings.name)
    publish(report, out_dir, console)
    return report


class Report:
    """Trials of every repeat, the (aggregated) summary and the metadata every export carries."""

    def __init__(self, df, summary, meta: dict):
        self.df, self.summary, self.meta = df, summary, meta


def _experiment_name(config, experiment: str | None) -> str:
    if experiment:
        return experiment
    return load_config(config).name


def _task(settings: Settings) -> str:
    from .data import BUILTIN, load_arrays

    if settings.data.dataset != "csv":
        return BUILTIN[settings.data.dataset][0]
    return settings.data.task or load_arrays(settings.data, settings.seed)[2]


def build_report(storage, experiment: str) -> Report:
    """Everything `summary`/`export`/`plot` need, from storage alone (no config file, no training)."""
    import pandas as pd

    from .analysis import aggregate_repeats, summarize

    url = search.storage_url(storage)
    st = search.open_storage(url, create=False)
    studies = {s.study_name for s in st.get_all_studies()}
    names = {n.rsplit("/", 1)[0] for n in studies if "/" in n}
    if experiment not in names:
        raise SearchError(f"no experiment {experiment!r} in {url}; experiments here: {', '.join(sorted(names)) or 'none'}"
                          " (run `bnsearch compare` first)")
    reps = sorted((n for n in names if n.startswith(f"{experiment}-rep") and n[len(experiment) + 4:].isdigit()),
                  key=lambda n: int(n[len(experiment) + 4:]))
    frames, summaries = [], []
    for name in [experiment, *reps]:
        arms = [a for a in ARMS if f"{name}/{a}" in studies]
        if len(arms) < 2:
            raise SearchError(f"experiment {name!r} has only arm {arms[0]}; run `bnsearch study --bn "
                              f"{'off' if arms[0] == 'bn-on' else 'on'}` or `bnsearch compare` to add the other")
        on = search.load_arm(url, name, "bn-on")
        settings = on.settings
        if name == experiment:  # the experiment's own metadata labels every export
            attrs = on.study.user_attrs
        df = load_trials(url, name)
        frames.append(df)
        summaries.append(summarize(df, distributions=settings.distributions(), tolerance=settings.tolerance,
                                   paired=settings.paired, sampler=settings.sampler, task=_task(settings),
                                   seed=settings.seed))
    summary = summaries[0] if len(summaries) == 1 else aggregate_repeats(summaries)
    meta = {k: attrs.get(k) for k in ("experiment", "config_hash", "seed", "bnsearch_version", "torch_version",
                                      "optuna_version")}
    meta["repeats"] = len(summaries)
    # Never write a database password into exported files.
    meta["storage"] = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    return Report(pd.concat(frames, ignore_index=True), summary, meta)


def publish(report: Report, out_dir: Path, console: Console, *, terminal: bool = True, csv: bool = True,
            plots: bool = True) -> list[Path]:
    from . import report as rpt

    if terminal:
        rpt.print_report(report.summary, console, report.meta)
    files: list[Path] = []
    check_out_dir(out_dir)
    if csv:
        files += rpt.write_csvs(report.df, report.summary, out_dir, report.meta)
    if plots:
        files += rpt.write_plots(report.df, report.summary, out_dir)
    if csv and plots:
        files.append(rpt.write_markdown(report.summary, out_dir, report.meta, files))
    if files:
        console.print(f"wrote {len(files)} files to {out_dir}/: " + ", ".join(f.name for f in files))
    return files


def show_summary(config=None, *, experiment=None, storage=None, console: Console | None = None) -> Report:
    console = console or Console(quiet=True)
    report = build_report(storage, _experiment_name(config, experiment))
    from . import report as rpt

    rpt.print_report(report.summary, console, report.meta)
    return report


def export(config=None, *, experiment=None, out=None, storage=None, console: Console | None = None,
           csv: bool = True) -> list[Path]:
    console = console or Console(quiet=True)
    name = _experiment_name(config, experiment)
    out_dir = check_out_dir(Path(out) if out else Path("results") / name)
    report = build_report(storage, name)
    return publish(report, out_dir, console, terminal=False, csv=csv)


__all__ = ["Report", "run_compare", "build_report", "show_summary", "export", "RunFailed", "run_study", "run_worker", "load_config", "load_trials", "list_experiments", "ConfigError",
           "SearchError"]
