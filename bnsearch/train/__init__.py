"""Training: one configuration (solo), many at once (packed), and the autograd definition both match.

- :mod:`.solo`: :func:`train` (the hand-written fast path) and :func:`train_reference` (nn.Module +
  autograd + torch.optim: the definition of the semantics, docs/design.md, Training).
- :mod:`.packed`: :func:`train_packed`, many configurations trained together with a leading model
  dimension in every tensor, and :func:`plan_packs`, which groups configurations into fusable packs.

Every name callers imported from the former single module ``bnsearch.train`` is re-exported here,
private ones included (tests and benchmarks check the fast path's ops through them).
"""

from .packed import Member, plan_packs, train_packed
from .solo import (
    _ACT_BWD, _ACT_FWD, _BN_BWD_OUT, _BN_MASK, _LN_BWD_OUT, _LSM_BWD, _NORM_MASK, DIVERGE_FACTOR, DIVERGED_LOSS,
    MOMENTUM, PARAM_KEYS, REGRESSION_FLOOR, TrainResult, _balanced_accuracy, _check_params, _FastMLP, _train_fast,
    _train_reference, batch_bounds, check_metric, diverged_at, epoch_permutations, finite_loss, model_generator,
    score, set_threads, train, train_reference,
)

__all__ = [
    "DIVERGE_FACTOR", "DIVERGED_LOSS", "MOMENTUM", "PARAM_KEYS", "REGRESSION_FLOOR", "Member", "TrainResult",
    "batch_bounds", "check_metric", "diverged_at", "epoch_permutations", "finite_loss", "model_generator",
    "plan_packs", "score", "set_threads", "train", "train_packed", "train_reference",
]
