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
            if st.errored:
                extra.append(f"{st.errored} errored")
            if st.requeued:  # interrupted or left by a dead worker, and run again: not an error
                extra.append(f"{st.requeued} re-queued")
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
    """A first line for the whole panel, with the ETA a long run needs, then one line per data set:
    trials done over both arms, best so far, its own time and ETA."""

    TOTAL = "all data sets"

    def __init__(self, console: Console):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[best]}"), TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
        )
        self.tasks: dict[str, int] = {}
        self.first: dict[str, int] = {}  # trials already in storage at the first snapshot
        self.started: set[str] = set()
        self.counts: dict[str, tuple[int, int, int]] = {}  # done, budget, running
        self.total: int | None = None
        self.read_at: dict[str, float] = {}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    # A data set not started yet is read at most this often: it changes only when the workers reach it.
    IDLE_READ_S = 5.0

    def __call__(self, entry, arms: list[ArmStudy]) -> None:
        # Every refresh passes every data set, and reading one costs three queries per arm in the
        # command's own process, which shares the cores with the workers (33 data sets: ~10% of a core
        # went to reading 66 studies about once a second). A finished data set cannot change, and one
        # the workers have not reached changes only when they do.
        key = entry.slug
        if key in self.counts:
            done, total, running = self.counts[key]
            if done >= total and not running:
                return
            if key not in self.started and self.progress.get_time() - self.read_at.get(key, -1e9) < self.IDLE_READ_S:
                return
        self.read_at[key] = self.progress.get_time()  # rich's clock: the ETA's too
        states = [arm_state(a) for a in arms]
        best = max((s.best for s in states if s.best is not None), default=None)
        running = sum(s.running for s in states)
        fields = {"best": "best " + ("-" if best is None else f"{best:.4f}"),
                  "extra": f"{running} running" if running else ""}
        done, total = sum(min(s.complete, s.budget) for s in states), sum(s.budget for s in states)
        if self.total is None:  # the panel's line first: its clock runs from the first snapshot
            self.total = self.progress.add_task(self.TOTAL, total=total, completed=done, best="", extra="")
        new = key not in self.tasks
        if new:
            # Not started yet: a data set's clock runs from its own first trial, not from the panel's
            # start (its time would otherwise include every data set before it).
            self.tasks[key] = self.progress.add_task(key, total=total, completed=done, start=False, **fields)
            self.first[key] = done
        task = self.tasks[key]
        if key not in self.started and (running or done > self.first[key]):
            self.progress.start_task(task)
            self.started.add(key)
        self.progress.update(task, completed=done, total=total, **fields)
        self.counts[key] = (done, total, running)
        done_all, total_all = sum(c[0] for c in self.counts.values()), sum(c[1] for c in self.counts.values())
        running_all = sum(c[2] for c in self.counts.values())
        totals = dict(completed=done_all, total=total_all, best="",
                      extra=f"{running_all} running" if running_all else "")
        if new:
            # The first snapshot arrives one data set at a time: what each adds was in storage before
            # this run, not progress made now, so the ETA's speed estimate starts afresh.
            self.progress.reset(self.total, **totals)
        else:
            self.progress.update(self.total, **totals)
