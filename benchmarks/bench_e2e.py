"""What users wait for: `bnsearch compare` end to end, and how much of the workers' time is training.

    python benchmarks/bench_e2e.py                      # 100 and 1000 trials/arm, SQLite (+ PostgreSQL if found)
    python benchmarks/bench_e2e.py --quick              # 20 trials/arm, one run, SQLite only (~1 min)
    python benchmarks/bench_e2e.py --trials 100 --repeats 3 --backends sqlite
    python benchmarks/bench_e2e.py --trials 1000 --max-wall 300   # cap a slow run: trials/min from what finished

Each run is the real command, `python -m bnsearch compare [CONFIG] --trials N --jobs J --storage URL --out D`,
in a fresh subprocess on a fresh database, timed from just before the subprocess starts (so interpreter
start-up, imports, the plan, worker start-up, every trial, the analysis, plots and exit all count).

Training time is measured without touching bnsearch: a `sitecustomize.py` put first on PYTHONPATH wraps
`bnsearch.train.train` in every process that imports it (the command, the fork server its workers are
forked from, spawned workers) so that each call appends "pid start end" (wall-clock seconds) to a log
file. From that log:

    training s     sum of all train() calls
    efficiency     training s / (wall x jobs): the share of the workers' time spent training
    first claim    earliest trial datetime_start (the RUNNING transition, read from storage) - command start
    bookkeeping    per worker process, the gap between the end of one train() call and the start of the
                   next: recording the previous trial, the stale-trial sweep, claiming and setting up the
                   next one. "start" / "end" are the medians over the first / last 10% of these gaps.
    tail           command end - end of the last train() call (analysis, plots, worker exit)

The prepared-split cache (bnsearch.data.load_prepared) is the bench's own: --cache warm (default)
fills a fresh cache folder once, untimed, as any earlier run on the machine would have, and every
run then starts with it; --cache cold gives every run an empty one (a first run after installing:
each worker imports scikit-learn and splits the data, and the reference model is fitted).

With --max-wall the command is interrupted (SIGINT, like Ctrl-C) after that many seconds; wall is then
the time until the interrupt, and efficiency and trials/min cover the trials finished by then.

The last line is `efficiency_100=<x> efficiency_1000=<y> overhead_ms_1000=<z>` (medians over the repeats
of the first backend; overhead_ms_1000 is the median bookkeeping gap over the whole 1000-trial run; `nan`
for a size not run). Figures move with whatever else runs on the machine: the script prints the CPU and
the load average before and after each run; quote them with the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Installed as sitecustomize.py in a temporary folder first on PYTHONPATH: runs at interpreter start in
# the command, the fork server and every spawned worker, and wraps bnsearch.train.train once that module is imported
# (importing it eagerly would move torch's import into start-up and distort what is measured).
HOOK = textwrap.dedent('''
    import os, sys, time, importlib.util

    _LOG = os.environ.get("BENCH_E2E_LOG")

    class _Finder:
        def find_spec(self, name, path=None, target=None):
            if name != "bnsearch.train":
                return None
            sys.meta_path.remove(self)
            try:
                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            real_exec = spec.loader.exec_module

            def exec_module(module):
                real_exec(module)
                train = module.train
                fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

                def timed(*a, **k):
                    t0 = time.time()
                    try:
                        return train(*a, **k)
                    finally:
                        os.write(fd, f"{os.getpid()} {t0:.6f} {time.time():.6f}\\n".encode())

                module.train = timed
            spec.loader.exec_module = exec_module
            return spec

    if _LOG:
        sys.meta_path.insert(0, _Finder())
''')


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _config(epochs: int | None, tmp: Path) -> list[str]:
    if epochs is None:
        return []
    text = (ROOT / "bnsearch" / "default.toml").read_text()
    assert "epochs = 20" in text
    p = tmp / "bench.toml"
    p.write_text(text.replace("epochs = 20", f"epochs = {epochs}"))
    return [str(p)]


def fill_cache(cache: Path, epochs: int | None, tmp: Path) -> None:
    """What a first run leaves in the cache: the default config's split and reference model."""
    code = ("import sys; from bnsearch.api import reference_context; from bnsearch.config import load_config; "
            "from bnsearch.data import load_prepared; s = load_config(sys.argv[1] if len(sys.argv) > 1 else None); "
            "load_prepared(s.data, s.seed); reference_context(s)")
    subprocess.run([sys.executable, "-c", code, *_config(epochs, tmp)], check=True, cwd=tmp,
                   env={**os.environ, "BNSEARCH_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)})


def one_run(trials: int, jobs: int, url: str, tmp: Path, *, epochs: int | None, max_wall: float | None,
            cache: Path) -> dict:
    hook_dir = tmp / "hook"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(HOOK)
    log = tmp / "train.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "BENCH_E2E_LOG": str(log), "BNSEARCH_CACHE_DIR": str(cache),
           "PYTHONPATH": os.pathsep.join([str(hook_dir), str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cmd = [sys.executable, "-m", "bnsearch", "compare", *_config(epochs, tmp), "--trials", str(trials),
           "--jobs", str(jobs), "--storage", url, "--out", str(tmp / "out"), "--device", "cpu"]
    load_before = load()
    t0 = time.time()
    # A shell's background job inherits SIGINT ignored; restore it so --max-wall's Ctrl-C reaches the command.
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    interrupted = False
    try:
        _, err = proc.communicate(timeout=max_wall)
    except subprocess.TimeoutExpired:
        interrupted = True
        t_int = time.time()
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    except BaseException:  # the bench stopped (SIGTERM, Ctrl-C): the command first, it uses the database
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # it re-queues its trials and tells its workers to stop
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise
    t_end = time.time()
    if not interrupted and proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err[-3000:]}")
    wall = (t_int if interrupted else t_end) - t0

    calls = []
    for line in log.read_text().splitlines() if log.exists() else []:
        pid, a, b = line.split()
        calls.append((int(pid), float(a), float(b)))
    if interrupted:  # only trials that finished before the interrupt count
        calls = [c for c in calls if c[2] <= t_int]
    train_s = sum(b - a for _, a, b in calls)
    gaps = []  # (time, gap seconds) per worker between consecutive train() calls
    by_pid: dict[int, list] = {}
    for pid, a, b in sorted(calls, key=lambda c: c[1]):
        by_pid.setdefault(pid, []).append((a, b))
    for seq in by_pid.values():
        gaps += [(seq[i][0], seq[i][0] - seq[i - 1][1]) for i in range(1, len(seq))]
    gaps.sort()
    k = max(1, len(gaps) // 10)
    med = (lambda xs: statistics.median(xs) * 1000 if xs else float("nan"))

    first_claim = _first_claim(url) - t0
    return {
        "wall": wall, "trials": len(calls), "train_s": train_s, "eff": train_s / (wall * jobs),
        "tpm": len(calls) / wall * 60, "first_claim": first_claim,
        "first_train": (min(a for _, a, _ in calls) - t0) if calls else float("nan"),
        "bk_start": med([g for _, g in gaps[:k]]), "bk_end": med([g for _, g in gaps[-k:]]),
        "bk_all": med([g for _, g in gaps]),
        "tail": (t_end - max(b for _, _, b in calls)) if calls and not interrupted else float("nan"),
        "interrupted": interrupted, "load_before": load_before, "load_after": load(), "workers": len(by_pid),
    }


def _first_claim(url: str) -> float:
    import sqlalchemy

    eng = sqlalchemy.create_engine(url)
    try:
        with eng.connect() as con:
            t = con.exec_driver_sql("SELECT MIN(datetime_start) FROM trials").scalar()
    finally:
        eng.dispose()
    if t is None:
        return float("nan")
    from datetime import datetime, timezone

    if isinstance(t, str):
        t = datetime.fromisoformat(t)
    return t.replace(tzinfo=timezone.utc).timestamp()  # Optuna 5 stores naive UTC


def _pg():
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import pg  # noqa: E402
    except ImportError:
        return None
    bindir = pg.find_bindir()
    if bindir is None:
        return None
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return None
    server = pg.Postgres(bindir)
    try:
        return server.start()
    except BaseException:  # stopped half-way (SIGTERM during initdb): nothing is left behind
        server.stop()
        raise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, nargs="+", default=[100, 1000], help="trials per arm (default 100 1000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--repeats-large", type=int, default=1, help="repeats for sizes >= 1000 (default 1)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs of the default config (20)")
    ap.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    ap.add_argument("--max-wall", type=float, default=None, help="interrupt a run after this many seconds")
    ap.add_argument("--quick", action="store_true", help="20 trials/arm, one run, SQLite only")
    ap.add_argument("--cache", choices=["warm", "cold"], default="warm",
                    help="prepared-split cache: filled once before the runs (warm), or empty for every run (cold)")
    args = ap.parse_args()
    # SIGTERM (`timeout`, `kill`) unwinds like Ctrl-C, through the `finally` below: by default it ended
    # the bench at once, leaving its temporary folders and its PostgreSQL server (a daemon) running for good.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.quick:
        args.trials, args.repeats, args.repeats_large, args.backends = [20], 1, 1, ["sqlite"]

    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; python {platform.python_version()}; "
          f"jobs {args.jobs}; epochs {args.epochs or 'config default (20)'}; cache {args.cache}; load {load()}",
          flush=True)
    cache_root = Path(tempfile.mkdtemp(prefix="bench-e2e-cache-"))
    results: dict[tuple[str, int], list[dict]] = {}
    pg = None
    try:
        if args.cache == "warm":
            fill_cache(cache_root, args.epochs, cache_root)
        pg = _pg() if "postgresql" in args.backends else None
        if "postgresql" in args.backends and pg is None:
            print("PostgreSQL: no server binaries or driver found; SQLite only", flush=True)
        for backend in args.backends:
            if backend == "postgresql" and pg is None:
                continue
            for n in args.trials:
                for r in range(args.repeats_large if n >= 1000 else args.repeats):
                    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
                    try:
                        url = f"sqlite:///{tmp / 'bench.db'}" if backend == "sqlite" else pg.create_database()
                        cache = cache_root if args.cache == "warm" else tmp / "cache"
                        res = one_run(n, args.jobs, url, tmp, epochs=args.epochs, max_wall=args.max_wall, cache=cache)
                    finally:
                        shutil.rmtree(tmp, ignore_errors=True)
                    results.setdefault((backend, n), []).append(res)
                    print(f"  {backend:10} {n:>5}/arm run {r + 1}: wall {res['wall']:7.1f} s, {res['trials']:>5} trials"
                          f"{' (interrupted)' if res['interrupted'] else ''}, {res['tpm']:6.1f} trials/min, "
                          f"efficiency {res['eff']:.3f}, first claim {res['first_claim']:.2f} s "
                          f"(first training {res['first_train']:.2f} s), bookkeeping ms start/end/all "
                          f"{res['bk_start']:.1f}/{res['bk_end']:.1f}/{res['bk_all']:.1f}, tail {res['tail']:.2f} s, "
                          f"training {res['train_s']:.1f} s in {res['workers']} processes; "
                          f"load {res['load_before']} -> {res['load_after']}", flush=True)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(cache_root, ignore_errors=True)

    print()
    print(f"{'backend':10} | {'trials/arm':>10} | {'runs':>4} | {'wall s':>7} | {'trials/min':>10} | {'efficiency':>10} | "
          f"{'first claim s':>13} | {'bk ms start':>11} | {'bk ms end':>9} | {'tail s':>6}")
    print("-" * 112)
    med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
    for (backend, n), rs in results.items():
        print(f"{backend:10} | {n:>10} | {len(rs):>4} | {med(rs, 'wall'):>7.1f} | {med(rs, 'tpm'):>10.1f} | "
              f"{med(rs, 'eff'):>10.3f} | {med(rs, 'first_claim'):>13.2f} | {med(rs, 'bk_start'):>11.1f} | "
              f"{med(rs, 'bk_end'):>9.1f} | {med(rs, 'tail'):>6.2f}")
    print(f"CPU: {cpu_model()}; cache {args.cache}; load at end {load()}")
    first = args.backends[0] if any(k[0] == args.backends[0] for k in results) else "sqlite"

    def pick(n: int, key: str) -> str:
        rs = results.get((first, n))
        return f"{med(rs, key):.3f}" if rs else "nan"

    print(f"efficiency_100={pick(100, 'eff')} efficiency_1000={pick(1000, 'eff')} overhead_ms_1000={pick(1000, 'bk_all')}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, everything it started already stopped and deleted
        sys.exit(130)
