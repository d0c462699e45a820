"""Shared fixtures: tiny synthetic data for unit tests, the real MNIST for marked tests."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from mnist_keras.config import Config
from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES
from mnist_keras.data import Mnist

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


@pytest.fixture(scope="session")
def tiny_mnist() -> Mnist:
    return synthetic_mnist()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_mnist) -> Path:
    """A complete run directory from one epoch of a small network on synthetic data."""
    from mnist_keras.train import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train(TINY_RECIPE, tiny_mnist, run_dir, verbose=0)
    return run_dir


@pytest.fixture(scope="session")
def real_mnist() -> Mnist:
    """The real, verified MNIST (from the cache, the Keras download or the package index)."""
    from mnist_keras.data import load_mnist

    return load_mnist()


@pytest.fixture(scope="session")
def real_run(tmp_path_factory, real_mnist) -> Path:
    """The seed recipe trained for two epochs on the real MNIST (about 97.5% test accuracy)."""
    from mnist_keras.train import train

    run_dir = tmp_path_factory.mktemp("runs") / "real"
    train(dataclasses.replace(Config(), epochs=2), real_mnist, run_dir, verbose=0)
    return run_dir


@pytest.fixture(scope="session")
def well_trained_run(tmp_path_factory, real_mnist) -> Path:
    """The seed recipe trained for eight epochs on the real MNIST (about 98% test accuracy).

    For tests that judge how well real handwriting is read (image files, the
    drawing page): two epochs leave too little margin above 97%.
    """
    from mnist_keras.train import train

    run_dir = tmp_path_factory.mktemp("runs") / "well-trained"
    train(dataclasses.replace(Config(), epochs=8), real_mnist, run_dir, verbose=0)
    return run_dir
