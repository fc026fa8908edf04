"""Seconds per trial of every norm variant: the fast trainer vs its autograd reference.

    python benchmarks/bench_norms.py [--configs N] [--epochs E] [--repeats R]

A fixed set of configurations (seeded RandomSampler over the default space) is trained on digits with
norm none, batchnorm (before / after the activation) and layernorm, one torch thread, by
``bnsearch.train.train`` (hand-written kernels) and ``train_reference`` (nn.Module + autograd +
torch.optim). Figures: median (min, max) over repeats of the mean seconds per trial, and the speed-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_trainer import draw_configs  # noqa: E402

from bnsearch.data import DataSpec, load_dataset  # noqa: E402
from bnsearch.train import set_threads, train, train_reference  # noqa: E402

VARIANTS = [("none", "before"), ("batchnorm", "before"), ("batchnorm", "after"), ("layernorm", "before")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    set_threads(1)
    data = load_dataset(DataSpec(dataset="digits"), 0)
    configs = draw_configs(args.configs)
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.strip()
    print(f"{cpu}; load before: {os.getloadavg()}; {args.configs} configs x {args.epochs} epochs, 1 thread")
    train(configs[0], data, epochs=1, seed=0)  # warm-up
    print(f"{'variant':<22}{'fast s/trial':>26}{'reference s/trial':>26}{'speed-up':>10}")
    for norm, placement in VARIANTS:
        times = {"fast": [], "ref": []}
        for _ in range(args.repeats):
            for name, fn in (("fast", train), ("ref", train_reference)):
                t0 = time.perf_counter()
                for p in configs:
                    fn(p, data, epochs=args.epochs, seed=0, norm=norm, placement=placement)
                times[name].append((time.perf_counter() - t0) / len(configs))

        def fmt(xs):
            return f"{statistics.median(xs):.3f} ({min(xs):.3f}, {max(xs):.3f})"

        speed = statistics.median(times["ref"]) / statistics.median(times["fast"])
        print(f"{norm + ' ' + placement:<22}{fmt(times['fast']):>26}{fmt(times['ref']):>26}{speed:>9.1f}x")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
