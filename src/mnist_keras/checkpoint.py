"""Per-epoch checkpoints in a run's staging directory, so training survives any kill.

After every completed epoch the model (with its optimizer state), the
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
from mnist_keras.errors import UserError
from mnist_keras.rundir import write_json_atomic

CHECKPOINT_DIR = "checkpoint"
LATEST_FILE = "latest.json"
# An epoch's mean loss this far above chance (ln 10 ≈ 2.30) means the run has
# diverged: with a learning rate of 10 the seed network sits near 14.5.
DIVERGENCE_LOSS = 1.5 * math.log(NUM_CLASSES)


class TrainingDiverged(UserError):
    """The loss became NaN, infinite or far worse than chance."""


class TrainingInterrupted(Exception):
    """Ctrl-C during training; the message says how to resume."""


def checkpoint_dir(staging: Path) -> Path:
    return Path(staging) / CHECKPOINT_DIR


def read_latest(staging: Path) -> dict[str, Any] | None:
    """The last committed checkpoint record, or None if there is none usable."""
    path = checkpoint_dir(staging) / LATEST_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    required = {"epoch", "recipe", "model", "best_weights", "early_stopping", "reduce_lr", "history", "train_seconds"}
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

    Must come after EarlyStopping, ReduceLROnPlateau, the epoch recorder and the
    divergence guard in the callback list: it saves their state as of the epoch's end,
    and it restores their state after their own `on_train_begin` has reset it.
    """

    def __init__(self, staging: Path, recipe: dict[str, Any], early_stopping, reduce_lr, recorder,
                 resume_from: dict[str, Any] | None = None, elapsed_before: float = 0.0) -> None:
        super().__init__()
        self.directory = checkpoint_dir(staging)
        self.recipe = recipe
        self.early_stopping = early_stopping
        self.reduce_lr = reduce_lr
        self.recorder = recorder
        self.resume_from = resume_from
        self.elapsed_before = elapsed_before

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.started = time.perf_counter()
        if self.resume_from is None:
            return
        record = self.resume_from
        for name, value in record["early_stopping"].items():
            setattr(self.early_stopping, name, value)
        for name, value in record["reduce_lr"].items():
            setattr(self.reduce_lr, name, value)
        if record["best_weights"]:
            with np.load(self.directory / record["best_weights"]) as archive:
                self.early_stopping.best_weights = [archive[f"w{index}"] for index in range(len(archive.files))]
        self.recorder.rows = list(record["history"])

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        completed = epoch + 1
        model_name = f"epoch-{completed:03d}.keras"
        self.model.save(self.directory / model_name)
        best_name = None
        if self.early_stopping.best_weights is not None:
            best_name = f"best-{completed:03d}.npz"
            np.savez(self.directory / best_name,
                     **{f"w{index}": weight for index, weight in enumerate(self.early_stopping.best_weights)})
        record = {
            "epoch": completed,
            "recipe": self.recipe,
            "model": model_name,
            "best_weights": best_name,
            "early_stopping": {
                "wait": int(self.early_stopping.wait),
                "best": None if self.early_stopping.best is None else float(self.early_stopping.best),
                "best_epoch": int(self.early_stopping.best_epoch),
            },
            "reduce_lr": {
                "wait": int(self.reduce_lr.wait),
                "best": None if self.reduce_lr.best is None else float(self.reduce_lr.best),
                "cooldown_counter": int(self.reduce_lr.cooldown_counter),
            },
            "history": self.recorder.rows,
            "train_seconds": self.elapsed_before + time.perf_counter() - self.started,
        }
        write_json_atomic(self.directory / LATEST_FILE, record)
        # Older epochs are no longer needed once latest.json names this one.
        for path in self.directory.iterdir():
            if path.name not in (LATEST_FILE, model_name, best_name) and path.suffix in (".keras", ".npz"):
                path.unlink(missing_ok=True)
