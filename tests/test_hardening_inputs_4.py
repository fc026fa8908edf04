"""Issue 26, cases 14-17, through the real CLI: data files that are no regular file, configs whose
parsing would take minutes or recurse past the stack, and out-of-range environment numbers. Each is
one `error:` line, exit 2, within seconds and before anything is created. Every run is bounded in
time because the old code hung on several of them.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np

from conftest import CONFIGS, run_cli
from test_hardening import one_line_error

SMOKE = str(CONFIGS / "smoke.toml")


def _refused(args, needle: str, tmp_path: Path, env: dict | None = None, within: float = 30) -> str | None:
    """None when the command is one `error:` line holding `needle`, exit 2, within `within` seconds."""
    t0 = time.monotonic()
    try:
        r = run_cli(*args, cwd=tmp_path, env=env, timeout=int(within) + 30)
    except subprocess.TimeoutExpired:
        return f"{args[:2]}: still running after {int(within) + 30} s"
    if (problem := one_line_error(r, 2, needle)) is not None:
        return f"{args[:2]}: {problem}"
    if time.monotonic() - t0 > within:
        return f"{args[:2]}: took {time.monotonic() - t0:.0f} s"
    return None


def _write_csv(path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    path.write_text("a,b,label\n" + "".join(f"{a},{b},{int(a > 0)}\n" for a, b in x))


# --------------------------------------------------------------------------- 14: data files

def test_data_file_that_is_no_regular_file_is_refused_before_any_work(tmp_path):
    """A FIFO blocks the digest read until a writer comes and /dev/zero never ends; a directory is
    not "not found". Given as a CSV (directly, through a link, or as a config's data.path) each is
    one line naming the path the user gave."""
    os.mkfifo(tmp_path / "fifo.csv")
    (tmp_path / "zero.csv").symlink_to("/dev/zero")
    (tmp_path / "dir.csv").mkdir()
    (tmp_path / "fifo.toml").write_text(Path(SMOKE).read_text().replace(
        'dataset = "iris"', 'dataset = "csv"\npath = "fifo.csv"\ntarget = "label"'))
    store = ["--storage", f"sqlite:///{tmp_path / 'bn.db'}", "--out", str(tmp_path / "out")]
    problems = [
        _refused(["compare", "fifo.csv", "--target", "label", *store], "fifo.csv is not a regular file", tmp_path),
        _refused(["compare", "zero.csv", "--target", "label", *store],
                 "zero.csv (a link to /dev/zero) is not a regular file", tmp_path),
        _refused(["compare", "dir.csv", "--target", "label", *store], "dir.csv is not a regular file", tmp_path),
        _refused(["compare", "fifo.toml", *store], "fifo.csv is not a regular file", tmp_path),
    ]
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)
    assert not (tmp_path / "bn.db").exists() and not (tmp_path / "out").exists()


def test_stored_experiment_whose_csv_became_a_fifo_is_one_line(tmp_path):
    """The data digest of a stored experiment reads the CSV again: a FIFO in its place is refused by
    compare. summary reads what the run stored about the data, so it never opens the FIFO."""
    csv = tmp_path / "g.csv"
    _write_csv(csv)
    url = f"sqlite:///{tmp_path / 'bn.db'}"
    r = run_cli("compare", "g.csv", "--target", "label", "--trials", "1", "--jobs", "1", "--storage", url,
                "--out", str(tmp_path / "out"), cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    csv.unlink()
    os.mkfifo(csv)
    problems = [_refused(["compare", "g.csv", "--target", "label", "--trials", "1", "--storage", url],
                         "g.csv is not a regular file", tmp_path)]
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)
    summary = run_cli("summary", "--experiment", "g", "--storage", url, cwd=tmp_path, timeout=60)
    assert summary.returncode == 0 and "Traceback" not in summary.stderr, summary.stderr[-2000:]


# --------------------------------------------------------------------------- 15: config size and dotted keys

def test_large_config_or_long_dotted_key_is_refused_in_seconds(tmp_path):
    """Parsing a dotted key grows with its square (measured: 75 s for a 128 kB key, memory exhausted
    at 256 kB): a config over 256 KiB, or a line holding a key of thousands of parts, is refused
    before tomllib sees it; panels too. The files here are small enough that the old code answered
    quickly, with the wrong message or a traceback."""
    smoke = Path(SMOKE).read_text()
    (tmp_path / "big.toml").write_text(smoke + "# padding\n" * 30_000)  # valid TOML, ~300 kB
    (tmp_path / "header.toml").write_text(smoke + "[" + "a." * 60_000 + "a]\nz = 1\n")  # 120 kB
    (tmp_path / "key.toml").write_text(smoke + "k" + ".a" * 30_000 + " = 1\n")  # 60 kB
    (tmp_path / "panel.toml").write_text('[panel]\ndatasets = ["iris"]\n' + "k" + ".a" * 30_000 + " = 1\n")
    problems = [
        _refused(["space", "big.toml"], "big.toml: is larger than 256 KiB", tmp_path, within=20),
        _refused(["space", "header.toml"], "header.toml: line 25 has more than 128 dots", tmp_path, within=20),
        _refused(["space", "key.toml"], "key.toml: line 25 has more than 128 dots", tmp_path, within=20),
        _refused(["panel", "panel.toml", "--storage", f"sqlite:///{tmp_path / 'bn.db'}", "--out",
                  str(tmp_path / "out")], "panel.toml: line 3 has more than 128 dots", tmp_path, within=20),
    ]
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)
    assert not (tmp_path / "bn.db").exists() and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- 16: deep nesting

def test_deeply_nested_toml_is_one_line_for_configs_and_panels(tmp_path):
    """tomllib recurses once per [ or {: 100k levels raise RecursionError, which was a traceback."""
    smoke = Path(SMOKE).read_text()
    arrays = "x = " + "[" * 100_000 + "]" * 100_000 + "\n"  # 200 kB, under the size limit
    tables = "y = " + "{a=" * 50_000 + "1" + "}" * 50_000 + "\n"
    (tmp_path / "arrays.toml").write_text(smoke + arrays)
    (tmp_path / "tables.toml").write_text(smoke + tables)
    (tmp_path / "panel.toml").write_text("[panel]\ndatasets = " + "[" * 100_000 + "]" * 100_000 + "\n")
    needle = "nested too deeply"
    problems = [
        _refused(["space", "arrays.toml"], f"arrays.toml: not a usable config (arrays or tables {needle}", tmp_path),
        _refused(["space", "tables.toml"], f"tables.toml: not a usable config (arrays or tables {needle}", tmp_path),
        _refused(["panel", "panel.toml", "--storage", f"sqlite:///{tmp_path / 'bn.db'}", "--out",
                  str(tmp_path / "out")], f"panel.toml: not a usable config (arrays or tables {needle}", tmp_path),
    ]
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)
    assert not (tmp_path / "bn.db").exists() and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- 17: environment numbers

def test_out_of_range_environment_numbers_are_refused_before_any_work(tmp_path):
    """A huge heartbeat overflowed the workers' timers (tracebacks, exit 0, no stale detection) and a
    huge lock timeout overflows SQLite's: both are bounded, checked before anything is created."""
    url = f"sqlite:///{tmp_path / 'bn.db'}"
    cases = [("BNSEARCH_HEARTBEAT", "1" + "0" * 30, "is too large: at most 3600 seconds"),
             ("BNSEARCH_HEARTBEAT", "3601", "is too large: at most 3600 seconds"),
             ("BNSEARCH_LOCK_TIMEOUT", "1e300", "is too large: at most 86400 seconds")]
    problems = []
    for name, value, needle in cases:
        problems.append(_refused(["compare", SMOKE, "--trials", "1", "--jobs", "1", "--storage", url, "--out",
                                  str(tmp_path / "out")], f"{name}={value!r} {needle}", tmp_path, env={name: value}))
    problems.append(_refused(["list", "--storage", url], "BNSEARCH_HEARTBEAT='1000000000000000000000000000000' is too",
                             tmp_path, env={"BNSEARCH_HEARTBEAT": "1" + "0" * 30}))
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)
    assert not (tmp_path / "bn.db").exists() and not (tmp_path / "out").exists()
    # The limits themselves are accepted.
    r = run_cli("space", SMOKE, cwd=tmp_path, env={"BNSEARCH_HEARTBEAT": "3600", "BNSEARCH_LOCK_TIMEOUT": "86400"},
                timeout=60)
    assert r.returncode == 0, r.stderr[-600:]
