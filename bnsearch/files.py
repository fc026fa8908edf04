"""Writing export files: whole or not at all, and a failure that names the file, not the database."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable

from .errors import RunFailed

_NO_ROOM = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)


def atomic_write(path: Path | str, write: Callable[[Path], object]) -> Path:
    """`write(tmp)` to a file in a new hidden folder next to `path`, then rename it to `path`.

    A reader (or a user after a failure) finds the previous file or the complete new one, never a
    truncated one (a full disk mid-write). The rename is atomic only within one file system, hence
    the temporary folder's place. An OSError of the disk, however
    deep in the writer's exceptions (Pillow's PNG encoder hides it behind an AttributeError), becomes
    RunFailed naming the file, so the CLI does not blame the storage.
    """
    path = Path(path)
    tmp_dir: str | None = None
    try:
        # Writers open their file by name and follow links. A predictable temporary name in a shared
        # folder lets anyone plant a link there and have the export overwrite its target; in a folder
        # mkdtemp just made (O_EXCL, mode 0700) nobody else can put anything.
        tmp_dir = tempfile.mkdtemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        tmp = Path(tmp_dir) / path.name  # keeps the suffix writers dispatch on
        write(tmp)
        if not stat.S_ISREG(os.lstat(tmp).st_mode):
            raise RunFailed(f"cannot write {path}: the writer left something other than a file; write it again")
        # rename(2) replaces a link found at the final name by this file; it never writes through it.
        os.replace(tmp, path)
    except RunFailed:
        raise
    except Exception as exc:
        failure = output_failure(exc, path)
        if failure is None:
            raise
        raise failure from None
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
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
