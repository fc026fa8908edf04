"""Process life cycle: signals, and worker processes that never outlive their parent.

(docs/design.md, Worker life cycle.) A worker must not keep training after the process that
started it is gone: nobody would read its results, it holds a core, and with `--jobs 1000` the
orphans outlived the OOM killer's victim. So every worker

- watches the process that asked for it (the command) and sends itself SIGTERM when that exits:
  a pidfd on Linux, elsewhere a poll each second (watch_pid);
- treats SIGTERM exactly like Ctrl-C: the trial in flight is failed with the reason and its
  configuration re-queued (run_claimed does that for KeyboardInterrupt), then the process exits.

The first SIGINT/SIGTERM wins: later ones are ignored, because a second KeyboardInterrupt raised
inside the clean-up would abort the very write that re-queues the trial (a terminal's Ctrl-C
reaches the workers directly and again when the parent forwards it). A raise that Python swallows
(it landed in a garbage-collector callback: "Exception ignored in ...", and the run went on to the
end) is caught by sys.unraisablehook and delivered again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

from ..stopsignals import stop_signals_blocked, unblock_stop_signals  # noqa: F401  (used as lifecycle.*)
from .ownership import owner_tag

# The signal that stopped this process, for "interrupted (SIGTERM)" messages; None until one came.
received: str | None = None


class Terminated(KeyboardInterrupt):
    """SIGTERM (or the parent's death) in a process that handles it like Ctrl-C."""


_redeliver = False


_deferring = 0
_deferred: int | None = None


@contextlib.contextmanager
def deferred_stop():
    """Hold a stop signal (Ctrl-C, SIGTERM) that arrives inside the block until the block ends.

    For imports of C extensions (torch, pandas, scikit-learn): a KeyboardInterrupt raised inside
    an extension's initialisation surfaces as a SystemError with a traceback, not as a clean stop.
    Only the handlers of handle_stop_signals defer; elsewhere the block changes nothing."""
    global _deferring, _deferred
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if _deferring == 0 and _deferred is not None:
            signum, _deferred = _deferred, None
            _handler(signum, None)


def _handler(signum, _frame):
    global received, _redeliver, _deferred
    if _deferring:
        if _deferred is None:
            _deferred = signum
        return
    if received is not None and not _redeliver:
        return  # already stopping: never interrupt the clean-up of the first signal
    _redeliver = False
    if received is None:
        received = signal.Signals(signum).name
    raise Terminated() if received in ("SIGTERM", "SIGHUP") else KeyboardInterrupt()


def _unraisable(unraisable) -> None:
    global _redeliver
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and received is not None:
        import _thread

        _redeliver = True
        # From a thread, a moment later: raised in here it would be swallowed again.
        threading.Timer(0.05, _thread.interrupt_main, args=(signal.SIGINT,)).start()
        return
    _previous_unraisablehook(unraisable)


_previous_unraisablehook = sys.unraisablehook


def handle_stop_signals() -> None:
    """SIGINT, SIGTERM and SIGHUP all raise KeyboardInterrupt once (in the main thread), so `kill PID`
    stops a run the way Ctrl-C does: trials in flight are failed and re-queued, the rest is saved.
    For processes bnsearch owns (the CLI, its workers); a library call leaves signals alone."""
    global _previous_unraisablehook
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    if hasattr(signal, "SIGHUP"):
        # A closed terminal (or ssh session) hangs up the command: by default that killed it on
        # the spot, its trials left RUNNING and its temporary data split behind.
        signal.signal(signal.SIGHUP, _handler)
    if sys.unraisablehook is not _unraisable:
        _previous_unraisablehook, sys.unraisablehook = sys.unraisablehook, _unraisable




def start_worker() -> None:
    """Called first thing in a worker process."""
    import multiprocessing

    handle_stop_signals()
    # The command that asked for this worker: the parent of a spawned worker, but not of a fork
    # server's child (forkserver.py), whose parent is the server, alive while any of its forks lives.
    parent = multiprocessing.parent_process()
    if parent is not None:
        watch_pid(parent.pid)


def watch_pid(pid: int) -> None:
    """Send this process SIGTERM as soon as process `pid` exits, by any signal, kill -9 included (a
    pidfd on Linux >= 5.3, else a poll each second; at once if it is already gone). A real signal,
    not interrupt_main: it waits out a blocked mask (start-up)."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGTERM)
        return
    except (AttributeError, OSError):  # no pidfd here: poll
        threading.Thread(target=_poll_pid, args=(pid,), daemon=True, name="bnsearch-parent-watch").start()
        return

    def wait():
        select.select([fd], [], [])  # readable once the process has exited
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait, daemon=True, name="bnsearch-parent-watch").start()


def _poll_pid(pid: int, every_s: float = 1.0) -> None:
    import time

    while True:
        time.sleep(every_s)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        except PermissionError:
            pass


def stop_workers(procs, *, grace_s: float = 30.0, on_wait=None, resume: bool = False) -> None:
    """Ask live worker processes to stop like Ctrl-C (SIGINT: they fail and re-queue the trial in
    flight), wait up to `grace_s` for them, then kill what is left. `on_wait()` is called about
    every 0.5 s while waiting (the CLI refreshes its progress display from storage). `resume`:
    also send SIGCONT, so a stopped (SIGSTOP) worker wakes up to take the SIGINT."""
    import time

    for p in procs:
        if p.is_alive() and p.pid is not None:
            try:
                os.kill(p.pid, signal.SIGINT)
                if resume:
                    os.kill(p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        for p in procs:
            p.join(timeout=0.5 / max(1, len(procs)))
        if on_wait is not None:
            on_wait()
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(timeout=5)


# --------------------------------------------------------------------------- releasing a worker's trials
# (the ownership tags themselves are in ownership.py, which imports nothing from this package)

def release_own_trials(url: str | None, experiment: str, arms) -> int:
    """After an interrupt: fail and re-queue RUNNING trials this process still holds (tagged with
    its owner_tag). The interrupt can land after a trial was claimed but before run_claimed's own
    clean-up is armed (while its parameters are written); without this the trial stayed RUNNING
    until a later run noticed. Best effort: returns how many were released."""
    import contextlib

    from optuna.trial import TrialState

    from ._optuna_private import running_trials, storage_of
    from .plan import load_arm
    from .stale import requeue

    me, n = owner_tag(), 0
    if not me:
        return 0
    for arm_name in arms:
        with contextlib.suppress(Exception):
            study = load_arm(url, experiment, arm_name).study
            storage = storage_of(study)
            # One query for the RUNNING trials and their owners: Study.get_trials would read every
            # trial of the study first (>10 s with 100,000 queued), while the command waits.
            for tid, _, _, owner in running_trials(study):
                if owner == me:
                    storage.set_trial_user_attr(tid, "error", "interrupted (Ctrl-C)")
                    if storage.set_trial_state_values(tid, TrialState.FAIL):
                        requeue(study, storage.get_trial(tid))
                        n += 1
    return n
