"""Rich progress for long runs: trials done / budget, best so far, elapsed, ETA — per arm."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .search import ArmStudy, arm_state


class ArmProgress:
    """Callable passed to search.run_arms; reads the arms' state from storage, so it shows work
    done by every worker process (and by other machines) alike."""

    def __init__(self, console: Console, label: str = ""):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("best {task.fields[best]}"), TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=False, disable=not console.is_terminal and console.quiet,
        )
        self.label = label
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def __call__(self, arms: list[ArmStudy]) -> None:
        for arm in arms:
            st = arm_state(arm)
            extra = []
            if st.running:
                extra.append(f"{st.running} running")
            if st.diverged:
                extra.append(f"{st.diverged} diverged")
            if st.failed:
                extra.append(f"{st.failed} errored")
            fields = {"best": "-" if st.best is None else f"{st.best:.4f}", "extra": ", ".join(extra)}
            key = arm.study.study_name
            if key not in self.tasks:
                # The first snapshot is work already in storage: ETA counts only what runs now.
                self.tasks[key] = self.progress.add_task(f"{self.label}{arm.arm}", total=st.budget,
                                                        completed=st.complete, **fields)
            else:
                self.progress.update(self.tasks[key], completed=min(st.complete, st.budget),
                                     total=st.budget, **fields)


class PanelProgress:
    """One line per data set of a panel: trials done over both arms, best so far, elapsed."""

    def __init__(self, console: Console):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("best {task.fields[best]}"), TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(), console=console, transient=False,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def __call__(self, entry, arms: list[ArmStudy]) -> None:
        states = [arm_state(a) for a in arms]
        best = max((s.best for s in states if s.best is not None), default=None)
        running = sum(s.running for s in states)
        fields = {"best": "-" if best is None else f"{best:.4f}", "extra": f"{running} running" if running else ""}
        done, total = sum(min(s.complete, s.budget) for s in states), sum(s.budget for s in states)
        if entry.slug not in self.tasks:
            self.tasks[entry.slug] = self.progress.add_task(entry.slug, total=total, completed=done, **fields)
        else:
            self.progress.update(self.tasks[entry.slug], completed=done, total=total, **fields)
