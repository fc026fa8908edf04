"""What machine a trial ran on, so results from different CPUs are never mixed silently.

Validation scores of the same configuration and seed differ between CPUs (different SIMD code paths
in MKL's GEMM and in ATen's element-wise kernels round differently, and small differences grow over
hundreds of SGD steps). Every trial records `cpu_signature()`; the report warns when one experiment's
trials come from more than one signature.
"""

from __future__ import annotations

import functools
import platform


@functools.lru_cache(maxsize=1)
def cpu_signature() -> dict[str, str]:
    """{"cpu": model name, "isa": widest SIMD extension torch dispatches to, "machine": arch}."""
    return {"cpu": _cpu_model(), "isa": _isa(), "machine": platform.machine()}


def signature_text(sig: dict | None) -> str:
    if not sig:
        return "unknown"
    return f"{sig.get('cpu', '?')} ({sig.get('isa', '?')})"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _isa() -> str:
    try:
        import torch

        # What ATen's vectorised kernels actually use here (honours ATEN_CPU_CAPABILITY).
        return str(torch.backends.cpu.get_cpu_capability()).lower()
    except Exception:  # torch missing or too old: fall back to the CPU's flags
        pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        flags = []
    for isa in ("avx512f", "avx2", "avx", "sse4_2"):
        if isa in flags:
            return isa.replace("avx512f", "avx512")
    return "unknown"
