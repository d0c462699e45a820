"""Training survives SIGKILL and Ctrl-C, and stops cleanly when it diverges."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import pytest

import mnist_keras.data
import mnist_keras.train
from conftest import TINY_RECIPE, synthetic_mnist
from mnist_keras import rundir
from mnist_keras.checkpoint import LATEST_FILE, checkpoint_dir, read_latest
from mnist_keras.cli import main
from mnist_keras.errors import TrainingDiverged
from mnist_keras.evaluate import read_history
from mnist_keras.train import train

# Patience high enough that early stopping does not end the run before the test is done with it.
RECIPE = dataclasses.replace(TINY_RECIPE, epochs=8, early_stopping_patience=100)
TESTS_DIR = Path(__file__).parent


@pytest.fixture
def recorded_fits(monkeypatch):
    """Record the epoch each fit starts from, and the optimizer's step count at that moment."""
    calls = []
    real_fit_model = mnist_keras.train.fit_model

    def recording(model, config, train_data, validation_data, callbacks, verbose, initial_epoch=0):
        calls.append({"initial_epoch": initial_epoch, "iterations": int(model.optimizer.iterations.numpy())})
        return real_fit_model(model, config, train_data, validation_data, callbacks, verbose, initial_epoch)

    monkeypatch.setattr(mnist_keras.train, "fit_model", recording)
    return calls


def assert_complete_run(run_dir: Path, epochs: int) -> None:
    for name in (*rundir.REQUIRED_FILES, rundir.REPORT_FILE):
        assert (run_dir / name).is_file(), name
    assert not checkpoint_dir(run_dir).exists()
    assert not rundir.staging_path(run_dir).exists()
    assert [row["epoch"] for row in read_history(run_dir)] == list(range(1, epochs + 1))
    metrics = json.loads((run_dir / rundir.METRICS_FILE).read_text())
    assert metrics["epochs_trained"] == epochs
    keras.saving.load_model(run_dir / rundir.MODEL_FILE)


def start_slow_training(run_dir: Path) -> subprocess.Popen:
    """Train RECIPE in a child process, slowed to about 0.3 s per epoch so it can be killed mid-run."""
    code = f"""
        import dataclasses, sys, time
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from conftest import TINY_RECIPE, synthetic_mnist
        import mnist_keras.train as training
        recipe = dataclasses.replace(TINY_RECIPE, epochs={RECIPE.epochs}, early_stopping_patience={RECIPE.early_stopping_patience})
        end_of_epoch = training.EpochRecorder.on_epoch_end
        def slowly(self, epoch, logs=None):
            end_of_epoch(self, epoch, logs)
            time.sleep(0.3)
        training.EpochRecorder.on_epoch_end = slowly
        training.train(recipe, synthetic_mnist(), {str(run_dir)!r}, verbose=0)
    """
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, "KERAS_BACKEND": "jax"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_then_resume_finishes_without_redoing_epochs(tmp_path, recorded_fits):
    run_dir = tmp_path / "run"
    latest = checkpoint_dir(rundir.staging_path(run_dir)) / LATEST_FILE
    child = start_slow_training(run_dir)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        record = read_latest(rundir.staging_path(run_dir))
        if record and record["epoch"] >= 2:
            break
        time.sleep(0.05)
    assert child.poll() is None, f"training ended before it could be killed: {child.stderr.read().decode()[-2000:]}"
    time.sleep(0.15)  # land somewhere inside the next epoch, not just after a checkpoint
    child.send_signal(signal.SIGKILL)
    child.wait()

    assert not run_dir.exists(), "a killed run must not appear under its final name"
    killed_at = read_latest(rundir.staging_path(run_dir))
    assert killed_at is not None and 2 <= killed_at["epoch"] < RECIPE.epochs, latest.read_text()
    history_before = killed_at["history"]

    train(RECIPE, synthetic_mnist(), run_dir, verbose=0)

    completed = killed_at["epoch"]
    steps_per_epoch = -(-int(len(synthetic_mnist().x_train) * (1 - RECIPE.validation_split)) // RECIPE.batch_size)
    assert recorded_fits == [{"initial_epoch": completed, "iterations": completed * steps_per_epoch}]
    assert_complete_run(run_dir, RECIPE.epochs)
    assert read_history(run_dir)[:completed] == [
        {key: (int(value) if key == "epoch" else value) for key, value in row.items()} for row in history_before
    ]


def interrupt_after_epoch(stop_epoch: int):
    """A fit_model stand-in that trains normally but presses Ctrl-C at the end of `stop_epoch`."""
    real_fit_model = mnist_keras.train.fit_model

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == stop_epoch:
                raise KeyboardInterrupt

    def fit_then_interrupt(model, config, train_data, validation_data, callbacks, verbose, initial_epoch=0):
        return real_fit_model(model, config, train_data, validation_data, [*callbacks, CtrlC()], verbose,
                              initial_epoch)

    return fit_then_interrupt


def test_ctrl_c_stops_cleanly_and_resume_flag_finishes(tmp_path, monkeypatch, capsys):
    tiny = synthetic_mnist()
    monkeypatch.setattr(mnist_keras.data, "load_mnist", lambda data=None: tiny)
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(json.dumps(RECIPE.to_dict()))
    run_dir = tmp_path / "run"

    monkeypatch.setattr(mnist_keras.train, "fit_model", interrupt_after_epoch(3))
    assert main(["train", "--config", str(recipe_file), "--out", str(run_dir)]) == 130
    message = capsys.readouterr().err.strip()
    assert message == f"mnist-keras train: training interrupted after epoch 3; resume with: mnist-keras train --resume {run_dir}"
    assert not run_dir.exists()

    monkeypatch.undo()
    monkeypatch.setattr(mnist_keras.data, "load_mnist", lambda data=None: tiny)
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert_complete_run(run_dir, RECIPE.epochs)
    assert json.loads((run_dir / rundir.CONFIG_FILE).read_text())["recipe"] == RECIPE.to_dict()


def test_resume_refuses_what_it_cannot_do(tmp_path, tiny_run, capsys):
    assert main(["train", "--resume", str(tmp_path / "never-ran")]) == 2
    assert "has no interrupted training to resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(tiny_run)]) == 2
    assert "is already complete" in capsys.readouterr().err
    assert main(["train", "--resume", str(tiny_run), "--epochs", "3"]) == 2
    assert "drop --epochs" in capsys.readouterr().err


def test_a_different_recipe_starts_over(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    real_fit_model = mnist_keras.train.fit_model
    monkeypatch.setattr(mnist_keras.train, "fit_model", interrupt_after_epoch(2))
    with pytest.raises(Exception, match="interrupted after epoch 2"):
        train(RECIPE, synthetic_mnist(), run_dir, verbose=0)
    starts = []

    def recording(model, config, train_data, validation_data, callbacks, verbose, initial_epoch=0):
        starts.append(initial_epoch)
        return real_fit_model(model, config, train_data, validation_data, callbacks, verbose, initial_epoch)

    monkeypatch.setattr(mnist_keras.train, "fit_model", recording)
    other = dataclasses.replace(RECIPE, epochs=3, seed=5)
    train(other, synthetic_mnist(), run_dir, verbose=0)
    assert starts == [0]
    assert_complete_run(run_dir, 3)


@pytest.mark.parametrize("learning_rate, shown", [(10.0, "loss 1"), (1e30, "loss nan")])
def test_divergence_stops_with_a_clear_error(tmp_path, learning_rate, shown):
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=f"training diverged at epoch 1 \\({shown}") as caught:
        train(dataclasses.replace(RECIPE, learning_rate=learning_rate), synthetic_mnist(), run_dir, verbose=0)
    assert "lower --learning-rate" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_divergence_after_good_epochs_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_fit_model = mnist_keras.train.fit_model

    class LossBecomesNan(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == 3:
                logs["loss"] = float("nan")

    def fit_with_nan(model, config, train_data, validation_data, callbacks, verbose, initial_epoch=0):
        return real_fit_model(model, config, train_data, validation_data, [LossBecomesNan(), *callbacks], verbose,
                              initial_epoch)

    monkeypatch.setattr(mnist_keras.train, "fit_model", fit_with_nan)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="the last good checkpoint \\(epoch 2\\) is kept"):
        train(RECIPE, synthetic_mnist(), run_dir, verbose=0)
    assert not run_dir.exists()
    assert read_latest(rundir.staging_path(run_dir))["epoch"] == 2


def test_diverging_cli_run_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mnist_keras.data, "load_mnist", lambda data=None: synthetic_mnist())
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(json.dumps(RECIPE.to_dict()))
    assert main(["train", "--config", str(recipe_file), "--learning-rate", "10", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "training diverged" in err


def test_resumed_run_computes_exactly_what_an_uninterrupted_one_does(tmp_path, monkeypatch):
    """Optimizer moments, learning rate, dropout RNG and batch order all come back as they were."""
    recipe = dataclasses.replace(RECIPE, epochs=4)
    uninterrupted = train(recipe, synthetic_mnist(), tmp_path / "whole", verbose=0)
    real_fit_model = mnist_keras.train.fit_model
    monkeypatch.setattr(mnist_keras.train, "fit_model", interrupt_after_epoch(2))
    with pytest.raises(Exception, match="interrupted after epoch 2"):
        train(recipe, synthetic_mnist(), tmp_path / "resumed", verbose=0)
    monkeypatch.setattr(mnist_keras.train, "fit_model", real_fit_model)
    resumed = train(recipe, synthetic_mnist(), tmp_path / "resumed", verbose=0)
    assert resumed["test_loss"] == uninterrupted["test_loss"]
    assert [row["loss"] for row in read_history(tmp_path / "resumed")] == [
        row["loss"] for row in read_history(tmp_path / "whole")
    ]
