"""What "good" means: the tolerance delta, the shared best s*, and the reference left out
(docs/design.md, Tolerance and s*).

* delta defaults to NOISE_MULTIPLE standard errors of the best validation score, plus the expected
  noise excess of a maximum: s* is the best of many noisy scores, so when m configurations are about
  as good as the best their observed maximum sits E[max of m standard normals] SEs above their true
  score, and "within 2 SE of s*" would shrink with the budget (55% of identical configurations
  judged good at 10 per arm, 18% at 200; with the term 84% and 69%). m counts the contenders:
  trials within 2 SE of s*. The SE is a binomial SE
  for accuracy (Agresti-Coull, so a perfect score still has a non-zero SE), and for R^2 the
  large-sample SE (1 - R^2) sqrt(2 / n_val) of an MSE ratio whose denominator -- the variance of
  the one validation set every configuration shares -- cancels between configurations. For
  accuracy it is rounded up to whole validation rows.
* s* is the best score of all arms together, and the configuration that sets it is the reference:
  it is left out of every good count. It is good by construction (leave-one-out does not change
  that: the maximum is always within delta of the next best), so counting it would hand its arm a
  free good trial and, paired, a guaranteed discordant pair.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


NOISE_MULTIPLE = 2.0
PROFILE_MULTIPLES = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


def score_se(score: float, n_val: int | None, task: str, class_counts=None, metric: str = "accuracy") -> float:
    """Validation-noise standard error of one score measured on n_val rows; NaN when unknown.

    Balanced accuracy (the mean of per-class recalls) has SE (1/K) sqrt(sum_k p_k (1 - p_k) / n_k);
    with every recall taken equal to the score that is a binomial SE on K^2 / sum(1/n_k) rows (K
    times the harmonic mean of the class counts), larger than n_val's when the classes are imbalanced."""
    if not n_val or not np.isfinite(score):
        return math.nan
    if task == "classification" and metric == "balanced_accuracy" and class_counts:
        present = [c for c in class_counts if c > 0]
        n = len(present) ** 2 / sum(1 / c for c in present)
        p = (score * n + 2) / (n + 4)  # Agresti-Coull, as for accuracy
        return math.sqrt(p * (1 - p) / (n + 4))
    if task == "classification":
        k = round(score * n_val)
        p = (k + 2) / (n_val + 4)  # Agresti-Coull: defined at 0 and 1
        return math.sqrt(p * (1 - p) / (n_val + 4))
    return (1 - min(score, 1.0)) * math.sqrt(2.0 / n_val)


def expected_max_normal(m: int) -> float:
    """E[max of m independent standard normals] (0 for m = 1), by quadrature of m x phi(x) Phi(x)^(m-1).

    Hand-written: scipy has no order-statistic moments of the normal."""
    from scipy import integrate, stats

    if m <= 1:
        return 0.0
    val, _ = integrate.quad(lambda x: m * x * stats.norm.pdf(x) * stats.norm.cdf(x) ** (m - 1), -12, 12, limit=200)
    return float(val)


def failure_cutoff(baseline: float | None, n_val: int | None, task: str, class_counts=None,
                   metric: str = "accuracy") -> float:
    """The score below which a run failed to train: within NOISE_MULTIPLE standard errors (its own
    validation noise) of the constant predictor's score, i.e. not distinguishable from it. NaN when
    the constant predictor's score is unknown; the score itself when the validation size is.

    Not the constant predictor + δ: δ carries the expected excess of a maximum (s* is the best of
    many scores), which says nothing about one run against a constant, and on imbalanced tables it
    put even the best run below the cutoff (100% "failed to train" beside 67% "good")."""
    if baseline is None or not np.isfinite(baseline):
        return math.nan
    se = score_se(baseline, n_val, task, class_counts, metric)
    return float(baseline + (NOISE_MULTIPLE * se if np.isfinite(se) else 0.0))


def noise_tolerance(s_star: float, n_val: int | None, task: str, multiple: float = NOISE_MULTIPLE,
                    scores: np.ndarray | None = None, class_counts=None, metric: str = "accuracy") -> float:
    """Default delta: (`multiple` + E[max of m normals]) SEs of the best score, m = the trials within
    `multiple` SEs of s* among `scores` (1 when not given); accuracy: rounded up to whole validation rows."""
    se = score_se(s_star, n_val, task, class_counts, metric)
    if not np.isfinite(se):
        return math.nan
    m = 1
    if scores is not None:
        s = np.asarray(scores, float)
        m = max(1, int(np.sum(s[np.isfinite(s)] >= s_star - multiple * se - 1e-12)))
    delta = (multiple + expected_max_normal(m)) * se
    if task == "classification" and metric != "balanced_accuracy":  # whole validation rows
        delta = math.ceil(delta * n_val - 1e-9) / n_val
    return float(delta)


def reference_mask(scores: dict[str, np.ndarray], order: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """True for the single trial that sets s*: on a tie the lowest `order` (config index or trial
    number), then the first arm, so the choice does not depend on which arm happened to be read first."""
    best, where = None, None
    for k, (arm, s) in enumerate(scores.items()):
        for i in range(len(s)):
            if np.isfinite(s[i]):
                key = (s[i], -order[arm][i], -k)
                if best is None or key > best:
                    best, where = key, (arm, i)
    out = {arm: np.zeros(len(s), bool) for arm, s in scores.items()}
    if where is not None:
        out[where[0]][where[1]] = True
    return out


def profile_grid(tolerance: float, scores: np.ndarray, s_star: float) -> list[float]:
    """delta values for the tolerance profile: multiples of the chosen delta (or of the score spread)."""
    unit = tolerance if tolerance > 0 else (s_star - float(np.median(scores))) / 4 if scores.size else 0.0
    if not np.isfinite(unit) or unit <= 0:
        return [0.0]
    grid = sorted({round(m * unit, 12) for m in PROFILE_MULTIPLES} | {round(tolerance, 12)})
    return grid


def profile_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["delta", "arm", "value", "lo", "hi"])
