"""Keep Optuna silent inside library calls without changing the caller's global state.

Optuna logs "A new study created ..." at INFO and warns about experimental features (heartbeats)
on every use. A library must not print, and must not change a notebook's logging configuration
either, so the verbosity is lowered only for the duration of a call and then restored; the CLI
configures logging for its own process once (cli.configure_logging).
"""

from __future__ import annotations

import contextlib
import functools
import warnings

# Messages Optuna emits on every heartbeat-enabled storage; they say nothing the user can act on.
OPTUNA_NOISE = ("Heartbeat of storage is supposed to be used with Study.optimize",)


@contextlib.contextmanager
def quiet_optuna():
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            silence_warnings()
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def silence_warnings() -> None:
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for message in OPTUNA_NOISE:
        warnings.filterwarnings("ignore", message=message)


def quiet(fn):
    """Decorator: run `fn` inside quiet_optuna()."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with quiet_optuna():
            return fn(*args, **kwargs)
    return wrapper
