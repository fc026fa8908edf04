"""What the simultaneous critical value costs: power and simultaneous coverage of the primary
analysis with the sign-flip critical value alone (before) and with the larger of it and Bonferroni's
(now), on the same simulated draws, side by side.

    python benchmarks/bench_critical.py [--draws 300] [--n 100]

Prints, per effect shape and lift: the share of draws with a directional claim of the right sign
("power"; for A/A the false-claim rate) and the share whose intervals cover the true difference at
every level at once. The draws are the simulation of tests/test_simultaneous.py.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_simultaneous import N_VAL, _draw  # noqa: E402

from bnsearch.analysis.common import _rng  # noqa: E402
from bnsearch.analysis.primary import (ALPHA, _critical, _flags, _intervals, _null_max, _paired_z,  # noqa: E402
                                       quality_levels)
from bnsearch.analysis.tolerance import noise_tolerance  # noqa: E402


def decide(t, r, seed):
    """(claims, covers) under both rules, for one paired draw (reference configuration left out)."""
    pooled = np.concatenate([t, r])
    s_star = float(pooled.max())
    tol = noise_tolerance(s_star, N_VAL, "classification", scores=pooled)
    keep = np.arange(t.size) != int(np.argmax(np.maximum(t, r)))
    t, r = t[keep], r[keep]
    lv = quality_levels(tol, np.concatenate([t, r]), s_star)
    th = lv["threshold"].to_numpy(float)
    gt, gr = _flags(t, th), _flags(r, th)
    z = _paired_z(gt.astype(np.int8) - gr.astype(np.int8))
    null, exact = _null_max(gt, gr, True, 4000, _rng(seed, "primary"))
    c_flip = max(_critical(null, exact, ALPHA), float(stats.norm.ppf(1 - ALPHA / 2)))
    c_now = max(_critical(null, exact, ALPHA), float(stats.norm.ppf(1 - ALPHA / (2 * len(z)))))
    out = {}
    for name, c in (("before", c_flip), ("now", c_now)):
        rej = np.abs(z) > c
        up, down = bool((rej & (z > 0)).any()), bool((rej & (z < 0)).any())
        out[name] = ("easier" if up and not down else "harder" if down and not up else "none",
                     np.array(_intervals(gt, gr, True, c)), th)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--n", type=int, default=100)
    a = ap.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"{a.draws} draws of {a.n} paired configurations per case; CPU {cpu}")
    print(f"{'case':28s} {'claims before':>14s} {'claims now':>11s} {'coverage before':>16s} {'coverage now':>13s}")
    for shape, lift in (("aa", 0.0), ("shift", 0.01), ("shift", 0.02), ("shift", 0.04), ("poor", 0.3)):
        rng = np.random.default_rng(7)
        big = None if shape == "aa" else _draw(np.random.default_rng(999), 400_000, shape, lift)
        claims = {"before": 0, "now": 0}
        cover = {"before": 0, "now": 0}
        for i in range(a.draws):
            t, r = _draw(rng, a.n, shape, lift)
            if shape == "aa":
                sw = rng.random(t.size) < 0.5
                t, r = np.where(sw, r, t), np.where(sw, t, r)
            for name, (o, ci, th) in decide(t, r, i).items():
                claims[name] += (o != "none") if shape == "aa" else (o == "easier")
                true = np.zeros(th.size) if big is None else \
                    (big[0][None] >= th[:, None] - 1e-12).mean(1) - (big[1][None] >= th[:, None] - 1e-12).mean(1)
                cover[name] += bool(np.all((ci[:, 0] - 1e-9 <= true) & (true <= ci[:, 1] + 1e-9)))
        label = "A/A (false claims)" if shape == "aa" else f"{shape} +{100 * lift:.0f} pts"
        print(f"{label:28s} {claims['before'] / a.draws:14.3f} {claims['now'] / a.draws:11.3f} "
              f"{cover['before'] / a.draws:16.3f} {cover['now'] / a.draws:13.3f}", flush=True)


if __name__ == "__main__":
    main()
