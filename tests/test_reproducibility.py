"""Reproducible numerics: real tiny trainings on two emulated CPUs must agree bit for bit.

Another CPU is emulated on this one as benchmarks/bench_reproducibility.py does it: a preloaded
library makes MKL dispatch as on an Intel CPU, MKL_ENABLE_INSTRUCTIONS=AVX2 caps MKL's ISA, and
ATEN_CPU_CAPABILITY=avx2 caps ATen's kernels. Every run is a fresh process, because these are read
when MKL and ATen first run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from bnsearch.hardware import REPRODUCIBLE_ENV, reproducible_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NUMERIC_VARS = ("MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY", "LD_PRELOAD", "GLIBC_TUNABLES")

# Two small configurations that exercise every kernel family: GEMM, BN, tanh/relu, Adam and SGD.
_WORKER = r"""
import json, os
from bnsearch.config import load_config
from bnsearch.data import load_dataset
from bnsearch.hardware import numerics
from bnsearch.train import set_threads, train

set_threads(1)
settings = load_config()
data = load_dataset(settings.data, settings.seed)
configs = [
    dict(layers=2, width=48, activation="tanh", init="xavier", lr=0.003, optimizer="adam", batch_size=64),
    dict(layers=1, width=64, activation="relu", init="kaiming", lr=0.05, optimizer="sgd", batch_size=32),
]
runs = []
for params in configs:
    for bn in (False, True):
        r = train(params, data, bn=bn, epochs=3, seed=7)
        runs.append([r.val_score, r.test_score, r.diverged, r.train_loss, r.val_curve])
print(json.dumps({"runs": runs, "numerics": numerics(), "env": os.environ.get("MKL_CBWR")}))
"""


@pytest.fixture(scope="module")
def other_cpu(tmp_path_factory) -> dict[str, str]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler to build the MKL vendor shim that emulates an Intel CPU")
    d = tmp_path_factory.mktemp("fake_intel")
    (d / "f.c").write_text("int mkl_serv_intel_cpu_true(void) { return 1; }\n"
                           "int mkl_serv_intel_cpu(void) { return 1; }\n")
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(d / "libf.so"), str(d / "f.c")], check=True)
    return {"LD_PRELOAD": str(d / "libf.so"), "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def _run(extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _NUMERIC_VARS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    env.update(extra)
    p = subprocess.run([sys.executable, "-c", _WORKER], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)


def test_reproducible_env_is_a_fresh_copy():
    env = reproducible_env()
    assert env == {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default"}
    env["MKL_CBWR"] = "AUTO"
    assert reproducible_env()["MKL_CBWR"] == "COMPATIBLE" and REPRODUCIBLE_ENV["MKL_CBWR"] == "COMPATIBLE"


@pytest.mark.slow
def test_two_emulated_cpus_agree_bit_for_bit_only_with_the_setting(other_cpu):
    native, other = _run({}), _run(other_cpu)
    # Control: without the setting the emulation really changes the results, so the check below can fail.
    assert native["runs"] != other["runs"]
    assert native["numerics"] == {"mkl_cbwr": "off", "aten": native["numerics"]["aten"], "reproducible": "no"}
    assert other["numerics"]["aten"] == "avx2"

    rep_native = _run(reproducible_env())
    rep_other = _run({**other_cpu, **reproducible_env()})
    # JSON floats round-trip exactly (repr), so == on the lists is a bit-for-bit comparison of every
    # score, divergence flag, per-epoch loss and per-epoch validation score.
    assert rep_native["runs"] == rep_other["runs"]
    for r in (rep_native, rep_other):
        assert r["env"] == "COMPATIBLE"
        assert r["numerics"] == {"mkl_cbwr": "compatible", "aten": "default", "reproducible": "yes"}
