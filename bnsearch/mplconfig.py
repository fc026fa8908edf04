"""Matplotlib's config and cache folder when the default one cannot be written (read-only or missing HOME).

Matplotlib then makes a temporary folder itself, but first prints four warning lines ("mkdir -p failed
…", "Matplotlib created a temporary cache directory …") into the command's output. The CLI calls
use_private_dir_if_needed() before anything imports matplotlib: it points MPLCONFIGDIR at a private
temporary folder, deleted at exit, which is what matplotlib would have done, without the warnings.
It only reads the environment and never imports matplotlib (so `bnsearch --help` stays fast).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path


def _default_dirs() -> list[Path]:
    """The folders matplotlib would use for its config and its cache (matplotlib.get_configdir and
    get_cachedir without MPLCONFIGDIR)."""
    home = Path.home()
    if sys.platform.startswith(("linux", "freebsd")):
        return [Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "matplotlib",
                Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "matplotlib"]
    return [home / ".matplotlib"]


def _usable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)  # what matplotlib does first, so nothing changes when it works
    except OSError:
        return False
    return folder.is_dir() and os.access(folder, os.W_OK)


def use_private_dir_if_needed() -> str | None:
    """Set MPLCONFIGDIR to a new temporary folder when it is unset and a default folder cannot be
    written; return that folder (None when nothing was changed)."""
    if os.environ.get("MPLCONFIGDIR"):
        return None
    try:
        usable = all(_usable(d) for d in _default_dirs())
    except RuntimeError:  # Path.home(): no HOME and no passwd entry
        usable = False
    if usable:
        return None
    folder = tempfile.mkdtemp(prefix="bnsearch-matplotlib-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["MPLCONFIGDIR"] = folder
    return folder
