"""Packed vs solo training throughput, side by side in one run, on the default search space.

    python benchmarks/bench_packed.py [--quick] [--configs N] [--repeats R] [--epochs E] [--max-pack K]
        [--width-ratio R] [--max-elements M] [--no-caps] [--max-width W] [--device cpu|cuda] [--config PATH]

N configurations are drawn by the paired plan's sampler (search.plan.sample_configs) from the
config's space (configs/default.toml by default), each trained in both arms (BN off and on) with the
plan's per-configuration seed, on the config's data set and epochs. One repeat trains all 2N trials
solo (``train``, one at a time) and packed (``plan_packs`` + ``train_packed``; a pack of one goes to
``train``, as the planner's caller does), in alternating order from repeat to repeat so drift in
machine load hits both alike. Figures: the median over repeats of the wall time of each; throughput =
2N / wall. ``--max-width 64`` clips every width to 64 (narrow nets).

The last line is ``packed_vs_solo=<solo wall / packed wall> trials_per_s=<packed> device=<name>``.
On CPU both run on one torch thread (as a bnsearch worker process does); packs of fewer than 4 train
solo, and the planner is capped to packs that fit the cache and pad little (width ratio 2, 65,536
elements per activation tensor; ``--no-caps`` lifts both).
On CUDA, solo is today's one-at-a-time CUDA path, timed on the first 50 configurations and scaled
(2,000 one-at-a-time trials would take minutes); the defaults there are 1,000 configurations per arm
and packs of up to 1,024: ``python benchmarks/bench_packed.py --device cuda`` (``--quick``: 200).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bnsearch.config import load_config  # noqa: E402
from bnsearch.data import load_dataset  # noqa: E402
from bnsearch.search.plan import sample_configs, trial_seed  # noqa: E402
from bnsearch.train import Member, plan_packs, set_threads, train, train_packed  # noqa: E402

ARMS = ("none", "batchnorm")


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def members_of(settings, n: int, max_width: int | None) -> list[Member]:
    configs = sample_configs(settings, n)
    fixed = settings.fixed_params()
    out = []
    for i, c in enumerate(configs):
        params = {**fixed, **c}
        if max_width is not None:
            params["width"] = min(int(params["width"]), max_width)
        seed = trial_seed(settings.seed, i)
        out += [Member(params, seed, norm=norm) for norm in ARMS]
    return out


def run_solo(members, data, epochs, device, metric):
    sync(device)
    t0 = time.perf_counter()
    for m in members:
        train(m.params, data, epochs=epochs, seed=m.seed, norm=m.norm, placement=m.placement, device=device,
              metric=metric)
    sync(device)
    return time.perf_counter() - t0


def run_packed(members, data, epochs, device, metric, max_pack, width_ratio, max_elements, min_pack):
    sync(device)
    t0 = time.perf_counter()
    packs = plan_packs(members, max_pack, width_ratio=width_ratio, max_elements=max_elements)
    for pack in packs:
        if len(pack) < min_pack:  # too few to pay for packing: today's trainer, as the planner's caller does
            for i in pack:
                m = members[i]
                train(m.params, data, epochs=epochs, seed=m.seed, norm=m.norm, placement=m.placement, device=device,
                      metric=metric)
        else:
            train_packed([members[i] for i in pack], data, epochs=epochs, device=device, metric=metric)
    sync(device)
    return time.perf_counter() - t0, packs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "default.toml"))
    ap.add_argument("--configs", type=int, default=None,
                    help="configurations per arm (default 48, quick 40; cuda 1000, quick 200)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3; quick 2)")
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs (quick: 5)")
    ap.add_argument("--max-pack", type=int, default=None, help="most members per pack (cpu 64, cuda 1024)")
    ap.add_argument("--width-ratio", type=float, default=None,
                    help="plan_packs' cap on widest / narrowest width in a pack (cpu 2; cuda: none)")
    ap.add_argument("--max-elements", type=int, default=None,
                    help="plan_packs' cap on members x batch x padded width (cpu 65536; cuda: none)")
    ap.add_argument("--no-caps", action="store_true", help="neither cap, on any device")
    ap.add_argument("--min-pack", type=int, default=None,
                    help="packs with fewer members train solo (cpu 4: smaller packs measured slower; cuda 2)")
    ap.add_argument("--max-width", type=int, default=None, help="clip every width to this (narrow nets)")
    ap.add_argument("--solo-sample", type=int, default=None,
                    help="time solo on the first S configurations only and scale to all (cuda default 50)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="smaller run, under 5 minutes on 2 cores")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit(f"bench_packed: --device {args.device}, but this torch sees no CUDA device; run it on a GPU "
                 "machine with a CUDA build of torch, or use --device cpu")
    # On a CPU a pack pays only while it stays in cache and pads little; a GPU wants the biggest packs.
    if not cuda and not args.no_caps:
        args.width_ratio = args.width_ratio or 2.0
        args.max_elements = args.max_elements or 65536
    args.max_pack = args.max_pack or (1024 if cuda else 64)
    args.min_pack = args.min_pack or (2 if cuda else 4)
    if cuda and args.solo_sample is None:
        args.solo_sample = 50

    settings = load_config(args.config)
    n = args.configs or ((200 if args.quick else 1000) if cuda else (40 if args.quick else 48))
    repeats = args.repeats or (2 if args.quick else 3)
    epochs = args.epochs or (5 if args.quick else settings.epochs)
    if args.device == "cpu":
        set_threads(1)
    data = load_dataset(settings.data, settings.seed)
    members = members_of(settings, n, args.max_width)
    solo_members = members[: 2 * args.solo_sample] if args.solo_sample and args.solo_sample < n else members
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{settings.data.dataset}: {n} configurations x {len(ARMS)} arms, {epochs} epochs, device {args.device} "
          f"({device_name(args.device)}), torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"1-min load {load:.2f}; max_pack {args.max_pack}, width_ratio {args.width_ratio}, "
          f"max_elements {args.max_elements}, min_pack {args.min_pack}", flush=True)

    # Warm-up outside the timing: first-call costs (kernels, allocator) of both paths.
    train_packed(members[:2], data, epochs=1, device=args.device, metric=settings.metric)
    train(members[0].params, data, epochs=1, seed=0, device=args.device, metric=settings.metric)

    solo, packed = [], []
    packs = []
    for r in range(repeats):
        order = ("solo", "packed") if r % 2 == 0 else ("packed", "solo")
        for what in order:
            if what == "solo":
                wall = run_solo(solo_members, data, epochs, args.device, settings.metric)
                solo.append(wall * len(members) / len(solo_members))
            else:
                wall, packs = run_packed(members, data, epochs, args.device, settings.metric, args.max_pack,
                                         args.width_ratio, args.max_elements, args.min_pack)
                packed.append(wall)
        print(f"repeat {r + 1}: solo {solo[-1]:.2f} s, packed {packed[-1]:.2f} s", flush=True)

    sizes = sorted(len(p) for p in packs)
    n_packed = sum(n for n in sizes if n >= args.min_pack)
    s, p = statistics.median(solo), statistics.median(packed)
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{len(packs)} packs (sizes {sizes[0]}..{sizes[-1]}, median {statistics.median(sizes):g}; "
          f"{n_packed} of {len(members)} trials in packs of >= {args.min_pack}, the rest solo); "
          f"solo {s:.2f} s = {len(members) / s:.2f} trials/s, packed {p:.2f} s = {len(members) / p:.2f} trials/s "
          f"(medians of {repeats}{', solo scaled from ' + str(len(solo_members)) + ' trials' if len(solo_members) < len(members) else ''}); "
          f"1-min load {load:.2f} -> {load_after:.2f}")
    print(f"packed_vs_solo={s / p:.2f} trials_per_s={len(members) / p:.2f} device={device_name(args.device)}")


if __name__ == "__main__":
    main()
