"""compare / summary / export end to end: real studies in SQLite, real tiny trainings."""

import pandas as pd
import pytest

from bnsearch import api
from bnsearch.search import SearchError, load_trials, open_storage
from conftest import CONFIGS


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmp")
    url = f"sqlite:///{tmp / 'bn.db'}"
    report = api.run_compare(CONFIGS / "smoke.toml", repeats=2, jobs=1, storage=url, out=tmp / "out")
    return tmp, url, report


def test_compare_runs_both_arms_of_every_repeat(compared):
    tmp, url, report = compared
    names = sorted(s.study_name for s in open_storage(url).get_all_studies())
    assert names == ["smoke-rep1/bn-off", "smoke-rep1/bn-on", "smoke/bn-off", "smoke/bn-on"]
    assert report.summary.n_repeats == 2 and report.meta["repeats"] == 2
    seeds = {load_trials(url, n).seed.iloc[0] for n in ("smoke", "smoke-rep1")}
    assert len(seeds) == 2  # the repeat really uses another seed


def test_exports_match_storage_and_carry_meta(compared):
    tmp, url, report = compared
    out = tmp / "out"
    trials = pd.read_csv(out / "trials.csv")
    stored = sum(len(load_trials(url, n)) for n in ("smoke", "smoke-rep1"))
    assert len(trials) == stored == 24
    for name in ("trials", "summary", "curves", "importance", "sensitivity", "tests"):
        frame = pd.read_csv(out / f"{name}.csv")
        assert (frame["config_hash"] == report.meta["config_hash"]).all(), name
        assert {"torch_version", "optuna_version", "bnsearch_version"} <= set(frame.columns), name
    for png in ("tuning_curves.png", "score_vs_lr.png", "score_edf.png", "importance.png"):
        assert (out / png).stat().st_size > 1000
    assert "tuning_curves.png" in (out / "report.md").read_text()


def test_rerun_trains_nothing_and_summary_needs_only_storage(compared, tmp_path):
    tmp, url, report = compared
    before = load_trials(url, "smoke")
    again = api.run_compare(CONFIGS / "smoke.toml", repeats=2, jobs=1, storage=url, out=tmp_path / "o2")
    assert load_trials(url, "smoke").equals(before)
    from_storage = api.build_report(url, "smoke")  # no config file involved
    assert from_storage.summary.verdict == again.summary.verdict == report.summary.verdict
    pd.testing.assert_frame_equal(from_storage.summary.metrics, report.summary.metrics)
    files = api.export(experiment="smoke", storage=url, out=tmp_path / "exp")
    assert {f.name for f in files} >= {"trials.csv", "trials.jsonl", "report.md", "tuning_curves.png"}


def test_budget_layer_from_the_forked_child_is_the_one_computed_here(compared):
    """build_report computes the budget analysis in a forked child (api.py, offload.py) while it
    summarizes: what comes back through the pipe is what this process computes itself."""
    _, url, report = compared
    from bnsearch.offload import Forked, cores

    with Forked(lambda: 1) as probe:  # on 2+ cores with fork, the report below uses a child too
        assert (probe.pid is not None) == (cores() > 1) and probe.result() == 1
    run = api._read_run(url, "smoke", open_storage(url, create=False).get_all_studies())
    here = api._analyse_arms(run.df, run.settings, {}, run.context)
    there = api.build_report(url, "smoke").arms
    for name in ("budget", "compute"):
        pd.testing.assert_frame_equal(getattr(there, name), getattr(here, name))
    assert there.budget_verdicts == here.budget_verdicts and there.pairs == here.pairs
    assert set(there.comparisons) == {"bn-on"}


def test_summary_of_unknown_experiment_is_a_usage_error(compared):
    _, url, _ = compared
    with pytest.raises(SearchError, match="no experiment 'nope'"):
        api.build_report(url, "nope")


def test_unwritable_out_dir_is_rejected_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    url = f"sqlite:///{tmp_path / 'bn.db'}"
    with pytest.raises(SearchError, match="--out: cannot write"):
        api.run_compare(CONFIGS / "smoke.toml", storage=url, out=blocker / "sub", jobs=1)
    assert not (tmp_path / "bn.db").exists()


def test_trials_jsonl_is_lossless(compared):
    import json

    tmp, url, report = compared
    lines = (tmp / "out" / "trials.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == sum(len(load_trials(url, n)) for n in ("smoke", "smoke-rep1")) == len(pd.read_csv(tmp / "out" / "trials.csv"))
    from bnsearch.search import load_arm

    study = load_arm(url, "smoke", "bn-on").study
    by_number = {r["number"]: r for r in records if r["study"] == "smoke/bn-on"}
    for t in study.get_trials():
        r = by_number[t.number]
        # per-epoch curves survive bit for bit (JSON floats round-trip exactly)
        assert r["user_attrs"]["val_score"] == t.user_attrs["val_score"]
        assert r["user_attrs"]["train_loss"] == t.user_attrs["train_loss"]
        assert r["params"] == t.params and r["value"] == t.value and r["state"] == t.state.name
        assert r["meta"]["config_hash"] == report.meta["config_hash"]
