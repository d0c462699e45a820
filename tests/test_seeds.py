"""Seed studies: parsing --seeds, the mean ± std summary and its files, and one small study on Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_keras import cli
from mnist_keras.config import Config
from mnist_keras.errors import UserError
from mnist_keras.sweeps.studies import markdown_table, parse_seeds, seed_space, summarise, write_summary
from mnist_keras.sweeps.tune import SweepResult

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize("text, seeds", [("1-5", (1, 2, 3, 4, 5)), ("1,2,7", (1, 2, 7)), ("1-3,9,2", (1, 2, 3, 9)),
                                         ("4", (4,))])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a-b", "5-1", "1-", ","])
def test_bad_seeds_are_user_errors(text):
    with pytest.raises(UserError):
        parse_seeds(text)


def test_bad_seeds_flag_exits_2(tmp_path, capsys):
    assert cli.main(["seeds", "seed", "--seeds", "3-1", "--out", str(tmp_path / "s")]) == 2
    assert "backwards" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def fake_result(out: Path) -> SweepResult:
    rows = [
        {"trial_id": f"t{seed}", "seed": seed, "status": "completed", "epochs_trained": 3,
         "best_val_loss": 0.1, "test_accuracy": accuracy, "train_seconds": seconds}
        for seed, accuracy, seconds in ((2, 0.98, 12.0), (1, 0.97, 10.0), (3, 0.99, 14.0))
    ] + [{"trial_id": "t4", "seed": 4, "status": "error", "epochs_trained": None, "best_val_loss": None,
          "test_accuracy": None, "train_seconds": None}]
    return SweepResult(rows, "t1", out)


def test_summary_is_mean_and_std_over_finished_seeds(tmp_path):
    summary = summarise(fake_result(tmp_path), Config(), "seed", "x86_64, 2 CPU cores, Linux", "jax")
    assert [run["seed"] for run in summary["runs"]] == [1, 2, 3]
    assert summary["mean_test_accuracy"] == pytest.approx(0.98)
    assert summary["std_test_accuracy"] == pytest.approx(0.01)
    assert summary["mean_train_seconds"] == pytest.approx(12.0)
    assert summary["std_train_seconds"] == pytest.approx(2.0)
    assert summary["failed_seeds"] == [4]
    table = write_summary(tmp_path, summary)
    assert json.loads((tmp_path / "seeds.json").read_text()) == summary
    assert (tmp_path / "seeds.md").read_text() == table == markdown_table(summary)
    assert "98.00% ± 1.00%" in table and "12.0 ± 2.0" in table and "x86_64, 2 CPU cores" in table


def test_no_finished_seed_is_a_user_error(tmp_path):
    result = fake_result(tmp_path)
    failed = SweepResult([{**row, "status": "error"} for row in result.rows], None, tmp_path)
    with pytest.raises(UserError):
        summarise(failed, Config(), "seed", "machine", "jax")


def test_seed_space_is_a_grid_over_seed():
    space = seed_space(Config(epochs=1), (1, 2))
    assert space.searched == ("seed",) and space.dimensions[0].kind == "grid"


@pytest.mark.slow
@pytest.mark.real_data
def test_seeds_command_writes_the_tables(tmp_path, real_mnist):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text("epochs = 1\nhidden_units = [32]\ndropout_rates = [0.1]\nbatch_norm = [false]\n")
    out = tmp_path / "seeds"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(SRC), os.environ.get("PYTHONPATH"))))}
    completed = subprocess.run(
        [sys.executable, "-m", "mnist_keras.cli", "seeds", "seed", "--config", str(recipe), "--seeds", "1-2",
         "--out", str(out), "--limit", "2000", "--no-onnx"],
        env=env, capture_output=True, text=True, timeout=400,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads((out / "seeds.json").read_text())
    assert [run["seed"] for run in summary["runs"]] == [1, 2]
    assert 0 < summary["mean_test_accuracy"] <= 1
    assert "mean ± std" in (out / "seeds.md").read_text() and "mean ± std" in completed.stdout
