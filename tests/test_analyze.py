"""`bnsearch analyze` on studies bnsearch did not write: plain Optuna studies of a toy objective in
SQLite and in a JournalStorage file; and on bnsearch's own experiment, where it must agree with `summary`."""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest

from bnsearch.foreign import analyze_studies
from bnsearch.report import answer
from bnsearch.search import SearchError
from conftest import CONFIGS, run_cli

N = 40  # trials per study
FAILED = [n for n in range(N) if n % 10 == 3]  # trial numbers that raise in "wide"
PRUNED = [n for n in range(N) if n % 10 == 7]  # ... and are pruned in "narrow"


def score(params: dict, width: float) -> float:
    """A deterministic toy objective (not bnsearch's trainer): good near lr = 1e-2, over `width` decades."""
    lr, units, act = params["learning_rate"], params["units"], params["act"]
    peak = math.exp(-((math.log10(lr) + 2) / width) ** 2)
    return 0.5 + 0.4 * peak + 0.02 * math.log2(units) / 7 + (0.03 if act == "relu" else 0.0)


def objective(width: float, *, fail=(), prune=(), sign: int = 1):
    def run(trial: optuna.Trial) -> float:
        params = {"learning_rate": trial.suggest_float("learning_rate", 1e-5, 1.0, log=True),
                  "units": trial.suggest_int("units", 2, 128, log=True),
                  "act": trial.suggest_categorical("act", ["relu", "tanh"])}
        if trial.number in fail:
            raise RuntimeError("toy failure")
        if trial.number in prune:
            raise optuna.TrialPruned()
        s = score(params, width)
        return s if sign > 0 else 1.0 - s
    return run


def paired_pair(storage, names, widths, *, direction="maximize", sampler_seed=0, fail=(), prune=(), metric=None):
    """Two studies over the same parameter sets: the first samples them, the second has them enqueued."""
    sign = 1 if direction == "maximize" else -1
    first = optuna.create_study(study_name=names[0], storage=storage, direction=direction,
                                sampler=optuna.samplers.RandomSampler(seed=sampler_seed))
    if metric:
        first.set_metric_names([metric])
    first.optimize(objective(widths[0], fail=fail, sign=sign), n_trials=N, catch=(RuntimeError,))
    second = optuna.create_study(study_name=names[1], storage=storage, direction=direction)
    if metric:
        second.set_metric_names([metric])
    for t in first.trials:
        second.enqueue_trial(t.params)
    second.optimize(objective(widths[1], prune=prune, sign=sign), n_trials=N, catch=(RuntimeError,))
    return first, second


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("analyze")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    url = f"sqlite:///{tmp / 'studies.db'}"
    paired_pair(url, ("wide", "narrow"), (1.5, 0.4), fail=FAILED, prune=PRUNED)
    paired_pair(url, ("narrow-again", "same"), (0.4, 0.4), sampler_seed=0)  # identical objective and params
    indep = optuna.create_study(study_name="independent", storage=url, sampler=optuna.samplers.RandomSampler(seed=7),
                                direction="maximize")
    indep.optimize(objective(0.4), n_trials=N)
    part = optuna.create_study(study_name="half-shared", storage=url, direction="maximize",
                               sampler=optuna.samplers.RandomSampler(seed=9))
    for t in optuna.load_study(study_name="wide", storage=url).trials[:N // 2]:
        part.enqueue_trial(t.params)
    part.optimize(objective(0.4), n_trials=N)
    minimized = optuna.create_study(study_name="minimized", storage=url, direction="minimize")
    minimized.optimize(objective(0.4, sign=-1), n_trials=10)
    multi = optuna.create_study(study_name="multi", storage=url, directions=["maximize", "minimize"])
    multi.set_metric_names(["accuracy", "latency"])
    multi.optimize(lambda t: (objective(0.4)(t), float(t.params["units"])), n_trials=N)
    other = optuna.create_study(study_name="other-space", storage=url, direction="maximize")
    other.optimize(lambda t: t.suggest_float("y", 0, 1), n_trials=10)

    journal = tmp / "optuna.log"
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    paired_pair(JournalStorage(JournalFileBackend(str(journal))), ("loss-wide", "loss-narrow"), (1.5, 0.4),
                direction="minimize", sampler_seed=3, metric="val_loss")
    return tmp, url, journal


def test_a_planted_difference_gives_the_right_direction_either_way_round(stores):
    _, url, _ = stores
    report = analyze_studies(["wide", "narrow"], storage=url)
    s = report.summary
    assert (s.arms, s.outcome, s.paired) == (("wide", "narrow"), "easier", True), s.verdict
    assert s.verdict.startswith("The search was easier with wide than with narrow")
    assert s.primary["quoted_lo"] > 0
    flipped = analyze_studies(["wide", "narrow"], reference="wide", storage=url).summary
    assert (flipped.arms, flipped.outcome) == (("narrow", "wide"), "harder")
    assert flipped.primary["quoted_hi"] < 0
    # the LR window found the parameter by its name and reads it as lr
    assert {"lr_window"} <= set(s.metrics["metric"]) and "lr" in s.params
    assert any("'learning_rate'" in n for n in s.notes)


def test_identical_studies_make_no_directional_claim(stores):
    _, url, _ = stores
    s = analyze_studies(["same", "narrow-again"], storage=url).summary
    assert s.paired and s.outcome in ("equivalent", "cannot tell") and s.primary["diff"] == 0, s.verdict
    assert "was easier" not in s.verdict and "was harder" not in s.verdict


def test_failed_and_pruned_trials_count_as_failures(stores):
    _, url, _ = stores
    report = analyze_studies(["wide", "narrow"], storage=url)
    s = report.summary
    rate = {arm: s.metric("divergence_rate", arm)[0] for arm in s.arms}
    assert rate == {"wide": len(FAILED) / N, "narrow": len(PRUNED) / N}
    assert s.metric("n_trials", "wide")[0] == N and s.metric("n_complete", "wide")[0] == N
    df = report.df
    failed = df[df["optuna_state"] != "COMPLETE"]
    assert sorted(failed["optuna_state"].value_counts().items()) == [("FAIL", len(FAILED)), ("PRUNED", len(PRUNED))]
    assert (failed["score"] == df["score"].min()).all() and failed["diverged"].all()
    assert any(f"{len(FAILED)} fail and {len(PRUNED)} pruned trials count as failures" in n for n in s.notes)
    assert "10% of runs failed or were pruned with wide, 10% with narrow" in s.verdict


def test_pairing_is_detected_when_params_coincide_and_not_otherwise(stores):
    _, url, _ = stores
    report = analyze_studies(["wide", "narrow", "independent", "half-shared"], reference="wide", storage=url)
    by = report.comparisons.by_arm
    assert [by[a].paired for a in ("narrow", "independent", "half-shared")] == [True, False, False]
    pairing = report.meta["pairing"]
    assert "narrow vs wide: paired: 'narrow' and 'wide' evaluated the same 40 parameter sets" in pairing
    assert "independent vs wide: unpaired (Mee" in pairing and "no parameter set in common" in pairing
    assert "'half-shared' and 'wide' share only 20 of their 40 and 40 parameter sets" in pairing
    assert by["independent"].notes[0].startswith("unpaired")
    assert by["independent"].test("mann_whitney", "p_value")[0] >= 0  # the unpaired tests ran


def test_a_minimize_study_reads_lower_as_better_and_says_so_in_its_units(stores):
    _, _, journal = stores
    report = analyze_studies(["loss-wide", "loss-narrow"], storage=str(journal))  # a plain path: a journal
    s = report.summary
    assert (s.outcome, s.paired, report.meta["direction"], report.meta["score_metric"]) == \
        ("easier", True, "minimize", "−val_loss")
    losses = [t.value for t in optuna.load_study(study_name="loss-wide", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal)))).trials]
    assert s.s_star == pytest.approx(-min(losses))  # scores are -val_loss: the lowest loss is the best
    threshold = -s.primary["quoted_threshold"]
    assert threshold > 0 and f"a val_loss of at most {threshold:.3f}" in s.verdict, s.verdict
    assert "within" in s.verdict and "of the best val_loss" in s.verdict
    line = answer(report.comparisons)
    assert f"val_loss ≤ {threshold:.3f}" in line and "easier with loss-wide" in line
    assert "scores lower in" in s.verdict  # the Hodges-Lehmann sentence, in the loss's own direction
    for text in (s.verdict, line):
        assert not any(z in text for z in ("-0.0", "−0.0", "-0 ")), text
    assert s.notes[1].startswith("scores are −val_loss")


def test_studies_objects_and_the_objective_of_a_multi_objective_study(stores):
    _, url, _ = stores
    multi = optuna.load_study(study_name="multi", storage=url)
    narrow = optuna.load_study(study_name="narrow", storage=url)
    report = analyze_studies([multi, narrow], objective=0)  # optuna.Study objects, as in a notebook
    assert report.meta["objective"] == "accuracy" and report.summary.paired is False
    with pytest.raises(SearchError, match="has 2 objectives"):
        analyze_studies([multi, narrow])
    with pytest.raises(SearchError, match=r"--param act: .*numeric"):
        analyze_studies(["wide", "narrow"], storage=url, param="act")
    s = analyze_studies(["wide", "narrow"], storage=url, param="units", tolerance=0.05).summary
    assert s.tolerance == 0.05 and s.tolerance_source == "set by --tolerance"
    assert any("'units' (--param)" in n for n in s.notes) and "units" not in s.params


BAD = {
    "missing": (["--study", "wide", "--study", "nope"], "nope"),
    "directions": (["--study", "wide", "--study", "minimized"], "'minimized'"),
    "disjoint": (["--study", "wide", "--study", "other-space"], "'other-space'"),
    "multi-objective": (["--study", "multi", "--study", "narrow"], "--objective"),
    "no-journal": (["--study", "a", "--study", "b"], "no journal file"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_input_is_one_line_naming_it(stores, case):
    tmp, url, _ = stores
    args, named = BAD[case]
    storage = f"journal:{tmp / 'missing.log'}" if case == "no-journal" else url
    r = run_cli("analyze", "--storage", storage, *args, cwd=tmp, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_cli_prints_the_report_and_writes_the_files_compare_writes(stores):
    tmp, _, journal = stores
    out = tmp / "out"
    r = run_cli("analyze", "--storage", f"journal:{journal}", "--study", "loss-wide", "--study", "loss-narrow",
                "--out", str(out), cwd=tmp, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "minimize val_loss, so scores are −val_loss" in r.stdout and "paired: 'loss-wide'" in r.stdout
    assert r.stdout.strip().splitlines()[-1].startswith("Answer: the search is easier with loss-wide (")
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "summary.csv", "tests.csv", "trials.csv", "trials.jsonl", "tuning_curves.png"} <= names
    text = (out / "report.md").read_text()
    assert "a val_loss of at most" in text and "note: scores are −val_loss" in text
    records = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert len(records) == 2 * N and {r["study"] for r in records} == {"loss-wide", "loss-narrow"}


def test_analyze_on_bnsearch_own_experiment_says_what_summary_says(tmp_path):
    from bnsearch import api

    url = f"sqlite:///{tmp_path / 'bn.db'}"
    api.run_compare(CONFIGS / "smoke.toml", storage=url, out=tmp_path / "out", jobs=1)
    docs = {}
    for name, args in {"summary": ["summary", "--experiment", "smoke"],
                       "analyze": ["analyze", "--study", "smoke/bn-on", "--study", "smoke/bn-off"]}.items():
        r = run_cli(*args, "--storage", url, "--json", cwd=tmp_path, timeout=180)
        assert r.returncode == 0, r.stderr
        docs[name] = json.loads(r.stdout)
    summary, analyzed = docs["summary"], docs["analyze"]
    assert analyzed["verdict"] == summary["verdict"] and analyzed["outcome"] == summary["outcome"]
    for key in ("primary", "tables", "comparisons", "arms", "s_star", "tolerance", "paired", "notes", "context"):
        assert analyzed[key] == summary[key], key
    assert np.isfinite(analyzed["s_star"])
