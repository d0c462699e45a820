"""load_predictor: ONNX Runtime when it can, Keras otherwise, the same probabilities either way."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

from mnist_keras import export, inference
from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES
from mnist_keras.data import preprocess_images
from mnist_keras.errors import UserError


@pytest.fixture()
def run_copy(tiny_run, tmp_path):
    """A private copy of the tiny run, since loading a predictor may add model.onnx to it."""
    destination = tmp_path / "run"
    shutil.copytree(tiny_run, destination, ignore=shutil.ignore_patterns("model.onnx"))
    return destination


def test_onnxruntime_predictor_agrees_with_keras(run_copy, tiny_mnist):
    pixels = preprocess_images(tiny_mnist.x_test)
    fast = inference.load_predictor(run_copy)
    keras_predictor = inference.load_predictor(run_copy, engine="keras")
    assert (fast.name, keras_predictor.name) == ("onnxruntime", "keras")
    assert (run_copy / "model.onnx").is_file()
    probabilities = fast.predict(pixels)
    assert probabilities.shape == (len(pixels), NUM_CLASSES) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, keras_predictor.predict(pixels), rtol=0, atol=export.TOLERANCE)
    # One image, in any of the shapes a caller may hold it, through the single-threaded session.
    one = pixels[0].reshape(IMAGE_SIDE, IMAGE_SIDE)
    np.testing.assert_allclose(fast.predict(one)[0], probabilities[0], rtol=0, atol=export.TOLERANCE)
    # A batch large enough to be cut into chunks comes back whole and in order.
    many = np.random.default_rng(0).random((2 * inference.CHUNK_IMAGES + 5, 784), dtype=np.float32)
    np.testing.assert_allclose(fast.predict(many), fast.run(many), rtol=0, atol=export.TOLERANCE)


def test_falls_back_to_keras_without_onnxruntime(run_copy, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    assert inference.load_predictor(run_copy).name == "keras"
    assert not (run_copy / "model.onnx").exists()
    with pytest.raises(UserError, match="ONNX Runtime is not installed"):
        inference.load_predictor(run_copy, engine="onnxruntime")


def test_falls_back_to_keras_when_the_export_fails(run_copy, monkeypatch):
    def failing_export(*args, **kwargs):
        raise export.ExportError("no exporter here")

    monkeypatch.setattr(export, "export_run", failing_export)
    assert inference.load_predictor(run_copy).name == "keras"
    with pytest.raises(export.ExportError):
        inference.load_predictor(run_copy, engine="onnxruntime")


def test_a_stale_export_is_redone_and_a_current_one_reused(run_copy):
    inference.load_predictor(run_copy)
    onnx_path = run_copy / "model.onnx"
    exported_at = onnx_path.stat().st_mtime
    inference.load_predictor(run_copy)
    assert onnx_path.stat().st_mtime == exported_at
    model_written_at = (run_copy / "model.keras").stat().st_mtime
    os.utime(onnx_path, (model_written_at - 60, model_written_at - 60))  # an export older than the model
    inference.load_predictor(run_copy)
    assert onnx_path.stat().st_mtime > model_written_at - 60

def test_unknown_engine_is_a_user_error(run_copy):
    with pytest.raises(UserError, match="unknown inference engine"):
        inference.load_predictor(run_copy, engine="magic")
