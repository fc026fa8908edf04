"""Report rendering: CSVs, PNGs, markdown and the terminal tables from a small hand-made experiment."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from rich.console import Console

from bnsearch import analysis as A
from bnsearch import report as R
from bnsearch.offload import cores

DIST = {
    "layers": IntDistribution(1, 4),
    "activation": CategoricalDistribution(["relu", "tanh"]),
    "lr": FloatDistribution(1e-4, 1.0, log=True),
    "batch_size": CategoricalDistribution([32, 64, 128, 256]),
}
META = {"config_hash": "c0ffee12", "bnsearch_version": "0.1.0", "torch_version": "2.13.0",
        "optuna_version": "5.0.0", "experiment": "toy", "seed": 7}
META_COLUMNS = ["config_hash", "bnsearch_version", "torch_version", "optuna_version", "experiment_seed"]
CSVS = ["trials.csv", "summary.csv", "curves.csv", "importance.csv", "sensitivity.csv", "tests.csv",
        "tolerance_profile.csv", "heterogeneity.csv", "trial_budget.csv"]

# 12 paired configs: BN off diverges at large learning rates, BN on only at the largest one.
LRS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
ON = [0.90, 0.93, 0.95, 0.96, 0.97, 0.965, 0.96, 0.955, 0.95, 0.94, 0.93, 0.10]
OFF = [0.88, 0.92, 0.94, 0.97, 0.96, 0.93, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10]


def toy_trials(with_lr: bool = True) -> pd.DataFrame:
    rows = []
    for arm, scores in (("bn-on", ON), ("bn-off", OFF)):
        for i, (lr, s) in enumerate(zip(LRS, scores)):
            rows.append({"experiment": "toy", "arm": arm, "number": i, "state": "COMPLETE", "config_index": i,
                         "seed": 10 + i, "score": s, "test_score": s - 0.01, "diverged": s == 0.10,
                         "epochs_run": 20, "seconds": 0.4, "layers": 1 + i % 4,
                         "activation": ["relu", "tanh"][i % 2], "lr": lr, "batch_size": [32, 64, 128, 256][i % 4]})
    # a failed and a still-running trial: reported in trials.csv, left out of the metrics
    rows.append({**rows[0], "number": 12, "state": "FAIL", "score": np.nan, "test_score": np.nan})
    rows.append({**rows[12], "number": 12, "state": "RUNNING", "score": np.nan, "test_score": np.nan})
    df = pd.DataFrame(rows)
    return df if with_lr else df.drop(columns="lr")


def toy_summary(df=None, **kw) -> A.Comparison:
    df = toy_trials() if df is None else df
    dist = {k: v for k, v in DIST.items() if k in df.columns}
    args = dict(distributions=dist, tolerance=0.01, paired=True, sampler="random", task="classification",
                seed=0, n_boot=200)
    args.update(kw)
    return A.summarize(df, **args)


# The report of one comparison (the pair), as the exporter gets it from api.build_report.
def _report(df, summary, meta=META):
    view = R.Comparisons(list(summary.arms), summary.arms[1], {summary.arms[0]: summary})
    return SimpleNamespace(df=df, comparisons=view, meta=dict(meta), arms=None, records=[])


def write_csvs(df, summary, out, meta):
    return R.write_csvs(_report(df, summary, meta), out, meta)


def plot_jobs(df, summary, out):
    return R.comparison_plot_jobs(df, _report(df, summary).comparisons, out, summary.experiment or "toy")


def write_plots(df, summary, out):
    return [p for paths in R.PlotRun(plot_jobs(df, summary, out)).finish() for p in paths]


def write_markdown(summary, out, meta, files):
    text = R.markdown_text(_report(None, summary, meta).comparisons, meta, files, out, repeats=summary.n_repeats)
    (Path(out) / "report.md").write_text(text, encoding="utf-8")
    return Path(out) / "report.md"


def print_report(summary, console, meta, full=False):
    R.print_report(_report(None, summary, meta).comparisons, console, meta, repeats=summary.n_repeats, full=full)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    df = toy_trials()
    summary = toy_summary(df)
    csvs = write_csvs(df, summary, out, META)
    pngs = write_plots(df, summary, out)
    md = write_markdown(summary, out, META, csvs + pngs)
    return out, df, summary, csvs, pngs, md


def test_csvs_exist_with_meta_columns(written):
    out, df, _, csvs, _, _ = written
    assert sorted(p.name for p in csvs) == sorted(CSVS)
    for name in CSVS:
        frame = pd.read_csv(out / name)
        assert len(frame) > 0, name
        for col in META_COLUMNS:
            assert col in frame.columns, (name, col)
        assert (frame["config_hash"] == "c0ffee12").all()
        assert (frame["experiment_seed"] == 7).all()


def test_trials_csv_has_every_trial_in_every_state(written):
    out, df, *_ = written
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == len(df) == 26
    assert set(trials["state"]) == {"COMPLETE", "FAIL", "RUNNING"}
    for col in ["experiment", "arm", "number", "state", "layers", "activation", "lr", "batch_size",
                "score", "test_score", "diverged", "seconds", "seed"]:
        assert col in trials.columns
    assert trials["seed"].tolist() == df["seed"].tolist()  # per-trial seed kept, experiment seed separate


def test_summary_and_tests_csv_content(written):
    out, *_ = written
    summary = pd.read_csv(out / "summary.csv")
    g = summary.query("metric == 'good_fraction'").set_index("arm")["value"]
    # s* = 0.97 (BN on config 4, BN off config 3), threshold 0.96. The lower config, 3, is the reference
    # and is left out of both arms: on 0.97 0.965 0.96 (configs 4, 5, 6) -> 3/11; off 0.96 (config 4) -> 1/11
    assert g["bn-on"] == pytest.approx(3 / 11) and g["bn-off"] == pytest.approx(1 / 11)
    assert {"task", "sampler", "paired", "tolerance", "s_star"} <= set(summary.columns)
    tests = pd.read_csv(out / "tests.csv")
    assert "wilcoxon" in set(tests["test"])
    assert "p_holm" in set(tests["quantity"]) and tests["note"].str.contains("PRIMARY").any()
    assert summary["repeats"].eq(1).all() and "n_repeats" not in summary.columns
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves["estimator"]) == {"V", "U"} and set(curves["arm"]) == {"bn-on", "bn-off", "delta"}


def test_pngs_written_and_non_empty(written):
    out, _, _, _, pngs, _ = written
    names = {p.name for p in pngs}
    assert names == {"tuning_curves.png", "score_vs_lr.png", "score_edf.png", "importance.png",
                     "tolerance_profile.png", "heterogeneity.png"}
    for p in pngs:
        assert p.stat().st_size > 1000
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_links_pngs_and_starts_with_verdict(written):
    out, _, summary, csvs, pngs, md = written
    text = md.read_text()
    assert md == out / "report.md"
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == sorted(p.name for p in pngs)  # relative links, each PNG once
    assert "[trials.csv](trials.csv)" in text
    head = text.split("## ")[0]
    assert summary.verdict in head
    for title in ("Scores", "Robustness", "Tuning curve", "Importance", "Sensitivity", "Tests", "Tolerance profile"):
        assert f"## {title}" in text
    assert "expected best of n (V-est.)" in text and "| V |" not in text  # estimators named in words


def _plain(console: Console) -> str:
    # strip panel borders and line wrapping so a long verdict can be searched for
    return " ".join(console.export_text(clear=False).replace("│", " ").split())


def test_default_report_is_verdict_first_and_fits_80_columns(written):
    _, _, summary, *_ = written
    console = Console(record=True, width=80)
    print_report(summary, console, META)
    text = console.export_text(clear=False)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "BN on" in text and "BN off" in text and "Δ" in text
    assert len(text.splitlines()) <= 40  # with the progress, the files and the answer line: one 80x50 screen
    full = Console(record=True, width=80)
    print_report(summary, full, META, full=True)
    assert "c0ffee12" in full.export_text(clear=False)  # the provenance is in --full
    plain = _plain(console)
    assert " ".join(summary.verdict.split()) in plain
    assert plain.index("Verdict") < plain.index("Key numbers")  # verdict first
    # no cell is wrapped: the good-fraction row, Δ with its interval, is on one line
    row = next(line for line in text.splitlines() if line.startswith("│ good fraction"))
    d, lo, hi = summary.metric("good_fraction", "delta")
    assert f"{100 * d:+.1f} [{100 * lo:+.1f},{100 * hi:+.1f}]" in row
    assert "Tests" not in text and "--full" in text
    line = R.answer_line(summary)
    assert summary.outcome in ("easier", "harder", "equivalent", "cannot tell") and "pts at the declared δ" in line


def test_full_report_has_every_section(written):
    _, _, summary, *_ = written
    console = Console(record=True, width=160)
    print_report(summary, console, META, full=True)
    text = console.export_text(clear=False)
    for title in ("Scores", "Robustness", "Tuning curve", "Importance", "Sensitivity", "Tests", "Verdict",
                  "Tolerance profile", "Where it differs"):
        assert title in text
    assert "V-estimate, with replacement" in text


def test_renderers_accept_aggregated_repeats(tmp_path):
    df = toy_trials()
    reps = [toy_summary(df, seed=k) for k in range(2)]
    shifted = df.assign(score=df["score"] * 0.99)
    reps.append(toy_summary(shifted, seed=2))
    agg = A.aggregate_repeats(reps)
    console = Console(record=True, width=160)
    print_report(agg, console, META)
    assert "3 repeats" in console.export_text(clear=False)
    assert " ".join(agg.verdict.split()) in _plain(console)
    both = pd.concat([df, shifted], ignore_index=True)
    files = write_csvs(both, agg, tmp_path, {**META, "repeats": 3}) + write_plots(both, agg, tmp_path)
    md = write_markdown(agg, tmp_path, META, files)
    columns = pd.read_csv(tmp_path / "summary.csv").columns
    assert "repeats" in columns and "n_repeats" not in columns and "meta_repeats" not in columns
    assert len(pd.read_csv(tmp_path / "trials.csv")) == len(both)
    assert "(tuning_curves.png)" in md.read_text()


def test_no_lr_column_skips_that_plot(tmp_path):
    df = toy_trials(with_lr=False)
    summary = toy_summary(df)
    names = {p.name for p in write_plots(df, summary, tmp_path)}
    assert "score_vs_lr.png" not in names and "tuning_curves.png" in names


def test_degenerate_summaries_render(tmp_path):
    df = toy_trials()
    one_arm = df[df["arm"] == "bn-on"]
    for k, (frame, sampler) in enumerate([(one_arm, "random"), (df.iloc[0:0], "random"), (df, "tpe")]):
        summary = toy_summary(frame, sampler=sampler)
        out = tmp_path / str(k)
        console = Console(record=True, width=160)
        print_report(summary, console, META)
        files = write_csvs(frame, summary, out, META) + write_plots(frame, summary, out)
        write_markdown(summary, out, META, files)
        assert len(pd.read_csv(out / "trials.csv")) == len(frame)
        assert "Verdict" in console.export_text()


# ----------------------------------------------------------------------------- PlotRun (two processes)

def test_pngs_drawn_on_two_cores_are_the_pngs_drawn_on_one(written, tmp_path):
    """PlotRun draws every other plot in a forked child: the files, their order and their bytes
    are those of a serial run (the module fixture drew them with the default, two processes here)."""
    _, df, summary, _, pngs, _ = written
    serial = [p for paths in R.PlotRun(plot_jobs(df, summary, tmp_path), processes=1).finish() for p in paths]
    assert [p.name for p in serial] == [p.name for p in pngs] and len(serial) >= 5
    for a, b in zip(serial, pngs):
        assert a.read_bytes() == b.read_bytes(), a.name


_FORKS = pytest.mark.skipif(not hasattr(os, "fork") or cores() < 2,
                            reason="without fork or a second core PlotRun draws everything in one process")


def _job(path, fail_in_child_of=None, how="raise"):
    def job():
        if fail_in_child_of is not None and os.getpid() != fail_in_child_of:
            if how == "exit":
                os._exit(3)
            raise RuntimeError("only in the child")
        path.write_text(f"{path.name} by {os.getpid()}")
        return [path]
    return job


@_FORKS
@pytest.mark.parametrize("how", ["raise", "exit"])
def test_plot_jobs_that_fail_in_the_child_are_drawn_here(tmp_path, how):
    """A child that raises, or dies, costs time, not files: its jobs are run in this process."""
    me = os.getpid()
    jobs = [_job(tmp_path / f"{i}.txt", fail_in_child_of=me if i == 3 else None, how=how) for i in range(5)]
    run = R.PlotRun(jobs, processes=2)
    child = run.pid
    assert child is not None  # the odd jobs went to a forked child
    drawn = run.finish()
    assert [p.name for paths in drawn for p in paths] == [f"{i}.txt" for i in range(5)]
    # A failed child's results are not trusted at all: its jobs (1 and 3) were all redone here.
    assert {(tmp_path / f"{i}.txt").read_text().split(" by ")[1] for i in range(5)} == {str(me)}
    assert run.pid is None and not Path(f"/proc/{child}").exists()  # reaped, no zombie


@_FORKS
def test_plot_jobs_are_shared_with_a_forked_child(tmp_path):
    me = os.getpid()
    run = R.PlotRun([_job(tmp_path / f"{i}.txt") for i in range(5)], processes=2)
    child = run.pid
    assert [p.name for paths in run.finish() for p in paths] == [f"{i}.txt" for i in range(5)]
    authors = [(tmp_path / f"{i}.txt").read_text().split(" by ")[1] for i in range(5)]
    assert authors == [str(me), str(child), str(me), str(child), str(me)]
    assert not Path(f"/proc/{child}").exists()
    serial = R.PlotRun([_job(tmp_path / f"{i}.txt") for i in range(5)], processes=1)
    assert serial.pid is None and len(serial.finish()) == 5


@_FORKS
def test_a_failing_plot_job_here_stops_and_reaps_the_child(tmp_path):
    def boom():
        raise ValueError("bad data")
    jobs = [boom, _job(tmp_path / "1.txt")]
    run = R.PlotRun(jobs, processes=2)
    child = run.pid
    with pytest.raises(ValueError, match="bad data"):
        run.finish()
    assert run.pid is None and not Path(f"/proc/{child}").exists()
