"""Prediction for callers outside training (predict CLI, service): predictors and prediction records.

`load_predictor(run_dir)` returns the fastest available `Predictor` for a run:
ONNX Runtime on the run's `model.onnx` (exported at the end of training, or by
`mnist-keras export`) when it is there, current and ONNX Runtime is
installed; else the Keras model itself. Both take float32 N×784 pixels in
[0, 1] and return the model's float32 outputs (N×10, or N×11 when the recipe
has the "not a digit" class); they agree within mnist_keras.inference.export.TOLERANCE.
Nothing here writes: a run directory is read as it is found.

`predict_images` and `read_image_files` turn outputs into the records
`mnist-keras predict` prints and the service returns: digit, confidence, the
ten digits' probabilities, and `is_digit`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mnist_keras.backends import TRAIN_EXTRA_INSTALL, keras_installed
from mnist_keras.constants import IMAGE_SIDE, NUM_PIXELS
from mnist_keras.errors import UserError
from mnist_keras.inference.decision import digit_probabilities, is_digit
from mnist_keras.inference.images import ImageError, preprocess_image_file
from mnist_keras.rundir import MODEL_FILE, ONNX_FILE, check_model_dir, current_onnx_export, is_exported_model

# Probabilities are rounded in JSON records; 6 decimals keep every digit that float32 can tell apart near 1.
PROBABILITY_DECIMALS = 6

ENGINES = ("auto", "onnxruntime", "keras")
# Large batches are cut into chunks of this many images, run concurrently on
# single-threaded sessions: cache-sized products, one per core, beat one big
# product split across threads inside ONNX Runtime. Measured with benchmarks/bench.py.
CHUNK_IMAGES = 1024


class Predictor(Protocol):
    """What the CLI and the service predict with."""

    name: str

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """float32 N×784 (or one 784 / 28×28 image) in [0, 1], ink = 1 → float32 N×outputs."""
        ...


def as_batch(pixels: np.ndarray) -> np.ndarray:
    """Pixels as a C-contiguous float32 N×784 array (one image may be given as 784 or 28×28)."""
    return np.ascontiguousarray(np.asarray(pixels, dtype=np.float32).reshape(-1, NUM_PIXELS))


class KerasPredictor:
    """Outputs of the run's Keras model, without Keras's per-call `predict` overhead."""

    name = "keras"

    def __init__(self, run_dir: str | Path | None = None, model: Any = None) -> None:
        """The model of the run in `run_dir`, or a Keras `model` already loaded."""
        if model is None:
            from mnist_keras.model import load_run_model

            model = load_run_model(run_dir)
        self.model = model

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """float32 N×784 in [0, 1] (ink = 1) → float32 N×outputs (10, or 11 with "not a digit").

        In chunks of CHUNK_IMAGES: a convnet's activations for the whole test set at once would take gigabytes."""
        batch = as_batch(pixels)
        chunks = [batch[start : start + CHUNK_IMAGES] for start in range(0, len(batch), CHUNK_IMAGES)] or [batch]
        return np.concatenate([np.asarray(self.model.predict_on_batch(chunk), dtype=np.float32) for chunk in chunks])


class OnnxPredictor:
    """Outputs of an exported ONNX model through ONNX Runtime.

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
        """float32 N×784 in [0, 1] (ink = 1) → float32 N×outputs (10, or 11 with "not a digit")."""
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


def load_predictor(run_dir: str | Path, engine: str = "auto") -> Predictor:
    """The fastest predictor available for the run in `run_dir`, which is only read.

    engine "auto": ONNX Runtime when it is installed and the run has a current
    model.onnx, else Keras. "onnxruntime" or "keras" insist on one (a UserError
    says how to get it when impossible).
    """
    run_dir = check_model_dir(Path(run_dir))
    if engine not in ENGINES:
        raise UserError(f"unknown inference engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "keras":
        if is_exported_model(run_dir):
            raise UserError(f"{run_dir} holds an exported model ({ONNX_FILE}) and no {MODEL_FILE} for Keras")
        return KerasPredictor(run_dir)
    onnx_path = current_onnx_export(run_dir)
    if onnxruntime_available() and onnx_path is not None:
        return OnnxPredictor(onnx_path)
    if engine == "onnxruntime":
        if not onnxruntime_available():
            raise UserError("ONNX Runtime is not installed; pip install onnxruntime, or use the Keras engine")
        raise UserError(f"{run_dir} has no current {ONNX_FILE}; write one with: mnist-keras export {run_dir} "
                        "--format onnx")
    if is_exported_model(run_dir):
        raise UserError(f"{run_dir} holds an exported model ({ONNX_FILE}), which needs ONNX Runtime: "
                        "pip install onnxruntime")
    if not keras_installed():
        raise UserError(f"{run_dir} has no current {ONNX_FILE}, and answering with its {MODEL_FILE} needs Keras: "
                        f"{TRAIN_EXTRA_INSTALL}, or export {ONNX_FILE} where Keras is installed")
    return KerasPredictor(run_dir)


# ---------------------------------------------------------------- records


def prediction_record(outputs: Sequence[float], image: np.ndarray, top_k: int | None = None) -> dict[str, Any]:
    """The answer for one image from the model's outputs for it: digit, confidence, the ten
    digits' probabilities, whether it looks like one handwritten digit, and the `top_k` best if asked."""
    outputs = np.asarray(outputs, dtype=np.float32).ravel()
    probabilities = digit_probabilities(outputs).astype(np.float64)
    digit = int(np.argmax(probabilities))
    record: dict[str, Any] = {
        "digit": digit,
        "confidence": round(float(probabilities[digit]), PROBABILITY_DECIMALS),
        "probabilities": [round(value, PROBABILITY_DECIMALS) for value in probabilities.tolist()],
        "is_digit": bool(is_digit(np.asarray(image, dtype=np.float32).reshape(IMAGE_SIDE, IMAGE_SIDE), outputs)),
    }
    if top_k is not None:
        order = np.argsort(-probabilities, kind="stable")[:top_k]
        record["top_k"] = [
            {"digit": int(index), "probability": round(float(probabilities[index]), PROBABILITY_DECIMALS)}
            for index in order
        ]
    return record


def predict_images(predictor: Predictor, images: Sequence[np.ndarray], top_k: int | None = None) -> list[dict[str, Any]]:
    """Prediction records for 28×28 model inputs, in one batch through `predictor.predict`."""
    if not images:
        return []
    batch = np.stack([np.asarray(image, dtype=np.float32).reshape(NUM_PIXELS) for image in images])
    return [prediction_record(row, image, top_k) for row, image in zip(predictor.predict(batch), images)]


def read_image_files(
    predictor: Predictor, paths: Iterable[str | Path], top_k: int | None = None
) -> list[dict[str, Any]]:
    """One record per file, in order: `file` plus a prediction, or `file` plus `error` for a file we cannot read."""
    paths = [str(path) for path in paths]
    images: dict[int, np.ndarray] = {}
    records: list[dict[str, Any]] = [{"file": path} for path in paths]
    for index, path in enumerate(paths):
        try:
            images[index] = preprocess_image_file(path)
        except ImageError as error:
            records[index]["error"] = str(error)
    for index, prediction in zip(images, predict_images(predictor, list(images.values()), top_k)):
        records[index].update(prediction)
    return records
