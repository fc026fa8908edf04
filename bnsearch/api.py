"""Library functions behind the CLI commands: each takes plain arguments and returns data."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

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


__all__ = ["RunFailed", "run_study", "run_worker", "load_config", "load_trials", "list_experiments", "ConfigError",
           "SearchError"]
