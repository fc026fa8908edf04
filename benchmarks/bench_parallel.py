"""Trials per second with 1, 2 and 4 worker processes sharing one study through SQLite.

    python benchmarks/bench_parallel.py [--trials N] [--repeats R] [--jobs 1 2 4] [--config PATH]

Each run is a full `search.run_arms(settings, url, ["bn-on", "bn-off"], jobs=J)` on a fresh SQLite file
(so it includes creating the studies, spawning the workers, their imports and the storage traffic),
with the default config (built-in digits, 20 epochs) and `--trials` paired configurations per arm.
Throughput = COMPLETE trials (both arms) / wall seconds. Printed: median, min and max over the repeats,
and the speed-up of the medians over jobs = 1. On a 2-core machine jobs = 4 oversubscribes the cores;
figures also move with whatever else runs on the machine, so say what else was running when quoting them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bnsearch import search  # noqa: E402
from bnsearch.config import load_config  # noqa: E402


def one_run(settings, jobs: int) -> tuple[float, int, float]:
    """(wall seconds, COMPLETE trials, median in-trial training seconds) of one fresh run."""
    with tempfile.TemporaryDirectory(prefix="bench-par-") as d:
        url = f"sqlite:///{Path(d) / 'bench.db'}"
        t0 = time.perf_counter()
        search.run_arms(settings, url, list(search.ARMS), jobs=jobs)
        wall = time.perf_counter() - t0
        df = search.load_trials(url, settings.name)
        done = df[df.state == "COMPLETE"]
        assert len(done) == 2 * settings.trials, df.state.value_counts().to_dict()
        return wall, len(done), float(done.seconds.median())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="TOML config (default: the built-in digits config)")
    ap.add_argument("--trials", type=int, default=24, help="paired trials per arm (default 24)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()

    settings = load_config(args.config).with_overrides(trials=args.trials, device="cpu")
    print(f"config {settings.source}: {settings.data.dataset}, {settings.epochs} epochs, {args.trials} trials x 2 arms; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    rows = []
    for jobs in args.jobs:
        runs = []
        for r in range(args.repeats):
            wall, n, train_s = one_run(settings, jobs)
            runs.append((n / wall, wall, train_s))
            print(f"  jobs={jobs} run {r + 1}/{args.repeats}: {n} trials in {wall:.1f} s = {n / wall:.2f} trials/s "
                  f"(median training {train_s:.2f} s/trial; load {os.getloadavg()[0]:.1f})", flush=True)
        rows.append((jobs, runs))

    base = statistics.median(t for t, _, _ in rows[0][1])
    print()
    print(f"{'jobs':>4} | {'trials/s median':>15} | {'min':>6} | {'max':>6} | {'wall s median':>13} | "
          f"{'train s/trial':>13} | {'speed-up':>8}")
    print("-" * 84)
    for jobs, runs in rows:
        tps = [t for t, _, _ in runs]
        med = statistics.median(tps)
        print(f"{jobs:>4} | {med:>15.2f} | {min(tps):>6.2f} | {max(tps):>6.2f} | "
              f"{statistics.median(w for _, w, _ in runs):>13.1f} | {statistics.median(s for _, _, s in runs):>13.2f} | "
              f"{med / base:>7.2f}x")
    print(f"\nload average at end {os.getloadavg()[0]:.1f} (other processes on the machine skew these figures)")


if __name__ == "__main__":  # spawned workers re-import this file: only the parent runs the benchmark
    main()
