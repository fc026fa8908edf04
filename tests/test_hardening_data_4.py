"""Issue 26, the data cases (1, 2, 6, 7, 20, 21, 23, 25, 27, 28), through the real CLI: a data file
that changes under an experiment never reaches a trial, reports read what storage recorded about
the data, CSV mode can name its experiment and leave columns out, and the data refusals are one
short line naming what is wrong.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import CONFIGS, killed_on_exit, run_cli
from test_hardening import one_line_error


def _frame(n: int, seed: int) -> pd.DataFrame:
    """A learnable two-class table with an id, a numeric column with gaps, a text column and rows
    without a target: every step of the encoding has something to report."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    df = pd.DataFrame({"id": np.arange(n), "a": x[:, 0], "b": x[:, 1],
                       "colour": rng.choice(["red", "green", "blue"], n), "y": (x[:, 0] > 0).astype(int)})
    df.loc[df.index[::7], "b"] = np.nan
    df["y"] = df["y"].astype("Int64")
    df.loc[df.index[::11], "y"] = pd.NA
    return df


def _counts(url: str, study: str) -> dict[str, int]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as c:
        return dict(c.execute("SELECT t.state, COUNT(*) FROM trials t JOIN studies s USING (study_id) "
                              "WHERE s.study_name = ? GROUP BY t.state", (study,)).fetchall())


def _config(tmp_path: Path, csv: Path, name: str, trials: int = 6, epochs: int = 3) -> Path:
    body = (CONFIGS / "smoke.toml").read_text().replace('dataset = "iris"', f'dataset = "csv"\npath = "{csv}"\n'
                                                        'target = "y"\ndrop = ["id"]')
    body = body.replace('name = "smoke"', f'name = "{name}"').replace("trials = 6", f"trials = {trials}")
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(body.replace("epochs = 3", f"epochs = {epochs}"))
    return cfg


# --------------------------------------------------------------------------- 1, 2: data replaced under a run

def test_file_replaced_mid_run_never_reaches_a_trial(tmp_path):
    """Before: with --jobs 1 the second arm loaded the replaced file and trained on it, while the stored
    SHA-256 still named the first, and the command exited 0 with a verdict on the mix. Now a worker
    checks what it parsed against the recorded digest: one line naming the file and the fix, exit 1,
    and not one trial of the second arm."""
    csv = tmp_path / "m.csv"
    _frame(120, 0).to_csv(csv, index=False)
    url = f"sqlite:///{tmp_path / 'bn.db'}"
    # Enough trials that the first arm is still running when the file is replaced.
    cmd = [sys.executable, "-m", "bnsearch", "compare", "m.csv", "--target", "y", "--trials", "40", "--epochs", "30",
           "--jobs", "1", "--storage", url, "--out", str(tmp_path / "out")]
    with killed_on_exit(subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, start_new_session=True)) as proc:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (tmp_path / "bn.db").exists():
                try:
                    if _counts(url, "m/bn-on").get("COMPLETE", 0) >= 1:
                        break
                except sqlite3.Error:
                    pass  # tables not there yet
            time.sleep(0.05)
        _frame(1000, 1).to_csv(csv, index=False)
        _, stderr = proc.communicate(timeout=180)
    r = subprocess.CompletedProcess(cmd, proc.returncode, "", stderr)
    assert one_line_error(r, 1, "m.csv is no longer the file this experiment was created with") is None, stderr
    assert "put the original file back" in stderr and "--name" in stderr
    assert _counts(url, "m/bn-off").get("COMPLETE", 0) == 0


def test_worker_and_new_arm_refuse_a_replaced_file(tmp_path):
    """Before: after the file was replaced, `bnsearch worker` trained every queued trial on the new
    file, and `study --bn off` created the second arm on it; both exited 0. Now both are refused in
    one line and nothing is trained."""
    from bnsearch.config import load_config
    from bnsearch.search import prepare_experiment

    csv = tmp_path / "w.csv"
    _frame(120, 0).to_csv(csv, index=False)
    url = f"sqlite:///{tmp_path / 'bn.db'}"
    cfg = _config(tmp_path, csv, "w")
    prepare_experiment(load_config(cfg), url, ["bn-on"])  # the plan is queued, as after a `kill -9`
    _frame(1000, 1).to_csv(csv, index=False)
    worker = run_cli("worker", "--experiment", "w", "--bn", "on", "--storage", url, cwd=tmp_path, timeout=180)
    assert one_line_error(worker, 2, "w.csv is no longer the file this experiment was created with") is None
    study = run_cli("study", str(cfg), "--bn", "off", "--jobs", "1", "--storage", url, cwd=tmp_path, timeout=180)
    assert one_line_error(study, 2, "the contents of the data file") is None
    assert _counts(url, "w/bn-on").get("COMPLETE", 0) == 0 and _counts(url, "w/bn-off") == {}


# --------------------------------------------------------------------------- 6, 7, 28: reports from storage

@pytest.fixture(scope="module")
def stored_csv(tmp_path_factory):
    """One finished CSV experiment (CSV mode with --drop, so named "data") and the output of its compare."""
    tmp = tmp_path_factory.mktemp("stored-csv")
    (tmp / "a").mkdir()
    df = _frame(150, 0)
    df.to_csv(tmp / "a" / "data.csv", index=False)
    url = f"sqlite:///{tmp / 'bn.db'}"
    r = run_cli("compare", "a/data.csv", "--target", "y", "--drop", "id", "--trials", "6",
                "--epochs", "3", "--jobs", "1", "--storage", url, "--out", str(tmp / "out"), cwd=tmp, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return tmp, url, df, r.stdout


def _delta_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("good = within δ"))


def test_summary_and_export_read_the_data_context_from_storage(stored_csv, tmp_path):
    """Before: `summary` re-derived δ from an edited CSV ("on 200 validation rows" for trials scored
    on 24), and `summary`/`export` failed once the CSV had moved ("data file not found"). Now both
    report what the run recorded, whatever happened to the file since."""
    tmp, url, _, compared = stored_csv
    csv = tmp / "a" / "data.csv"
    original = csv.read_bytes()
    try:
        _frame(1000, 1).to_csv(csv, index=False)  # edited in place: many more validation rows
        edited = run_cli("summary", "--experiment", "data", "--storage", url, cwd=tmp)
        assert edited.returncode == 0, edited.stderr[-2000:]
        assert _delta_line(edited.stdout) == _delta_line(compared)
        csv.unlink()  # moved away: summary and export build the same report (api.build_report)
        exported = run_cli("export", "--experiment", "data", "--storage", url, "--out", str(tmp_path / "x"), cwd=tmp)
        assert exported.returncode == 0, exported.stderr[-2000:]
        assert (tmp_path / "x" / "report.md").read_text() == (tmp / "out" / "report.md").read_text()
    finally:
        csv.write_bytes(original)


def test_data_summary_line_and_report_section(stored_csv):
    """Before: nothing said how many rows were used or dropped, how many features the encoding gave
    or which columns were imputed. Now one line in the terminal and the details in report.md."""
    tmp, _, df, compared = stored_csv
    line = next(x for x in compared.splitlines() if x.startswith("data: "))
    kept = df[df["y"].notna()].drop(columns=["id", "y"])
    levels = kept["colour"].nunique()
    gaps = [c for c in ("a", "b") if kept[c].isna().any()]
    encoded = 2 + len(gaps) + levels  # a and b, a missing flag per column with gaps, one column per colour
    assert f"{len(kept):,} rows used ({len(df) - len(kept):,} without a target dropped)" in line
    assert f"{encoded} features after encoding" in line and f"{len(gaps)} column(s) imputed" in line
    report = (tmp / "out" / "report.md").read_text()
    section = report[report.index("## Data"):]
    assert "imputed" in section and "`b`" in section and f"`colour` ({levels})" in section and "`id`" in section


# --------------------------------------------------------------------------- 23, 27: naming CSV mode's experiment

def test_same_stem_is_refused_before_any_work_and_name_makes_a_new_experiment(stored_csv, tmp_path):
    """Before: another file with the same stem was refused after the data had been loaded (11.5 s),
    with "use a new experiment.name", which CSV mode had no way to set. Now the refusal comes before
    the file is parsed and names --name, and --name starts the new experiment."""
    tmp, url, _, _ = stored_csv
    other = tmp_path / "data.csv"
    _frame(150, 1).to_csv(other, index=False)
    out = tmp_path / "out"
    refused = run_cli("compare", str(other), "--target", "y", "--drop", "id", "--storage", url, "--out", str(out),
                      cwd=tmp_path)
    assert one_line_error(refused, 2, "pass --name NEW") is None
    assert not out.exists()
    named = run_cli("compare", str(other), "--target", "y", "--drop", "id", "--name", "data-b", "--trials", "2",
                    "--epochs", "1", "--jobs", "1", "--storage", url, "--out", str(out), cwd=tmp_path, timeout=300)
    assert named.returncode == 0, named.stderr[-2000:]
    assert named.stdout.startswith("data-b (") and (out / "report.md").exists()


# --------------------------------------------------------------------------- 20, 21, 23, 25, 27: refusals

def _wide(p: Path) -> None:
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.normal(size=(30, 1200))).assign(y=np.arange(30) % 2).to_csv(p, index=False)


def _classes(p: Path) -> None:
    pd.DataFrame({"a": np.arange(5_000, dtype=float), "y": [f"c{i}" for i in range(5_000)]}).to_csv(p, index=False)


def _nested(p: Path) -> None:
    pd.DataFrame({"a": np.arange(40.0), "tags": [[1, i] for i in range(40)], "y": [0, 1] * 20}).to_parquet(p)


def _plain(p: Path) -> None:
    _frame(60, 0).to_csv(p, index=False)


REFUSALS = {
    # 20: no categorical column, yet the message was about one-hot encoding them
    "numeric columns": ("t.csv", _wide, [], r"1,200 numeric columns give more than 1000 feature columns"),
    # 21: a line listing every class code (689 KB for 100,000 classes); now the first labels and a count
    "5,000 classes": ("t.csv", _classes, [], r"5,000 of its 5,000 classes have a single row \('c0', "),
    # 23: a directory is named as one
    "directory": ("t.csv", None, [], r"t\.csv is not a regular file but a directory"),
    # 25: nested Parquet columns were silently encoded as text
    "nested parquet": ("t.parquet", _nested, [], r"column\(s\) 'tags' hold nested values"),
    # 27: --drop of a column the file lacks
    "drop unknown": ("t.csv", _plain, ["--drop", "nope"], r"--drop: no column 'nope'"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_data_refusals_are_one_short_line(case, tmp_path):
    name, write, extra, pattern = REFUSALS[case]
    path = tmp_path / name
    if write is None:
        path.mkdir()
    else:
        write(path)
    r = run_cli("compare", name, "--target", "y", *extra, "--storage", f"sqlite:///{tmp_path / 'bn.db'}",
                "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert one_line_error(r, 2, "") is None, r.stderr[-1000:]
    assert re.search(pattern, r.stderr) and len(r.stderr) < 600, r.stderr[-1000:]
    assert not (tmp_path / "out").exists() and not (tmp_path / "bn.db").exists()


# --------------------------------------------------------------------------- the split cache's temporaries

def test_cache_temporaries_are_not_followed_through_planted_links(stored_smoke, tmp_path, monkeypatch):
    """Before: a prepared split and reference were written to `<stem>.<pid>.tmp<suffix>` in the cache
    folder, so a link planted under the reporting process's pid had its target overwritten and the
    cache entry became that link. Now the temporary is a new file made with O_EXCL."""
    from bnsearch.config import load_config
    from bnsearch.data import cache_file

    cache = tmp_path / "cache"
    monkeypatch.setenv("BNSEARCH_CACHE_DIR", str(cache))
    smoke = load_config(CONFIGS / "smoke.toml")
    finals = [cache_file(smoke.data, smoke.seed, kind, suffix) for kind, suffix in (("split", ".npz"),
                                                                                   ("reference", ".json"))]
    finals[0].parent.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    cmd = [sys.executable, "-m", "bnsearch", "summary", "--experiment", "smoke", "--storage", stored_smoke]
    with killed_on_exit(subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)) as proc:
        for final in finals:  # the imports take seconds: the links are there long before the first write
            final.with_name(f"{final.stem}.{proc.pid}.tmp{final.suffix}").symlink_to(victim)
        _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    assert victim.read_text() == "precious\n"
    assert all(f.is_file() and not f.is_symlink() for f in finals)
