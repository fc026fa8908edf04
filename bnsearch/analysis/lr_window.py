"""The learning-rate window: how many decades of learning rate give a good score with a stated
probability, from a kernel-smoothed P(good | log10 lr) per optimizer (docs/design.md, LR window).

The old measure (the range of lr over the good trials) grew mechanically with the number of good
trials; a smoothed probability does not, and its bootstrap interval says how sure the width is.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .common import CONFIDENCE, _floats, _rng

BANDWIDTH_DECADES = 0.5  # Gaussian kernel sd in log10(lr)
GRID_POINTS = 200
MIN_TRIALS = 5  # per arm and optimizer; fewer gives "n/a"
N_BOOT_WINDOW = 400


def smoothed_p_good(log_lr: np.ndarray, good: np.ndarray, grid: np.ndarray,
                    weights: np.ndarray | None = None) -> np.ndarray:
    """Nadaraya-Watson estimate of P(good | log10 lr) on `grid`; `weights` (B, n) gives B curves at once."""
    K = np.exp(-0.5 * ((grid[None, :] - log_lr[:, None]) / BANDWIDTH_DECADES) ** 2)  # (n, G)
    w = np.ones((1, log_lr.size)) if weights is None else weights
    with np.errstate(invalid="ignore", divide="ignore"):
        p = ((w * good) @ K) / (w @ K)
    return p[0] if weights is None else p


def window_width(p: np.ndarray, grid: np.ndarray, level: float) -> np.ndarray:
    """Decades of the grid where p >= level (last axis): the grid intervals with both ends at or above
    the level, so a window over the whole searched range is exactly its width (k points span k - 1 steps)."""
    step = (grid[-1] - grid[0]) / (grid.size - 1) if grid.size > 1 else 0.0
    up = p >= level - 1e-12
    return np.sum(up[..., 1:] & up[..., :-1], axis=-1) * step


def lr_window_grid(lrs: Sequence[float]) -> np.ndarray:
    x = np.log10(_floats(lrs))
    x = x[np.isfinite(x)]
    if x.size == 0:
        return np.array([])
    return np.linspace(x.min(), x.max(), GRID_POINTS)


def lr_window_stat(lrs: Sequence[float], good: Sequence[bool], grid: np.ndarray, level: float, *,
                   seed: int = 0, tag: str = "", n_boot: int = N_BOOT_WINDOW) -> tuple[float, float, float]:
    """(width, lo, hi): decades where smoothed P(good | lr) >= level, with a percentile bootstrap
    interval (trials resampled with replacement, level and grid held fixed). NaNs when undefined:
    fewer than MIN_TRIALS trials or no grid."""
    x = np.log10(_floats(lrs))
    g = np.asarray(good, float)
    ok = np.isfinite(x)
    x, g = x[ok], g[ok]
    if x.size < MIN_TRIALS or grid.size < 2 or not np.isfinite(level):
        return (math.nan, math.nan, math.nan)
    width = float(window_width(smoothed_p_good(x, g, grid), grid, level))
    rng = _rng(seed, f"lr-window-{tag}")
    counts = rng.multinomial(x.size, np.full(x.size, 1 / x.size), size=n_boot).astype(float)
    boot = window_width(smoothed_p_good(x, g, grid, counts), grid, level)
    lo, hi = np.nanpercentile(boot, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return (width, float(lo), float(hi))
