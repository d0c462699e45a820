"""Per-epoch checkpoints in a run's staging directory, so training survives any kill.

After every completed epoch the model's variables (dropout RNG state
included), the optimizer's variables (step count, moments, learning rate), the
early-stopping best weights and the callbacks' counters are written under
`<staging>/checkpoint/`, each to a file named by epoch; `latest.json` is
replaced last and atomically, so it always names one complete epoch. A run
killed at any moment, SIGKILL included, resumes from the epoch `latest.json`
names with the optimizer, learning-rate schedule and early-stopping state as
they were.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mnist_keras.constants import NUM_CLASSES
from mnist_keras.errors import TrainingDiverged
from mnist_keras.rundir import write_json_atomic

CHECKPOINT_DIR = "checkpoint"
LATEST_FILE = "latest.json"
# An epoch's mean loss this far above chance (ln 10 ≈ 2.30) means the run has
# diverged: with a learning rate of 10 the seed network sits near 14.5.
DIVERGENCE_LOSS = 1.5 * math.log(NUM_CLASSES)


def checkpoint_dir(staging: Path) -> Path:
    return Path(staging) / CHECKPOINT_DIR


def read_latest(staging: Path) -> dict[str, Any] | None:
    """The last committed checkpoint record, or None if there is none usable."""
    path = checkpoint_dir(staging) / LATEST_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    required = {"epoch", "finished", "recipe", "model", "best_weights", "early_stopping", "reduce_lr", "history", "train_seconds"}
    if not isinstance(record, dict) or not required <= set(record):
        return None
    if not (checkpoint_dir(staging) / record["model"]).is_file():
        return None
    return record


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training with TrainingDiverged when an epoch's loss is not finite or far above chance."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        for key in ("loss", "val_loss"):
            value = logs.get(key)
            if value is not None and (not math.isfinite(value) or value > DIVERGENCE_LOSS):
                raise TrainingDiverged(
                    f"training diverged at epoch {epoch + 1} ({key} {value:.4g}, chance is "
                    f"{math.log(NUM_CLASSES):.2f}); lower --learning-rate and train again"
                )


class Checkpointer(keras.callbacks.Callback):
    """Writes a complete checkpoint after each epoch; restores one at the start of training.

    Must come after the recipe's callbacks, the epoch recorder and the divergence
    guard in the callback list: it saves their state as of the epoch's end, and
    it restores their state after their own `on_train_begin` has reset it.
    """

    def __init__(self, staging: Path, recipe: dict[str, Any], callbacks: list[keras.callbacks.Callback],
                 recorder, resume_from: dict[str, Any] | None = None, on_epoch=None) -> None:
        super().__init__()
        self.on_epoch = on_epoch
        self.directory = checkpoint_dir(staging)
        self.recipe = recipe
        self.early_stopping = find(callbacks, keras.callbacks.EarlyStopping)
        self.reduce_lr = find(callbacks, keras.callbacks.ReduceLROnPlateau)
        self.recorder = recorder
        self.resume_from = resume_from
        self.elapsed_before = resume_from["train_seconds"] if resume_from else 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.started = time.perf_counter()
        if self.resume_from is None:
            return
        record = self.resume_from
        for callback, key in ((self.early_stopping, "early_stopping"), (self.reduce_lr, "reduce_lr")):
            for name, value in (record[key] or {}).items():
                setattr(callback, name, value)
        if self.early_stopping is not None:
            self.early_stopping.best_weights = self.saved_best_weights()
        self.recorder.rows = list(record["history"])

    def saved_best_weights(self) -> list[np.ndarray] | None:
        name = self.resume_from["best_weights"]
        if not name:
            return None
        with np.load(self.directory / name) as archive:
            return [archive[f"w{index}"] for index in range(len(archive.files))]

    def restore_final_weights(self, model: keras.Model) -> None:
        """For a run killed after its last epoch: the history, and the weights EarlyStopping would restore."""
        self.recorder.rows = list(self.resume_from["history"])
        best_weights = self.saved_best_weights()
        if best_weights is not None:
            model.set_weights(best_weights)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        completed = epoch + 1
        model_name = f"epoch-{completed:03d}.npz"
        # Plain arrays, not model.save: a tenth of the time, and it keeps the dropout RNG state.
        save_training_state(self.model, self.directory / model_name)
        best_name = None
        if self.early_stopping is not None and self.early_stopping.best_weights is not None:
            best_name = f"best-{completed:03d}.npz"
            np.savez(self.directory / best_name,
                     **{f"w{index}": weight for index, weight in enumerate(self.early_stopping.best_weights)})
        record = {
            "epoch": completed,
            # Early stopping fired, or the last epoch is done: only publishing remains.
            "finished": bool(self.model.stop_training) or completed >= self.params.get("epochs", completed),
            "recipe": self.recipe,
            "model": model_name,
            "best_weights": best_name,
            "early_stopping": callback_state(self.early_stopping, ("wait", "best", "best_epoch")),
            "reduce_lr": callback_state(self.reduce_lr, ("wait", "best", "cooldown_counter")),
            "history": self.recorder.rows,
            "train_seconds": self.elapsed_before + time.perf_counter() - self.started,
        }
        write_json_atomic(self.directory / LATEST_FILE, record)
        if self.on_epoch is not None:
            from mnist_keras.state import TrainingState

            state = TrainingState(epoch=completed, history=list(self.recorder.rows),
                                  train_seconds=record["train_seconds"], stopped=bool(self.model.stop_training))
            self.on_epoch(state, self.directory)
        # Older epochs are no longer needed once latest.json names this one.
        for path in self.directory.iterdir():
            if path.name not in (LATEST_FILE, model_name, best_name) and path.suffix == ".npz":
                path.unlink(missing_ok=True)


def save_training_state(model: keras.Model, path: Path) -> None:
    """Every model and optimizer variable, in order, as one .npz file."""
    arrays = {f"model_{index}": keras.ops.convert_to_numpy(variable.value)
              for index, variable in enumerate(model.variables)}
    arrays.update({f"optimizer_{index}": keras.ops.convert_to_numpy(variable.value)
                   for index, variable in enumerate(model.optimizer.variables)})
    np.savez(path, **arrays)


def restore_training_state(model: keras.Model, path: Path) -> None:
    """Load what save_training_state wrote into a freshly built and compiled model of the same recipe."""
    model.optimizer.build(model.trainable_variables)
    with np.load(path) as archive:
        for prefix, variables in (("model", model.variables), ("optimizer", model.optimizer.variables)):
            for index, variable in enumerate(variables):
                variable.assign(archive[f"{prefix}_{index}"])


def find(callbacks: list[keras.callbacks.Callback], kind: type) -> keras.callbacks.Callback | None:
    return next((callback for callback in callbacks if isinstance(callback, kind)), None)


def callback_state(callback: keras.callbacks.Callback | None, names: tuple[str, ...]) -> dict[str, Any] | None:
    """The named counters of a callback as JSON numbers (None stays None)."""
    if callback is None:
        return None
    state = {}
    for name in names:
        value = getattr(callback, name)
        state[name] = None if value is None else int(value) if isinstance(value, (int, np.integer)) else float(value)
    return state
