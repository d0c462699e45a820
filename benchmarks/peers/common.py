"""What every peer script shares: its command line, the data, the clock and its one-JSON-line-per-point output.

A peer script trains one published MNIST recipe as its authors wrote it, on
mnist_keras's verified arrays (never downloading), and prints to stdout:

- one line per evaluation point: {"epoch": k, "seconds": s, "test_accuracy": a},
  where `seconds` is the cumulative training wall time (tracing and the peer's
  own validation passes included; the benchmark's test-set evaluations excluded);
- one closing line {"final": true, "epochs": n, "seconds": s, "test_accuracy": a}:
  the model the peer's code ends with (e.g. after restoring its best weights);
- or, when a library it needs is missing, the single line {"skipped": "<reason>"}.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

# The package lives in src/ next to benchmarks/: importable from a checkout without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
# benchmarks/, for the harness: its `emit` writes the JSON lines time_to_accuracy.py reads.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness


def parse_arguments(description: str, default_epochs: float) -> argparse.Namespace:
    """The flags every peer takes: --seed, --epochs (default: the authors'), and data limits for smoke runs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--epochs", type=float, default=default_epochs,
                        help=f"epochs to train (default {default_epochs:g}, the authors')")
    parser.add_argument("--train-limit", type=int, help="train on only the first N training images (smoke runs)")
    parser.add_argument("--test-limit", type=int, help="evaluate on only the first N test images (smoke runs)")
    return parser.parse_args()


def load_data(options: argparse.Namespace):
    """MNIST as uint8 arrays (images N×28×28, labels N), optionally cut to the limits in `options`."""
    from mnist_keras.data.mnist import load_mnist

    mnist = load_mnist()
    return (mnist.x_train[:options.train_limit], mnist.y_train[:options.train_limit],
            mnist.x_test[:options.test_limit], mnist.y_test[:options.test_limit])


def whole_if_integral(epochs: float) -> float | int:
    """1.0 as 1 (the JSON reads "epoch": 1), 0.5 as 0.5."""
    return int(epochs) if float(epochs).is_integer() else epochs


def emit(**fields) -> None:
    harness.emit(fields)


def skip_unless_installed(module: str) -> None:
    """Print the one skip line and exit cleanly when `module` is not installed."""
    if importlib.util.find_spec(module) is None:
        emit(skipped=f"{module} is not installed")
        sys.exit(0)


def use_tensorflow_backend() -> None:
    """The Keras peers were written for Keras on TensorFlow; pick it before Keras is imported."""
    from mnist_keras.backends import select_backend

    select_backend("tensorflow")


class TrainingClock:
    """Training wall time with the benchmark's own evaluations paused out."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.paused = 0.0

    def seconds(self) -> float:
        return time.perf_counter() - self.started - self.paused

    def evaluate(self, score) -> tuple[float, float]:
        """(training seconds so far, score()), with score()'s own time kept off the clock."""
        seconds = self.seconds()
        began = time.perf_counter()
        value = score()
        self.paused += time.perf_counter() - began
        return seconds, value


def accuracy(predicted_classes: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(predicted_classes) == np.asarray(labels)))


def keras_test_callback(x_test: np.ndarray, y_test: np.ndarray, clock: TrainingClock):
    """A Keras callback that emits a point after every epoch (test accuracy, with `clock` paused).

    Start `clock` just before the authors' training cell, so their data preparation
    and fit's set-up count; after fit returns, `finish()` emits the closing line for
    the model as fit left it.
    """
    import keras

    class TestAccuracyPoints(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epochs = 0

        def score(self) -> float:
            return accuracy(np.argmax(self.model.predict(x_test, batch_size=1000, verbose=0), axis=1), y_test)

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.epochs = epoch + 1
            seconds, test_accuracy = clock.evaluate(self.score)
            emit(epoch=self.epochs, seconds=seconds, test_accuracy=test_accuracy)

        def on_train_end(self, logs=None) -> None:
            self.train_seconds = clock.seconds()

        def finish(self) -> None:
            emit(final=True, epochs=self.epochs, seconds=self.train_seconds, test_accuracy=self.score())

    return TestAccuracyPoints()
