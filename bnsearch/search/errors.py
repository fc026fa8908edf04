"""The two errors of the search layer; no imports from this package, so every module can raise them."""

from __future__ import annotations


class SearchError(ValueError):
    """Bad usage or input at the storage/experiment level (exit code 2)."""


class StorageFailure(RuntimeError):
    """A storage that failed while in use (disk full, lock held, server gone): one line naming the
    storage (credentials masked) and the fix, and the exit code the CLI uses for it."""

    def __init__(self, message: str, exit_code: int = 1, kind: str = "other", detail: str = ""):
        super().__init__(message)
        self.exit_code, self.kind, self.detail = exit_code, kind, detail
