"""Writing export files: whole or not at all, and a failure that names the file, not the database."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Callable

from .errors import RunFailed

_NO_ROOM = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)


def atomic_write(path: Path | str, write: Callable[[Path], object]) -> Path:
    """`write(tmp)` to a hidden file next to `path`, then rename it to `path`.

    A reader (or a user after a failure) finds the previous file or the complete new one, never a
    truncated one (a full disk mid-write). The rename is atomic only within one folder, hence the
    temporary file's place. An OSError of the disk, however
    deep in the writer's exceptions (Pillow's PNG encoder hides it behind an AttributeError), becomes
    RunFailed naming the file, so the CLI does not blame the storage.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")  # keeps the suffix writers dispatch on
    try:
        write(tmp)
        os.replace(tmp, path)
    except Exception as exc:
        failure = output_failure(exc, path)
        if failure is None:
            raise
        raise failure from None
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass
    return path


def output_failure(exc: BaseException, path: Path):
    """RunFailed for an exception caused by the operating system refusing a write, else None."""
    e, seen = exc, 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno is not None:
            if e.errno in _NO_ROOM:
                return RunFailed(f"cannot write {path}: no space left on device; free space or choose another --out")
            why = (e.strerror or str(e)).lower()
            return RunFailed(f"cannot write {path}: {why}; choose a writable --out")
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None
