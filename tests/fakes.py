"""Small data and recipes the tests make (importable by child processes: no side effects, no Keras)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnist_keras.config import Config
from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES
from mnist_keras.data.mnist import Mnist
from mnist_keras.training.checkpoint import Checkpointer, run_checkpoint_dir
from mnist_keras.training.state import TrainingState

# Small enough for a one-epoch train in a second or two.
TINY_RECIPE = Config(epochs=1, batch_size=32, hidden_units=(32, 16, 8))


def synthetic_mnist(train_count: int = 300, test_count: int = 100, seed: int = 0) -> Mnist:
    """Learnable fake digits: class k lights up row band k, plus noise. Unverified, for unit tests."""
    rng = np.random.default_rng(seed)

    def make(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(count) % NUM_CLASSES
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(count, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
        for index, label in enumerate(labels):
            images[index, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
        return images, labels.astype(np.uint8)

    x_train, y_train = make(train_count)
    x_test, y_test = make(test_count)
    return Mnist(x_train, y_train, x_test, y_test, source="synthetic")


class CallingCheckpointer(Checkpointer):
    """A run's checkpointer that calls `after_save(state)` once each epoch's checkpoint is committed."""

    def __init__(self, directory: Path, config: Config, after_save: Callable[[TrainingState], None]) -> None:
        super().__init__(directory, config)
        self.after_save = after_save

    def save(self, state: TrainingState, model, augmenter=None) -> None:
        super().save(state, model, augmenter)
        self.after_save(state)


def calling(after_save: Callable[[TrainingState], None], run_dir: Path, config: Config) -> CallingCheckpointer:
    """The checkpointer `train_run(config, ..., run_dir)` would use, calling `after_save` after every epoch."""
    return CallingCheckpointer(run_checkpoint_dir(run_dir), config, after_save)
