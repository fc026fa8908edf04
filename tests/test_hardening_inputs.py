"""Bad inputs and a full output disk, through the real CLI: a config that is no regular file or is
huge, one trial per arm, CSV files that would train on the wrong thing, an export folder that
fills up. Each ends in one `error:` line (or a complete report), no traceback, nothing partial left.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import numpy as np

from conftest import CONFIGS, run_cli
from test_hardening import _csv_config, fill, one_line_error, tmpfs

SMOKE = str(CONFIGS / "smoke.toml")


# --------------------------------------------------------------------------- config files

def test_config_that_is_no_regular_file_or_is_huge_is_refused_at_once(tmp_path):
    """Read whole, /dev/zero never ends (memory runs out first) and a FIFO blocks until a writer comes."""
    fifo = tmp_path / "cfg.fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.toml"
    huge.write_text(Path(SMOKE).read_text() + ("# padding\n" * 120_000))  # valid TOML, ~1.2 MB
    cases = {"/dev/zero": ("/dev/zero", "is not a regular file"),
             "fifo": (str(fifo), "is not a regular file"),
             "huge": (str(huge), "is larger than 256 KiB")}
    problems = []
    for name, (path, needle) in cases.items():
        t0 = time.monotonic()
        r = run_cli("compare", path, "--storage", f"sqlite:///{tmp_path / 'bn.db'}", "--out", str(tmp_path / "out"),
                    cwd=tmp_path, timeout=60)
        if (p := one_line_error(r, 2, needle)) or time.monotonic() - t0 > 30:
            problems.append(f"{name}: {p}")
    assert not problems, "\n".join(problems)
    assert not (tmp_path / "bn.db").exists() and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- one trial per arm

def test_one_trial_per_arm_gives_a_whole_report(tmp_path):
    """--trials 1 is allowed: compare and export write every file; the budget plot has nothing to
    put on its log axis and says so on the panel."""
    url = f"sqlite:///{tmp_path / 'bn.db'}"
    r = run_cli("compare", SMOKE, "--trials", "1", "--jobs", "1", "--storage", url, "--out", str(tmp_path / "a"),
                cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    r = run_cli("export", SMOKE, "--storage", url, "--out", str(tmp_path / "b"), cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    for out in ("a", "b"):
        for name in ("budget.png", "compute.png", "report.md", "trials.jsonl", "summary.csv"):
            assert (tmp_path / out / name).stat().st_size > 0, (out, name)


# --------------------------------------------------------------------------- CSV files

def test_csv_that_would_train_on_the_wrong_thing_is_refused(tmp_path):
    """A repeated target column (pandas renames the second copy, which would be a feature), values
    that turn into inf in float32 once scaled (1e50 and 1e300 in a row of the validation or test
    split, so the training split's statistics do not shrink them and every run would diverge), and a
    header without rows (not "non-numeric columns"). A column that is merely large (units of 1e30)
    still runs."""
    x = np.random.default_rng(0).normal(size=(60, 2))
    rows = lambda f: "".join(f(i, a, b) for i, (a, b) in enumerate(x))  # noqa: E731
    cases = {
        "dup": ("a,label,b,label\n" + rows(lambda i, a, b: f"{a},{i % 3},{b},{int(a > 0)}\n"),
                "duplicate column names ['label']"),
        "big50": ("a,b,label\n" + rows(lambda i, a, b: f"{'1e50' if i == 3 else a},{b},{int(a > 0)}\n"),
                  "feature columns ['a']"),
        "big300": ("a,b,label\n" + rows(lambda i, a, b: f"{a},{'-1e300' if i == 59 else b},{int(a > 0)}\n"),
                   "feature columns ['b']"),
        "empty": ("a,b,label\n", "has a header but no data rows"),
    }
    out = tmp_path / "out"
    problems = []
    for name, (csv, needle) in cases.items():
        r = run_cli("compare", _csv_config(tmp_path, name, csv), "--storage", f"sqlite:///{tmp_path / 'bn.db'}",
                    "--out", str(out), cwd=tmp_path, timeout=120)
        if p := one_line_error(r, 2, needle):
            problems.append(f"{name}: {p}")
        elif name.startswith("big") and "float32" not in r.stderr:
            problems.append(f"{name}: the line does not say why: {r.stderr.strip()}")
    assert not problems, "\n".join(problems)
    assert not (tmp_path / "bn.db").exists() and not out.exists()
    csv = "a,b,label\n" + rows(lambda i, a, b: f"{a * 1e30},{b},{int(a > 0)}\n")
    r = run_cli("compare", _csv_config(tmp_path, "scaled", csv), "--trials", "2", "--jobs", "1",
                "--storage", f"sqlite:///{tmp_path / 'bn.db'}", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0 and "Warning" not in r.stderr, r.stderr[-2000:]


# --------------------------------------------------------------------------- a full output folder

def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or ".tmp" in p.name)


def test_full_output_disk_is_named_as_such_and_leaves_no_partial_file(tmp_path):
    """The storage is fine, the --out folder's disk is full: one line naming the file and the fix,
    exit 1, never "storage ... is full"; every file present is complete (no truncated trials.jsonl,
    no 0-byte PNG) and no temporary file is left. With space again, export writes everything."""
    url = f"sqlite:///{tmp_path / 'bn.db'}"
    r = run_cli("study", SMOKE, "--bn", "on", "--jobs", "1", "--storage", url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("study", SMOKE, "--bn", "off", "--jobs", "1", "--storage", url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(tmp_path / "bn.db") as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    full = run_cli("export", SMOKE, "--storage", url, "--out", str(tmp_path / "full"), cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    sizes = {p.name: p.stat().st_size for p in (tmp_path / "full").iterdir()}
    failed = []
    with tmpfs("4m") as mnt:
        filler = fill(mnt)
        for leave in (0, 2_000, 40_000, 120_000):
            filler.unlink()
            filler = fill(mnt, leave=leave)
            out = mnt / f"out{leave}"
            for cmd in (["export", SMOKE], ["compare", SMOKE, "--jobs", "1"]):
                r = run_cli(*cmd, "--storage", url, "--out", str(out), cwd=tmp_path)
                if r.returncode == 0:
                    continue  # enough room this time
                failed.append((leave, cmd[0], sorted(p.name for p in out.iterdir()) if out.exists() else None))
                assert one_line_error(r, 1, "cannot write") is None, (leave, cmd[0], r.stderr[-1500:])
                assert "no space left on device; free space or choose another --out" in r.stderr, r.stderr
                assert "storage" not in r.stderr, r.stderr
                assert str(out) in r.stderr, r.stderr
                if out.exists():
                    assert _leftovers(out) == [], (leave, cmd[0], _leftovers(out))
                    for p in out.iterdir():  # whatever stands there is whole
                        assert p.stat().st_size == sizes[p.name], (leave, p.name, p.stat().st_size, sizes[p.name])
                    if (out / "trials.jsonl").exists():
                        assert (out / "trials.jsonl").read_bytes() == (tmp_path / "full" / "trials.jsonl").read_bytes()
        assert {cmd for _, cmd, _ in failed} == {"export", "compare"}, failed
        filler.unlink()
        r = run_cli("export", SMOKE, "--storage", url, "--out", str(mnt / "again"), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert {p.name for p in (mnt / "again").iterdir()} == set(sizes)
