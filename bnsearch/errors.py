"""The run itself failed (exit code 1), as opposed to bad input (exit code 2): a class the library's
modules raise and the CLI catches, defined apart from both so neither imports the other for it."""


class RunFailed(RuntimeError):
    """The run itself failed (exit code 1), as opposed to bad input (exit code 2)."""
