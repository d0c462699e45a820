"""`model.fit`, one jitted call per epoch, for the JAX backend.

Keras's JAX `fit` calls its jitted `train_step` once per batch from Python:
per step it slices and shuffles a numpy batch, copies it to the device and
dispatches callbacks. On a 2-core CPU that overhead is about a sixth of an
epoch (see benchmarks/PROFILE.md). Here the same `model.train_step` and
`model.test_step` (Keras's own, so the loss, Adam update, dropout and
BatchNorm statistics are exactly what `fit` computes) run inside one
`jax.lax.scan` over the epoch's batches, with the data copied to the device
once. Callbacks still see every epoch: per-epoch logs, validation, early
stopping with best-weight restore and learning-rate changes all behave as
under `fit`.

What stays the same as `fit(shuffle=True)`: batches of `batch_size` in a fresh
random order each epoch, the last partial batch included, metrics averaged
over the epoch, validation after each epoch with the model in inference mode.
"""

from __future__ import annotations

from typing import Any

import jax
import keras
import numpy as np

Arrays = tuple[np.ndarray, np.ndarray]
# Compilations shorter than this are not worth a disk write.
CACHE_MIN_COMPILE_SECONDS = 0.5


def enable_compilation_cache() -> None:
    """Keep XLA's compiled epochs on disk, so training the same network again skips compilation.

    Compilation is a few seconds per network shape: a large share of a short
    run such as the fast recipe. A cache directory the user configured wins.
    """
    from mnist_keras.data import default_cache_dir

    if jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", str(default_cache_dir() / "xla"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS)


class ScannedTrainer:
    """Runs whole epochs of `model.train_step` as one compiled `lax.scan`."""

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.run_epoch = jax.jit(self._epoch)
        self.run_step = jax.jit(self._step)
        self.run_evaluation = jax.jit(self._evaluate)

    def _step(self, state, x, y):
        _, state = self.model.train_step(state, (x, y))
        return state

    def _epoch(self, state, x, y, batch_indices):
        """Train on x[i], y[i] for each row i of `batch_indices` (steps × batch_size), in order."""

        def body(carried, indices):
            return self._step(carried, x[indices], y[indices]), None

        state, _ = jax.lax.scan(body, state, batch_indices)
        return state

    def _evaluate(self, state, x, y):
        _, state = self.model.test_step(state, (x, y))
        return state

    def model_state(self) -> tuple[list, list, list, list]:
        model = self.model
        return (
            [variable.value for variable in model.trainable_variables],
            [variable.value for variable in model.non_trainable_variables],
            [variable.value for variable in model.optimizer.variables],
            [variable.value for variable in model.metrics_variables],
        )

    def store(self, state) -> None:
        """Write a state back into the model's variables, so callbacks and saving see it."""
        model = self.model
        references = (
            model.trainable_variables,
            model.non_trainable_variables,
            model.optimizer.variables,
            model.metrics_variables,
        )
        for variables, values in zip(references, state):
            for variable, value in zip(variables, values):
                variable.assign(value)

    def train_epoch(self, x, y, order: np.ndarray, batch_size: int) -> dict[str, float]:
        """One epoch over x[order] in batches; returns the epoch's mean training metrics."""
        self.model.reset_metrics()
        state = self.model_state()
        full_steps = len(order) // batch_size
        state = self.run_epoch(state, x, y, order[: full_steps * batch_size].reshape(full_steps, batch_size))
        remainder = order[full_steps * batch_size :]
        if len(remainder):
            state = self.run_step(state, x[remainder], y[remainder])
        self.store(state)
        return metric_values(self.model)

    def validate(self, x, y) -> dict[str, float]:
        """Loss and metrics on (x, y) in inference mode, as `model.evaluate` reports them.

        One batch: Keras averages per-batch means weighted by batch size, which is the overall mean.
        """
        self.model.reset_metrics()
        trainable, non_trainable, _, metrics = self.model_state()
        _, _, metrics = self.run_evaluation((trainable, non_trainable, metrics), x, y)
        for variable, value in zip(self.model.metrics_variables, metrics):
            variable.assign(value)
        return metric_values(self.model)


def metric_values(model: keras.Model) -> dict[str, float]:
    return {name: float(value) for name, value in model.get_metrics_result().items()}


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The training examples' order in `epoch`: a permutation fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(count).astype(np.int32)


def fit(
    model: keras.Model,
    train: Arrays,
    validation: Arrays,
    epochs: int,
    batch_size: int,
    callbacks: list[keras.callbacks.Callback],
    seed: int,
    verbose: int = 0,
    initial_epoch: int = 0,
    shuffle: bool = True,
) -> keras.callbacks.History:
    """Train like `model.fit(*train, validation_data=validation, shuffle=True, ...)`; returns the History.

    The epoch order comes from `seed` and the epoch number, so a run resumed at
    `initial_epoch` sees the same batches as an uninterrupted one.
    """
    enable_compilation_cache()
    # Create the optimizer's and compiled metrics' variables, as `fit` does before its first step.
    model._symbolic_build(data_batch=(train[0][:batch_size], train[1][:batch_size]))
    trainer = ScannedTrainer(model)
    x_train, y_train = (jax.device_put(array) for array in train)
    x_validation, y_validation = (jax.device_put(array) for array in validation)
    count = len(train[0])
    steps = -(-count // batch_size)
    callback_list = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, verbose=verbose, epochs=epochs, steps=steps,
        model=model,
    )
    model.stop_training = False
    callback_list.on_train_begin()
    logs: dict[str, Any] = {}
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        order = epoch_order(count, seed, epoch) if shuffle else np.arange(count, dtype=np.int32)
        logs = trainer.train_epoch(x_train, y_train, order, batch_size)
        callback_list.on_train_batch_end(steps - 1, logs)  # the progress bar's one update per epoch
        logs.update({f"val_{name}": value for name, value in trainer.validate(x_validation, y_validation).items()})
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    model.optimizer.finalize_variable_values(model.trainable_weights)
    callback_list.on_train_end(logs)
    return model.history
