"""Calibration of the verdict (docs/design.md, Primary endpoint): no training, synthetic scores.

A/A: both arms drawn from one distribution (a shared per-configuration quality plus independent
noise, pairs swapped at random), so any directional verdict is a false positive; it must occur in
at most 5% of the draws. Planted effect: the treatment arm gets a real lift on a share of the
configurations; the verdict must find it most of the time. Both rates are printed in the assertion
messages (and on stdout with -s).
"""

from __future__ import annotations

import numpy as np

from bnsearch import analysis as A

N_DRAWS = 300
N_CONFIGS = 80
N_VAL = 360


def _scores(rng, n, lift=0.0):
    """Accuracy-like scores on 360 validation rows: most configs mediocre, a few near the top."""
    quality = np.where(rng.random(n) < 0.3, rng.uniform(0.93, 0.975, n), rng.uniform(0.1, 0.9, n))
    on = np.clip(quality + rng.normal(0, 0.006, n) + lift, 0, 1)
    off = np.clip(quality + rng.normal(0, 0.006, n), 0, 1)
    return np.round(on * N_VAL) / N_VAL, np.round(off * N_VAL) / N_VAL


def _outcome(on, off, paired=True):
    # the same steps summarize() takes: shared s*, noise tolerance, reference left out, primary endpoint
    s_star = max(on.max(), off.max())
    tol = A.noise_tolerance(s_star, N_VAL, "classification")
    scores = {"a": on, "b": off}
    ref = A.reference_mask(scores, {"a": np.arange(on.size), "b": np.arange(off.size)})
    if paired:
        keep = ~(ref["a"] | ref["b"])
        return A.primary_endpoint(on[keep] >= s_star - tol - 1e-12, off[keep] >= s_star - tol - 1e-12,
                                  paired=True).outcome
    return A.primary_endpoint(on[~ref["a"]] >= s_star - tol - 1e-12, off[~ref["b"]] >= s_star - tol - 1e-12,
                              paired=False).outcome


def _rate(lift, paired, seed):
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(N_DRAWS):
        on, off = _scores(rng, N_CONFIGS, lift)
        if lift == 0:
            swap = rng.random(N_CONFIGS) < 0.5  # exchangeable pairs: swap arms within pairs at random
            on, off = np.where(swap, off, on), np.where(swap, on, off)
        if not paired:
            off = _scores(rng, N_CONFIGS)[1]  # an independent set of configurations
        hits += _outcome(on, off, paired) in ("easier", "harder") if lift == 0 else _outcome(on, off, paired) == "easier"
    return hits / N_DRAWS


def test_aa_false_positive_rate_paired_and_unpaired():
    for paired in (True, False):
        rate = _rate(0.0, paired, seed=11)
        print(f"A/A {'paired' if paired else 'unpaired'}: directional verdict in {rate:.1%} of {N_DRAWS} draws")
        assert rate <= 0.05, f"A/A {'paired' if paired else 'unpaired'}: directional verdict in {rate:.1%} of {N_DRAWS} draws"


def test_planted_effect_is_detected():
    rate = _rate(0.04, True, seed=12)
    print(f"planted +4 pt lift, paired: 'easier' in {rate:.1%} of {N_DRAWS} draws")
    assert rate >= 0.9, f"planted +4 pt lift, paired: 'easier' in {rate:.1%} of {N_DRAWS} draws"
