"""Who holds a trial: a tag naming this process (machine, pid, start time), stored with every trial it
runs, and whether the process a tag names is gone -- so a rerun on the same machine can fail a dead
worker's trials at once instead of waiting out the heartbeat grace period. Only os-level reads: no
import from this package, so stale.py and lifecycle.py can both use it."""

from __future__ import annotations

import os


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def is_stopped(pid: int) -> bool:
    """Whether process `pid` is stopped (SIGSTOP, Ctrl-Z, a debugger): /proc/PID/stat state T or t."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except (OSError, IndexError):
        return False


def _machine() -> str:
    """This kernel boot and pid namespace: pids mean the same process only within both."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def owner_tag() -> str:
    """Identifies the process running a trial (stored in the trial's `worker` user attr), so a
    rerun on the same machine can tell at once that its owner is dead instead of waiting three
    heartbeat intervals: `kill -9` of a `--jobs 1` run left its trial RUNNING for 30 s."""
    machine, pid = _machine(), os.getpid()
    start = _proc_start(pid) if machine else None
    return f"{machine}:{pid}:{start}" if machine and start else ""


def owner_is_dead(tag: str | None) -> bool:
    """True only when `tag` names a process of this machine and pid namespace that no longer runs
    (gone, a zombie, or its pid reused by a later process). Anything else: False (cannot tell)."""
    if not tag:
        return False
    try:
        machine, pid, start = tag.rsplit(":", 2)
        pid_i = int(pid)
    except ValueError:
        return False
    if not machine or machine != _machine():
        return False
    return _proc_start(pid_i) != start
