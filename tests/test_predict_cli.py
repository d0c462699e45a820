"""`mnist-keras predict RUN IMAGE...`: JSON lines, top-k, partial failure; and real handwriting accuracy."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_keras.cli import main
from mnist_keras.constants import NUM_CLASSES

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
# Re-drawn digits for the accuracy check: a few hundred from across the test set.
REDRAWN_SAMPLE = 600
ACCURACY_FLOOR = 0.97
ACCURACY_GAP = 0.01


def write_digit(path, band: int, dark_on_light: bool = True) -> None:
    """A 200×200 image with a thick bar at row band `band`: what the tiny synthetic model learned to read."""
    paper, ink = (255, 0) if dark_on_light else (0, 255)
    image = Image.new("L", (200, 200), paper)
    ImageDraw.Draw(image).rectangle([40, 20 + 16 * band, 160, 32 + 16 * band], fill=ink)
    image.save(path)


def run_predict(capsys, *args: str) -> tuple[int, list[dict], str]:
    status = main(["predict", *map(str, args)])
    captured = capsys.readouterr()
    return status, [json.loads(line) for line in captured.out.splitlines()], captured.err


def test_one_json_line_per_image(tmp_path, tiny_run, capsys):
    paths = [tmp_path / "a.png", tmp_path / "b.jpg"]
    write_digit(paths[0], 2)
    write_digit(paths[1], 5, dark_on_light=False)
    status, records, error_output = run_predict(capsys, tiny_run, *paths)
    assert status == EXIT_OK and error_output == ""
    assert [record["file"] for record in records] == [str(path) for path in paths]
    for record in records:
        assert set(record) == {"file", "digit", "confidence", "probabilities", "is_digit"}
        assert len(record["probabilities"]) == NUM_CLASSES
        assert sum(record["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        assert record["digit"] == int(np.argmax(record["probabilities"]))
        assert record["confidence"] == max(record["probabilities"])


def test_output_matches_the_predictor_on_the_preprocessed_image(tmp_path, tiny_run, capsys):
    from mnist_keras.inference.images import preprocess_image_file
    from mnist_keras.inference.predictors import load_predictor

    path = tmp_path / "digit.png"
    write_digit(path, 7)
    _, [record], _ = run_predict(capsys, tiny_run, path)
    expected = load_predictor(tiny_run).predict(preprocess_image_file(path).reshape(1, -1))[0]
    np.testing.assert_allclose(record["probabilities"], expected, atol=1e-5)


def test_top_k(tmp_path, tiny_run, capsys):
    path = tmp_path / "digit.png"
    write_digit(path, 3)
    status, [record], _ = run_predict(capsys, tiny_run, path, "--top-k", "3")
    assert status == EXIT_OK
    assert len(record["top_k"]) == 3
    probabilities = [entry["probability"] for entry in record["top_k"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert record["top_k"][0]["digit"] == record["digit"]
    assert probabilities == sorted(record["probabilities"], reverse=True)[:3]


def test_bad_file_is_reported_and_others_still_predicted(tmp_path, tiny_run, capsys):
    good_first, good_last = tmp_path / "first.png", tmp_path / "last.png"
    write_digit(good_first, 1)
    write_digit(good_last, 8)
    text = tmp_path / "notes.png"
    text.write_text("just text")
    blank = tmp_path / "blank.png"
    Image.new("L", (100, 100), 255).save(blank)
    truncated = tmp_path / "truncated.png"
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (100, 100), dtype=np.uint8)).save(buffer, "PNG")
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    missing = tmp_path / "missing.png"

    status, records, error_output = run_predict(capsys, tiny_run, good_first, text, blank, truncated, missing,
                                                good_last)
    assert status == EXIT_USAGE
    assert len(records) == 6
    assert "digit" in records[0] and "digit" in records[5]
    errors = {record["file"]: record["error"] for record in records if "error" in record}
    assert set(errors) == {str(text), str(blank), str(truncated), str(missing)}
    assert "not an image" in errors[str(text)]
    assert "no ink" in errors[str(blank)]
    assert "truncated" in errors[str(truncated)]
    assert "no such file" in errors[str(missing)]
    assert len(error_output.splitlines()) == 4


@pytest.mark.parametrize("flags", [["--top-k", "0"], ["--top-k", "many"]])
def test_bad_flags_exit_2(tmp_path, tiny_run, flags, capsys):
    path = tmp_path / "digit.png"
    write_digit(path, 3)
    with pytest.raises(SystemExit) as caught:
        main(["predict", str(tiny_run), str(path), *flags])
    assert caught.value.code == EXIT_USAGE


def test_missing_run_exits_2(tmp_path, capsys):
    path = tmp_path / "digit.png"
    write_digit(path, 3)
    assert main(["predict", str(tmp_path / "no-run"), str(path)]) == EXIT_USAGE
    assert capsys.readouterr().err.count("\n") == 1


def test_command_line_process(tmp_path, tiny_run):
    """The real entry point: a separate process, its stdout and its exit status."""
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    write_digit(good, 4)
    bad.write_bytes(b"GIF89a broken")
    result = subprocess.run(
        [sys.executable, "-m", "mnist_keras.cli", "predict", str(tiny_run), str(good), str(bad)],
        check=False, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": "src"},
    )
    assert result.returncode == EXIT_USAGE
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert "digit" in lines[0] and "error" in lines[1]


@pytest.mark.real_data
@pytest.mark.slow
def test_real_handwriting_is_read_as_well_as_mnist(tmp_path, well_trained_run, real_mnist, capsys):
    """MNIST test digits re-drawn as people supply them (dark on light, larger canvas, anywhere, noise;
    RGB, RGBA, grey, JPEG) are read within a point of the model's accuracy on the same digits, and >= 97%."""
    from mnist_keras.data.mnist import preprocess_images
    from mnist_keras.evaluation.redraw import write_redrawn
    from mnist_keras.inference.decision import digit_probabilities
    from mnist_keras.inference.predictors import load_predictor

    indices = np.random.default_rng(0).choice(len(real_mnist.y_test), size=REDRAWN_SAMPLE, replace=False)
    digits, labels = real_mnist.x_test[indices], real_mnist.y_test[indices]
    # The digit choice, as `predict`'s "digit" is (the ten digits' probabilities, the 11th class set aside).
    outputs = load_predictor(well_trained_run).predict(preprocess_images(digits))
    mnist_accuracy = float((digit_probabilities(outputs).argmax(axis=1) == labels).mean())
    paths = write_redrawn(digits, tmp_path / "redrawn", seed=0)
    status, records, _ = run_predict(capsys, well_trained_run, *paths)
    assert status == EXIT_OK
    predicted = np.array([record["digit"] for record in records])
    redrawn_accuracy = float((predicted == labels).mean())
    print(f"MNIST form {mnist_accuracy:.2%}, re-drawn {redrawn_accuracy:.2%} on {REDRAWN_SAMPLE} digits")
    assert redrawn_accuracy >= ACCURACY_FLOOR
    assert abs(redrawn_accuracy - mnist_accuracy) <= ACCURACY_GAP
