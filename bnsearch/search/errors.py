"""The errors of the search layer, and the exit codes a worker process reports them with; no
imports from this package, so every module can raise them."""

from __future__ import annotations


class SearchError(ValueError):
    """Bad usage or input at the storage/experiment level (exit code 2)."""


class StorageFailure(RuntimeError):
    """A storage that failed while in use (disk full, lock held, server gone): one line naming the
    storage (credentials masked) and the fix, and the exit code the CLI uses for it."""

    def __init__(self, message: str, exit_code: int = 1, kind: str = "other", detail: str = ""):
        super().__init__(message)
        self.exit_code, self.kind, self.detail = exit_code, kind, detail


# Worker exit codes for storage failures, so the parent can say why a worker stopped without
# any channel but the exit status (a traceback per worker said the same thing N times).
STORAGE_EXIT = {"full": 71, "locked": 72, "corrupt": 73, "readonly": 74, "unreachable": 75, "timeout": 76,
                "other": 77, "race": 77}
EXIT_KIND = {v: k for k, v in STORAGE_EXIT.items() if k != "race"}
OUT_OF_MEMORY_EXIT = 78  # a worker's MemoryError (or torch's allocation failure)
