"""Prediction for callers outside training (predict CLI, service): one entry point.

`load_predictor(run_dir)` returns the fastest available predictor for a run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnist_keras.constants import NUM_PIXELS


class KerasPredictor:
    """Probabilities from the run's Keras model, without Keras's per-call `predict` overhead."""

    name = "keras"

    def __init__(self, run_dir: str | Path) -> None:
        from mnist_keras.model import load_run_model

        self.model = load_run_model(run_dir)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """float32 N×784 in [0, 1] (ink = 1) → float32 N×10 probabilities."""
        batch = np.asarray(pixels, dtype=np.float32).reshape(-1, NUM_PIXELS)
        return np.asarray(self.model.predict_on_batch(batch), dtype=np.float32)


def load_predictor(run_dir: str | Path) -> KerasPredictor:
    """The fastest predictor available for the run in `run_dir`."""
    return KerasPredictor(run_dir)
