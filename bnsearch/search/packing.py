"""When and how big a worker's packs are: the `--pack K|auto|off` run option (docs/design.md, Packed trials
in a search).

A packed worker claims up to K queued trials at once and trains them with train.train_packed (worker.py,
run_pack). Packing changes no result beyond float rounding, so it is a run option like --device, never part
of an experiment's identity; every member is still its own trial, with `pack_size` / `pack_id` user attrs
saying how it was trained.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import SearchError

# `--pack auto` on a CPU. benchmarks/bench_packed.py measures packed against solo training side by side on
# the default space; packing pays on a CPU only where that ratio is >= 1.0, and the measured figures
# (benchmarks/README.md) are break-even at best, so auto stays off there. This one constant decides it: a
# pack size here turns CPU packing on for every `auto` run.
CPU_AUTO_PACK: int | None = None

# plan_packs' caps on a CPU, the ones bench_packed.py measures with: a pack pays only while it pads
# little (widest / narrowest width within a pack) and its activations stay in cache (members x batch x
# padded width). A GPU wants the biggest packs, so none apply there.
CPU_WIDTH_RATIO = 2.0
CPU_MAX_ELEMENTS = 65536

MAX_PACK = 4096  # the most trials one worker may hold at once (a --pack beyond it is refused)
CUDA_MAX_PACK = 1024  # auto on CUDA: bench_packed.py's GPU figures are for packs of up to 1,024
CUDA_MEMORY_SHARE = 0.5  # auto on CUDA: the share of the free GPU memory one worker's pack may plan for


def parse_pack(value: Any) -> str | int:
    """"auto", "off" or a pack size K >= 2 (1 means off). Anything else is bad input: one line that
    names the option and what it takes, before any storage or training."""
    if value is None:
        return "auto"
    text = str(value).strip().lower()
    if text in ("auto", "off"):
        return text
    try:
        k = int(text)
    except ValueError:
        k = None
    if k is None or isinstance(value, bool) or k < 1 or k > MAX_PACK:
        raise SearchError(f"--pack: must be a number of trials from 1 to {MAX_PACK}, auto or off "
                          f"(got {str(value)[:40]!r}); e.g. --pack 32, or --pack off for one trial at a time")
    return "off" if k == 1 else k


def _most(settings, name: str) -> float:
    """The largest value the search space gives a numeric hyperparameter."""
    p = settings.space.get(name)
    if p is None or p.kind == "fixed":
        return float(settings.fixed_params()[name])
    if p.kind == "categorical":
        return float(max(p.choices))
    return float(p.high)


def member_bytes(settings, data) -> int:
    """An upper estimate of one pack member's device memory, from the space's widest, deepest
    configuration with its largest batch: parameters with their gradients, Adam's two moments and the
    update's scratch (6 copies), the step's saved activations, the evaluation's hidden layers over the
    validation or test rows, the epoch's gathered batches and the member's batch permutations."""
    wp = -(-int(_most(settings, "width")) // 32) * 32  # train/packed.py pads widths to 32 units
    layers, batch = int(_most(settings, "layers")), int(_most(settings, "batch_size"))
    n, n_in, n_out = int(data.X_train.shape[0]), data.n_features, data.n_outputs
    n_eval = max(int(data.X_val.shape[0]), int(data.X_test.shape[0]))
    params = n_in * wp + (layers - 1) * wp * wp + wp * n_out + 3 * layers * wp + n_out
    floats = 6 * params + (4 * layers + 4) * batch * wp + 3 * n_eval * wp + n * (n_in + n_out)
    return 4 * floats + 8 * settings.epochs * n


def nvidia_driver_loaded() -> bool:
    """Whether a CUDA device may be here, without importing torch (~1 s the command would spend before
    its workers start): NVIDIA's kernel driver lists itself there whenever a CUDA device can work."""
    return os.path.exists("/proc/driver/nvidia/version")


def cuda_free_bytes(device: str) -> int:
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


def pack_size(mode: str | int, device: str, settings, data, *, free_bytes: int | None = None) -> int:
    """How many trials one claim takes for this arm: 1 means the solo path, exactly as without packing.

    Only a paired plan is packed (every configuration is queued up front); an adaptive or unpaired arm
    asks its sampler trial by trial, each proposal after the results before it, and stays solo. `auto`:
    on CUDA as many as CUDA_MEMORY_SHARE of the free memory holds (member_bytes), at most CUDA_MAX_PACK;
    on a CPU CPU_AUTO_PACK."""
    if mode == "off" or not settings.paired:
        return 1
    if mode != "auto":
        return int(mode)
    if not str(device).startswith("cuda"):
        return int(CPU_AUTO_PACK or 1)
    free = cuda_free_bytes(device) if free_bytes is None else free_bytes
    return max(1, min(CUDA_MAX_PACK, int(free * CUDA_MEMORY_SHARE) // member_bytes(settings, data)))


def plan_caps(device: str) -> dict[str, Any]:
    """plan_packs' keyword arguments for packs trained on `device`."""
    if str(device).startswith("cuda"):
        return {}
    return {"width_ratio": CPU_WIDTH_RATIO, "max_elements": CPU_MAX_ELEMENTS}
