"""Does flushing denormals to zero speed up training, and what does it change in the scores?

    python benchmarks/bench_denormal.py [--configs 40] [--epochs 20] [--repeats 3]

Draws --configs configurations of the default config's paired plan (the seeded sampler), trains each
with BN on and off on digits, on 1 thread, with `torch.set_flush_denormal` off and on, back to back
(the order alternates per configuration so drifting load hits both alike). Per setting it prints the
median over repeats of the summed training seconds, the speed-up, the trials whose validation score
changed and the largest change, and the single trial that sped up most.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bnsearch.config import load_config  # noqa: E402
from bnsearch.data import load_dataset  # noqa: E402
from bnsearch.search import sample_configs, trial_seed  # noqa: E402
from bnsearch.train import train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    s = load_config(None).with_overrides(trials=args.configs, device="cpu")
    data = load_dataset(s.data, s.seed)
    plan = sample_configs(s, args.configs)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"CPU: {cpu}; {args.configs} configs x BN on/off, {args.epochs} epochs, 1 thread; "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    totals = {False: [], True: []}
    per_trial = {False: {}, True: {}}
    scores = {False: {}, True: {}}
    for rep in range(args.repeats):
        tot = {False: 0.0, True: 0.0}
        for i, cfg in enumerate(plan):
            for bn in (True, False):
                params = {**s.fixed_params(), **cfg}
                for flush in ((False, True) if (i + rep) % 2 == 0 else (True, False)):
                    torch.set_flush_denormal(flush)
                    t0 = time.perf_counter()
                    r = train(params, data, bn=bn, epochs=args.epochs, seed=trial_seed(s.seed, i))
                    dt = time.perf_counter() - t0
                    tot[flush] += dt
                    per_trial[flush].setdefault((i, bn), []).append(dt)
                    scores[flush][(i, bn)] = r.val_score
        torch.set_flush_denormal(False)
        for f in (False, True):
            totals[f].append(tot[f])
        print(f"  repeat {rep + 1}: off {tot[False]:.1f} s, on {tot[True]:.1f} s "
              f"({tot[False] / tot[True]:.2f}x); load {os.getloadavg()[0]:.2f}", flush=True)
    off, on = statistics.median(totals[False]), statistics.median(totals[True])
    changed = [k for k in scores[False] if scores[False][k] != scores[True][k]]
    diff = max((abs(scores[False][k] - scores[True][k]) for k in changed), default=0.0)
    best = max(per_trial[False], key=lambda k: statistics.median(per_trial[False][k]) / statistics.median(per_trial[True][k]))
    gain = statistics.median(per_trial[False][best]) / statistics.median(per_trial[True][best])
    print(f"training s (median of {args.repeats}): flush off {off:.1f}, on {on:.1f}: {off / on:.2f}x faster with flush")
    print(f"scores changed: {len(changed)} of {len(scores[False])} (largest change {diff:.4g}); "
          f"biggest single-trial gain {gain:.1f}x (config {best[0]}, bn={best[1]}: {plan[best[0]]})")


if __name__ == "__main__":
    main()
