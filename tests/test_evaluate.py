"""Test-set metrics, the digits' probabilities of an 11-output model, and the `evaluate` command."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from mnist_keras.cli import main
from mnist_keras.constants import NUM_CLASSES
from mnist_keras.evaluation.metrics import compute_metrics, training_summary
from mnist_keras.inference.decision import digit_probabilities


def test_metrics_agree_with_scikit_learn_and_the_confusion_matrix():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, NUM_CLASSES, 200)
    probabilities = rng.dirichlet(np.ones(NUM_CLASSES), 200).astype(np.float32)
    metrics = compute_metrics(labels, probabilities)
    predicted = probabilities.argmax(axis=1)
    assert metrics["test_accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.sum() == 200 and np.trace(matrix) == (predicted == labels).sum()
    assert metrics["misclassified"] == 200 - np.trace(matrix)
    assert [row["support"] for row in metrics["per_class"]] == np.bincount(labels, minlength=NUM_CLASSES).tolist()


def test_digit_probabilities_renormalise_without_the_not_a_digit_column():
    outputs = np.array([[0.1] * NUM_CLASSES + [0.0], [0.05] * NUM_CLASSES + [0.5]], dtype=np.float32)
    digits = digit_probabilities(outputs)
    assert digits.shape == (2, NUM_CLASSES)
    np.testing.assert_allclose(digits.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(digits[1], 0.1, rtol=1e-6)
    ten = np.full((1, NUM_CLASSES), 0.1, dtype=np.float32)
    np.testing.assert_array_equal(digit_probabilities(ten), ten)


def test_training_summary_from_history():
    history = [{"epoch": 1, "val_loss": 0.3, "val_accuracy": 0.9}, {"epoch": 2, "val_loss": 0.2, "val_accuracy": 0.95},
               {"epoch": 3, "val_loss": 0.25, "val_accuracy": 0.96}]
    summary = training_summary(history, 12.5)
    assert summary == {"epochs_trained": 3, "best_val_accuracy": 0.96, "best_val_loss": 0.2, "train_seconds": 12.5}
    assert training_summary([{"epoch": 1, "loss": 0.5}], 1.0)["best_val_loss"] is None


def test_evaluate_prints_summary_and_rewrites_metrics(tiny_run, tiny_mnist, tmp_path, monkeypatch, capsys):
    import mnist_keras.data.mnist

    monkeypatch.setattr(mnist_keras.data.mnist, "load_mnist", lambda data=None: tiny_mnist)
    run_dir = shutil.copytree(tiny_run, tmp_path / "run")  # the shared run stays as it is
    metrics_path = run_dir / "metrics.json"
    before = json.loads(metrics_path.read_text())
    metrics_path.write_text(json.dumps({**before, "test_accuracy": -1.0, "handwriting_accuracy": -1.0,
                                        "operator_note": "kept"}))
    assert main(["evaluate", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "precision" in out
    after = json.loads(metrics_path.read_text())
    assert after["test_accuracy"] == pytest.approx(before["test_accuracy"])
    assert after["epochs_trained"] == before["epochs_trained"]
    assert after["operator_note"] == "kept", "fields evaluate does not compute are kept"
    # Real handwriting (optdigits files) is measured again, and agrees with what training wrote.
    assert after["handwriting_accuracy"] == pytest.approx(before["handwriting_accuracy"])
    assert "handwriting" in out
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_accuracy"] == pytest.approx(before["test_accuracy"])


def test_calibration_error_is_the_reports():
    from mnist_keras.evaluation.metrics import expected_calibration_error
    from mnist_keras.reporting.plots import calibration

    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.full(NUM_CLASSES, 0.3), 500)
    labels = rng.integers(0, NUM_CLASSES, 500)
    assert expected_calibration_error(labels, probabilities) == pytest.approx(
        calibration(labels, probabilities).expected_calibration_error)
    sure_and_right = np.eye(NUM_CLASSES)[labels]
    assert expected_calibration_error(labels, sure_and_right) == 0.0


def test_refusal_metrics_count_refused_test_digits_as_errors():
    from mnist_keras.constants import IMAGE_SIDE
    from mnist_keras.evaluation.metrics import refusal_metrics

    images = np.zeros((4, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    images[:, 4:24, 13:16] = 255
    labels = np.array([1, 1, 1, 2])
    outputs = np.eye(NUM_CLASSES + 1)[[1, NUM_CLASSES, 1, 1]]  # the second refused, the last wrong
    figures = refusal_metrics(labels, images, outputs)
    assert figures["test_refused"] == 1
    assert figures["test_accuracy_with_refusals"] == pytest.approx(0.5)
