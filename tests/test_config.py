import pytest

from bnsearch.config import ConfigError, load_config, load_config_text, to_toml
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

    s = load_config(CONFIGS / f"{name}.toml")
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
    ({"tolerance = 0.02": "tolerance = -1.0"}, "experiment.tolerance: must be >= 0"),
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
    assert smoke.with_overrides(trials=9, sampler="qmc").trials == 9
