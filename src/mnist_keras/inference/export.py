"""Export a run's model for serving: ONNX (for ONNX Runtime) or a TensorFlow SavedModel.

Both formats are written by Keras's own `model.export` under the TensorFlow
backend (tf2onnx for ONNX). From another backend, the export runs in a child
Python process with KERAS_BACKEND=tensorflow: `model.keras` is backend-neutral,
so the exported graph computes what the trained model computes. Every export is
checked against the Keras model before it is published, and written to a
temporary name first, so a failed export leaves nothing behind.

Run as a module (`python -m mnist_keras.inference.export RUN FORMAT OUT`) it is that child.
The third format, a static web page (`--format web`), is `mnist_keras.inference.web_export`'s; it
puts this module's ONNX export in its folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from mnist_keras.constants import NUM_PIXELS
from mnist_keras.errors import UserError
from mnist_keras.rundir import check_run_dir, replace_path

FORMATS = ("onnx", "saved_model")
DEFAULT_NAMES = {"onnx": "model.onnx", "saved_model": "saved_model"}
INPUT_NAME = "pixels"
# An export must agree with Keras to this much on every probability (the bar).
TOLERANCE = 1e-5
CHECK_IMAGES = 256  # random images the export is checked on before it is published
CHECK_SEED = 0
ONNX_OPSET = 17


class ExportError(UserError):
    """An export could not be written or does not reproduce the Keras model."""


def default_output(run_dir: str | Path, export_format: str) -> Path:
    """Where `mnist-keras export RUN --format F` writes without --out: inside the run directory."""
    return Path(run_dir) / DEFAULT_NAMES[export_format]


def check_images() -> np.ndarray:
    """Fixed pixels in [0, 1] the export is compared with Keras on."""
    return np.random.default_rng(CHECK_SEED).random((CHECK_IMAGES, NUM_PIXELS), dtype=np.float32)


def onnx_probabilities(path: str | Path, pixels: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: pixels})[0]


def saved_model_probabilities(path: str | Path, pixels: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # kept alive: `serve` refers to its variables
    return loaded.serve(pixels).numpy()


def export_in_this_process(run_dir: Path, export_format: str, out: Path) -> None:
    """Export with the current (TensorFlow) backend, verify, then move into place."""
    import keras

    from mnist_keras.model import load_run_model

    model = load_run_model(run_dir)
    signature = [keras.InputSpec(shape=(None, NUM_PIXELS), dtype="float32", name=INPUT_NAME)]
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        temporary = staging / out.name
        if export_format == "onnx":
            model.export(temporary, format="onnx", verbose=False, input_signature=signature, opset_version=ONNX_OPSET)
            exported = onnx_probabilities(temporary, check_images())
        else:
            model.export(temporary, format="tf_saved_model", verbose=False, input_signature=signature)
            exported = saved_model_probabilities(temporary, check_images())
        expected = np.asarray(model.predict_on_batch(check_images()))
        difference = float(np.max(np.abs(exported - expected)))
        if not difference <= TOLERANCE:
            raise ExportError(f"the {export_format} export differs from the Keras model by {difference:.2e}")
        replace_path(temporary, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def export_run(run_dir: str | Path, export_format: str, out: str | Path | None = None) -> Path:
    """Export the model of the run in `run_dir` as `export_format` ("onnx" or "saved_model").

    Returns the path written (`out`, default inside the run directory). The
    export's outputs match the Keras model's within TOLERANCE; otherwise, or on
    any failure, ExportError is raised and nothing is written.
    """
    run_dir = check_run_dir(Path(run_dir))
    if export_format not in FORMATS:
        raise ExportError(f"unknown export format {export_format!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out) if out is not None else default_output(run_dir, export_format)
    if export_format == "onnx" and out.is_dir():
        raise ExportError(f"{out} is a directory; an ONNX export is one file (give a file name with --out)")
    if out.exists() and export_format == "saved_model" and not out.is_dir():
        raise ExportError(f"{out} is a file; a SavedModel is a directory (give a new name with --out)")
    out.parent.mkdir(parents=True, exist_ok=True)
    if tensorflow_backend_active():
        export_in_this_process(run_dir, export_format, out)
    else:
        export_in_tensorflow_process(run_dir, export_format, out)
    return out


def tensorflow_backend_active() -> bool:
    """Whether Keras in this process runs (or, once imported, will run) on TensorFlow."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend() == "tensorflow"
    return os.environ.get("KERAS_BACKEND") == "tensorflow"


def export_in_tensorflow_process(run_dir: Path, export_format: str, out: Path) -> None:
    """Run the export in a child process whose Keras uses TensorFlow; its error becomes ours."""
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "mnist_keras.inference.export", str(run_dir), export_format, str(out)]
    result = subprocess.run(command, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise ExportError(f"{export_format} export failed: {lines[-1] if lines else 'no error message'}")


def main(argv: list[str]) -> int:
    """The child process: export, or print one line and exit non-zero."""
    run_dir, export_format, out = argv
    os.environ["KERAS_BACKEND"] = "tensorflow"
    try:
        import keras  # noqa: F401  (loads Keras with the TensorFlow backend before exporting)

        export_in_this_process(Path(run_dir), export_format, Path(out))
    except UserError as error:
        print(error, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
