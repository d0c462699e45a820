"""Export: ONNX and SavedModel files that reproduce the Keras model, written atomically."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from mnist_keras import cli
from mnist_keras.data.mnist import preprocess_images
from mnist_keras.errors import RunDirectoryError
from mnist_keras.inference.export import (
    TOLERANCE,
    ExportError,
    export_run,
    onnx_probabilities,
    saved_model_probabilities,
)
from mnist_keras.model import load_run_model


def keras_probabilities(run_dir, pixels):
    return np.asarray(load_run_model(run_dir).predict_on_batch(pixels))


def test_onnx_export_matches_keras_on_the_test_images(tiny_run, tiny_mnist, tmp_path):
    pixels = preprocess_images(tiny_mnist.x_test)
    written = export_run(tiny_run, "onnx", tmp_path / "model.onnx")
    assert written == tmp_path / "model.onnx"
    exported = onnx_probabilities(written, pixels)
    assert exported.shape == (len(pixels), 10)
    np.testing.assert_allclose(exported, keras_probabilities(tiny_run, pixels), rtol=0, atol=TOLERANCE)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.onnx"]  # no temporary left behind


@pytest.mark.slow  # the ONNX tests above and below are its fast siblings
def test_saved_model_export_matches_keras(tiny_run, tiny_mnist, tmp_path):
    pixels = preprocess_images(tiny_mnist.x_test)
    written = export_run(tiny_run, "saved_model", tmp_path / "exported")
    exported = saved_model_probabilities(written, pixels)
    np.testing.assert_allclose(exported, keras_probabilities(tiny_run, pixels), rtol=0, atol=TOLERANCE)


def test_export_refuses_bad_input_and_leaves_nothing(tiny_run, tmp_path):
    with pytest.raises(RunDirectoryError):
        export_run(tmp_path / "missing", "onnx")
    with pytest.raises(ExportError, match="unknown export format"):
        export_run(tiny_run, "pickle")
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(ExportError, match="is a directory"):
        export_run(tiny_run, "onnx", tmp_path / "a-directory")

    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / "model.keras").write_bytes(b"not a keras archive")
    with pytest.raises(ExportError, match="not a loadable Keras model"):
        export_run(broken, "onnx", tmp_path / "out" / "model.onnx")
    assert list((tmp_path / "out").iterdir()) == []


def test_cli_export_writes_into_the_run_and_reports_errors_in_one_line(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert cli.main(["export", str(run), "--format", "onnx"]) == cli.EXIT_OK
    assert (run / "model.onnx").is_file()
    assert "model.onnx" in capsys.readouterr().out

    assert cli.main(["export", str(tmp_path / "nowhere"), "--format", "onnx"]) == cli.EXIT_USAGE
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "nowhere" in error
    with pytest.raises(SystemExit) as raised:
        cli.main(["export", str(run), "--format", "pickle"])
    assert raised.value.code == cli.EXIT_USAGE
