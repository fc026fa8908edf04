"""Library functions behind the CLI commands: each takes plain arguments and returns data.

Nothing here prints or configures logging; progress is reported through callbacks, and the CLI
(cli.py) alone renders to the terminal.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import sqlalchemy

from . import search
from .config import ConfigError, Settings, check_jobs, load_config
from .search import ARMS, SearchError, arm_of, arm_state, list_experiments, load_trials  # noqa: F401


class RunFailed(RuntimeError):
    """The run itself failed (exit code 1), as opposed to bad input (exit code 2)."""


def _settings(config: Path | str | None, **overrides) -> Settings:
    return load_config(config).with_overrides(**overrides)


Progress = Callable[[list[search.Arm]], None]


def run_study(config=None, bn: str = "on", *, trials=None, storage=None, seed=None, jobs=None, sampler=None,
              device=None, progress: Progress | None = None) -> list[search.Arm]:
    """Run (or resume) one arm. Returns the prepared arm, whose study holds the trials.

    `progress(arms)` is called with the arms' storage-backed state as trials finish (see
    search.run_arms); the CLI draws its progress bar from it. Nothing is printed.
    """
    arm = arm_of(bn)
    settings = _settings(config, trials=trials, seed=seed, sampler=sampler, device=device)
    check_jobs(jobs)
    if settings.sampler in ("tpe", "gp") and settings.paired:
        settings = settings.with_overrides(paired=False)
    check_budget(settings, storage, trials)
    return run_arms(settings, storage, [arm], jobs=jobs, progress=progress)


def run_arms(settings: Settings, storage, arms: list[str], *, jobs=None,
             progress: Progress | None = None) -> list[search.Arm]:
    """Prepare and run the given arms of one experiment; a failed run raises RunFailed."""
    check_jobs(jobs)
    try:
        return search.run_arms(settings, search.storage_url(storage), arms, jobs=jobs, progress=progress)
    except search.StorageFailure:
        raise
    except RuntimeError as exc:
        raise RunFailed(str(exc)) from None


def check_budget(settings: Settings, storage, trials: int | None) -> None:
    """A `--trials` below the stored budget is refused (docs/design.md, Budget): a budget never
    shrinks, because the finished trials beyond it stay part of the experiment and its report."""
    if trials is None:
        return
    try:
        studies = search.open_storage(storage, create=False).get_all_studies()
    except SearchError:
        return  # nothing stored yet (a storage that cannot be opened fails later with its own message)
    for st in studies:
        budget = st.user_attrs.get("budget")
        if st.study_name.rsplit("/", 1)[0] == settings.name and isinstance(budget, int) and trials < budget:
            raise SearchError(
                f"--trials {trials}: experiment {settings.name!r} already has a budget of {budget} trials per arm in "
                f"this storage, and a budget never shrinks; omit --trials (or pass {budget} or more) to use what is "
                "stored, or set a new experiment.name for a smaller experiment")


def run_worker(experiment: str, bn: str | None = None, *, storage=None, device=None,
               progress: Progress | None = None) -> int:
    """Join an existing experiment (from any machine) and run trials until none is left.
    Returns the number of trials this worker finished."""
    arms = [arm_of(bn)] if bn else list(ARMS)
    url = search.storage_url(storage)
    loaded = worker_arms(experiment, bn, storage=storage)  # fails fast on a wrong name or URL
    device = device or loaded[0].settings.device
    if progress:
        progress(loaded)
    return search.run_worker(url, experiment, arms, device=device,
                             on_trial=(lambda *_: progress(loaded)) if progress else None)


def worker_arms(experiment: str, bn: str | None = None, *, storage=None) -> list[search.Arm]:
    """The arms a worker would join, loaded from storage (raises SearchError on a wrong name or URL)."""
    arms = [arm_of(bn)] if bn else list(ARMS)
    url = search.storage_url(storage)
    return [search.load_arm(url, experiment, a) for a in arms]


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
                seed=None, progress: Progress | None = None,
                on_repeat: Callable[[int, Settings], None] | None = None) -> "Report":
    """Run what is missing of every arm (for every repeat), then analyse and export.

    Returns the Report; its `files` are what was written to `out` (default results/<experiment>/).
    `on_repeat(i, settings)` is called before repeat i runs. Nothing is printed.
    """
    settings = _settings(config, trials=trials, device=device, seed=seed)
    check_jobs(jobs)
    runs = repeat_settings(settings, repeats)
    out_dir = Path(out) if out else Path("results") / settings.name
    if settings.data.dataset == "csv":  # bad data is bad input: refuse it before storage or folders appear
        from .data import load_arrays
        load_arrays(settings.data, settings.seed)
    made = [d for d in (out_dir, *out_dir.parents) if not d.exists()]
    check_out_dir(out_dir)
    try:
        search.open_storage(storage)  # a bad URL fails here, before anything else
        check_budget(settings, storage, trials)
        for i, s in enumerate(runs):
            if on_repeat:
                on_repeat(i, s)
            run_arms(s, storage, list(ARMS), jobs=jobs, progress=progress)
        report = build_report(storage, settings.name)
        report.files = publish(report, out_dir)
    except BaseException:
        for d in made:  # a failed command leaves no empty results folder behind
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return report


class Report:
    """Trials of every repeat, the (aggregated) summary and the metadata every export carries."""

    def __init__(self, df, summary, meta: dict, files: list[Path] | None = None):
        self.df, self.summary, self.meta = df, summary, meta
        self.files: list[Path] = files or []

    def __repr__(self) -> str:
        return (f"<bnsearch Report {self.summary.experiment!r}: {len(self.df)} trials, "
                f"{self.summary.n_repeats} repeat(s), {len(self.files)} files>")

    def _repr_markdown_(self) -> str:
        from .report import markdown_text

        return markdown_text(self.summary, self.meta)


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
        raise SearchError(f"no experiment {experiment!r} in {search.masked(url)}; experiments here: {', '.join(sorted(names)) or 'none'}"
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


def publish(report: Report, out_dir: Path, *, csv: bool = True, plots: bool = True) -> list[Path]:
    """Write the report's CSVs, PNGs and report.md to out_dir; returns the files written."""
    from . import report as rpt

    files: list[Path] = []
    check_out_dir(out_dir)
    if csv:
        files += rpt.write_csvs(report.df, report.summary, out_dir, report.meta)
    if plots:
        files += rpt.write_plots(report.df, report.summary, out_dir)
    if csv and plots:
        files.append(rpt.write_markdown(report.summary, out_dir, report.meta, files))
    return files


def show_summary(config=None, *, experiment=None, storage=None) -> Report:
    """The report of a stored experiment (named by CONFIG or --experiment), from storage alone."""
    return build_report(storage, _experiment_name(config, experiment))


def export(config=None, *, experiment=None, out=None, storage=None, csv: bool = True) -> list[Path]:
    """Write a stored experiment's exports (CSVs unless csv=False, PNGs, report.md); returns the files."""
    name = _experiment_name(config, experiment)
    report = build_report(storage, name)  # a storage that cannot be read leaves no empty folder behind
    report.files = publish(report, Path(out) if out else Path("results") / name, csv=csv)
    return report.files


__all__ = ["Report", "run_compare", "build_report", "show_summary", "export", "RunFailed", "run_study", "run_worker", "load_config", "load_trials", "list_experiments", "ConfigError",
           "SearchError"]
