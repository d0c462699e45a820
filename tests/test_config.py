import dataclasses
import json

import pytest

from mnist_keras.config import Config, load_config, parse_override
from mnist_keras.errors import ConfigError


def test_defaults_are_the_seed_recipe():
    config = Config()
    assert (config.epochs, config.batch_size, config.learning_rate, config.validation_split) == (30, 128, 1e-3, 0.1)
    assert config.hidden_units == (512, 256, 128)
    assert config.dropout_rates == (0.3, 0.3, 0.2)
    assert config.batch_norm == (True, True, False)
    assert (config.early_stopping_patience, config.reduce_lr_patience) == (5, 3)
    assert (config.reduce_lr_factor, config.min_learning_rate) == (0.5, 1e-6)


def test_dict_round_trip_through_json():
    config = dataclasses.replace(Config(), seed=7, hidden_units=(64, 32, 16), learning_rate=0.01)
    assert Config.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_toml_file_overrides_only_what_it_names(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text('epochs = 3\nlearning_rate = 1\ndropout_rates = [0.1, 0.1, 0.0]\n')
    config = load_config(path)
    assert config.epochs == 3 and config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert config.dropout_rates == (0.1, 0.1, 0.0)
    assert config.batch_size == Config().batch_size


def test_run_config_json_is_accepted(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"recipe": {"seed": 9}, "backend": "jax"}))
    assert load_config(path).seed == 9


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epoch": 3}, "unknown recipe setting"),
        ({"epochs": "3"}, "must be an integer"),
        ({"epochs": 2.5}, "must be an integer"),
        ({"epochs": True}, "must be an integer"),
        ({"batch_norm": [1, 0, 0]}, "true or false"),
        ({"hidden_units": 512}, "must be a list"),
        ({"epochs": 0}, "at least 1"),
        ({"validation_split": 1.0}, "below 1"),
        ({"validation_split": 0.0}, "needs early_stopping = false"),
        ({"model": "rnn"}, "must be one of mlp, cnn"),
        ({"conv_filters": [8, 16, 32]}, "one value per convolution block"),
        ({"shift": 0.7}, "between 0 and 0.5"),
        ({"shear": 60.0}, "between 0 and 45"),
        ({"stroke": -0.1}, "between 0 and 1"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"warmup_epochs": 30}, "warmup_epochs"),
        ({"dropout_rates": [0.1, 0.2]}, "one value per hidden layer"),
        ({"learning_rate": -1}, "must be positive"),
    ],
)
def test_bad_recipes_are_refused(values, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(values)


def test_bad_files_are_refused(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("epochs = [")
    with pytest.raises(ConfigError, match="not valid toml"):
        load_config(broken)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")


def test_parse_override():
    assert parse_override("hidden_units", "64,32,16") == (64, 32, 16)
    assert parse_override("batch_norm", "true,false,no") == (True, False, False)
    assert parse_override("learning_rate", "3e-4") == 3e-4
    with pytest.raises(ConfigError, match="--epochs expects int"):
        parse_override("epochs", "many")


def test_non_digit_settings_are_checked():
    with pytest.raises(ConfigError, match="choose one"):
        Config(not_digit_class=True, outlier_exposure=True)
    with pytest.raises(ConfigError, match="not_digit_families"):
        Config(not_digit_families=("horses",))
    with pytest.raises(ConfigError, match="not_digit_families"):
        Config(not_digit_families=())
    assert Config.from_dict({"not_digit_families": ["doodles"]}).not_digit_families == ("doodles",)
