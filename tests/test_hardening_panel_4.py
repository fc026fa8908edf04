"""Hardening of `bnsearch panel` (issue 26): a renamed duplicate data set, an experiment grown by
another run in a shared storage, a refusal that leaves storage as it was (and names no data file
for a built-in set), CSV cells a spreadsheet would run as formulas, the home folder in exported
files, the pooled paragraph wrapped on words at the terminal's width, and a progress display with
each data set's own time and an ETA. Two tiny panels train (2 data sets x 4 pairs x 1 epoch, one
worker); every refusal happens before any training."""

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from bnsearch.panel import check_stored, load_panel
from bnsearch.search.plan import prepare_experiment
from conftest import run_cli

TINY = """
[panel]
name = "tiny"
datasets = {datasets}

[experiment]
seed = 0
tolerance = 0.02

[search]
trials = 4

[search.space]
layers     = {{ low = 1, high = 2 }}
width      = {{ low = 8, high = 32, log = true }}
activation = ["relu", "tanh"]
lr         = {{ low = 1e-3, high = 1.0, log = true }}
optimizer  = ["sgd", "adam"]
batch_size = [16, 32]

[train]
epochs = 1
"""
PAIR = '["iris", "wine"]'
ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-B]|[=>])")


def panel_config(folder: Path, datasets: str = PAIR, name: str = "tiny.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(TINY.format(datasets=datasets))
    return p


def stored(url: str) -> dict:
    """Every study in the storage with its number of trials (any state)."""
    return {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(url)}


def one_line_error(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    return r.stderr


# --------------------------------------------------------------------------- refusals, no training

def test_a_renamed_duplicate_data_set_is_refused(tmp_path):
    cfg = panel_config(tmp_path, '["iris", {dataset = "iris", name = "iris2"}, "wine"]')
    r = run_cli("panel", str(cfg), "--storage", f"sqlite:///{tmp_path / 'p.db'}", cwd=tmp_path)
    err = one_line_error(r)
    assert "panel.datasets[2]" in err and "same data as entry 1" in err, err
    assert not (tmp_path / "p.db").exists()
    # The same table fed raw is another condition the panel may compare, not a duplicate.
    other = load_panel(panel_config(tmp_path, '["iris", {dataset = "iris", inputs = "raw"}]', "raw.toml"))
    assert [e.settings.data.inputs for e in other.entries] == ["standardize", "raw"]


def test_a_config_clash_is_refused_before_anything_is_stored(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    # tiny-wine already exists, made from iris: the panel's wine entry clashes with it.
    clash = load_panel(panel_config(tmp_path / "old", '[{dataset = "iris", name = "wine"}]'))
    prepare_experiment(clash.entries[0].settings, url, clash.entries[0].settings.arm_names())
    before = stored(url)
    r = run_cli("panel", str(panel_config(tmp_path)), "--storage", url, "--out", str(tmp_path / "out"), cwd=tmp_path)
    err = one_line_error(r)
    assert "'tiny-wine'" in err and 'data.dataset ("iris" stored, "wine" now)' in err, err
    assert "None" not in err and "data file" not in err, err  # a built-in set has no file to name
    assert stored(url) == before  # tiny-iris, checked first, was not enqueued
    assert not (tmp_path / "out").exists()


def test_an_experiment_grown_by_another_run_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    cfg = panel_config(tmp_path)
    # Another panel in the same storage ran tiny-iris with --trials 8.
    grown = load_panel(cfg, trials=8).entries[0].settings
    prepare_experiment(grown, url, grown.arm_names())
    before = stored(url)
    err = one_line_error(run_cli("panel", str(cfg), "--storage", url, cwd=tmp_path))
    assert "'tiny-iris'" in err and "8 trials per arm" in err and "--trials 8" in err, err
    assert stored(url) == before
    check_stored(load_panel(cfg, trials=8), url)  # the fix it names is accepted


def test_a_refused_device_makes_no_storage(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("cuda is available here: the config is not refused")
    cfg = panel_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("epochs = 1", 'epochs = 1\ndevice = "cuda"'))
    err = one_line_error(run_cli("panel", str(cfg), "--storage", f"sqlite:///{tmp_path / 'p.db'}", cwd=tmp_path))
    assert "--device cuda" in err, err
    assert not (tmp_path / "p.db").exists()


# --------------------------------------------------------------------------- two tiny panels

def test_a_config_name_a_spreadsheet_would_run_is_written_as_text(tmp_path):
    """The config's name (relative, so recorded as typed) starts with "=" and holds a comma and quotes:
    every panel CSV keeps it one field, as text."""
    name = '=1+2,"q".toml'
    panel_config(tmp_path, name=name)
    r = run_cli("panel", name, "--storage", "sqlite:///p.db", "--out", "out", "--jobs", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for csv in ("panel.csv", "pooled.csv", "moderators.csv"):
        table = pd.read_csv(tmp_path / "out" / csv)
        assert (table["config"] == "'" + name).all(), (csv, table["config"].tolist())
    assert f"`{name}`" in (tmp_path / "out" / "report.md").read_text()


def test_each_data_set_shows_its_own_time_and_the_panel_an_eta(tmp_path):
    """The real display on real studies, trials finished through Optuna at the times of a clock the
    test drives: iris trains from t0 to t2, wine from t3 to t4."""
    from rich.console import Console

    from bnsearch.progress import PanelProgress

    url = f"sqlite:///{tmp_path / 'p.db'}"
    panel = load_panel(panel_config(tmp_path))
    arms = {e.slug: prepare_experiment(e.settings, url, e.settings.arm_names()) for e in panel.entries}
    console = Console(width=150, color_system=None)
    shown = PanelProgress(console)
    now = [0.0]
    shown.progress.get_time = lambda: now[0]  # rich's clock hook: every task reads time through it

    def snapshot(t):
        now[0] = t
        for e in panel.entries:
            shown(e, arms[e.slug])
        with console.capture() as cap:
            console.print(shown.progress.make_tasks_table(shown.progress.tasks))
        return {line.split()[0]: line for line in cap.get().splitlines()}

    def claim(slug, k):
        return [(a.study, a.study.ask()) for a in arms[slug] for _ in range(k)]

    def finish(claimed):
        for study, trial in claimed:
            study.tell(trial, 0.5)

    per_arm = panel.entries[0].settings.trials
    t0, t1, t2, t3, t4 = 10.0, 15.0, 20.0, 25.0, 45.0
    snapshot(0.0)
    first = claim("iris", 1)
    snapshot(t0)  # iris's clock starts with its first running trial
    finish(first)
    finish(claim("iris", per_arm // 2 - 1))
    snapshot(t1)
    finish(claim("iris", per_arm - per_arm // 2))
    rows = snapshot(t2)
    # The panel's ETA: the rate seen between t1 and t2 (half of iris's trials), over what is left.
    left, rate = 2 * per_arm, (2 * (per_arm - per_arm // 2)) / (t2 - t1)
    assert rows["all"].split(" ETA ")[1].strip() == f"0:00:{round(left / rate):02d}", rows["all"]
    assert "-:--:--" in rows["wine"]  # not started: no time yet
    finish(claim("wine", 1))
    snapshot(t3)
    finish(claim("wine", per_arm - 1))
    rows = snapshot(t4)
    clock = lambda line: line.split(" ETA ")[0].split()[-1]  # noqa: E731
    assert clock(rows["iris"]) == f"0:00:{round(t2 - t0):02d}", rows["iris"]
    assert clock(rows["wine"]) == f"0:00:{round(t4 - t3):02d}", rows["wine"]
    assert clock(rows["all"]) == f"0:00:{round(t4):02d}", rows["all"]


@pytest.fixture(scope="module")
def home_panel(tmp_path_factory):
    """A panel run in a terminal 80 columns wide, its config, storage and files under $HOME (not
    under the working folder)."""
    import matplotlib

    tmp = tmp_path_factory.mktemp("home-panel")
    home, work = tmp / "home", tmp / "work"
    work.mkdir()
    cfg = panel_config(home / "proj")
    url = f"sqlite:///{home / 'proj' / 'p.db'}"
    # MPLCONFIGDIR: a new $HOME would otherwise rebuild matplotlib's font cache (seconds).
    env = {**os.environ, "HOME": str(home), "COLUMNS": "80", "TERM": "xterm",
           "MPLCONFIGDIR": matplotlib.get_configdir()}
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "bnsearch", "panel", str(cfg), "--storage", url, "--out",
                             str(home / "proj" / "out"), "--jobs", "1"], cwd=work, env=env, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1)[0]:
                continue
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # the command closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.returncode == 0, stderr
    text = ANSI.sub("", b"".join(chunks).decode("utf-8", "replace")).replace("\r\n", "\n")
    return {"home": home, "work": work, "url": url, "env": env, "stdout": text, "out": home / "proj" / "out"}


def test_the_pooled_paragraph_wraps_on_words_at_80_columns(home_panel):
    report = (home_panel["out"] / "report.md").read_text().splitlines()
    verdict = report[2]
    assert verdict.startswith("Across 2 data sets"), report[:3]
    lines = home_panel["stdout"].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Across 2 data sets"))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("wrote "))
    para = [line.rstrip() for line in lines[start:end] if line.strip()]
    assert len(para) > 1 and max(map(len, para)) <= 80, para
    assert " ".join(para) == verdict  # every line break fell between words


def test_no_home_folder_in_the_panels_files(home_panel):
    home = str(home_panel["home"])
    for f in home_panel["out"].iterdir():
        if f.suffix in (".csv", ".md"):
            assert home not in f.read_text(), f
    assert (pd.read_csv(home_panel["out"] / "panel.csv")["config"] == "~/proj/tiny.toml").all()
    assert "`~/proj/tiny.toml`" in (home_panel["out"] / "report.md").read_text()


def test_no_home_folder_in_an_experiments_export(home_panel):
    out = home_panel["home"] / "proj" / "export"
    r = subprocess.run([sys.executable, "-m", "bnsearch", "export", "--experiment", "tiny-iris", "--storage",
                        home_panel["url"], "--out", str(out)], cwd=home_panel["work"], env=home_panel["env"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    home = str(home_panel["home"])
    written = [f for f in out.iterdir() if f.suffix in (".csv", ".jsonl", ".md")]
    assert len(written) > 5
    for f in written:
        assert home not in f.read_text(), f
    assert (pd.read_csv(out / "trials.csv")["storage"] == "sqlite:///~/proj/p.db").all()
