"""The lean install and the model that ships: predict, read, serve and evaluate without Keras or a run.

The lean install is simulated in a child process whose Keras, TensorFlow, JAX and
torch cannot be imported (their entries in sys.modules are None, which is what
`importlib.util.find_spec` and `import` see when a package is absent). The real
`pip install .` into a fresh venv is the full lane's (test_lean_install.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import glyph, write_text
from PIL import Image

from mnist_keras.cli import main
from mnist_keras.evaluation import ship
from mnist_keras.evaluation.metrics import cross_entropy, evaluate_run
from mnist_keras.inference.predictors import load_predictor, predict_images
from mnist_keras.inference.shipped import SHIPPED_DIR, shipped_model_dir
from mnist_keras.rundir import EXPORTED_MODEL_FILES, METRICS_FILE, ONNX_FILE, read_json

# What the lean install leaves out; a child process with these blocked is the lean install's CLI.
HEAVY_MODULES = ("keras", "tensorflow", "jax", "torch", "matplotlib", "seaborn", "tf2onnx", "onnx")
LEAN_CLI = ("import sys\n"
            f"for name in {HEAVY_MODULES!r}: sys.modules[name] = None\n"
            "from mnist_keras.cli import main\n"
            "code = main(sys.argv[1:])\n"
            "loaded = [name for name in " + repr(HEAVY_MODULES) + " if sys.modules.get(name) is not None]\n"
            "print('LOADED', loaded, file=sys.stderr)\n"
            "sys.exit(code)\n")
# Digits the built-in font draws as handwriting draws them (its 1 has a flag and a foot, its 6 and 9 are thin).
FONT_DIGITS = (0, 2, 3, 4, 5, 8)


def save_dark_on_light(ink: np.ndarray, path: Path) -> Path:
    Image.fromarray(np.uint8(np.clip(1.0 - np.pad(ink, 24), 0, 1) * 255)).save(path)
    return path


def run_lean(*argv: str) -> subprocess.CompletedProcess:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return subprocess.run([sys.executable, "-c", LEAN_CLI, *argv], capture_output=True, text=True,
                          env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("digits")
    return {digit: save_dark_on_light(glyph(digit), folder / f"{digit}.png") for digit in FONT_DIGITS}


def test_the_shipped_model_is_a_checked_cnn_export():
    model_dir = shipped_model_dir()
    assert sorted(path.name for path in model_dir.iterdir()) == sorted(EXPORTED_MODEL_FILES)
    metrics, record = read_json(model_dir / METRICS_FILE), read_json(model_dir / "config.json")
    assert record["recipe_name"] == "cnn" and record["recipe"]["model"] == "cnn"
    assert metrics["test_accuracy"] >= ship.MIN_TEST_ACCURACY
    assert metrics["handwriting_accuracy"] >= ship.MIN_HANDWRITING_ACCURACY
    assert load_predictor(model_dir).name == "onnxruntime"
    with pytest.raises(Exception, match="exported model"):
        load_predictor(model_dir, engine="keras")


def test_predict_and_read_without_a_run_answer_with_the_shipped_model(digit_files, tmp_path, capsys):
    assert main(["predict", *map(str, digit_files.values())]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [record["digit"] for record in records] == list(digit_files)
    assert all(record["is_digit"] for record in records)
    number = tmp_path / "year.png"
    Image.fromarray(np.uint8(write_text(["2026"]) * 255)).save(number)
    assert main(["read", str(number)]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "2026"


def test_a_run_given_explicitly_wins_over_the_shipped_model(tiny_run, digit_files, capsys):
    image = digit_files[FONT_DIGITS[0]]
    assert main(["predict", str(tiny_run), str(image)]) == 0
    given = json.loads(capsys.readouterr().out)
    from mnist_keras.inference.images import preprocess_image_file

    expected = predict_images(load_predictor(tiny_run), [preprocess_image_file(image)])[0]
    assert given["probabilities"] == expected["probabilities"]
    shipped = predict_images(load_predictor(SHIPPED_DIR), [preprocess_image_file(image)])[0]
    assert given["probabilities"] != shipped["probabilities"]


def test_a_directory_without_images_is_one_line_and_exit_2(tiny_run, capsys):
    assert main(["predict", str(tiny_run)]) == 2
    assert "give image files after the run" in capsys.readouterr().err


def test_the_lean_cli_predicts_reads_and_names_the_extra_it_lacks(tiny_run, digit_files, tmp_path):
    images = [str(digit_files[digit]) for digit in (2, 4)]
    shipped = run_lean("predict", *images)
    assert shipped.returncode == 0, shipped.stderr
    assert [json.loads(line)["digit"] for line in shipped.stdout.splitlines()] == [2, 4]
    assert "LOADED []" in shipped.stderr
    given = run_lean("read", str(tiny_run), images[0])
    assert given.returncode == 0, given.stderr
    assert "LOADED []" in given.stderr and "text" in json.loads(given.stdout)
    for argv in (["train", "--out", str(tmp_path / "run")], ["report", str(tiny_run)],
                 ["export", str(tiny_run), "--format", "onnx"]):
        lacking = run_lean(*argv)
        assert lacking.returncode == 2, argv
        assert lacking.stderr.splitlines()[0] == (f"mnist-keras {argv[0]}: error: this command needs the training "
                                                  "extra (Keras, TensorFlow, JAX), which this install lacks: "
                                                  "pip install 'mnist-keras[train]'")
    assert not (tmp_path / "run").exists()


def test_the_lean_cli_writes_the_web_page_of_an_onnx_model(tiny_run, tmp_path):
    from test_web_export import fake_ort_files

    from mnist_keras.inference.web_export import OrtWebPin

    ort_dir = fake_ort_files(tmp_path / "dist", OrtWebPin.from_lock().version)
    for name, model_dir in (("shipped", SHIPPED_DIR), ("run", tiny_run)):
        out = tmp_path / name
        result = run_lean("export", str(model_dir), "--format", "web", "--out", str(out), "--ort-dir", str(ort_dir))
        assert result.returncode == 0, result.stderr
        assert "LOADED []" in result.stderr
        assert (out / ONNX_FILE).read_bytes() == (model_dir / ONNX_FILE).read_bytes()
        assert (out / "ort" / "ort.wasm.min.mjs").read_bytes() == (ort_dir / "ort.wasm.min.mjs").read_bytes()
    # A run whose model.onnx is older than its model.keras needs Keras to export it again.
    stale = tmp_path / "stale"
    shutil.copytree(tiny_run, stale)
    (stale / ONNX_FILE).touch()
    (stale / "model.keras").touch()
    os.utime(stale / ONNX_FILE, (1, 1))
    lacking = run_lean("export", str(stale), "--format", "web", "--out", str(tmp_path / "page"), "--ort-dir",
                       str(ort_dir))
    assert lacking.returncode == 2 and "pip install 'mnist-keras[train]'" in lacking.stderr.splitlines()[0]
    assert not (tmp_path / "page").exists()


def test_the_lean_cli_refuses_a_run_it_cannot_answer_without_keras(tiny_run, tmp_path, digit_files):
    keras_only = tmp_path / "keras_only"
    shutil.copytree(tiny_run, keras_only)
    (keras_only / ONNX_FILE).unlink()
    result = run_lean("predict", str(keras_only), str(digit_files[2]))
    assert result.returncode == 2
    assert "needs Keras: pip install 'mnist-keras[train]'" in result.stderr.splitlines()[0]


def test_evaluate_scores_an_exported_model_with_onnx_runtime(tiny_run, tiny_mnist, tmp_path):
    exported = tmp_path / "exported"
    exported.mkdir()
    for name in EXPORTED_MODEL_FILES:
        shutil.copyfile(tiny_run / name, exported / name)
    metrics = evaluate_run(exported, tiny_mnist)
    from_keras = read_json(tiny_run / METRICS_FILE)
    assert metrics["test_accuracy"] == pytest.approx(from_keras["test_accuracy"], abs=1 / len(tiny_mnist.y_test))
    assert metrics["test_loss"] == pytest.approx(from_keras["test_loss"], abs=1e-3)
    assert metrics["total_params"] == from_keras["total_params"]  # kept: an ONNX file has no Keras counts
    assert read_json(exported / METRICS_FILE) == metrics


def test_cross_entropy_is_kerass():
    import keras

    rng = np.random.default_rng(0)
    probabilities = rng.random((50, 10)).astype(np.float32)
    probabilities[0] = [1] + [0] * 9  # clipped, as Keras clips
    labels = rng.integers(0, 10, 50)
    labels[0] = 3
    expected = keras.losses.CategoricalCrossentropy()(np.eye(10)[labels], probabilities)
    assert cross_entropy(labels, probabilities) == pytest.approx(float(keras.ops.convert_to_numpy(expected)), rel=1e-5)


def test_ship_replaces_the_shipped_model_only_when_the_run_passes(tiny_run, tiny_mnist, tmp_path):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "marker").write_text("the model shipped before")
    with pytest.raises(ship.ShipError, match="the shipped model is unchanged"):
        ship.ship_run(tiny_run, tiny_mnist, shipped_dir=shipped, min_test_accuracy=1.01)
    assert [path.name for path in shipped.iterdir()] == ["marker"]
    measured = ship.ship_run(tiny_run, tiny_mnist, shipped_dir=shipped, min_test_accuracy=0,
                             min_handwriting_accuracy=0)
    assert sorted(path.name for path in shipped.iterdir()) == sorted(EXPORTED_MODEL_FILES)
    assert (shipped / ONNX_FILE).read_bytes() == (tiny_run / ONNX_FILE).read_bytes()
    assert measured["test_accuracy"] == pytest.approx(read_json(tiny_run / METRICS_FILE)["test_accuracy"], abs=1e-3)
    assert [path.name for path in tmp_path.iterdir()] == ["shipped"]  # no staging left behind
