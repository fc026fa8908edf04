"""Speed at panel scale: `bnsearch panel` end to end, and the trainer against a DataLoader loop on the
panel's largest data set, side by side in one run.

    python benchmarks/bench_panel.py                                   # configs/panel.toml, fresh storage
    python benchmarks/bench_panel.py --out docs/samples/panel          # ... and keep its report there
    python benchmarks/bench_panel.py --config /tmp/tiny.toml --configs 4
    python benchmarks/bench_panel.py --config configs/panel-30.toml --jobs 2 --configs 0 \
        --out docs/samples/panel-30                                    # the big panel only (~10 min)

Part 1 runs the real command, `python -m bnsearch panel CONFIG --jobs J --storage URL --out D`, in a
fresh subprocess on a fresh SQLite file, timed from just before the subprocess starts (interpreter
start-up, imports, every data set's plan, workers, trials, summaries, pooling, plots and exit all
count). Training time is measured the way benchmarks/bench_e2e.py does it: its sitecustomize hook
logs every bnsearch.train.train call in every process. From that:

    wall           seconds of the whole command
    trials/min     train() calls finished / wall x 60
    efficiency     sum of train() seconds / (wall x jobs): the share of the workers' time spent training
                   (the target for a panel is 0.90 or more; the line says whether it was met)
    stored s       the trials' own `seconds` attrs summed from storage (a cross-check of the hook)

Part 2 trains the same configurations (drawn from the panel's search space with a seeded random
sampler) on the panel's largest data set (most rows), BN on and off, with (a) a plain torch
DataLoader loop (benchmarks/bench_trainer.py's baseline: nn.Module, torch.optim, per-epoch
validation) and (b) bnsearch.train.train, both on one thread as a worker runs, and prints the mean
seconds per trial of each. The prepared-split cache is the user's own (a run on a warm machine).
`--configs 0` leaves part 2 out.

Figures move with whatever else runs on the machine: the CPU and the load average are printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_e2e import HOOK, cpu_model, load  # noqa: E402


def run_panel_command(config: Path, jobs: int, url: str, out: Path, tmp: Path) -> dict:
    hook_dir = tmp / "hook"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(HOOK)
    log = tmp / "train.log"
    env = {**os.environ, "BENCH_E2E_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(hook_dir), str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cmd = [sys.executable, "-m", "bnsearch", "panel", str(config), "--jobs", str(jobs), "--storage", url,
           "--out", str(out)]
    load_before = load()
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    calls = [tuple(map(float, line.split()[1:])) for line in log.read_text().splitlines()] if log.exists() else []
    train_s = sum(b - a for a, b in calls)
    return {"wall": wall, "trials": len(calls), "train_s": train_s, "eff": train_s / (wall * jobs),
            "tpm": len(calls) / wall * 60, "load_before": load_before, "load_after": load(),
            "stdout": proc.stdout}


def stored_seconds(url: str, panel) -> tuple[float, int]:
    from bnsearch.search import load_trials

    total, n = 0.0, 0
    for e in panel.entries:
        df = load_trials(url, e.settings.name, e.settings.arm_names())
        done = df[df["state"] == "COMPLETE"]
        total += float(done["seconds"].sum())
        n += len(done)
    return total, n


def trainer_vs_dataloader(panel, configs: int, seed: int = 0) -> dict:
    import optuna
    import torch

    from bench_trainer import baseline_train
    from bnsearch.data import load_prepared
    from bnsearch.panel import table_traits as traits
    from bnsearch.train import set_threads, train

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sizes = [traits(e.settings.data, e.settings.seed)["rows"] for e in panel.entries]
    entry = panel.entries[max(range(len(sizes)), key=sizes.__getitem__)]
    s = entry.settings
    data = load_prepared(s.data, s.seed)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    fixed = s.fixed_params()
    params = [{**fixed, **study.ask(s.distributions()).params} for _ in range(configs)]
    threads = torch.get_num_threads()
    set_threads(1)
    try:
        # Untimed first calls: lazy imports and the allocator's first growth are not a trial's cost.
        baseline_train(params[0], data, bn=True, epochs=1, seed=0, device="cpu")
        train(params[0], data, bn=True, epochs=1, seed=0, device="cpu")
        times = {"dataloader": [], "bnsearch": []}
        for i, p in enumerate(params):
            for bn in (True, False):
                t = time.perf_counter()
                baseline_train(p, data, bn=bn, epochs=s.epochs, seed=i, device="cpu")
                times["dataloader"].append(time.perf_counter() - t)
                t = time.perf_counter()
                train(p, data, bn=bn, epochs=s.epochs, seed=i, device="cpu")
                times["bnsearch"].append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    return {"dataset": s.data.dataset, "rows": max(sizes), "train_rows": int(data.X_train.shape[0]),
            "features": data.n_features, "epochs": s.epochs, "trials": len(times["bnsearch"]),
            "dataloader": statistics.mean(times["dataloader"]), "bnsearch": statistics.mean(times["bnsearch"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=Path("configs/panel.toml"), help="relative to the current folder")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=None, help="keep the panel's report here (default: a temporary folder)")
    ap.add_argument("--storage", default=None, help="SQLite URL for the run (default: a fresh temporary file); "
                    "must not hold the panel yet, or nothing is trained")
    ap.add_argument("--configs", type=int, default=10, help="configurations for the trainer comparison (x2 arms); "
                    "0 leaves that comparison out")
    args = ap.parse_args()

    from bnsearch.panel import load_panel

    panel = load_panel(args.config)
    arms = len(panel.entries[0].settings.arm_names())
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; jobs {args.jobs}; panel {panel.name} ({args.config}): "
          f"{len(panel.entries)} data sets x {panel.entries[0].settings.trials} configurations x {arms} arms, "
          f"{panel.entries[0].settings.epochs} epochs; load {load()}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-panel-"))
    try:
        url = args.storage or f"sqlite:///{tmp / 'panel.db'}"
        out = args.out or tmp / "out"
        res = run_panel_command(args.config, args.jobs, url, out, tmp)
        stored, n_stored = stored_seconds(url, panel)
        print(f"panel: wall {res['wall']:.1f} s, {res['trials']} trials, {res['tpm']:.1f} trials/min, "
              f"efficiency {res['eff']:.3f} (training {res['train_s']:.1f} s in train(); stored seconds "
              f"{stored:.1f} s over {n_stored} complete trials: {stored / (res['wall'] * args.jobs):.3f}); "
              f"load {res['load_before']} -> {res['load_after']}; efficiency target 0.90 "
              f"{'met' if res['eff'] >= 0.90 else 'NOT met'}", flush=True)
        if args.configs <= 0:
            print(f"wall_s={res['wall']:.1f} trials_per_min={res['tpm']:.1f} efficiency={res['eff']:.3f}")
            return
        tv = trainer_vs_dataloader(panel, args.configs)
        print(f"trainer on the largest data set, {tv['dataset']} ({tv['rows']} rows, {tv['train_rows']} training rows "
              f"x {tv['features']} features, {tv['epochs']} epochs, {tv['trials']} trials, 1 thread): "
              f"DataLoader loop {tv['dataloader']:.3f} s/trial | bnsearch.train {tv['bnsearch']:.3f} s/trial "
              f"({tv['dataloader'] / tv['bnsearch']:.2f}x); load {load()}", flush=True)
        print(f"wall_s={res['wall']:.1f} trials_per_min={res['tpm']:.1f} efficiency={res['eff']:.3f} "
              f"dataloader_s={tv['dataloader']:.3f} bnsearch_s={tv['bnsearch']:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
