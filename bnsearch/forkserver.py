"""Worker processes of a CLI run are forks of a server that loads their libraries at the command's
first line (docs/design.md, Workers: start-up).

Before it can claim a trial a worker needs Optuna, SQLAlchemy and torch loaded: ~1.4 s of imports
on a 2-core VM, the same in every worker. Spawned after the CLI's own imports and the plan (~0.9 s),
workers claimed their first trial 2.6-3.9 s after the command started. So for the commands that run
workers, the entry point (bnsearch/__main__.py) starts multiprocessing's fork server before anything
else, preloading those libraries while the CLI parses, checks storage and writes the plan; each
worker is then a fork of it, running within milliseconds of being asked for. Forking a process that
has only imported libraries (no torch threads, no open connections) is the safe use of fork.

Only the CLI does this, and hands the server to the library (search.worker.use_fork_server); the
library never imports this module. A library call keeps spawning: a fork server started in a
notebook would give every later run the environment (and the preloaded modules) of the first.

This module must stay cheap to import: the entry point imports it before anything else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from .stopsignals import stop_signals_blocked

# What a worker imports before its first claim: torch comes with bnsearch.train; Optuna imports
# alembic (and mako, pygments) lazily when it opens storage, ~0.25 s in every worker otherwise. A
# name that stops existing is skipped (the server ignores an ImportError): nothing breaks, the
# worker imports what it needs itself.
# bnsearch.forkserver_init first: the server dies with the command, even in the middle of these imports.
PRELOAD = ["bnsearch.forkserver_init", "bnsearch.search.worker", "bnsearch.train", "bnsearch.data", "numpy.random",
           "sqlalchemy.dialects.sqlite", "alembic.command", "alembic.config", "alembic.migration", "alembic.script"]

_context = None  # the fork server's multiprocessing context, once this process started it


def _jobs(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a in ("--jobs", "-j") and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--jobs="):
            return a.split("=", 1)[1]
    return None


def runs_workers(argv: list[str]) -> bool:
    """Whether this command line will (most likely) start worker processes: `compare`, `study` and
    `panel` with more than one job. A wrong guess costs only CPU: an unused server is killed at exit."""
    if not argv or argv[0] not in ("compare", "study", "panel") or "--help" in argv:
        return False
    return _jobs(argv) not in ("1", "0")


def start_server(argv: list[str]) -> None:
    """Start the fork server, preloading PRELOAD, if this command line runs workers (POSIX only).
    Returns at once; the server loads in its own process. On any failure workers are spawned."""
    global _context
    if _context is not None or not runs_workers(argv) or sys.platform == "win32":
        return
    import multiprocessing as mp
    from multiprocessing import forkserver

    try:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        # The server is exec'd with this mask: Ctrl-C during its imports stays pending (and its forks
        # inherit it, until their handlers are installed), instead of a traceback out of torch.
        with stop_signals_blocked():
            forkserver.ensure_running()
    except Exception:  # e.g. no writable folder for its socket: spawn instead
        return
    _context = ctx


def context():
    """The fork server's context when this process started one (the CLI), else None (spawn)."""
    return _context


def stop_server() -> None:
    """Kill the fork server at the command's end (every worker has exited by then). On its own it
    would only exit once it finished loading and saw the command gone: up to ~1.5 s after an early
    error or Ctrl-C. It holds no state."""
    global _context
    if _context is None:
        return
    _context = None
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)  # no public accessor
    if pid:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
