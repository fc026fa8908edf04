"""Do results depend on the CPU, and does a numerics setting make them identical? At what cost?

    python benchmarks/bench_reproducibility.py            # 40 configs x BN on/off, 20 epochs (~20-30 min)
    python benchmarks/bench_reproducibility.py --quick    # smoke test, < 1 min

We have one CPU, so other CPUs are *emulated* by restricting the code paths torch takes here:

- MKL (GEMM): MKL picks kernels by CPU vendor and ISA. On an AMD CPU it takes its non-Intel path, so
  to reach the kernels an Intel CPU would run we preload a two-line shared library (built here with
  the system C compiler) whose ``mkl_serv_intel_cpu_true`` returns 1: MKL then dispatches as on an
  Intel CPU with this CPU's ISA. ``MKL_ENABLE_INSTRUCTIONS`` then caps that ISA (AVX512, AVX2, SSE4_2).
- ATen's vectorised element-wise/reduction kernels: ``ATEN_CPU_CAPABILITY`` (avx512 | avx2 | default).
- glibc's libm (used by ATen's scalar "default" kernels): ``GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA``
  makes its ifuncs pick the SSE2 variants, as on a CPU without FMA.

Each (emulated CPU, setting) runs in a fresh subprocess, because all of these are read when the
libraries load. A setting may ask for a *lower* ATen capability than the emulated CPU has (honoured),
never a higher one (a real CPU could not run it), and it adds its MKL variables to the emulation's.

Printed: (1) a knob check: per process, ATen's capability, MKL's CNR mode (from MKL_VERBOSE) and the bits
of a GEMM and of libm's exp, to show each knob really changes the path; (2) per setting, how many of the
validation scores, test scores, curves and divergence flags differ from the native run on each emulated
CPU; (3) the cost: the native CPU runs every setting back to back, ``--repeats`` times in turn
(interleaved, so load from other processes hits all settings alike); median seconds per trial and the
ratio to the default settings.
"""

from __future__ import annotations

import argparse
import json
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

from bnsearch.hardware import reproducible_env  # noqa: E402 (imports no torch)

_FAKE_INTEL_C = "int mkl_serv_intel_cpu_true(void) { return 1; }\nint mkl_serv_intel_cpu(void) { return 1; }\n"
_NO_FMA = "glibc.cpu.hwcaps=-AVX2,-FMA,-FMA4"

# key -> (environment, needs the fake-Intel preload). The first is the reference (this CPU as it is).
EMULATED = {
    "amd": ({}, False),
    "amd-avx2": ({"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}, False),
    "intel-avx512": ({}, True),
    "intel-avx2": ({"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}, True),
    "intel-sse4.2": ({"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
                      "GLIBC_TUNABLES": _NO_FMA}, True),
}

SETTINGS = {
    "a": {},  # (a) default settings
    "cbwr": {"MKL_CBWR": "COMPATIBLE"},
    # Cheaper, but only for CPUs with AVX2 (an older one falls back to "default" and differs).
    "cbwr+avx2": {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2"},
    "b": reproducible_env(),  # (b) the candidate: MKL_CBWR=COMPATIBLE, ATEN_CPU_CAPABILITY=default
}
_CAP_ORDER = ["default", "avx2", "avx512"]
# Variables that would otherwise leak in from the caller's shell and spoil the comparison.
_CONTROLLED = ("MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY", "GLIBC_TUNABLES", "LD_PRELOAD",
               "MKL_VERBOSE")


# ---------------------------------------------------------------- worker side (fresh process)

def _worker(job: dict) -> dict:
    import ctypes
    import hashlib

    import torch

    from bnsearch.config import load_config
    from bnsearch.data import load_dataset
    from bnsearch.train import set_threads, train

    set_threads(1)
    g = torch.Generator().manual_seed(0)
    a, b, c = torch.randn(64, 100, generator=g), torch.randn(100, 37, generator=g), torch.randn(37, generator=g)
    gemm = hashlib.md5(torch.addmm(c, a, b).numpy().tobytes()).hexdigest()[:8]
    libm = ctypes.CDLL("libm.so.6")
    # Float functions ATen's scalar ("default") kernels call, and two double ones (tanh, pow) whose
    # glibc FMA and SSE2 variants round differently: shows whether GLIBC_TUNABLES took effect.
    xs = [-7.0 + 0.01371 * i for i in range(1000)]
    libm_bits = {}
    for fn in ("expf", "logf", "tanhf", "erff", "tanh", "pow"):
        f, typ = getattr(libm, fn), ctypes.c_float if fn.endswith("f") else ctypes.c_double
        f.restype, f.argtypes = typ, [typ] * (2 if fn == "pow" else 1)
        v = [f(abs(x) + 1e-3, 1.37) if fn == "pow" else f(abs(x) + 1e-3 if fn == "logf" else x) for x in xs]
        libm_bits[fn] = hashlib.md5(repr(v).encode()).hexdigest()[:4]
    libm_bits = " ".join(f"{k}:{v}" for k, v in libm_bits.items())
    info = {"capability": str(torch.backends.cpu.get_cpu_capability()).lower(), "gemm": gemm, "libm_exp": libm_bits}

    settings = load_config()
    data = load_dataset(settings.data, settings.seed)
    rows = []
    for i, (params, seed) in enumerate(zip(job["configs"], job["seeds"])):
        for bn in (False, True):
            r = train(params, data, bn=bn, epochs=job["epochs"], seed=seed)
            rows.append({"i": i, "bn": bn, "val": r.val_score, "test": r.test_score, "diverged": r.diverged,
                         "curve": r.val_curve, "loss": r.train_loss, "seconds": r.seconds})
    return {"info": info, "rows": rows}


# ---------------------------------------------------------------- parent side

def _fake_intel_lib(tmp: Path) -> str | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src, lib = tmp / "fake_intel.c", tmp / "libfakeintel.so"
    src.write_text(_FAKE_INTEL_C)
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src)], check=True)
    return str(lib)


def merged_env(emulation: dict, setting: dict) -> dict:
    env = dict(emulation)
    for k, v in setting.items():
        if k == "ATEN_CPU_CAPABILITY" and k in env:
            # A setting can lower the capability, never raise it above what the emulated CPU has.
            env[k] = min(env[k], v, key=_CAP_ORDER.index)
        else:
            env[k] = v
    return env


def run_one(env_extra: dict, preload: str | None, job: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _CONTROLLED}
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if preload:
        env["LD_PRELOAD"] = preload
    # MKL_VERBOSE in a separate short probe: in the worker it would print a line per GEMM call.
    probe = subprocess.run(
        [sys.executable, "-c", "import torch; torch.set_num_threads(1); torch.mm(torch.ones(8, 8), torch.ones(8, 8))"],
        env={**env, "MKL_VERBOSE": "1"}, capture_output=True, text=True, check=True)
    cnr = next((w[4:] for w in probe.stdout.split() if w.startswith("CNR:")), "?")
    print(f"  running {env_extra or 'default'}{' + Intel shim' if preload else ''} ...", file=sys.stderr, flush=True)
    p = subprocess.run([sys.executable, __file__, "--worker"], input=json.dumps(job), env=env,
                       capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"worker failed ({env_extra}, preload={bool(preload)}):\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout)
    out["info"]["mkl_cnr"] = cnr
    return out


def compare(ref: list[dict], other: list[dict]) -> dict:
    val = [abs(a["val"] - b["val"]) for a, b in zip(ref, other) if a["val"] != b["val"]]
    return {
        "val": len(val), "val>1pt": sum(d > 0.01 for d in val),
        "test": sum(a["test"] != b["test"] for a, b in zip(ref, other)),
        "curves": sum((a["curve"], a["loss"]) != (b["curve"], b["loss"]) for a, b in zip(ref, other)),
        "diverged": sum(a["diverged"] != b["diverged"] for a, b in zip(ref, other)),
    }


def _sh(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 config, 2 epochs, 2 emulated CPUs, 1 repeat")
    ap.add_argument("--configs", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timing runs on the native CPU")
    ap.add_argument("--emulate", default="amd,intel-avx512,intel-avx2,intel-sse4.2", help=f"CPUs to emulate, of {','.join(EMULATED)}")
    ap.add_argument("--settings", default="a,b", help=f"settings to compare, of {','.join(SETTINGS)}")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        json.dump(_worker(json.load(sys.stdin)), sys.stdout)
        return
    if args.quick:
        args.configs, args.epochs, args.repeats, args.emulate, args.settings = 1, 2, 1, "amd,intel-avx2", "a,b"
    settings_run = {k: SETTINGS[k] for k in args.settings.split(",")}

    import optuna

    from bnsearch.config import load_config
    from bnsearch.search import sample_configs, trial_seed

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = load_config()
    job = {"configs": sample_configs(settings, args.configs),
           "seeds": [trial_seed(settings.seed, i) for i in range(args.configs)], "epochs": args.epochs}
    cpu = _sh("lscpu | grep 'Model name'").split(":", 1)[-1].strip()
    print(f"CPU: {cpu}; {os.cpu_count()} cores; torch threads 1 per process")
    print(f"load before: {_sh('uptime')}")
    print(f"{args.configs} configs of the default experiment x BN off/on, {args.epochs} epochs, digits\n")

    with tempfile.TemporaryDirectory() as tmp:
        preload = _fake_intel_lib(Path(tmp))
        emulated = {k: EMULATED[k] for k in args.emulate.split(",")}
        if preload is None:
            print("no C compiler: Intel emulations skipped")
            emulated = {k: v for k, v in emulated.items() if not v[1]}
        native = next(iter(emulated))
        results: dict[tuple[str, str], dict] = {}
        timings: dict[str, list[dict]] = {s: [] for s in settings_run}
        t0 = time.time()
        # Native CPU first, settings interleaved, repeats times: these runs give the cost figures.
        for rep in range(args.repeats):
            for sname, senv in settings_run.items():
                out = run_one(merged_env(emulated[native][0], senv), None, job)
                timings[sname].append(out)
                results.setdefault((native, sname), out)
                if compare(results[(native, sname)]["rows"], out["rows"])["curves"]:
                    print(f"WARNING: {sname} is not repeatable on this CPU")
        for ename, (eenv, fake) in emulated.items():
            if ename == native:
                continue
            for sname, senv in settings_run.items():
                results[(ename, sname)] = run_one(merged_env(eenv, senv), preload if fake else None, job)

        print("1) knob check: what each process ran (ATen capability, MKL CNR mode, bits of one GEMM and of libm exp)")
        for (ename, sname), out in results.items():
            i = out["info"]
            print(f"   {ename:13s} {sname:5s} aten={i['capability']:8s} cnr={i['mkl_cnr']:10s} "
                  f"gemm={i['gemm']} libm={i['libm_exp']}")

        n = 2 * args.configs
        print(f"\n2) differences from {native}, out of {n} trials "
              "(val / val by > 1 pt / test / curves / divergence flags)")
        for sname, senv in settings_run.items():
            print(f"   {sname}: {senv or 'default settings'}")
            total = {"val": 0, "val>1pt": 0, "test": 0, "curves": 0, "diverged": 0}
            for ename in emulated:
                if ename == native:
                    continue
                d = compare(results[(native, sname)]["rows"], results[(ename, sname)]["rows"])
                total = {k: total[k] + d[k] for k in total}
                print(f"     {ename:13s} val {d['val']:3d}  >1pt {d['val>1pt']:3d}  test {d['test']:3d}  "
                      f"curves {d['curves']:3d}  diverged {d['diverged']:2d}")
            agree = all(v == 0 for v in total.values())
            print(f"     -> {sname}: {'ALL emulated CPUs agree bit for bit' if agree else 'differences remain'}")

        print(f"\n3) cost on the native CPU: median over {args.repeats} interleaved runs of the mean s/trial")
        base = None
        for sname, runs in timings.items():
            per_run = [statistics.fmean(r["seconds"] for r in out["rows"]) for out in runs]
            med = statistics.median(per_run)
            base = base or med
            # Per-run ratio to the default run of the same repeat: load changes slowly, so pairs are fairer.
            ratios = [pr / statistics.fmean(r["seconds"] for r in d["rows"])
                      for pr, d in zip(per_run, timings[next(iter(timings))])]
            print(f"   {sname:5s} {med:.3f} s/trial (min {min(per_run):.3f}, max {max(per_run):.3f})  "
                  f"x{med / base:.2f} of the first; paired ratios {', '.join(f'{r:.2f}' for r in ratios)}")
        print(f"\nload after: {_sh('uptime')}; wall {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
