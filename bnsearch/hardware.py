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


# Numerics that give bit-identical results on every x86-64 CPU (docs/design.md, Reproducibility across
# machines): MKL's conditional numerical reproducibility in its COMPATIBLE branch (the one branch MKL
# honours on non-Intel CPUs too), and ATen's scalar "default" kernels instead of the AVX2/AVX-512 ones.
# Both are read when the libraries load, so they must be in the environment before torch is imported
# (worker processes inherit them). Not the default: trials take about 2-3x as long (benchmarks/README.md).
REPRODUCIBLE_ENV = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default"}

# MKL_CBWR_* branch codes (values from MKL's public mkl.h).
_MKL_BRANCHES = {1: "off", 2: "auto", 3: "compatible", 4: "sse2", 6: "ssse3", 7: "sse4_1", 8: "sse4_2",
                 9: "avx", 10: "avx2", 12: "avx512"}


def reproducible_env() -> dict[str, str]:
    """Environment variables that make training bit-identical across x86-64 CPUs (set before torch loads)."""
    return dict(REPRODUCIBLE_ENV)


def numerics() -> dict[str, str]:
    """The numeric code paths in effect in this process (imports torch):
    {"mkl_cbwr": MKL's CNR branch, "aten": ATen's kernel capability, "reproducible": "yes" | "no"}."""
    import torch

    aten = str(torch.backends.cpu.get_cpu_capability()).lower()
    cbwr = _mkl_cbwr_branch(torch)
    reproducible = cbwr == "compatible" and aten == "default"
    return {"mkl_cbwr": cbwr, "aten": aten, "reproducible": "yes" if reproducible else "no"}


def _mkl_cbwr_branch(torch) -> str:
    """What MKL itself reports, not what the environment asks for: MKL_CBWR set after MKL loaded, or a
    branch this CPU cannot run, is not in effect."""
    if not torch.backends.mkl.is_available():
        return "no-mkl"
    import ctypes
    import os

    # Linux wheels link MKL statically into libtorch_cpu; mkl_serv_cbwr_get is what MKL_CBWR_Get calls.
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        get = lib.mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return "unknown"
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    code = get(1)  # MKL_CBWR_BRANCH
    name = _MKL_BRANCHES.get(code & 0xFFFF, f"branch {code & 0xFFFF}")
    return name + (",strict" if code & 0x10000 else "")
