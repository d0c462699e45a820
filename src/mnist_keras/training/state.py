"""The training state: one typed record of everything the loop decides with.

The loop (`mnist_keras.training.loop`) reads and updates this record after every epoch;
early stopping, learning-rate halving on plateaus and the divergence guard are
plain functions of it. A checkpoint is this record (as JSON) plus the model's
and optimizer's variables, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

# Fields that start at infinity (no val_loss seen yet); JSON has no infinity, so they are stored as null.
INFINITE_AT_START = ("best_val_loss", "plateau_best")
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


@dataclasses.dataclass
class TrainingState:
    """Where training stands after `epoch` completed epochs."""

    epoch: int = 0
    # The learning rate the next epoch starts with (for scheduled recipes: the schedule's value at its start).
    learning_rate: float = 0.0
    best_val_loss: float = math.inf
    # The 1-based epoch whose weights are the best so far (0: none yet).
    best_epoch: int = 0
    # Epochs since val_loss last improved, for early stopping and for the plateau rule.
    early_stopping_wait: int = 0
    # The plateau rule keeps its own best val_loss (it needs a margin to count as better).
    plateau_best: float = math.inf
    plateau_wait: int = 0
    # One row per completed epoch, with the keys of HISTORY_COLUMNS.
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    # Training seconds over every session of this run (a resumed run adds its own).
    train_seconds: float = 0.0
    # Early stopping fired.
    stopped: bool = False
    # Weights of the best epoch (model.get_weights() order); kept out of the JSON record.
    best_weights: list[Any] | None = dataclasses.field(default=None, repr=False, compare=False)

    def finished(self, epochs: int) -> bool:
        """Nothing is left to train: early stopping fired or every epoch is done."""
        return self.stopped or self.epoch >= epochs

    def to_record(self) -> dict[str, Any]:
        """The JSON-safe part (everything but the best weights); infinities as null."""
        record = dataclasses.asdict(dataclasses.replace(self, best_weights=None))
        record.pop("best_weights")
        for name in INFINITE_AT_START:
            if not math.isfinite(record[name]):
                record[name] = None
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], best_weights: list[Any] | None = None) -> TrainingState:
        names = {field.name for field in dataclasses.fields(cls)} - {"best_weights"}
        values = {name: record[name] for name in names if name in record}
        for name in INFINITE_AT_START:
            if values.get(name) is None:
                values[name] = math.inf
        values["history"] = [dict(row) for row in values.get("history", [])]
        return cls(**values, best_weights=best_weights)
