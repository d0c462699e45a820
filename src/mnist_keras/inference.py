"""Prediction for callers outside training (predict CLI, service): one entry point.

`load_predictor(run_dir)` returns the fastest available predictor for a run:
ONNX Runtime on the run's `model.onnx` (exported on first use, and again when
`model.keras` is newer), else the Keras model itself. Both take float32 N×784
pixels in [0, 1] and return float32 N×10 probabilities; they agree within
mnist_keras.export.TOLERANCE.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mnist_keras.constants import NUM_PIXELS
from mnist_keras.rundir import MODEL_FILE, check_run_dir

ENGINES = ("auto", "onnxruntime", "keras")
# Large batches are cut into chunks of this many images, run concurrently on
# single-threaded sessions: cache-sized products, one per core, beat one big
# product split across threads inside ONNX Runtime. Measured with benchmarks/bench.py.
CHUNK_IMAGES = 1024


def as_batch(pixels: np.ndarray) -> np.ndarray:
    """Pixels as a C-contiguous float32 N×784 array (one image may be given as 784 or 28×28)."""
    return np.ascontiguousarray(np.asarray(pixels, dtype=np.float32).reshape(-1, NUM_PIXELS))


class KerasPredictor:
    """Probabilities from the run's Keras model, without Keras's per-call `predict` overhead."""

    name = "keras"

    def __init__(self, run_dir: str | Path) -> None:
        from mnist_keras.model import load_run_model

        self.model = load_run_model(run_dir)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """float32 N×784 in [0, 1] (ink = 1) → float32 N×10 probabilities."""
        return np.asarray(self.model.predict_on_batch(as_batch(pixels)), dtype=np.float32)


class OnnxPredictor:
    """Probabilities from an exported ONNX model through ONNX Runtime.

    One single-threaded session: a few images run on the calling thread (no
    hand-off between threads); a larger batch runs as chunks, one per core at
    a time, since ONNX Runtime sessions accept concurrent calls.
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path) -> None:
        self.session = make_session(onnx_path, threads=1)
        self.input_name = self.session.get_inputs()[0].name
        self.workers = os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(max_workers=self.workers) if self.workers > 1 else None

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """float32 N×784 in [0, 1] (ink = 1) → float32 N×10 probabilities."""
        batch = as_batch(pixels)
        if self.pool is None or len(batch) <= CHUNK_IMAGES:
            return self.run(batch)
        chunks = [batch[start : start + CHUNK_IMAGES] for start in range(0, len(batch), CHUNK_IMAGES)]
        return np.concatenate(list(self.pool.map(self.run, chunks)))


def make_session(onnx_path: str | Path, threads: int):
    """An ONNX Runtime CPU session with full graph optimisation and `threads` intra-op threads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def current_onnx_export(run_dir: Path) -> Path:
    """The run's model.onnx, exported now if it is missing or older than model.keras."""
    from mnist_keras.export import default_output, export_run

    onnx_path = default_output(run_dir, "onnx")
    if not onnx_path.exists() or onnx_path.stat().st_mtime < (run_dir / MODEL_FILE).stat().st_mtime:
        export_run(run_dir, "onnx", onnx_path)
    return onnx_path


def load_predictor(run_dir: str | Path, engine: str = "auto") -> KerasPredictor | OnnxPredictor:
    """The fastest predictor available for the run in `run_dir`.

    engine "auto": ONNX Runtime when it is installed and the model exports,
    else Keras. "onnxruntime" or "keras" insist on one (an error if impossible).
    """
    from mnist_keras.errors import UserError

    run_dir = check_run_dir(Path(run_dir))
    if engine not in ENGINES:
        raise UserError(f"unknown inference engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "keras":
        return KerasPredictor(run_dir)
    if not onnxruntime_available():
        if engine == "onnxruntime":
            raise UserError("ONNX Runtime is not installed; pip install onnxruntime, or use the Keras engine")
        return KerasPredictor(run_dir)
    try:
        return OnnxPredictor(current_onnx_export(run_dir))
    except (UserError, OSError):
        # A read-only run directory or a missing exporter: Keras still answers, only slower.
        if engine == "onnxruntime":
            raise
        return KerasPredictor(run_dir)
