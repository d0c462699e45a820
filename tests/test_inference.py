"""load_predictor: ONNX Runtime when it can, Keras otherwise, the same probabilities either way."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES, NUM_PIXELS
from mnist_keras.data.mnist import preprocess_images
from mnist_keras.errors import UserError
from mnist_keras.inference import export
from mnist_keras.inference import predictors as inference


@pytest.fixture()
def run_copy(tiny_run, tmp_path):
    """A private copy of the tiny run (with the model.onnx training wrote)."""
    return shutil.copytree(tiny_run, tmp_path / "run")


def fingerprint(directory) -> dict[str, tuple[bytes, float]]:
    """Every file under `directory`, with its bytes and modification time."""
    return {str(path.relative_to(directory)): (path.read_bytes(), path.stat().st_mtime)
            for path in sorted(directory.rglob("*")) if path.is_file()}


def test_onnxruntime_predictor_agrees_with_keras(run_copy, tiny_mnist):
    pixels = preprocess_images(tiny_mnist.x_test)
    assert (run_copy / "model.onnx").is_file(), "training exports model.onnx when the exporter is installed"
    fast = inference.load_predictor(run_copy)
    keras_predictor = inference.load_predictor(run_copy, engine="keras")
    assert (fast.name, keras_predictor.name) == ("onnxruntime", "keras")
    probabilities = fast.predict(pixels)
    assert probabilities.shape == (len(pixels), NUM_CLASSES) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, keras_predictor.predict(pixels), rtol=0, atol=export.TOLERANCE)
    # One image, in any of the shapes a caller may hold it, through the single-threaded session.
    one = pixels[0].reshape(IMAGE_SIDE, IMAGE_SIDE)
    np.testing.assert_allclose(fast.predict(one)[0], probabilities[0], rtol=0, atol=export.TOLERANCE)
    # A batch large enough to be cut into chunks comes back whole and in order.
    many = np.random.default_rng(0).random((2 * inference.CHUNK_IMAGES + 5, 784), dtype=np.float32)
    np.testing.assert_allclose(fast.predict(many), fast.run(many), rtol=0, atol=export.TOLERANCE)


def test_loading_a_predictor_never_writes_into_the_run(run_copy):
    (run_copy / "model.onnx").unlink()
    before = fingerprint(run_copy)
    assert inference.load_predictor(run_copy).name == "keras", "no model.onnx: Keras answers"
    with pytest.raises(UserError, match="mnist-keras export"):
        inference.load_predictor(run_copy, engine="onnxruntime")
    assert fingerprint(run_copy) == before


def test_falls_back_to_keras_without_onnxruntime(run_copy, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    assert inference.load_predictor(run_copy).name == "keras"
    with pytest.raises(UserError, match="ONNX Runtime is not installed"):
        inference.load_predictor(run_copy, engine="onnxruntime")


def test_a_stale_export_is_not_used(run_copy):
    onnx_path = run_copy / "model.onnx"
    model_written_at = (run_copy / "model.keras").stat().st_mtime
    os.utime(onnx_path, (model_written_at - 60, model_written_at - 60))  # an export older than the model
    assert inference.load_predictor(run_copy).name == "keras"
    os.utime(onnx_path, (model_written_at + 60, model_written_at + 60))
    assert inference.load_predictor(run_copy).name == "onnxruntime"


def test_unknown_engine_is_a_user_error(run_copy):
    with pytest.raises(UserError, match="unknown inference engine"):
        inference.load_predictor(run_copy, engine="magic")


def test_prediction_record_and_top_k():
    probabilities = np.array([0.01, 0.05, 0.6, 0.04, 0.2, 0.02, 0.03, 0.02, 0.02, 0.01])
    image = np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.float32)
    image[4:24, 13:15] = 1.0
    record = inference.prediction_record(probabilities, image, top_k=3)
    assert record["digit"] == 2
    assert record["confidence"] == pytest.approx(0.6)
    assert record["probabilities"] == pytest.approx(probabilities.tolist())
    assert isinstance(record["is_digit"], bool)
    assert [entry["digit"] for entry in record["top_k"]] == [2, 4, 1]
    assert "top_k" not in inference.prediction_record(probabilities, image)


def test_an_eleven_output_record_keeps_ten_probabilities_and_says_not_a_digit():
    image = np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.float32)
    image[4:24, 13:15] = 1.0
    outputs = np.array([0.01] * NUM_CLASSES + [0.9], dtype=np.float32)
    outputs[7] = 0.0
    record = inference.prediction_record(outputs, image)
    assert len(record["probabilities"]) == NUM_CLASSES
    assert sum(record["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    assert record["digit"] != 7 and record["is_digit"] is False
    confident = np.zeros(NUM_CLASSES + 1, dtype=np.float32)
    confident[1] = 0.99
    confident[NUM_CLASSES] = 0.01
    assert inference.prediction_record(confident, image) | {"probabilities": None} == {
        "digit": 1, "confidence": 1.0, "probabilities": None, "is_digit": True}


def test_predict_images_batches_through_the_predictor():
    class Recorder:
        name = "recorder"

        def __init__(self) -> None:
            self.calls: list[np.ndarray] = []

        def predict(self, batch: np.ndarray) -> np.ndarray:
            self.calls.append(batch)
            # Digit = the row index (of 28) holding the most ink, modulo 10: depends on the input.
            rows = batch.reshape(-1, IMAGE_SIDE, IMAGE_SIDE).sum(axis=2).argmax(axis=1) % NUM_CLASSES
            return np.eye(NUM_CLASSES, dtype=np.float32)[rows]

    images = [np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.float32) for _ in range(2)]
    images[0][3] = 1
    images[1][17] = 1
    predictor = Recorder()
    records = inference.predict_images(predictor, images)
    assert [record["digit"] for record in records] == [3, 7]
    assert len(predictor.calls) == 1 and predictor.calls[0].shape == (2, NUM_PIXELS)
    assert inference.predict_images(predictor, []) == []


def test_predict_and_serve_leave_the_run_byte_for_byte_as_it_was(run_copy, tmp_path):
    from fastapi.testclient import TestClient
    from PIL import Image

    from mnist_keras.cli import main
    from mnist_keras.serving.app import create_app

    picture = tmp_path / "digit.png"
    pixels = np.zeros((IMAGE_SIDE * 4, IMAGE_SIDE * 4), np.uint8)
    pixels[20:90, 50:60] = 255
    Image.fromarray(pixels).save(picture)
    for onnx_present in (True, False):
        if not onnx_present:
            (run_copy / "model.onnx").unlink()
        before = fingerprint(run_copy)
        assert main(["predict", str(run_copy), str(picture)]) == 0
        with TestClient(create_app(run_copy)) as client:
            assert client.get("/healthz").status_code == 200
            assert client.post("/predict", files={"file": picture.read_bytes()}).status_code == 200
            assert client.post("/predict/batch", json={"images": [(pixels[::4, ::4] / 255).tolist()]}).status_code == 200
        assert fingerprint(run_copy) == before
