"""The one-call-per-epoch JAX fit computes what `model.fit` computes."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mnist_keras import fast_fit
from mnist_keras.data import one_hot, preprocess_images
from mnist_keras.model import build_model, compile_model
from mnist_keras.train import seed_everything, split_validation

from conftest import TINY_RECIPE

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax", reason="the scanned fit is the JAX path")

BATCH_SIZE = 32  # 270 training examples: eight full batches and a partial one
EPOCHS = 2


def tiny_split(tiny_mnist):
    x = preprocess_images(tiny_mnist.x_train)
    y = one_hot(tiny_mnist.y_train)
    return split_validation(x, y, TINY_RECIPE.validation_split)


def fresh_model() -> keras.Model:
    seed_everything(TINY_RECIPE.seed)
    return compile_model(build_model(TINY_RECIPE), TINY_RECIPE)


def scanned_run(tiny_mnist, callbacks=(), shuffle=False) -> tuple[keras.Model, keras.callbacks.History]:
    train_data, validation_data = tiny_split(tiny_mnist)
    model = fresh_model()
    history = fast_fit.fit(
        model, train_data, validation_data, epochs=EPOCHS, batch_size=BATCH_SIZE, callbacks=list(callbacks),
        seed=TINY_RECIPE.seed, shuffle=shuffle,
    )
    return model, history


def test_same_weights_and_logs_as_keras_fit(tiny_mnist):
    (x_fit, y_fit), validation_data = tiny_split(tiny_mnist)
    reference = fresh_model()
    expected = reference.fit(
        x_fit, y_fit, validation_data=validation_data, epochs=EPOCHS, batch_size=BATCH_SIZE, shuffle=False, verbose=0
    )
    model, history = scanned_run(tiny_mnist)
    for ours, theirs in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(history.history[key], expected.history[key], rtol=1e-4, atol=1e-5)


def test_same_seed_same_numbers_and_each_epoch_reshuffled(tiny_mnist):
    first, first_history = scanned_run(tiny_mnist, shuffle=True)
    second, second_history = scanned_run(tiny_mnist, shuffle=True)
    for ours, theirs in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    assert first_history.history == second_history.history
    assert not np.array_equal(fast_fit.epoch_order(100, 1, 0), fast_fit.epoch_order(100, 1, 1))
    assert sorted(fast_fit.epoch_order(100, 1, 0)) == list(range(100))


def test_callbacks_change_the_learning_rate_and_stop_training(tiny_mnist):
    snapshots = []

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append([weight.copy() for weight in self.model.get_weights()])

    # A zero learning rate in the second epoch must leave the trainable weights where the first left them.
    zero_after_first = keras.callbacks.LearningRateScheduler(lambda epoch, rate: rate if epoch == 0 else 0.0)
    model, history = scanned_run(tiny_mnist, callbacks=[zero_after_first, Snapshot()])
    trainable = {id(weight) for weight in model.trainable_weights}
    positions = [index for index, weight in enumerate(model.weights) if id(weight) in trainable]
    for index in positions:
        np.testing.assert_array_equal(snapshots[0][index], snapshots[1][index])

    class StopAfterFirst(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    _, history = scanned_run(tiny_mnist, callbacks=[StopAfterFirst()])
    assert len(history.history["loss"]) == 1
