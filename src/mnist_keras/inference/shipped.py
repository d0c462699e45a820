"""The model that ships in the package: what `predict`, `read` and `serve` answer with when no run is given.

`SHIPPED_DIR` is an exported model (model.onnx, config.json, metrics.json: see
mnist_keras.rundir.EXPORTED_MODEL_FILES), copied from a run of the `cnn` recipe
by `make model` (mnist_keras.evaluation.ship), which checks its accuracy first.
It answers through ONNX Runtime, so the lean install reads digits at once.
"""

from __future__ import annotations

from pathlib import Path

from mnist_keras.errors import RunDirectoryError
from mnist_keras.rundir import check_model_dir

SHIPPED_DIR = Path(__file__).parent / "shipped"


def shipped_model_dir() -> Path:
    """The shipped model's directory; RunDirectoryError if this copy of the package lacks it."""
    try:
        return check_model_dir(SHIPPED_DIR)
    except RunDirectoryError:
        raise RunDirectoryError(f"this install has no shipped model in {SHIPPED_DIR}; give a run directory "
                                "(mnist-keras train --recipe cnn --out RUN)") from None
