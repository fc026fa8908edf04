"""Run a function in a forked child while this process goes on: the report's second core.

After a run's last trial only the report is left, and it ran on one core while the other idled
(~3.5 s of a 30 s, 2-core run). Its biggest independent parts (the budget analysis, half of the
PNGs) are handed to a forked child. A fork is cheap here and shares the loaded libraries and the
trials in memory; the child computes, sends its result back pickled through a pipe and leaves
with os._exit (no atexit handlers, no clean-up of connections or buffers that belong to this
process). It never prints and never touches storage.

Whatever goes wrong in the child (an exception, a crash, a result that cannot be pickled, a
timeout), result() runs the function here instead: same answer, only slower. So does every call
where fork is unavailable or only one core is there to use.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import time
from typing import Any, Callable


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Forked:
    """fn() computed in a forked child (when `parallel` and possible); result() returns its value."""

    def __init__(self, fn: Callable[[], Any], parallel: bool = True):
        self.fn = fn
        self.pid: int | None = None
        if not parallel or not hasattr(os, "fork") or cores() < 2:
            return
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _child(w, fn)  # never returns
        os.close(w)
        self.pid, self.fd = pid, r

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()  # also when the caller failed before result()

    def result(self, timeout_s: float = 300.0) -> Any:
        try:
            ok, value = self._collect(timeout_s)
        finally:
            self.close()
        return value if ok else self.fn()

    def _collect(self, timeout_s: float) -> tuple[bool, Any]:
        if self.pid is None:
            return False, None
        chunks, deadline = [], time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.fd], [], [], left)[0]:
                break
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:  # EOF: the child is done
                try:
                    return True, pickle.loads(b"".join(chunks))
                except Exception:  # nothing, or half a result: the child failed
                    return False, None
            chunks.append(chunk)
        return False, None

    def close(self) -> None:
        if self.pid is None:
            return
        os.close(self.fd)
        pid, self.pid = self.pid, None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # done by now, unless the caller was interrupted
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _child(fd: int, fn: Callable[[], Any]) -> None:
    import warnings

    code = 1
    try:
        warnings.simplefilter("ignore")  # nothing from here may reach the terminal
        data = pickle.dumps(fn())
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        code = 0
    except BaseException:  # noqa: BLE001 - the parent computes it itself
        pass
    finally:
        os._exit(code)
