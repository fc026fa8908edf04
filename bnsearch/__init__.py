"""bnsearch: does BatchNorm make hyperparameter search easier, and by how much?

The CLI is a thin layer over these functions:

    from bnsearch import load_config, run_compare, load_trials, summarize
    report = run_compare("configs/skewed.toml", trials=40)       # runs what is missing, exports
    df = load_trials("sqlite:///results/bnsearch.db", "skewed-raw")  # every trial, one row each
    report = analyze_studies(["scaled", "raw"], storage="sqlite:///my.db")  # any Optuna studies
    publish(report, Path("out"))                                     # the files compare writes
"""

__version__ = "0.2.0"

# Imported on first use so `bnsearch --help` and config errors answer without loading torch/scipy.
_API = {
    "load_config": "config", "run_study": "api", "run_compare": "api", "run_worker": "api",
    "build_report": "api", "export": "api", "show_summary": "api", "load_trials": "search",
    "list_experiments": "search", "summarize": "analysis", "aggregate_repeats": "analysis",
    "build_mlp": "model", "load_dataset": "data", "train": "train", "cpu_signature": "hardware",
    "analyze_studies": "foreign", "publish": "api",
}
__all__ = ["__version__", *_API]


def __dir__() -> list[str]:
    # Lazily exported names must show up in dir(), tab completion and help() like eager ones.
    return sorted({*globals(), *_API})


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'bnsearch' has no attribute {name!r}")
