"""Analysis: the trials DataFrame -> metrics, tuning curves, tests and a verdict (docs/design.md, Analysis).

Pure functions: no I/O, no printing, and every random quantity (bootstrap) derives from an explicit
seed, so the same trials always give the same report. One module per concept:

    common      arm names, the Comparison container and its long table layout
    robustness  score statistics, good fraction, trials to target, divergence, LR window
    curves      tuning curves (V/U estimates, best-so-far)
    importance  sensitivity and Optuna importances
    inference   paired/unpaired tests and bootstrap intervals
    summary     summarize(): every table for one experiment
    repeats     aggregate_repeats(): mean and interval across repeats
    verdict     plain-language sentences from a Comparison, conclusion first
    primary     the primary analysis: quality levels, max-statistic test, score intervals, outcomes, Holm
    tolerance   the noise-derived tolerance and the reference configuration left out
    lr_window   decades of lr where the smoothed P(good) exceeds a level, per optimizer
    heterogeneity  paired difference by hyperparameter level, crossovers
    budget      every robustness metric at each epoch budget, tuning curves against compute
    interaction the inputs x norm 2x2: what the norm recovers, whether it still helps
    multiarm    N arms against a reference (summarize per pair), budgets, interaction
    meta        random-effects pooling, meta-regression, Bayesian signed-rank (panels)
    panel       a panel's pooled scale, pooling and verdict; panelpool: sub-spaces, budgets, 2x2, influence
"""

from .common import *  # noqa: F401,F403
from .common import _floats, _lookup, _rng  # noqa: F401
from .curves import *  # noqa: F401,F403
from .importance import *  # noqa: F401,F403
from .importance import _is_categorical, _param_value  # noqa: F401
from .inference import *  # noqa: F401,F403
from .inference import _diff_of_means, _diff_of_medians, _median  # noqa: F401
from .repeats import *  # noqa: F401,F403
from .robustness import *  # noqa: F401,F403
from .summary import *  # noqa: F401,F403
from .verdict import *  # noqa: F401,F403
from .primary import *  # noqa: F401,F403
from .tolerance import *  # noqa: F401,F403
from .lr_window import *  # noqa: F401,F403
from .heterogeneity import *  # noqa: F401,F403
