"""Training survives SIGKILL and Ctrl-C, and stops cleanly when it diverges."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest
from conftest import TINY_RECIPE, synthetic_mnist
from fakes import CallingCheckpointer, calling

import mnist_keras.data.mnist
import mnist_keras.training.loop
from mnist_keras import rundir
from mnist_keras.cli import main
from mnist_keras.errors import RunDirectoryError, TrainingDiverged, TrainingInterrupted
from mnist_keras.evaluation.metrics import read_history
from mnist_keras.training.checkpoint import checkpoint_dir, read_latest, run_checkpoint_dir
from mnist_keras.training.run import train_run

# Patience high enough that early stopping does not end the run before the test is done with it.
RECIPE = dataclasses.replace(TINY_RECIPE, epochs=8, early_stopping_patience=100)
TESTS_DIR = Path(__file__).parent


def assert_complete_run(run_dir: Path, epochs: int) -> None:
    for name in (*rundir.REQUIRED_FILES, rundir.REPORT_FILE):
        assert (run_dir / name).is_file(), name
    assert not checkpoint_dir(run_dir).exists()
    assert not rundir.staging_path(run_dir).exists()
    assert [row["epoch"] for row in read_history(run_dir)] == list(range(1, epochs + 1))
    metrics = json.loads((run_dir / rundir.METRICS_FILE).read_text())
    assert metrics["epochs_trained"] == epochs
    keras.saving.load_model(run_dir / rundir.MODEL_FILE)


CHILD_TRAINING = """
import dataclasses, json, sys, time
sys.path.insert(0, {tests!r})
from mnist_keras.backends import select_backend
select_backend({backend!r})
from fakes import TINY_RECIPE, calling, synthetic_mnist
from mnist_keras.training.run import train_run
recipe = dataclasses.replace(TINY_RECIPE, epochs={epochs}, early_stopping_patience=100, **{augmentation!r})
seen = []
def on_epoch(state):
    seen.append(state.epoch)
    time.sleep({pause})  # slow enough to be killed mid-run
metrics = train_run(recipe, synthetic_mnist(), {run_dir!r}, verbose=0, export_onnx=False,
                    checkpointer=calling(on_epoch, {run_dir!r}, recipe))
print(json.dumps({{"epochs_seen": seen, "test_loss": metrics["test_loss"]}}))
"""


# The child trains on augmented digits, so a resumed run must also restore the augmenter's random state.
CHILD_AUGMENTATION = {"shift": 0.1, "rotation": 10.0, "zoom": 0.1, "shear": 10.0, "stroke": 0.2}


def run_child(backend: str, run_dir: Path, epochs: int = RECIPE.epochs, pause: float = 0.0, wait: bool = True):
    """Train RECIPE (with `epochs`, augmented) in a child process on `backend`: its JSON, or the running process."""
    code = CHILD_TRAINING.format(tests=str(TESTS_DIR), backend=backend, epochs=epochs, pause=pause,
                                 run_dir=str(run_dir), augmentation=CHILD_AUGMENTATION)
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "KERAS_BACKEND": backend},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return child
    out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def latest_record(run_dir: Path) -> dict | None:
    return read_latest(run_checkpoint_dir(run_dir))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_sigkill_then_resume_computes_exactly_what_an_uninterrupted_run_does(tmp_path, backend):
    """Optimizer moments, learning rate, dropout and augmentation RNG and batch order all come back as they were."""
    whole = run_child(backend, tmp_path / "whole")
    run_dir = tmp_path / "run"
    child = run_child(backend, run_dir, pause=0.4, wait=False)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:
        record = latest_record(run_dir)
        if record and record["epoch"] >= 2:
            break
        time.sleep(0.05)
    assert child.poll() is None, f"training ended before it could be killed: {child.stderr.read()[-2000:]}"
    time.sleep(0.2)  # land somewhere inside the next epoch, not just after a checkpoint
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not run_dir.exists(), "a killed run must not appear under its final name"
    killed_at = latest_record(run_dir)
    assert killed_at is not None and 2 <= killed_at["epoch"] < RECIPE.epochs

    resumed = run_child(backend, run_dir)
    completed = killed_at["epoch"]
    assert resumed["epochs_seen"] == list(range(completed + 1, RECIPE.epochs + 1))
    assert_complete_run(run_dir, RECIPE.epochs)
    assert [row["loss"] for row in read_history(run_dir)] == [row["loss"] for row in read_history(tmp_path / "whole")]
    assert resumed["test_loss"] == whole["test_loss"]


def interrupt_after(stop_epoch: int):
    """An after-checkpoint hook that presses Ctrl-C once `stop_epoch` is checkpointed."""

    def hook(state):
        if state.epoch == stop_epoch:
            raise KeyboardInterrupt

    return hook


def test_resuming_in_process_computes_exactly_what_an_uninterrupted_run_does(tmp_path):
    """The fast sibling of the SIGKILL test: stopped after epoch 3 (its checkpoint committed), then resumed."""
    recipe = dataclasses.replace(RECIPE, epochs=5, **CHILD_AUGMENTATION)
    whole = train_run(recipe, synthetic_mnist(), tmp_path / "whole", verbose=0, export_onnx=False)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train_run(recipe, synthetic_mnist(), run_dir, verbose=0, export_onnx=False,
                  checkpointer=calling(interrupt_after(3), run_dir, recipe))
    seen = []
    resumed = train_run(recipe, synthetic_mnist(), run_dir, verbose=0, export_onnx=False,
                        checkpointer=calling(lambda state: seen.append(state.epoch), run_dir, recipe))
    assert seen == [4, 5]
    assert [row["loss"] for row in read_history(run_dir)] == [row["loss"] for row in read_history(tmp_path / "whole")]
    assert resumed["test_loss"] == whole["test_loss"]


def test_ctrl_c_stops_cleanly_and_resume_flag_finishes(tmp_path, monkeypatch, capsys):
    tiny = synthetic_mnist()
    monkeypatch.setattr(mnist_keras.data.mnist, "load_mnist", lambda data=None: tiny)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as caught:
        train_run(RECIPE, tiny, run_dir, verbose=0, export_onnx=False,
                  checkpointer=calling(interrupt_after(3), run_dir, RECIPE))
    assert str(caught.value) == (
        f"training interrupted after epoch 3; resume with: mnist-keras train --resume {run_dir}"
    )
    assert not run_dir.exists()
    assert main(["train", "--resume", str(run_dir), "--no-onnx"]) == 0
    assert_complete_run(run_dir, RECIPE.epochs)
    assert json.loads((run_dir / rundir.CONFIG_FILE).read_text())["recipe"] == RECIPE.to_dict()


def test_ctrl_c_from_the_command_line_exits_130_with_one_line(tmp_path, monkeypatch, capsys):
    import mnist_keras.training.run

    tiny = synthetic_mnist()
    monkeypatch.setattr(mnist_keras.data.mnist, "load_mnist", lambda data=None: tiny)
    real_train = mnist_keras.training.run.train

    def train_then_interrupt(config, mnist, checkpointer=None, verbose=None):
        interrupting = CallingCheckpointer(checkpointer.directory, config, interrupt_after(2))
        return real_train(config, mnist, interrupting, verbose)

    monkeypatch.setattr(mnist_keras.training.run, "train", train_then_interrupt)
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(json.dumps(RECIPE.to_dict()))
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(recipe_file), "--out", str(run_dir)]) == 130
    message = capsys.readouterr().err.strip()
    assert message == f"mnist-keras train: training interrupted after epoch 2; resume with: mnist-keras train --resume {run_dir}"


def test_resume_refuses_what_it_cannot_do(tmp_path, tiny_run, capsys):
    assert main(["train", "--resume", str(tmp_path / "never-ran")]) == 2
    assert "has no interrupted training to resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(tiny_run)]) == 2
    assert "is already complete" in capsys.readouterr().err
    assert main(["train", "--resume", str(tiny_run), "--epochs", "3"]) == 2
    assert "drop --epochs" in capsys.readouterr().err


def test_a_different_recipe_starts_over(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match="interrupted after epoch 2"):
        train_run(RECIPE, synthetic_mnist(), run_dir, verbose=0, export_onnx=False,
                  checkpointer=calling(interrupt_after(2), run_dir, RECIPE))
    seen = []
    other = dataclasses.replace(RECIPE, epochs=3, seed=5)
    train_run(other, synthetic_mnist(), run_dir, verbose=0, export_onnx=False,
              checkpointer=calling(lambda state: seen.append(state.epoch), run_dir, other))
    assert seen == [1, 2, 3]
    assert_complete_run(run_dir, 3)


def test_failure_after_training_keeps_the_model_and_a_rerun_finishes(tmp_path, monkeypatch):
    import mnist_keras.training.run

    run_dir = tmp_path / "run"
    recipe = dataclasses.replace(RECIPE, epochs=2)

    def broken_report(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mnist_keras.training.run.run_report, "build_report", broken_report)
    with pytest.raises(RunDirectoryError, match="training finished, but writing the run failed: disk full"):
        train_run(recipe, synthetic_mnist(), run_dir, verbose=0, export_onnx=False)
    assert not run_dir.exists()
    assert latest_record(run_dir)["finished"]
    monkeypatch.undo()
    seen = []
    train_run(recipe, synthetic_mnist(), run_dir, verbose=0, export_onnx=False,
              checkpointer=calling(lambda state: seen.append(state.epoch), run_dir, recipe))
    assert seen == [], "a finished training is not repeated"
    assert_complete_run(run_dir, 2)


@pytest.mark.parametrize("learning_rate, shown", [(10.0, "loss 1"), (1e30, "loss nan")])
def test_divergence_stops_with_a_clear_error(tmp_path, learning_rate, shown):
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=f"training diverged at epoch 1 \\({shown}") as caught:
        train_run(dataclasses.replace(RECIPE, learning_rate=learning_rate), synthetic_mnist(), run_dir, verbose=0)
    assert "lower --learning-rate" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_divergence_after_good_epochs_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_check = mnist_keras.training.loop.check_divergence

    def nan_at_epoch_3(row):
        real_check({**row, "loss": float("nan")} if row["epoch"] == 3 else row)

    monkeypatch.setattr(mnist_keras.training.loop, "check_divergence", nan_at_epoch_3)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="the last good checkpoint \\(epoch 2\\) is kept"):
        train_run(RECIPE, synthetic_mnist(), run_dir, verbose=0)
    assert not run_dir.exists()
    assert latest_record(run_dir)["epoch"] == 2


def test_diverging_cli_run_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mnist_keras.data.mnist, "load_mnist", lambda data=None: synthetic_mnist())
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(json.dumps(RECIPE.to_dict()))
    assert main(["train", "--config", str(recipe_file), "--learning-rate", "10", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "training diverged" in err
