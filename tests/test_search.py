"""Search and storage with real Optuna SQLite files and real (tiny) trainings."""

import pytest
from optuna.trial import TrialState

from bnsearch import search
from bnsearch.search import ARMS, SearchError, load_trials, prepare_experiment, run_arms


def _params_by_index(df, arm):
    rows = df[(df.arm == arm) & (df.state == "COMPLETE")].sort_values("config_index")
    cols = ["layers", "width", "activation", "init", "lr", "optimizer", "batch_size", "seed"]
    return [tuple(r) for r in rows[["config_index", *cols]].itertuples(index=False)]


def test_paired_arms_run_identical_configurations_and_seeds(smoke, sqlite_url):
    run_arms(smoke, sqlite_url, list(ARMS), jobs=1)
    df = load_trials(sqlite_url, smoke.name)
    assert (df.state == "COMPLETE").sum() == 2 * smoke.trials
    on, off = _params_by_index(df, "bn-on"), _params_by_index(df, "bn-off")
    assert on == off and [r[0] for r in on] == list(range(smoke.trials))
    assert len({r[-1] for r in on}) == smoke.trials  # every configuration has its own training seed


def test_paired_list_is_the_seeded_sampler_draw(smoke):
    a, b = search.sample_configs(smoke, 6), search.sample_configs(smoke, 10)
    assert a == b[:6]  # prefix-stable: raising --trials extends the same list
    assert search.sample_configs(smoke.with_overrides(seed=1), 6) != a


def test_resume_runs_only_missing_and_finished_study_trains_nothing(smoke, sqlite_url):
    run_arms(smoke.with_overrides(trials=3), sqlite_url, ["bn-on"], jobs=1)
    study = search.load_arm(sqlite_url, smoke.name, "bn-on").study
    first = {t.number: (t.value, t.datetime_complete) for t in study.get_trials()}
    assert len(first) == 3
    run_arms(smoke.with_overrides(trials=5), sqlite_url, ["bn-on"], jobs=1)  # extends the plan by 2
    after = {t.number: (t.value, t.datetime_complete) for t in study.get_trials()}
    assert len(after) == 5 and all(after[n] == first[n] for n in first)
    run_arms(smoke.with_overrides(trials=5), sqlite_url, ["bn-on"], jobs=1)
    assert {t.number: (t.value, t.datetime_complete) for t in study.get_trials()} == after


def test_interrupted_trial_is_rerun_on_resume(smoke, sqlite_url):
    """A trial failed mid-run (the state a crash leaves after fail_stale) is re-run on resume."""
    [arm] = prepare_experiment(smoke, sqlite_url, ["bn-on"])
    trial = search._pop_waiting(arm.study)
    trial.set_user_attr("error", "simulated crash")
    arm.study.tell(trial, state=TrialState.FAIL)
    run_arms(smoke, sqlite_url, ["bn-on"], jobs=1)
    df = load_trials(sqlite_url, smoke.name, ["bn-on"])
    done = df[df.state == "COMPLETE"]
    assert sorted(done.config_index) == list(range(smoke.trials))
    assert (df.state == "FAIL").sum() == 1 and (df.state == "RUNNING").sum() == 0


def test_same_config_and_seed_give_identical_scores(smoke, tmp_path):
    urls = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(2)]
    frames = []
    for url in urls:
        run_arms(smoke, url, list(ARMS), jobs=1)
        frames.append(load_trials(url, smoke.name).sort_values(["arm", "config_index"]).reset_index(drop=True))
    assert frames[0]["score"].tolist() == frames[1]["score"].tolist()
    assert frames[0]["test_score"].tolist() == frames[1]["test_score"].tolist()


def test_divergence_is_a_complete_trial_with_a_poor_score(write_config, tmp_path):
    from bnsearch.config import load_config

    # N(0,1) init, raw huge-scale inputs and lr 1 without BN: the textbook explosion.
    cfg = load_config(write_config(replace={
        'dataset = "iris"': 'dataset = "skewed"\ninputs = "raw"', "trials = 6": "trials = 2",
        "lr         = { low = 1e-3, high = 1.0, log = true }": "lr = 1.0",
        'init       = ["kaiming", "normal"]': 'init = "normal"', 'optimizer  = ["sgd", "adam"]': 'optimizer = "sgd"'}))
    url = f"sqlite:///{tmp_path / 'd.db'}"
    run_arms(cfg, url, ["bn-off"], jobs=1)
    df = load_trials(url, cfg.name, ["bn-off"])
    assert (df.state == "COMPLETE").all() and df.diverged.all()
    assert df.score.notna().all() and (df.score < 0.5).all()


def test_existing_experiment_with_other_config_is_rejected_untouched(smoke, sqlite_url):
    run_arms(smoke.with_overrides(trials=2), sqlite_url, ["bn-on"], jobs=1)
    before = load_trials(sqlite_url, smoke.name, ["bn-on"])
    with pytest.raises(SearchError, match="already exists in this storage with a different config"):
        prepare_experiment(smoke.with_overrides(seed=7), sqlite_url)
    after = load_trials(sqlite_url, smoke.name, ["bn-on"])
    assert before.equals(after)
    assert [s.study_name for s in search.open_storage(sqlite_url).get_all_studies()] == ["smoke/bn-on"]


def test_study_attrs_hold_everything_a_remote_worker_needs(smoke, sqlite_url):
    prepare_experiment(smoke, sqlite_url)
    arm = search.load_arm(sqlite_url, smoke.name, "bn-off")  # no config file involved
    attrs = arm.study.user_attrs
    assert arm.settings.config_hash() == smoke.config_hash() == attrs["config_hash"]
    assert {"torch_version", "optuna_version", "bnsearch_version", "seed", "config_toml"} <= set(attrs)
    assert arm.budget == smoke.trials


def test_tpe_arm_runs_to_budget_unpaired(smoke, sqlite_url):
    s = smoke.with_overrides(sampler="tpe", paired=False, trials=4)
    run_arms(s, sqlite_url, ["bn-on"], jobs=1)
    df = load_trials(sqlite_url, s.name, ["bn-on"])
    assert (df.state == "COMPLETE").sum() == 4 and df.config_index.isna().all()


def test_bad_storage_urls():
    with pytest.raises(SearchError, match="is not a database URL"):
        search.open_storage("results/x.db")
    with pytest.raises(SearchError, match="cannot open|driver missing"):
        search.open_storage("nosuchdb://host/x")


def test_studies_start_with_a_short_about_attr(smoke, sqlite_url):
    # `optuna studies` prints every user attr in one column: a readable line must come first.

    prepare_experiment(smoke, sqlite_url, ["bn-on"])
    study = search.open_storage(sqlite_url).get_all_studies()[0]
    first_key, about = next(iter(study.user_attrs.items()))
    assert first_key == "about" and len(about) < 120
    assert about == "bnsearch smoke, arm bn-on: iris (standardize), random sampler, 3 epochs"
