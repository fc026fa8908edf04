"""bnsearch: does BatchNorm make hyperparameter search easier, and by how much?

Public API (the CLI is a thin layer over these):
    load_config, run_study, run_compare, load_trials, summarize, list_experiments
"""

__version__ = "0.1.0"
