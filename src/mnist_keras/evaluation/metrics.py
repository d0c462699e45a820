"""Test-set metrics (scikit-learn) and the readable summary `mnist-keras evaluate` prints.

Everything here works from a predictor (mnist_keras.inference.predictors) or a
Keras model, so the lean install (ONNX Runtime, no Keras) evaluates an exported
model with the same code that scores a run at the end of training.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from mnist_keras.backends import keras_installed
from mnist_keras.constants import NUM_CLASSES
from mnist_keras.data.mnist import Mnist, preprocess_images
from mnist_keras.errors import RunDirectoryError
from mnist_keras.inference.decision import NOT_DIGIT_THRESHOLD, digit_probabilities, is_digit
from mnist_keras.inference.predictors import KerasPredictor, Predictor, load_predictor
from mnist_keras.rundir import (
    HISTORY_FILE,
    METRICS_FILE,
    check_model_dir,
    is_exported_model,
    read_json,
    write_json_atomic,
)

DIGITS = list(range(NUM_CLASSES))
# Keras's categorical cross-entropy clips probabilities to [EPSILON, 1 - EPSILON] (keras.config.epsilon()).
EPSILON = 1e-7


def as_predictor(model: Any) -> Predictor:
    """A predictor as it is; a Keras model wrapped in one."""
    return KerasPredictor(model=model) if hasattr(model, "predict_on_batch") else model


# Bins of the expected calibration error (top digit probability against accuracy).
CALIBRATION_BINS = 10  # as the report's reliability figure (reporting.plots.CALIBRATION_BINS)


def predict_outputs(model: Any, images: np.ndarray) -> np.ndarray:
    """The model's outputs (N×10, or N×11 with "not a digit") for uint8 images, from a Keras model or a predictor."""
    return np.asarray(as_predictor(model).predict(preprocess_images(images)))


def predict_probabilities(model: Any, images: np.ndarray) -> np.ndarray:
    """The ten digits' probabilities (N×10) for uint8 images (N×28×28 or N×784), from a Keras model or a predictor."""
    return digit_probabilities(predict_outputs(model, images))


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """The bin-weighted gap between the top digit probability and how often that digit is right.

    The bins are the report's (`reporting.plots.calibration`: equal widths, (low, high]); this one needs
    no matplotlib, so the lean install's `evaluate` computes it too.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    which = np.clip(np.searchsorted(np.linspace(0, 1, bins + 1), confidence, side="left") - 1, 0, bins - 1)
    return float(sum((which == index).mean() * abs(correct[which == index].mean() - confidence[which == index].mean())
                     for index in range(bins) if (which == index).any()))


def refusal_metrics(labels: np.ndarray, images: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
    """What `decision.is_digit` does to the test digits: how many it refuses, and accuracy counting them wrong.

    `test_accuracy` is the digit choice alone (the argmax over the ten digits);
    `test_accuracy_with_refusals` is what a user of `predict` sees, a refused
    digit counted as an error.
    """
    inputs = preprocess_images(images).reshape(len(images), -1)
    kept = np.array([is_digit(image, row) for image, row in zip(inputs, outputs)], dtype=bool)
    correct = digit_probabilities(outputs).argmax(axis=1) == np.asarray(labels)
    return {
        "not_digit_threshold": NOT_DIGIT_THRESHOLD,
        "test_refused": int((~kept).sum()),
        "test_accuracy_with_refusals": float((kept & correct).mean()),
        "test_calibration_error": expected_calibration_error(labels, digit_probabilities(outputs)),
    }


def handwriting_accuracy(model: Any) -> float:
    """Accuracy on real handwriting that is not MNIST (optdigits as image files; mnist_keras.evaluation.handwriting)."""
    from mnist_keras.evaluation import handwriting

    return handwriting.handwriting_accuracy(as_predictor(model).predict)


def cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Keras's categorical cross-entropy (probabilities rescaled to sum 1, then clipped), averaged over examples."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    chosen = np.clip(probabilities, EPSILON, 1 - EPSILON)[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]
    return float(-np.log(chosen).mean())


def compute_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """test_loss, test_accuracy, misclassified, per_class and confusion_matrix (rows true, columns predicted)."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=DIGITS, zero_division=0
    )
    matrix = confusion_matrix(labels, predicted, labels=DIGITS)
    row_totals = matrix.sum(axis=1)
    per_class_accuracy = np.divide(np.diag(matrix), row_totals, out=np.zeros(NUM_CLASSES), where=row_totals > 0)
    return {
        "test_loss": cross_entropy(labels, probabilities),
        "test_accuracy": float(accuracy_score(labels, predicted)),
        "misclassified": int((predicted != labels).sum()),
        "per_class": [
            {
                "digit": digit,
                "precision": float(precision[digit]),
                "recall": float(recall[digit]),
                "f1": float(f1[digit]),
                "support": int(support[digit]),
                "accuracy": float(per_class_accuracy[digit]),
            }
            for digit in DIGITS
        ],
        "confusion_matrix": matrix.tolist(),
    }


def model_metrics(model: Any, labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """compute_metrics for already-predicted probabilities, plus a Keras model's parameter counts."""
    from mnist_keras.model import count_parameters

    metrics = compute_metrics(labels, probabilities)
    metrics["total_params"], metrics["trainable_params"] = count_parameters(model)
    return metrics


def training_summary(history_rows: list[dict[str, float]], train_seconds: float) -> dict[str, Any]:
    """The training fields of metrics.json, from the per-epoch history."""
    val_accuracies = [row["val_accuracy"] for row in history_rows if "val_accuracy" in row]
    val_losses = [(row["val_loss"], row["epoch"]) for row in history_rows if "val_loss" in row]
    return {
        "epochs_trained": len(history_rows),
        "best_val_accuracy": max(val_accuracies) if val_accuracies else None,
        "best_val_loss": min(val_losses)[0] if val_losses else None,
        "train_seconds": float(train_seconds),
    }


def read_history(run_dir: Path) -> list[dict[str, float]]:
    """history.csv as a list of rows of floats (epoch as int); a malformed file is a RunDirectoryError."""
    path = Path(run_dir) / HISTORY_FILE
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [
                {key: (int(value) if key == "epoch" else float(value)) for key, value in row.items() if value != ""}
                for row in csv.DictReader(handle)
            ]
    except FileNotFoundError:
        raise RunDirectoryError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError, TypeError, csv.Error) as error:
        raise RunDirectoryError(f"{path} is not a training history ({error})") from None
    if any("epoch" not in row for row in rows):
        raise RunDirectoryError(f"{path} is not a training history (no epoch column)")
    return rows


def evaluation_predictor(run_dir: str | Path) -> Predictor:
    """What `evaluate` scores: the run's Keras model where Keras is installed (what training scored),
    else ONNX Runtime on its model.onnx (the lean install, or an exported model)."""
    exported = is_exported_model(check_model_dir(Path(run_dir)))
    return load_predictor(run_dir, engine="keras" if keras_installed() and not exported else "onnxruntime")


def evaluate_run(run_dir: str | Path, mnist: Mnist, model: Any = None) -> dict[str, Any]:
    """Re-evaluate a run's model on the test set and rewrite its metrics.json.

    `model` (a Keras model or a predictor) if given, else `evaluation_predictor(run_dir)`.
    Parameter counts come from a Keras model; an exported model keeps the ones training wrote.
    """
    run_dir = check_model_dir(Path(run_dir))
    previous = read_json(run_dir / METRICS_FILE)
    if not isinstance(previous, dict):
        raise RunDirectoryError(f"{run_dir / METRICS_FILE} is not a metrics record")
    exported = is_exported_model(run_dir)
    predictor = as_predictor(model if model is not None else evaluation_predictor(run_dir))
    outputs = predict_outputs(predictor, mnist.x_test)
    probabilities = digit_probabilities(outputs)
    keras_model = getattr(predictor, "model", None)
    # Fields this command does not compute are kept.
    metrics = {**previous, **(model_metrics(keras_model, mnist.y_test, probabilities) if keras_model is not None
                              else compute_metrics(mnist.y_test, probabilities))}
    metrics.update(refusal_metrics(mnist.y_test, mnist.x_test, outputs))
    if not exported:
        metrics.update(training_summary(read_history(run_dir), previous.get("train_seconds", 0.0)))
    metrics["handwriting_accuracy"] = handwriting_accuracy(predictor)
    write_json_atomic(run_dir / METRICS_FILE, metrics)
    return metrics


def format_summary(metrics: dict[str, Any]) -> str:
    """A readable multi-line summary: headline numbers and the per-class table."""
    lines = [
        f"test accuracy   {metrics['test_accuracy']:.2%} (the digit choice)",
        *([(f"with refusals   {metrics['test_accuracy_with_refusals']:.2%} ({metrics['test_refused']} test digits "
            "refused as not a digit, counted wrong)")] if metrics.get("test_refused") is not None else []),
        f"test loss       {metrics['test_loss']:.4f}",
        *([f"handwriting     {metrics['handwriting_accuracy']:.2%} (optdigits as image files)"]
          if metrics.get("handwriting_accuracy") is not None else []),
        f"misclassified   {metrics['misclassified']} / {sum(row['support'] for row in metrics['per_class'])}",
        f"epochs trained  {metrics.get('epochs_trained')}",
        f"parameters      {metrics['total_params']:,} ({metrics['trainable_params']:,} trainable)",
        "",
        "digit  precision  recall     f1  support",
    ]
    for row in metrics["per_class"]:
        lines.append(
            f"{row['digit']:>5}  {row['precision']:>9.4f}  {row['recall']:>6.4f}  {row['f1']:>5.4f}  {row['support']:>7}"
        )
    return "\n".join(lines)
