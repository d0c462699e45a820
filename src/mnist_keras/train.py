"""Training: the seed recipe end to end, writing a complete run directory."""

from __future__ import annotations

import csv
import io
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mnist_keras import environment, evaluate, report
from mnist_keras.checkpoint import (
    Checkpointer,
    DivergenceGuard,
    checkpoint_dir,
    read_latest,
    restore_training_state,
)
from mnist_keras.config import Config
from mnist_keras.data import Mnist, one_hot, preprocess_images
from mnist_keras.errors import TrainingDiverged, TrainingInterrupted
from mnist_keras.model import build_model, compile_model
from mnist_keras.rundir import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    publish,
    staging_path,
    write_json_atomic,
    write_text_atomic,
)

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


class EpochRecorder(keras.callbacks.Callback):
    """Records, per epoch, the metrics, the learning rate used and the wall time."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()
        self.learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        row = {"epoch": epoch + 1}
        row.update({key: float(logs[key]) for key in HISTORY_COLUMNS[1:5] if key in logs})
        row["learning_rate"] = self.learning_rate
        row["seconds"] = time.perf_counter() - self.started
        self.rows.append(row)


def split_validation(x: np.ndarray, y: np.ndarray, validation_split: float):
    """The last `validation_split` of the data is validation, exactly as Keras's validation_split."""
    split_at = int(math.ceil(len(x) * (1.0 - validation_split)))
    return (x[:split_at], y[:split_at]), (x[split_at:], y[split_at:])


def make_callbacks(config: Config) -> list[keras.callbacks.Callback]:
    """The seed's callbacks. A scheduled learning rate is not also cut on plateaus."""
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=config.early_stopping_patience,  # epochs without improvement before stopping
            restore_best_weights=True,  # end with the best epoch's weights, not the last
        ),
    ]
    if config.schedule == "constant":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=config.reduce_lr_factor,  # halve the learning rate...
                patience=config.reduce_lr_patience,  # ...after this many flat epochs
                min_lr=config.min_learning_rate,  # but never below this
            )
        )
    return callbacks


def seed_everything(seed: int) -> None:
    """Same seed, same machine, same backend ⇒ same numbers."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def default_verbosity() -> int:
    """Keras's progress bar on a terminal, one line per epoch in logs and CI."""
    return 1 if sys.stdout.isatty() else 2


def history_csv(rows: list[dict[str, float]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def run_config_record(config: Config, mnist: Mnist) -> dict[str, Any]:
    """config.json: the recipe, the backend, library versions and the data's checksums."""
    return {
        "recipe": config.to_dict(),
        "backend": environment.backend_name(),
        "versions": environment.library_versions(),
        "data": {"source": mnist.source, "md5": mnist.checksums},
    }


def fit_model(
    model: keras.Model,
    config: Config,
    train_data: tuple[np.ndarray, np.ndarray],
    validation_data: tuple[np.ndarray, np.ndarray],
    callbacks: list[keras.callbacks.Callback],
    verbose: int,
    initial_epoch: int = 0,
) -> keras.callbacks.History:
    """`model.fit` with the recipe's epochs, batch size, per-epoch shuffling and validation.

    On JAX (the default) each epoch is one compiled call of Keras's own train
    step (mnist_keras.fast_fit): the same computation, without Keras's
    per-batch Python overhead. Other backends use `model.fit` itself.
    """
    if keras.backend.backend() == "jax":
        from mnist_keras import fast_fit

        return fast_fit.fit(
            model,
            train_data,
            validation_data,
            epochs=config.epochs,
            batch_size=config.batch_size,
            callbacks=callbacks,
            seed=config.seed,
            verbose=verbose,
            initial_epoch=initial_epoch,
        )
    return model.fit(
        *train_data,
        validation_data=validation_data,
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
        initial_epoch=initial_epoch,
    )


def train(
    config: Config, mnist: Mnist, run_dir: str | Path, verbose: int | None = None, resume: bool = True,
    on_epoch=None,
) -> dict[str, Any]:
    """Train `config` on `mnist`, write the run directory, and return its metrics.

    The run is assembled in a hidden staging directory, checkpointed after every
    epoch, and published under `run_dir` only once complete, replacing any
    earlier run there. If an interrupted run of the same recipe left a
    checkpoint, training resumes from it (unless `resume` is False).
    """
    run_dir = Path(run_dir)
    staging = staging_path(run_dir)
    checkpoint = read_latest(staging) if resume else None
    if checkpoint is not None and checkpoint["recipe"] != config.to_dict():
        checkpoint = None  # a different recipe: its checkpoint cannot be continued
    if checkpoint is None:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    try:
        metrics = train_into(config, mnist, staging, default_verbosity() if verbose is None else verbose, checkpoint,
                             on_epoch)
    except BaseException as error:
        kept = read_latest(staging)
        if kept is None:
            shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, KeyboardInterrupt):
            where = f"after epoch {kept['epoch']}" if kept else "before the first epoch ended"
            resume_hint = f"; resume with: mnist-keras train --resume {run_dir}" if kept else ""
            raise TrainingInterrupted(f"training interrupted {where}{resume_hint}") from None
        if isinstance(error, TrainingDiverged):
            kept_note = (f"; the last good checkpoint (epoch {kept['epoch']}) is kept in {staging}" if kept
                         else "; no epoch finished before it diverged, so nothing was kept")
            raise TrainingDiverged(f"{error}{kept_note}") from None
        raise
    publish(staging, run_dir)
    shutil.rmtree(checkpoint_dir(run_dir), ignore_errors=True)
    return metrics


def train_into(
    config: Config, mnist: Mnist, directory: Path, verbose: int, checkpoint: dict[str, Any] | None = None,
    on_epoch=None,
) -> dict[str, Any]:
    """Train inside `directory` (a staging directory), from `checkpoint` if given, and write every run file."""
    seed_everything(config.seed)
    x = preprocess_images(mnist.x_train)
    y = one_hot(mnist.y_train)
    (x_fit, y_fit), (x_val, y_val) = split_validation(x, y, config.validation_split)

    steps_per_epoch = math.ceil(len(x_fit) / config.batch_size)
    model = compile_model(build_model(config), config, steps_per_epoch)
    if checkpoint is not None:
        restore_training_state(model, checkpoint_dir(directory) / checkpoint["model"])
    callbacks = make_callbacks(config)
    recorder = EpochRecorder()
    checkpointer = Checkpointer(directory, config.to_dict(), callbacks, recorder, resume_from=checkpoint,
                                on_epoch=on_epoch)
    # Order matters: the guard stops a diverged epoch before it is checkpointed, and the
    # checkpointer saves (and restores) the other callbacks' state, so it comes last.
    all_callbacks = [*callbacks, recorder, DivergenceGuard(), checkpointer]
    started = time.perf_counter()
    if checkpoint is not None and checkpoint["finished"]:
        checkpointer.restore_final_weights(model)
    else:
        initial_epoch = checkpoint["epoch"] if checkpoint else 0
        fit_model(model, config, (x_fit, y_fit), (x_val, y_val), all_callbacks, verbose, initial_epoch)
    train_seconds = checkpointer.elapsed_before + time.perf_counter() - started

    write_json_atomic(directory / CONFIG_FILE, run_config_record(config, mnist))
    write_text_atomic(directory / HISTORY_FILE, history_csv(recorder.rows))
    model.save(directory / MODEL_FILE)
    # Keep the test-set probabilities: the report draws its figures from them.
    probabilities = evaluate.predict_probabilities(model, mnist.x_test, batch_size=config.batch_size)
    metrics = evaluate.model_metrics(model, mnist.y_test, probabilities)
    metrics.update(evaluate.training_summary(recorder.rows, train_seconds))
    write_json_atomic(directory / METRICS_FILE, metrics)
    # Written inside the staging directory, so no run is ever published without its report.
    report.build_report(directory, mnist, probabilities)
    return metrics
