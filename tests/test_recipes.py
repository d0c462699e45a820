"""Named recipes and the one-cycle schedule the fast recipe uses."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from conftest import TINY_RECIPE

from mnist_keras import cli
from mnist_keras.config import Config
from mnist_keras.errors import ConfigError
from mnist_keras.evaluation.metrics import read_history
from mnist_keras.model import build_model, count_parameters, learning_rate
from mnist_keras.recipes import CNN, FAST, RECIPES, SPEEDRUN, get_recipe
from mnist_keras.training.run import train_run

NETWORK_FIELDS = ("hidden_units", "dropout_rates", "batch_norm")


def test_the_seed_recipe_is_the_default_and_fast_keeps_its_network():
    assert get_recipe("seed") == Config()
    assert set(RECIPES) == {"seed", "fast", "cnn", "speedrun"}
    for name in NETWORK_FIELDS:
        assert getattr(FAST, name) == getattr(Config(), name)
    assert count_parameters(build_model(FAST)) == count_parameters(build_model(Config()))
    with pytest.raises(ConfigError, match="unknown recipe 'turbo'"):
        get_recipe("turbo")


def test_recipe_flag_then_file_then_flags(tmp_path):
    parser = cli.build_parser()
    assert cli.recipe_from_args(parser.parse_args(["train", "--recipe", "fast"])) == FAST
    recipe_file = tmp_path / "recipe.toml"
    recipe_file.write_text("epochs = 3\n")
    args = parser.parse_args(["train", "--recipe", "fast", "--config", str(recipe_file), "--seed", "4"])
    assert cli.recipe_from_args(args) == dataclasses.replace(FAST, epochs=3, seed=4)


def test_one_cycle_warms_up_then_decays_to_zero():
    config = Config(epochs=4, learning_rate=0.01, schedule="one_cycle", warmup_epochs=1)
    schedule = learning_rate(config, steps_per_epoch=10)
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 5, 10, 25, 40)]
    assert rates[0] == pytest.approx(0.0)
    assert rates[1] == pytest.approx(0.005)
    assert rates[2] == pytest.approx(0.01)
    assert rates[2] > rates[3] > rates[4]
    assert rates[4] == pytest.approx(0.0, abs=1e-9)
    assert learning_rate(Config(), steps_per_epoch=None) == Config().learning_rate


def test_schedule_settings_are_checked():
    with pytest.raises(ConfigError, match="schedule"):
        Config(schedule="triangular")
    with pytest.raises(ConfigError, match="warmup_epochs"):
        Config(epochs=2, schedule="one_cycle", warmup_epochs=2)


def test_a_scheduled_recipe_follows_its_schedule_not_plateaus(tiny_mnist, tmp_path):
    # A learning rate far too small to improve anything: a constant recipe would halve it on plateaus.
    scheduled = dataclasses.replace(TINY_RECIPE, epochs=4, schedule="one_cycle", warmup_epochs=0.5,
                                    learning_rate=1e-3, reduce_lr_patience=0, early_stopping=False)
    train_run(scheduled, tiny_mnist, tmp_path / "run", verbose=0, export_onnx=False)
    rates = [row["learning_rate"] for row in read_history(tmp_path / "run")]
    steps = -(-270 // TINY_RECIPE.batch_size)
    schedule = learning_rate(scheduled, steps)
    expected = [float(keras.ops.convert_to_numpy(schedule(epoch * steps))) for epoch in range(4)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)


def test_the_convnet_recipes_are_convnets_with_augmentation_where_it_helps():
    for recipe in (CNN, SPEEDRUN):
        assert recipe.model == "cnn"
        model = build_model(recipe)
        assert any(isinstance(layer, keras.layers.Conv2D) for layer in model.layers)
        assert model.output_shape == (None, recipe.num_outputs)
    assert CNN.augmented and not Config().augmented
    assert SPEEDRUN.validation_split == 0 and not SPEEDRUN.early_stopping
