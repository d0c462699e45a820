"""The training loop: its compiled epochs compute what `model.fit` computes, and its rules are Keras's."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import TINY_RECIPE

from mnist_keras.config import Config
from mnist_keras.model import build_model, compile_model
from mnist_keras.training import loop
from mnist_keras.training.state import TrainingState
from mnist_keras.training.train import seed_everything, training_arrays

TESTS_DIR = Path(__file__).parent
EPOCHS = 2
# 270 training examples at batch 32: eight full batches and a partial one.
RECIPE = dataclasses.replace(TINY_RECIPE, batch_size=32)

EQUIVALENCE = """
import json, sys
sys.path.insert(0, {tests!r})
from mnist_keras.backends import select_backend
select_backend({backend!r})
import numpy as np
from fakes import synthetic_mnist
from test_loop import RECIPE, EPOCHS, fresh_model, engine_epochs
train, validation = __import__("mnist_keras.training.train", fromlist=["x"]).training_arrays(RECIPE, synthetic_mnist())
reference = fresh_model(RECIPE, train)
expected = reference.fit(*train, validation_data=validation, epochs=EPOCHS, batch_size=RECIPE.batch_size,
                         shuffle=False, verbose=0).history
model, logs = engine_epochs(RECIPE, train, validation)
difference = max(float(np.max(np.abs(a - b))) for a, b in zip(model.get_weights(), reference.get_weights()))
print(json.dumps({{"difference": difference, "ours": logs, "keras": expected}}))
"""


def fresh_model(config: Config, train) -> keras.Model:
    seed_everything(config.seed)
    model = compile_model(build_model(config), config, steps_per_epoch=-(-len(train[0]) // config.batch_size))
    loop.build_training_state(model, (train[0][: config.batch_size], train[1][: config.batch_size]))
    return model


def engine_epochs(config: Config, train, validation) -> tuple[keras.Model, dict[str, list[float]]]:
    """EPOCHS unshuffled epochs through the backend's engine, with validation; logs as Keras's History."""
    model = fresh_model(config, train)
    engine = loop.make_engine(model, train, validation, config.batch_size)
    logs: dict[str, list[float]] = {}
    for _ in range(EPOCHS):
        epoch_logs = engine.train_epoch(np.arange(len(train[0]), dtype=np.int32))
        epoch_logs.update({f"val_{name}": value for name, value in engine.validate().items()})
        for name, value in epoch_logs.items():
            logs.setdefault(name, []).append(value)
    return model, logs


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_compiled_epochs_compute_what_keras_fit_computes(backend):
    code = EQUIVALENCE.format(tests=str(TESTS_DIR), backend=backend)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env={**os.environ, "KERAS_BACKEND": backend}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["difference"] < 1e-5
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(outcome["ours"][key], outcome["keras"][key], rtol=1e-4, atol=1e-5)


def test_same_seed_same_numbers_and_each_epoch_reshuffled(tiny_mnist):
    train, validation = training_arrays(RECIPE, tiny_mnist)
    recipe = dataclasses.replace(RECIPE, epochs=EPOCHS)
    first = loop.fit(fresh_model(recipe, train), recipe, train, validation)
    second = loop.fit(fresh_model(recipe, train), recipe, train, validation)
    assert [row["loss"] for row in first.history] == [row["loss"] for row in second.history]
    assert not np.array_equal(loop.epoch_order(100, 1, 0), loop.epoch_order(100, 1, 1))
    assert sorted(loop.epoch_order(100, 1, 0)) == list(range(100))


def keras_callbacks_on(val_losses: list[float], config: Config) -> tuple[int, list[float]]:
    """Epochs run and learning rate after each epoch under Keras's own EarlyStopping and ReduceLROnPlateau."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse")
    callbacks = keras.callbacks.CallbackList([
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.early_stopping_patience,
                                      restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=config.reduce_lr_factor,
                                          patience=config.reduce_lr_patience, min_lr=config.min_learning_rate),
    ], model=model)
    model.stop_training = False
    callbacks.on_train_begin()
    rates = []
    for epoch, val_loss in enumerate(val_losses):
        callbacks.on_epoch_end(epoch, {"val_loss": val_loss})
        rates.append(loop.current_learning_rate(model))
        if model.stop_training:
            break
    return len(rates), rates


def our_rules_on(val_losses: list[float], config: Config) -> tuple[int, list[float]]:
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    state = TrainingState(learning_rate=config.learning_rate)
    rates = []
    for val_loss in val_losses:
        state.epoch += 1
        loop.apply_early_stopping(state, config, model, val_loss)
        loop.apply_plateau_rule(state, config, val_loss)
        rates.append(state.learning_rate)
        if state.stopped:
            break
    return len(rates), rates


@pytest.mark.parametrize("val_losses", [
    [1.0, 0.9, 0.8, 0.7, 0.6, 0.5],  # always improving: nothing happens
    [1.0, 0.9, 0.95, 0.91, 0.92, 0.93, 0.94, 0.9, 0.96, 0.97],  # flat: halved, then stopped
    [0.5, 0.50005, 0.50004, 0.50003, 0.4, 0.40001, 0.40002, 0.40003, 0.3],  # improvements below min_delta
    [2.0, 1.0] + [1.0] * 20,  # long plateau down to min_lr
])
def test_stopping_and_plateau_rules_match_keras_callbacks(val_losses):
    config = Config(early_stopping_patience=5, reduce_lr_patience=2, min_learning_rate=2e-4)
    epochs, rates = our_rules_on(val_losses, config)
    keras_epochs, keras_rates = keras_callbacks_on(val_losses, config)
    assert epochs == keras_epochs
    np.testing.assert_allclose(rates, keras_rates, rtol=1e-6)


def test_divergence_rule():
    loop.check_divergence({"epoch": 1, "loss": 2.0, "val_loss": 2.2})
    for bad in (float("nan"), float("inf"), 10.0):
        with pytest.raises(Exception, match="training diverged at epoch 4"):
            loop.check_divergence({"epoch": 4, "loss": bad})


def test_one_line_per_epoch_when_not_on_a_terminal(tiny_mnist, capsys):
    train, validation = training_arrays(RECIPE, tiny_mnist)
    recipe = dataclasses.replace(RECIPE, epochs=EPOCHS)
    loop.fit(fresh_model(recipe, train), recipe, train, validation, verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"Epoch 1/{EPOCHS}" and lines[2] == f"Epoch 2/{EPOCHS}"
    assert len(lines) == 2 * EPOCHS and "val_loss" in lines[1] and "learning_rate" in lines[1]


def test_without_validation_the_last_weights_are_kept(tiny_mnist):
    recipe = dataclasses.replace(RECIPE, epochs=EPOCHS, validation_split=0.0, early_stopping=False,
                                 schedule="one_cycle")
    train, validation = training_arrays(recipe, tiny_mnist)
    assert validation is None and len(train[0]) == len(tiny_mnist.x_train)
    model = fresh_model(recipe, train)
    state = loop.fit(model, recipe, train, validation)
    assert state.epoch == EPOCHS and state.best_weights is None
    assert "val_loss" not in state.history[-1]

