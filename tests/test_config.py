import pytest

from mspn.config import PRESETS, Config, ConfigError, load_config


def test_presets_round_trip_through_dict():
    for name in PRESETS:
        config = load_config(name)
        assert Config.from_dict(config.to_dict()) == config


def test_overrides_are_typed():
    config = load_config("tiny", ["train.epochs=2", "lr=0.5", "data.size=[64, 64]"])
    assert config.train.epochs == 2 and config.train.lr == 0.5 and config.data.size == (64, 64)



def test_exponent_floats_without_a_dot_are_numbers():
    # PyYAML would read '3e-4' as a string; a learning rate is usually written this way
    config = load_config("tiny", ["train.lr=3e-4", "train.weight_decay=1E+2"])
    assert config.train.lr == 3e-4 and config.train.weight_decay == 100.0
    with pytest.raises(ConfigError, match="train.lr must be a number, got '3e-4x'"):
        load_config("tiny", ["train.lr=3e-4x"])


@pytest.mark.parametrize("override,message", [
    ("train.epochs=two", "train.epochs must be an integer"),
    ("train.bogus=1", "unknown config key: train.bogus"),
    ("nonsense=1", "unknown config key: nonsense"),
    ("weight_decay=1", "ambiguous"),
    ("data.size=[30, 32]", "not usable"),
    ("epochs", "must look like key=value"),
    ("model.channels=5", "model.channels must be a list"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", [override])


def test_yaml_file_with_base_and_unknown_keys(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("base: tiny\ntrain:\n  epochs: 3\n")
    config = load_config(good)
    assert config.name == "mine" and config.train.epochs == 3 and config.model == load_config("tiny").model
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: tiny\ntrain:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match="unknown config key: train.epoch"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no preset or YAML file named 'nope'"):
        load_config("nope")
