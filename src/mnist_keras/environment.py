"""What a run ran on: the Keras backend and library versions, recorded in config.json."""

from __future__ import annotations

import importlib.metadata
import os
import platform

import keras

# Distributions whose versions decide a run's numbers.
TRACKED_DISTRIBUTIONS = ("mnist-keras", "keras", "jax", "jaxlib", "tensorflow", "torch", "numpy", "scikit-learn")


def backend_name() -> str:
    return keras.backend.backend()


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that matter, plus Python's."""
    versions = {"python": platform.python_version()}
    for distribution in TRACKED_DISTRIBUTIONS:
        try:
            versions[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def machine_description() -> str:
    """A one-line description of the machine, for benchmark and results tables."""
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}"
