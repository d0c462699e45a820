"""The same digits on any number of cores: the engines run the recipe's thread count, not the cores at hand.

TensorFlow's oneDNN kernels and XLA's Eigen split a sum by how many threads they
have, so a run that took the cores it found gave other digits pinned to one core
than on two. The recipe's `threads` (2 unless set) sizes both pools instead.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_keras.backends import cores_available, thread_environment, use_threads
from mnist_keras.config import Config
from mnist_keras.errors import ConfigError
from mnist_keras.training.checkpoint import same_recipe

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def clean_environment(monkeypatch):
    for name in thread_environment(1):
        monkeypatch.delenv(name, raising=False)


def test_use_threads_sizes_both_engines_pools(clean_environment):
    assert use_threads(3) == 3
    assert os.environ["TF_NUM_INTRAOP_THREADS"] == "3" and os.environ["PJRT_NPROC"] == "3"
    assert use_threads(0) == cores_available() == len(os.sched_getaffinity(0))
    assert os.environ["PJRT_NPROC"] == str(cores_available())


def test_threads_is_a_recipe_setting_two_by_default():
    assert Config().threads == 2
    assert Config.from_dict({"threads": 0}).threads == 0
    with pytest.raises(ConfigError, match="'threads' must be at least 0"):
        Config.from_dict({"threads": -1})


def test_a_run_records_its_threads_and_cores(tiny_run):
    record = json.loads((tiny_run / "config.json").read_text())
    assert record["recipe"]["threads"] == 2
    assert record["threads"] == 2 and record["cores"] == cores_available()


def test_a_checkpoint_saved_before_threads_existed_resumes_as_the_same_recipe():
    recorded = Config(seed=4).to_dict()
    del recorded["threads"]
    assert same_recipe(recorded, Config(seed=4))
    assert not same_recipe(recorded, Config(seed=5))
    assert not same_recipe(recorded, Config(seed=4, threads=1))
    assert not same_recipe({**recorded, "no_such_setting": 1}, Config(seed=4))


# ---------------------------------------------------------------- real training, pinned and not

def train_history(out: Path, recipe: str, cores: str | None, *flags: str) -> tuple[list[dict], float]:
    """Train 2 epochs of `recipe` (seed 1) in a child process, pinned to `cores` by taskset if given."""
    command = [sys.executable, "-m", "mnist_keras.cli", "train", "--recipe", recipe, "--seed", "1", "--epochs", "2",
               "--no-onnx", "--out", str(out), *flags]
    if cores is not None:
        command = ["taskset", "-c", cores, *command]
    # Neither this process's thread counts nor its backend (the suite's runs chose one): the child chooses as `train`.
    environment = {key: value for key, value in os.environ.items()
                   if key not in (*thread_environment(1), "KERAS_BACKEND")}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, (str(SRC), os.environ.get("PYTHONPATH"))))
    subprocess.run(command, env=environment, check=True, capture_output=True, timeout=900)
    assert json.loads((out / "config.json").read_text())["backend"] == {"cnn": "tensorflow", "seed": "jax"}[recipe]
    rows = list(csv.DictReader(io.StringIO((out / "history.csv").read_text())))
    for row in rows:
        del row["seconds"]
    return rows, json.loads((out / "metrics.json").read_text())["test_accuracy"]


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("recipe", ["cnn", "seed"])  # TensorFlow (cnn, speedrun) and JAX (seed, fast)
def test_a_run_pinned_to_one_core_gives_the_digits_of_one_on_two(recipe, tmp_path, real_mnist):
    assert cores_available() >= 2, "this test compares one core with two: run the full lane on two cores or more"
    assert shutil.which("taskset"), "taskset (util-linux) is needed"
    two_cores = train_history(tmp_path / "two", recipe, None)
    one_core = train_history(tmp_path / "one", recipe, "0")
    assert one_core == two_cores
    # The control: taking the cores at hand (threads 0) pinned to one core gives other digits, so the
    # comparison above can fail.
    assert train_history(tmp_path / "found", recipe, "0", "--threads", "0") != two_cores
