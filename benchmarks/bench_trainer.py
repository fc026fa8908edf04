"""Trials per minute: a typical Optuna-example training loop vs bnsearch's ``train``.

    python benchmarks/bench_trainer.py [--quick] [--repeats N] [--device cpu|cuda]

A fixed set of configurations is drawn with a seeded Optuna RandomSampler from the default search
space, each trained with BN on and off on digits. One "run" trains every (config, bn) pair once; the
figures are the median (min, max) over runs of the mean seconds per trial.

(a) baseline: what a user adapting Optuna's PyTorch example writes: DataLoader over a TensorDataset,
    nn.Module, torch.optim, per-epoch validation, one process, torch's default thread count.
(a1) the same loop on one thread: context, since a 2-thread loop suffers most when other processes
    share the cores.
(b) bnsearch.train, one torch thread per process, in this process; and (b2) the same jobs spread over
    2 worker processes (1 thread each), which is how bnsearch runs on 2 cores.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bnsearch.data import DataSpec, load_dataset  # noqa: E402
from bnsearch.model import build_mlp, count_flops, forward_flops  # noqa: E402
from bnsearch.train import batch_bounds, model_generator, set_threads, train  # noqa: E402

EPOCHS = 20


def draw_configs(n: int, seed: int = 0) -> list[dict]:
    import optuna
    from optuna.distributions import CategoricalDistribution as Cat
    from optuna.distributions import FloatDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {
        "layers": IntDistribution(1, 4),
        "width": IntDistribution(16, 512, log=True),
        "activation": Cat(["relu", "tanh", "gelu", "sigmoid"]),
        "init": Cat(["kaiming", "xavier", "normal", "uniform"]),
        "lr": FloatDistribution(1e-4, 1.0, log=True),
        "optimizer": Cat(["sgd", "adam"]),
        "batch_size": Cat([32, 64, 128, 256]),
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [study.ask(space).params for _ in range(n)]


def baseline_train(params: dict, data, *, bn: bool, epochs: int, seed: int, device: str) -> int:
    """Optuna-example-style loop; returns the epochs run (same divergence rule, checked per epoch)."""
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    model = build_mlp(data.n_features, data.n_outputs, layers=params["layers"], width=params["width"],
                      activation=params["activation"], init=params["init"], bn=bn,
                      generator=model_generator(seed)).to(device)
    if params["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=params["lr"])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=params["lr"], momentum=0.9)
    bs = params["batch_size"]
    n = len(data.X_train)
    # drop_last only where the tail is one row (BN cannot train on it), as bnsearch does.
    train_loader = DataLoader(TensorDataset(data.X_train, data.y_train), batch_size=bs, shuffle=True,
                              drop_last=n % bs == 1)
    val_loader = DataLoader(TensorDataset(data.X_val, data.y_val), batch_size=bs)
    test_loader = DataLoader(TensorDataset(data.X_test, data.y_test), batch_size=bs)
    regression = data.task == "regression"

    def evaluate(loader) -> float:
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                pred = model(x).argmax(dim=1)
                correct += pred.eq(y).sum().item()
        return correct / len(loader.dataset)

    first = None
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            out = model(x)
            loss = F.mse_loss(out.squeeze(1), y) if regression else F.cross_entropy(out, y)
            loss.backward()
            opt.step()
            total += loss.item()
            count += 1
        mean = total / count
        first = mean if first is None else first
        evaluate(val_loader)
        if not math.isfinite(mean) or mean > 1e3 * first:
            break
    evaluate(test_loader)
    return epoch + 1


# Worker-process state, built by _init_worker in each spawned process.
_DATA = None
_DEVICE = "cpu"


def _init_worker(device: str) -> None:
    global _DATA, _DEVICE
    set_threads(1)
    _DEVICE = device
    _DATA = load_dataset(DataSpec(dataset="digits"), 0).to(device)


def _fast_job(job) -> int:
    params, bn, epochs = job
    return train(params, _DATA, bn=bn, epochs=epochs, seed=0, device=_DEVICE).epochs_run


def gemm_gflops(threads: int, n: int = 2048, reps: int = 5) -> float:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    torch.set_num_threads(old)
    return 2 * n**3 / statistics.median(times) / 1e9


def summarize(times: list[float]) -> tuple[float, float, float]:
    return statistics.median(times), min(times), max(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test (< 1 min): 2 configs, 2 epochs, 2 runs")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--configs", type=int, default=None)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here")
    n_cfg = args.configs or (2 if args.quick else 8)
    epochs = 2 if args.quick else EPOCHS
    repeats = args.repeats or (2 if args.quick else 5)
    device = args.device

    default_threads = torch.get_num_threads()
    data = load_dataset(DataSpec(dataset="digits"), 0)
    data_dev = data.to(device)
    configs = draw_configs(n_cfg)
    jobs = [(p, bn, epochs) for p in configs for bn in (True, False)]

    print(f"bench_trainer: digits ({len(data.X_train)} train rows), {n_cfg} configs x BN on/off = {len(jobs)} "
          f"trials per run, {epochs} epochs, {repeats} runs, device {device}, torch {torch.__version__}, "
          f"{mp.cpu_count()} CPUs, default threads {default_threads}")
    print(f"{'#':>2} {'layers':>6} {'width':>5} {'act':>7} {'init':>8} {'lr':>8} {'opt':>4} {'batch':>5}")
    for i, p in enumerate(configs):
        print(f"{i:>2} {p['layers']:>6} {p['width']:>5} {p['activation']:>7} {p['init']:>8} {p['lr']:>8.2g} "
              f"{p['optimizer']:>4} {p['batch_size']:>5}")

    def run_baseline() -> list[int]:
        return [baseline_train(p, data, bn=bn, epochs=e, seed=0, device=device) for p, bn, e in jobs]

    def run_fast(per_job: list[list[float]]) -> list[int]:
        epochs_run = []
        for j, (p, bn, e) in enumerate(jobs):
            tj = time.perf_counter()
            epochs_run.append(train(p, data_dev, bn=bn, epochs=e, seed=0, device=device).epochs_run)
            per_job[j].append(time.perf_counter() - tj)
        return epochs_run

    def timed(fn, *a):
        t = time.perf_counter()
        out = fn(*a)
        return (time.perf_counter() - t) / len(jobs), out

    load_before = os.getloadavg()[0]
    peaks = [(gemm_gflops(1), gemm_gflops(2))] if device == "cpu" else []
    baseline_train(configs[0], data, bn=True, epochs=1, seed=0, device=device)  # warm-ups
    set_threads(1)
    train(configs[0], data_dev, bn=True, epochs=1, seed=0, device=device)
    torch.set_num_threads(default_threads)
    pool = None
    if device == "cpu":
        pool = mp.get_context("spawn").Pool(2, initializer=_init_worker, initargs=(device,))
        pool.map(_fast_job, [(configs[0], True, 1)] * 2, chunksize=1)

    # Each run times (a), (b) and (b2) back to back, so load from other processes on a shared
    # machine hits all three alike.
    base_times, base1_times, fast_times, par_times = [], [], [], []
    per_job: list[list[float]] = [[] for _ in jobs]
    for r in range(repeats):
        torch.set_num_threads(default_threads)  # (a): torch's default, as a user would run it
        dt, base_epochs = timed(run_baseline)
        base_times.append(dt)
        set_threads(1)  # (a1): the same loop on one thread, a reference that contention hurts less
        dt, _ = timed(run_baseline)
        base1_times.append(dt)
        # (b)
        dt, fast_epochs = timed(run_fast, per_job)
        fast_times.append(dt)
        torch.set_num_threads(default_threads)
        if pool is not None:  # (b2): jobs handed out one at a time, longest first (as measured in (b))
            order = sorted(range(len(jobs)), key=lambda j: -statistics.median(per_job[j]))
            dt, _ = timed(pool.map, _fast_job, [jobs[j] for j in order], 1)
            par_times.append(dt)
        print(f"  run {r + 1}/{repeats}: (a) {base_times[-1]:.3f}  (a1) {base1_times[-1]:.3f}  (b) {fast_times[-1]:.3f}"
              + (f"  (b2) {par_times[-1]:.3f}" if par_times else "") + " s/trial", flush=True)
    if pool is not None:
        pool.close()
        pool.join()
    if device == "cpu":
        peaks.append((gemm_gflops(1), gemm_gflops(2)))
    load_after = os.getloadavg()[0]

    # FLOPs actually done (diverged runs stop early): fwd+bwd on every training row, eval each epoch, test.
    n_train = sum(e - s for s, e in batch_bounds(len(data.X_train), 1))
    flops = 0
    for (p, bn, _), ep in zip(jobs, fast_epochs):
        rows = sum(e - s for s, e in batch_bounds(n_train, p["batch_size"]))
        flops += count_flops(data.n_features, data.n_outputs, layers=p["layers"], width=p["width"],
                             n_train=rows, n_eval=len(data.X_val), epochs=ep)
        flops += forward_flops(data.n_features, data.n_outputs, p["layers"], p["width"]) * len(data.X_test)
    flops_per_trial = flops / len(jobs)
    # The least-disturbed GEMM measurement (before or after) stands for the machine's peak.
    peak1 = max(p[0] for p in peaks) if peaks else float("nan")
    peak2 = max(p[1] for p in peaks) if peaks else float("nan")

    rows = [("(a) baseline DataLoader loop", f"1 proc x {default_threads} thr", base_times, None),
            ("(a1) same loop, 1 thread", "1 proc x 1 thr", base1_times, None),
            ("(b) bnsearch.train", "1 proc x 1 thr", fast_times, peak1)]
    if par_times:
        rows.append(("(b2) bnsearch.train", "2 procs x 1 thr", par_times, peak2))
    a_med = statistics.median(base_times)
    print()
    print(f"{'trainer':<30} {'parallelism':<16} {'s/trial median':>14} {'(min..max)':>17} {'trials/min':>10} "
          f"{'vs (a)':>7} {'GFLOP/s':>8} {'of peak':>7}")
    for name, par, times, peak in rows:
        med, lo, hi = summarize(times)
        gf = flops_per_trial / med / 1e9
        frac = f"{gf / peak:>7.0%}" if peak and peak == peak else f"{'':>7}"
        print(f"{name:<30} {par:<16} {med:>14.3f} {f'({lo:.3f}..{hi:.3f})':>17} {60 / med:>10.0f} "
              f"{a_med / med:>6.1f}x {gf:>8.1f} {frac}")
    print(f"\nratio (b)/(a), 1 process: {a_med / statistics.median(fast_times):.1f}x"
          + (f"; (b2)/(a), 2 processes: {a_med / statistics.median(par_times):.1f}x" if par_times else "")
          + f"   [vs (a1): {statistics.median(base1_times) / statistics.median(fast_times):.1f}x"
          + (f" / {statistics.median(base1_times) / statistics.median(par_times):.1f}x]" if par_times else "]"))
    if device == "cpu":
        print(f"fp32 GEMM 2048^3 peak on this machine: {peak1:.0f} GFLOP/s (1 thread), {peak2:.0f} GFLOP/s (2 threads); "
              f"matmul work per trial {flops_per_trial / 1e9:.2f} GFLOP (fwd+bwd = 3x fwd)")
    print(f"1-min load average before / after: {load_before:.2f} / {load_after:.2f} on {os.cpu_count()} CPUs "
          "(above ~1 means other processes shared the cores)")
    print(f"epochs run, baseline vs bnsearch: {sum(base_epochs)} vs {sum(fast_epochs)} (divergence stops both)")
    print("\nper configuration, bnsearch.train 1 thread (median s over runs, BN on / off):")
    for i, p in enumerate(configs):
        on, off = statistics.median(per_job[2 * i]), statistics.median(per_job[2 * i + 1])
        print(f"  #{i}: {on:.3f} / {off:.3f}")


if __name__ == "__main__":
    main()
