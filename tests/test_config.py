import pytest

from bnsearch.config import ConfigError, identity_conflict, load_config, load_config_text, to_toml
from conftest import CONFIGS


def test_default_config_is_digits_and_complete():
    s = load_config()
    assert s.name == "digits-mlp" and s.data.dataset == "digits"
    assert set(s.distributions()) == {"layers", "width", "activation", "init", "lr", "optimizer", "batch_size"}
    assert s.paired and s.sampler == "random"


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.toml")))
def test_example_configs_plan_within_their_space(name):
    # Every shipped config must give a plan whose draws lie inside the declared ranges and whose
    # fixed values are what the file says (a typo'd key or bound would show here, not at run time).
    from bnsearch.search import sample_configs

    path = CONFIGS / f"{name}.toml"
    if "[panel]" in path.read_text():  # a panel: one experiment per data set, each checked the same way
        from bnsearch.panel import load_panel
        every = [e.settings for e in load_panel(path).entries]
    else:
        every = [load_config(path)]
    for s in every:
        dists = s.distributions()
        plan = sample_configs(s, 5)
        assert len(plan) == 5 and all(set(p) == set(dists) for p in plan)
        for params in plan:
            for key, value in params.items():
                assert dists[key]._contains(dists[key].to_internal_repr(value)), (name, key, value)
        assert not set(s.fixed_params()) & set(dists)


def test_packaged_default_equals_configs_default():
    assert load_config().config_hash() == load_config(CONFIGS / "default.toml").config_hash()


def test_toml_round_trip_keeps_hash():
    s = load_config(CONFIGS / "skewed.toml")
    back = load_config_text(to_toml(s), "roundtrip")
    assert back.to_dict() == s.to_dict() and back.config_hash() == s.config_hash()


def test_hash_ignores_budget_and_device_but_not_space(smoke):
    assert smoke.with_overrides(trials=99, device="cpu").config_hash() == smoke.config_hash()
    assert smoke.with_overrides(seed=1).config_hash() != smoke.config_hash()


def test_dropped_hyperparameter_is_fixed_to_default(write_config):
    s = load_config(write_config(replace={'optimizer  = ["sgd", "adam"]\n': "", "batch_size = [16, 32]": "batch_size = 16"}))
    assert "optimizer" not in s.distributions() and "batch_size" not in s.distributions()
    assert s.fixed_params() == {"optimizer": "adam", "batch_size": 16}


@pytest.mark.parametrize("edit, message", [
    ({"[train]": "[train]\nepochz = 3"}, "train.epochz: unknown key; allowed: epochs, device"),
    ({"[search.space]": "[search.space]\ndropout = [0.1]"}, "search.space.dropout: unknown hyperparameter"),
    ({"[data]": "[model]\nx=1\n[data]"}, "unknown section [model]"),
    ({"lr         = { low = 1e-3": "lr         = { low = 0.0"}, "search.space.lr: low must be > 0 when log = true"),
    ({"layers     = { low = 1, high = 2 }": "layers     = { low = 3, high = 2 }"}, "search.space.layers: low must be < high"),
    ({'activation = ["relu", "tanh"]': 'activation = ["relu", "swish"]'}, "search.space.activation: unknown value 'swish'; allowed: relu, tanh, gelu, sigmoid"),
    ({'dataset = "iris"': 'dataset = "mnist"'}, "data.dataset: unknown data set 'mnist'"),
    ({"trials = 6": "trials = 0"}, "search.trials: must be at least 1"),
    ({"trials = 6": 'trials = "six"'}, "search.trials: expected int"),
    ({"epochs = 3": "epochs = 0"}, "train.epochs: must be between 1 and 10000"),
    ({'dataset = "iris"': 'dataset = "csv"'}, 'data: dataset = "csv" needs data.path and data.target'),
    ({"tolerance = 0.02": "tolerance = -1.0"}, "experiment.tolerance: must be between 0 and 0.5"),
    ({"tolerance = 0.02": "tolerance = 5"}, "experiment.tolerance: must be between 0 and 0.5 (a share of the score "
                                            "scale: 0.01 = 1 point) (for 5 points write 0.05); got 5"),
    ({"lr         = { low = 1e-3, high = 1.0": "lr         = { low = 1e-3, high = inf"},
     "search.space.lr.high: must be a finite number (got inf)"),
    ({"lr         = { low = 1e-3, high = 1.0": "lr         = { low = nan, high = 1.0"},
     "search.space.lr.low: must be a finite number (got nan)"),
    ({"tolerance = 0.02": "tolerance = inf"}, "experiment.tolerance: must be a finite number"),
    ({"seed = 0": "seed = -1"}, "experiment.seed: must be between 0 and 4294967295"),
    ({"trials = 6": "trials = 99999999999"}, "search.trials: 99999999999 is too many (at most 100,000 per arm"),
    ({'name = "smoke"': 'name = "a/b"'}, "experiment.name: 'a/b' must be letters"),
    ({"[search]": '[search]\nsampler = "tpe"\npaired = true'}, "search.paired: tpe tunes each arm adaptively"),
])
def test_bad_configs_name_file_key_and_fix(write_config, edit, message):
    path = write_config(replace=edit)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_invalid_toml_and_missing_file(write_config, tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write_config("[experiment\nname=1"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_overrides_are_validated(smoke):
    with pytest.raises(ConfigError, match="--trials must be at least 1"):
        smoke.with_overrides(trials=0)
    with pytest.raises(ConfigError, match=r"--trials 99999999999999999999 is too many \(at most 100,000 per arm"):
        smoke.with_overrides(trials=99999999999999999999)
    with pytest.raises(ConfigError, match="--seed must be between 0 and 4294967295"):
        smoke.with_overrides(seed=-3)
    assert smoke.with_overrides(trials=9, sampler="qmc").trials == 9


def test_jobs_limit_comes_from_cores_and_memory():
    import os

    from bnsearch.config import JOBS_PER_CORE, MAX_JOBS, check_jobs, max_jobs

    limit, why = max_jobs()
    assert 1 <= limit <= min(MAX_JOBS, JOBS_PER_CORE * os.cpu_count())
    check_jobs(limit)  # the limit itself is allowed
    with pytest.raises(ConfigError) as info:
        check_jobs(1000)
    assert f"--jobs 1000 is more than this machine can run (at most {limit}: {why})" in str(info.value)
    with pytest.raises(ConfigError, match="--jobs must be at least 1"):
        check_jobs(0)


# --------------------------------------------------------------------------- experiment identity

def _csv_config(tmp_path, folder="proj", tolerance=0.02, rows=None):
    import numpy as np

    d = tmp_path / folder
    d.mkdir(exist_ok=True)
    if rows is None:
        rng = np.random.default_rng(0)
        rows = [(a, b, int(a > 0)) for a, b in rng.normal(size=(40, 2))]
    (d / "data.csv").write_text("a,b,label\n" + "".join(f"{a},{b},{y}\n" for a, b, y in rows))
    body = (CONFIGS / "smoke.toml").read_text().replace(
        'dataset = "iris"', 'dataset = "csv"\npath = "data.csv"\ntarget = "label"').replace(
        "tolerance = 0.02", f"tolerance = {tolerance}")
    (d / "cfg.toml").write_text(body)
    return load_config(d / "cfg.toml")


def _attrs(settings):
    """The study user attrs bnsearch stores for an experiment (search/plan.py _meta)."""
    return {"config_toml": to_toml(settings), "config_hash": settings.config_hash(),
            "data_sha256": settings.data_digest()}


def test_identity_is_the_data_contents_not_the_path(tmp_path):
    a = _csv_config(tmp_path, "proj")
    copy = _csv_config(tmp_path, "copied-elsewhere")  # same bytes, another absolute path
    assert a.data.path != copy.data.path and a.config_hash() == copy.config_hash()
    stored, stored_hash = _attrs(a), a.config_hash()
    assert identity_conflict(stored, copy) is None
    # The file changed in place: same path, same config, other contents -> refused, and said why.
    changed = _csv_config(tmp_path, "proj", rows=[(1.0, 2.0, 0), (3.0, 4.0, 1)] * 20)
    assert changed.data.path == a.data.path and changed.config_hash() != stored_hash
    why = identity_conflict(stored, changed)
    assert why is not None and why.startswith(f"the contents of the data file {a.data.path}"), why


def test_tolerance_is_analysis_only_and_a_refusal_names_the_keys(tmp_path, smoke):
    looser = smoke.with_overrides(tolerance=0.05)
    assert looser.config_hash() == smoke.config_hash()
    assert identity_conflict(_attrs(smoke), looser) is None
    other = smoke.with_overrides(seed=5, epochs=4)
    assert identity_conflict(_attrs(smoke), other) == "experiment.seed (0 stored, 5 now); train.epochs (3 stored, 4 now)"


def test_legacy_studies_without_a_data_digest_still_resume(tmp_path, smoke):
    """Studies stored before data.sha256 existed carry an old-style config_hash; they must not all
    become "a different config". Their CSV is identified by its path until the digest is stored."""
    legacy = {"config_toml": to_toml(smoke), "config_hash": "0123456789ab"}
    assert identity_conflict(legacy, smoke.with_overrides(tolerance=0.1)) is None
    a = _csv_config(tmp_path, "proj")
    moved = _csv_config(tmp_path, "elsewhere")
    legacy_csv = {"config_toml": to_toml(a), "config_hash": "0123456789ab"}
    assert identity_conflict(legacy_csv, a) is None
    assert identity_conflict(legacy_csv, moved).startswith("data.path (")
