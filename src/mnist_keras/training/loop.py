"""The training loop, owned here, for every model family and backend.

`fit` reads top to bottom: for each epoch, the batches (a permutation fixed by
the recipe's seed and the epoch number, the same on every backend), one
compiled pass over them, validation, the epoch's history row, the divergence
guard, the stopping rules, the checkpoint (one `Checkpointer` argument). Its state is one typed record
(`mnist_keras.training.state.TrainingState`); early stopping with best-weight restore
and learning-rate halving on plateaus are plain functions of that record, with
the semantics of Keras's EarlyStopping and ReduceLROnPlateau callbacks the
seed used. A one-cycle recipe's learning rate is a schedule inside the
optimizer and is never halved.

The step itself is Keras's own `model.train_step` (the compiled loss, Adam
update, dropout, BatchNorm statistics and metrics), compiled per backend:
- JAX: a whole epoch is one jitted `lax.scan` over the batches, with the data
  copied to the device once;
- TensorFlow: a whole epoch is one `tf.function`, a graph loop over the
  batches, each gathered inside the graph; XLA (`jit_compile`) is off,
  because oneDNN's convolutions without it are about 3x faster on CPU
  (README: s/epoch by backend and family);
- any other backend: Keras's own `fit`, one epoch at a time.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Protocol

import keras
import numpy as np

from mnist_keras.config import Config
from mnist_keras.constants import NUM_CLASSES
from mnist_keras.errors import TrainingDiverged
from mnist_keras.training.state import TrainingState

Arrays = tuple[np.ndarray, np.ndarray]
# An epoch's mean loss this far above chance (ln 10 ≈ 2.30) means the run has
# diverged: with a learning rate of 10 the seed network sits near 14.5.
DIVERGENCE_LOSS = 1.5 * math.log(NUM_CLASSES)
# ReduceLROnPlateau's default: val_loss must improve by more than this to reset its patience.
PLATEAU_MIN_DELTA = 1e-4
# Validation and test passes run in chunks of this many images: large enough to keep
# per-call overhead negligible, small enough that a convnet's activations stay small.
EVALUATION_CHUNK = 2048



class Checkpointer(Protocol):
    """What `fit` calls to resume and to checkpoint: `mnist_keras.training.checkpoint.Checkpointer`."""

    def restore(self, model: keras.Model, augmenter: keras.Model | None) -> TrainingState | None: ...

    def save(self, state: TrainingState, model: keras.Model, augmenter: keras.Model | None) -> None: ...


# ---------------------------------------------------------------- the loop


def fit(
    model: keras.Model,
    config: Config,
    train: Arrays,
    validation: Arrays | None,
    *,
    checkpointer: Checkpointer | None = None,
    verbose: int = 0,
    augmenter: keras.Model | None = None,
) -> TrainingState:
    """Train a compiled `model` on `train` for the recipe's epochs; return the final state.

    `fit` builds the model's training state itself (optimizer, loss and metric
    variables), then asks `checkpointer` for the latest checkpoint of this
    recipe and, if there is one, continues from it; after every epoch it hands
    the checkpointer the new state to save. A diverged epoch raises
    TrainingDiverged before its checkpoint. `augmenter` (random image layers,
    N×784 in and out) transforms each training batch inside the compiled step.
    At the end, the best epoch's weights are restored (when early stopping is
    on) and averaged weights swapped in (when the recipe averages them).
    """
    build_training_state(model, (train[0][: config.batch_size], train[1][: config.batch_size]))
    state = checkpointer.restore(model, augmenter) if checkpointer is not None else None
    engine = make_engine(model, train, validation, config.batch_size, augmenter)
    state = state if state is not None else TrainingState(learning_rate=current_learning_rate(model))
    set_learning_rate(model, config, state.learning_rate)
    started, seconds_before = time.perf_counter(), state.train_seconds
    count, steps = len(train[0]), -(-len(train[0]) // config.batch_size)
    while not state.finished(config.epochs):
        epoch_started = time.perf_counter()
        progress = start_progress(state.epoch + 1, config.epochs, steps, verbose)
        learning_rate = current_learning_rate(model)
        order = epoch_order(count, config.seed, state.epoch)
        logs = engine.train_epoch(order)
        if validation is not None:
            logs.update({f"val_{name}": value for name, value in engine.validate().items()})
        row = {"epoch": state.epoch + 1, **logs, "learning_rate": learning_rate,
               "seconds": time.perf_counter() - epoch_started}
        check_divergence(row)
        state.history.append(row)
        state.epoch += 1
        if config.early_stopping:
            apply_early_stopping(state, config, model, row["val_loss"])
        if config.schedule == "constant":
            apply_plateau_rule(state, config, row["val_loss"])
            set_learning_rate(model, config, state.learning_rate)
        state.train_seconds = seconds_before + time.perf_counter() - started
        if progress is not None:
            progress.update(steps, values=[(key, value) for key, value in row.items() if key not in ("epoch", "seconds")],
                            finalize=True)
        if checkpointer is not None:
            checkpointer.save(state, model, augmenter)
    finish(model, state)
    return state


def finish(model: keras.Model, state: TrainingState) -> None:
    """End of training: averaged weights swapped in, then the best epoch's weights restored.

    The order is `model.fit`'s with EarlyStopping (optimizer finalised at train end,
    then the callback's restore).
    """
    model.optimizer.finalize_variable_values(model.trainable_weights)
    if state.best_weights is not None:
        model.set_weights(state.best_weights)


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The training examples' order in `epoch` (0-based): a permutation fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(count).astype(np.int32)


# ---------------------------------------------------------------- the rules


def check_divergence(row: dict[str, float]) -> None:
    """TrainingDiverged when an epoch's loss is not finite or far above chance."""
    for key in ("loss", "val_loss"):
        value = row.get(key)
        if value is not None and (not math.isfinite(value) or value > DIVERGENCE_LOSS):
            raise TrainingDiverged(
                f"training diverged at epoch {row['epoch']} ({key} {value:.4g}, chance is "
                f"{math.log(NUM_CLASSES):.2f}); lower --learning-rate and train again"
            )


def improved(value: float, best: float, min_delta: float = 0.0) -> bool:
    """Keras's monitor test for a quantity to minimise, compared in float32 as Keras does."""
    return bool(np.float32(value - min_delta) < np.float32(best)) if math.isfinite(best) else True


def apply_early_stopping(state: TrainingState, config: Config, model: keras.Model, val_loss: float) -> None:
    """EarlyStopping(val_loss, patience, restore_best_weights=True): keep the best epoch, stop when flat."""
    if improved(val_loss, state.best_val_loss):
        state.best_val_loss = val_loss
        state.best_epoch = state.epoch
        state.best_weights = model.get_weights()
        state.early_stopping_wait = 0
        return
    state.early_stopping_wait += 1
    if state.early_stopping_wait >= config.early_stopping_patience and state.epoch > 1:
        state.stopped = True


def apply_plateau_rule(state: TrainingState, config: Config, val_loss: float) -> None:
    """ReduceLROnPlateau(val_loss, factor, patience, min_lr): multiply the rate by `factor` when flat.

    Tracks its own best (improvement must exceed PLATEAU_MIN_DELTA), separate from
    early stopping's, as the two Keras callbacks do.
    """
    if improved(val_loss, state.plateau_best, -PLATEAU_MIN_DELTA):
        state.plateau_best = val_loss
        state.plateau_wait = 0
        return
    state.plateau_wait += 1
    if state.plateau_wait >= config.reduce_lr_patience and state.learning_rate > np.float32(config.min_learning_rate):
        # Stored as the optimizer stores it (float32), so the next comparison is Keras's.
        state.learning_rate = float(np.float32(max(state.learning_rate * config.reduce_lr_factor,
                                                   config.min_learning_rate)))
        state.plateau_wait = 0


def current_learning_rate(model: keras.Model) -> float:
    """The rate the optimizer applies at its current step (a schedule's value, or the constant)."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def set_learning_rate(model: keras.Model, config: Config, rate: float) -> None:
    """Give a constant-rate optimizer `rate` (a scheduled one follows its schedule)."""
    if config.schedule == "constant" and rate != current_learning_rate(model):
        model.optimizer.learning_rate = rate


# ---------------------------------------------------------------- progress


def default_verbosity() -> int:
    """Keras's progress bar on a terminal, one line per epoch in logs and CI."""
    return 1 if sys.stdout.isatty() else 2


def start_progress(epoch: int, epochs: int, steps: int, verbose: int) -> keras.utils.Progbar | None:
    """Keras's Progbar for one epoch (a bar on a terminal, one line otherwise), as `fit` shows it."""
    if not verbose:
        return None
    print(f"Epoch {epoch}/{epochs}")
    return keras.utils.Progbar(steps, verbose=verbose)


# ---------------------------------------------------------------- engines


def build_training_state(model: keras.Model, sample: Arrays) -> None:
    """Create the optimizer's and compiled loss's and metrics' variables before the first step.

    `fit` does this symbolically; here, one eager forward pass in inference mode
    (no dropout, no BatchNorm update, no RNG drawn) builds the compiled loss and
    metrics through their public entry points, which are then reset.
    """
    x, y = sample
    predictions = model(x, training=False)
    model.compute_loss(x, y, predictions)
    model.compute_metrics(x, y, predictions, sample_weight=None)
    model.reset_metrics()
    if not model.optimizer.built:  # built once: a second build would make fresh optimizer variables
        model.optimizer.build(model.trainable_variables)


def metric_values(model: keras.Model) -> dict[str, float]:
    return {name: float(value) for name, value in model.get_metrics_result().items()}


def make_engine(model: keras.Model, train: Arrays, validation: Arrays | None, batch_size: int,
                augmenter: keras.Model | None = None):
    """The compiled epoch for the active backend (the model's training state built beforehand)."""
    engines = {"jax": JaxEngine, "tensorflow": TensorFlowEngine}
    engine = engines.get(keras.backend.backend(), KerasEngine)
    return engine(model, train, validation, batch_size, augmenter)


class JaxEngine:
    """Whole epochs of `model.train_step` as one compiled `lax.scan`.

    Keras's JAX `fit` calls its jitted step once per batch from Python, slicing,
    shuffling and copying each batch to the device; on a 2-core CPU that is about
    a sixth of an MLP epoch (benchmarks/PROFILE.md). Here the data is copied once
    and the epoch's batches are gathered inside the compiled scan.
    """

    def __init__(self, model: keras.Model, train: Arrays, validation: Arrays | None, batch_size: int,
                 augmenter: keras.Model | None = None) -> None:
        import jax

        enable_compilation_cache()
        self.model, self.batch_size, self.augmenter = model, batch_size, augmenter
        self.train = tuple(jax.device_put(array) for array in train)
        self.validation = tuple(jax.device_put(array) for array in validation) if validation is not None else None
        self.run_epoch = jax.jit(self._epoch)
        self.run_step = jax.jit(self._step)
        self.run_evaluation = jax.jit(self._evaluate)

    def _step(self, state, x, y):
        """One training step; `state` is (the model's training state, the augmenter's RNG state)."""
        model_state, augmenter_state = state
        if self.augmenter is not None:
            x, augmenter_state = self.augmenter.stateless_call([], augmenter_state, x, training=True)
        _, model_state = self.model.train_step(model_state, (x, y))
        return model_state, augmenter_state

    def _epoch(self, state, x, y, batch_indices):
        """Train on x[i], y[i] for each row i of `batch_indices` (steps × batch_size), in order."""
        import jax

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

    def augmenter_variables(self) -> list:
        return list(self.augmenter.non_trainable_variables) if self.augmenter is not None else []

    def store(self, state) -> None:
        """Write a state back into the variables, so the rules, checkpoints and saving see it."""
        model_state, augmenter_state = state
        model = self.model
        references = (model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
                      model.metrics_variables, self.augmenter_variables())
        for variables, values in zip(references, (*model_state, augmenter_state)):
            for variable, value in zip(variables, values):
                variable.assign(value)

    def train_epoch(self, order: np.ndarray) -> dict[str, float]:
        """One epoch over train[order] in batches (the last one partial); the epoch's mean metrics."""
        self.model.reset_metrics()
        state = (self.model_state(), [variable.value for variable in self.augmenter_variables()])
        x, y = self.train
        full_steps = len(order) // self.batch_size
        batches = order[: full_steps * self.batch_size].reshape(full_steps, self.batch_size)
        state = self.run_epoch(state, x, y, batches)
        remainder = order[full_steps * self.batch_size :]
        if len(remainder):
            state = self.run_step(state, x[remainder], y[remainder])
        self.store(state)
        return metric_values(self.model)

    def validate(self) -> dict[str, float]:
        """Loss and metrics on the validation set in inference mode, as one batch (the overall mean)."""
        self.model.reset_metrics()
        trainable, non_trainable, _, metrics = self.model_state()
        _, _, metrics = self.run_evaluation((trainable, non_trainable, metrics), *self.validation)
        for variable, value in zip(self.model.metrics_variables, metrics):
            variable.assign(value)
        return metric_values(self.model)


def enable_compilation_cache() -> None:
    """Keep XLA's compiled epochs on disk, so training the same network again skips compilation.

    Compilation is a few seconds per network shape: a large share of a short
    run such as the fast recipe. A cache directory the user configured wins.
    """
    import jax

    from mnist_keras.data.mnist import default_cache_dir

    # Compilations shorter than this are not worth a disk write.
    minimum_seconds = 0.5
    if jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", str(default_cache_dir() / "xla"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", minimum_seconds)


class TensorFlowEngine:
    """`model.train_step` in a graph loop over the epoch's batches, each gathered inside the graph.

    The data lives in the graph's memory once; an epoch receives only its order
    of indices, so Python calls into TensorFlow once per epoch rather than once
    per step (about 7% of the speedrun's training time on two cores). Without
    `jit_compile` TensorFlow runs oneDNN's convolution kernels.
    """

    def __init__(self, model: keras.Model, train: Arrays, validation: Arrays | None, batch_size: int,
                 augmenter: keras.Model | None = None) -> None:
        import tensorflow as tf

        self.tf, self.model, self.batch_size, self.augmenter = tf, model, batch_size, augmenter
        self.train = tuple(tf.constant(array) for array in train)
        self.validation = tuple(tf.constant(array) for array in validation) if validation is not None else None
        order = tf.TensorSpec([None], tf.int32)
        # The loop is written as a graph loop, so AutoGraph need not rewrite the source: less
        # tracing in every run (benchmarks/SPEEDRUN.md, "Tracing").
        self.run_epoch = tf.function(self._epoch, input_signature=[order], jit_compile=False, autograph=False)
        self.run_evaluation = tf.function(self._evaluate, jit_compile=False, reduce_retracing=True)

    def _epoch(self, order):
        tf, batch_size = self.tf, self.batch_size
        steps = (tf.shape(order)[0] + batch_size - 1) // batch_size

        def step(index):
            # The last batch may be partial.
            self._step(order[index * batch_size : (index + 1) * batch_size])
            return (index + 1,)

        tf.while_loop(lambda index: index < steps, step, (tf.constant(0),))

    def _step(self, indices):
        x, y = (self.tf.gather(array, indices) for array in self.train)
        if self.augmenter is not None:
            x = self.augmenter(x, training=True)
        self.model.train_step((x, y))

    def _evaluate(self, x, y):
        self.model.test_step((x, y))

    def train_epoch(self, order: np.ndarray) -> dict[str, float]:
        self.model.reset_metrics()
        self.run_epoch(order.astype(np.int32))
        return metric_values(self.model)

    def validate(self) -> dict[str, float]:
        """Validation in chunks; Keras's metrics weight each chunk by its size, so this is the overall mean."""
        self.model.reset_metrics()
        x, y = self.validation
        for start in range(0, int(x.shape[0]), EVALUATION_CHUNK):
            self.run_evaluation(x[start : start + EVALUATION_CHUNK], y[start : start + EVALUATION_CHUNK])
        return metric_values(self.model)


class KerasEngine:
    """Other backends (torch, numpy): Keras's own `fit` for one epoch, over the same batch order."""

    def __init__(self, model: keras.Model, train: Arrays, validation: Arrays | None, batch_size: int,
                 augmenter: keras.Model | None = None) -> None:
        self.model, self.train, self.validation, self.batch_size = model, train, validation, batch_size
        self.augmenter = augmenter

    def train_epoch(self, order: np.ndarray) -> dict[str, float]:
        x, y = self.train[0][order], self.train[1][order]
        if self.augmenter is not None:
            x = np.concatenate([keras.ops.convert_to_numpy(self.augmenter(x[start : start + EVALUATION_CHUNK],
                                                                          training=True))
                                for start in range(0, len(x), EVALUATION_CHUNK)])
        history = self.model.fit(x, y, batch_size=self.batch_size, epochs=1, shuffle=False, verbose=0)
        return {name: float(values[-1]) for name, values in history.history.items()}

    def validate(self) -> dict[str, float]:
        logs = self.model.evaluate(*self.validation, batch_size=EVALUATION_CHUNK, verbose=0, return_dict=True)
        return {name: float(value) for name, value in logs.items()}
