import csv
import dataclasses
import json

import numpy as np
import pytest
from conftest import TINY_RECIPE

from mnist_keras import rundir
from mnist_keras.evaluation.metrics import read_history
from mnist_keras.training.run import train_run
from mnist_keras.training.state import HISTORY_COLUMNS
from mnist_keras.training.train import split_validation

METRIC_FIELDS = {
    "test_loss", "test_accuracy", "misclassified", "epochs_trained", "best_val_accuracy",
    "total_params", "trainable_params", "train_seconds", "per_class", "confusion_matrix",
}


def test_run_directory_is_complete(tiny_run, tiny_mnist):
    for name in rundir.REQUIRED_FILES:
        assert (tiny_run / name).is_file(), name
    assert not rundir.staging_path(tiny_run).exists()

    metrics = json.loads((tiny_run / rundir.METRICS_FILE).read_text())
    assert METRIC_FIELDS <= set(metrics)
    assert [row["digit"] for row in metrics["per_class"]] == list(range(10))
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == len(tiny_mnist.y_test)
    assert metrics["misclassified"] == matrix.sum() - np.trace(matrix)
    assert metrics["epochs_trained"] == TINY_RECIPE.epochs

    with open(tiny_run / rundir.HISTORY_FILE) as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == HISTORY_COLUMNS
    assert len(rows) == TINY_RECIPE.epochs

    config = json.loads((tiny_run / rundir.CONFIG_FILE).read_text())
    assert config["recipe"] == TINY_RECIPE.to_dict()
    assert config["backend"] == "jax"
    assert "keras" in config["versions"] and len(config["data"]["md5"]) == 4


def test_validation_is_the_last_tenth():
    x = np.arange(100)
    (x_fit, _), (x_val, _) = split_validation(x, x, 0.1)
    assert x_fit.tolist() == list(range(90)) and x_val.tolist() == list(range(90, 100))


def test_same_seed_same_numbers(tmp_path, tiny_mnist):
    import dataclasses

    recipe = dataclasses.replace(TINY_RECIPE, epochs=2)
    first = train_run(recipe, tiny_mnist, tmp_path / "a", verbose=0, export_onnx=False)
    second = train_run(recipe, tiny_mnist, tmp_path / "b", verbose=0, export_onnx=False)
    assert first["test_loss"] == second["test_loss"]
    history_a, history_b = read_history(tmp_path / "a"), read_history(tmp_path / "b")
    assert [row["loss"] for row in history_a] == [row["loss"] for row in history_b]
    third = train_run(dataclasses.replace(recipe, seed=2), tiny_mnist, tmp_path / "c", verbose=0, export_onnx=False)
    assert third["test_loss"] != first["test_loss"]


def test_failed_run_leaves_nothing(tmp_path, tiny_mnist, monkeypatch):
    import mnist_keras.training.loop

    def explode(*args, **kwargs):
        raise RuntimeError("simulated crash before the first epoch ended")

    monkeypatch.setattr(mnist_keras.training.loop, "epoch_order", explode)
    run_dir = tmp_path / "crashed"
    with pytest.raises(RuntimeError):
        train_run(TINY_RECIPE, tiny_mnist, run_dir, verbose=0, export_onnx=False)
    assert not run_dir.exists()
    assert list(tmp_path.iterdir()) == []


def test_retraining_replaces_previous_run(tmp_path, tiny_mnist):
    run_dir = tmp_path / "run"
    train_run(TINY_RECIPE, tiny_mnist, run_dir, verbose=0, export_onnx=False)
    (run_dir / "stale.txt").write_text("from the previous run")
    train_run(TINY_RECIPE, tiny_mnist, run_dir, verbose=0, export_onnx=False)
    assert not (run_dir / "stale.txt").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]


def test_outlier_exposure_trains_non_digits_towards_the_uniform_digit_distribution(tiny_mnist):
    from mnist_keras.constants import NUM_CLASSES
    from mnist_keras.training.train import training_arrays

    recipe = dataclasses.replace(TINY_RECIPE, outlier_exposure=True, not_digit_fraction=0.2,
                                 not_digit_families=("capitals", "patterns"))
    (_, y_fit), _ = training_arrays(recipe, tiny_mnist)
    assert y_fit.shape == (270 + round(270 * 0.2 / 0.8), NUM_CLASSES)
    np.testing.assert_allclose(y_fit[270:], 1.0 / NUM_CLASSES)
    assert (y_fit[:270].max(axis=1) == 1).all(), "digits keep their one-hot labels"
    np.testing.assert_allclose(y_fit.sum(axis=1), 1.0)


def test_not_digit_class_adds_synthetic_negatives_to_both_parts(tiny_mnist):
    from mnist_keras.training.train import NOT_DIGIT_LABEL, training_arrays

    recipe = dataclasses.replace(TINY_RECIPE, not_digit_class=True, not_digit_fraction=0.2)
    (x_fit, y_fit), (x_val, y_val) = training_arrays(recipe, tiny_mnist)
    assert y_fit.shape[1] == y_val.shape[1] == NOT_DIGIT_LABEL + 1
    for labels, digits in ((y_fit, 270), (y_val, 30)):
        negatives = int(labels[:, NOT_DIGIT_LABEL].sum())
        assert negatives == round(digits * 0.2 / 0.8)
        assert labels[:digits, NOT_DIGIT_LABEL].sum() == 0, "digits keep their labels"
    assert not np.array_equal(x_fit[-1], x_val[-1]), "training and validation draw different non-digits"
    plain, _ = training_arrays(TINY_RECIPE, tiny_mnist)
    np.testing.assert_array_equal(plain[0], x_fit[:270])
