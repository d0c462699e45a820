"""Per-epoch checkpoints, so training survives any kill: the state record plus the variables.

After every completed epoch, `save` writes into a checkpoint directory (inside
the run's staging directory): the model's variables (the dropout and
augmentation RNG states included) and the optimizer's (step count, moments,
learning rate) as one .npz file, the best epoch's weights when they changed,
and last, atomically, `latest.json`: the training state record
(`mnist_keras.training.state.TrainingState`), the recipe and the backend, naming those
files. So `latest.json` always names one complete epoch, and a run killed at
any moment, SIGKILL included, resumes from it computing exactly what an
uninterrupted run computes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mnist_keras.config import Config
from mnist_keras.errors import ConfigError, RunDirectoryError
from mnist_keras.rundir import staging_path, write_json_atomic
from mnist_keras.training.state import TrainingState

# Keras is imported inside the functions that save or restore variables: the CLI reads
# checkpoint records (`read_latest`) before it has chosen the Keras backend.

# Checkpoints live in the run's staging directory while it trains.
CHECKPOINT_DIR = "checkpoint"
LATEST_FILE = "latest.json"
CHECKPOINT_KEYS = {"epoch", "finished", "recipe", "backend", "variables", "best_weights", "state"}


def checkpoint_dir(staging: Path) -> Path:
    return Path(staging) / CHECKPOINT_DIR


def run_checkpoint_dir(run_dir: Path) -> Path:
    """Where the run that will be published at `run_dir` keeps its checkpoints while it trains."""
    return checkpoint_dir(staging_path(Path(run_dir)))


def read_latest(directory: Path) -> dict[str, Any] | None:
    """The last committed checkpoint record in `directory`, or None if there is none usable."""
    try:
        record = json.loads((Path(directory) / LATEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not CHECKPOINT_KEYS <= set(record):
        return None
    if not (Path(directory) / str(record["variables"])).is_file():
        return None
    return record


def same_recipe(recorded: dict[str, Any], config: Config) -> bool:
    """Whether a checkpoint's recorded recipe is `config` (settings added since it was saved take their defaults)."""
    try:
        return Config.from_dict(recorded) == config
    except ConfigError:
        return False


class Checkpointer:
    """The loop's checkpoints in one directory, for one recipe: `fit` calls `restore` once, `save` every epoch.

    A sweep subclasses it to report each saved checkpoint to Ray Tune.
    """

    def __init__(self, directory: Path, config: Config) -> None:
        self.directory = Path(directory)
        self.config = config

    @classmethod
    def for_run(cls, run_dir: Path, config: Config) -> Checkpointer:
        """The checkpointer of the run that will be published at `run_dir` (in its staging directory)."""
        return cls(run_checkpoint_dir(run_dir), config)

    def latest(self) -> dict[str, Any] | None:
        """The latest checkpoint record of this recipe, or None (none yet, or another recipe's)."""
        record = read_latest(self.directory)
        return record if record is not None and same_recipe(record["recipe"], self.config) else None

    def restore(self, model: Any, augmenter: Any = None) -> TrainingState | None:
        """Load the latest checkpoint of this recipe into `model` (its training state built); None if there is none."""
        record = self.latest()
        return restore(self.directory, record, model, augmenter) if record is not None else None

    def save(self, state: TrainingState, model: Any, augmenter: Any = None) -> None:
        save(self.directory, self.config.to_dict(), state, model, self.config.epochs, augmenter)


def save(directory: Path, recipe: dict[str, Any], state: TrainingState, model: Any, epochs: int,
         augmenter: Any = None) -> None:
    """Commit the checkpoint of `state` (just after its epoch) and drop the previous epoch's files."""
    import keras

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    variables_name = f"epoch-{state.epoch:03d}.npz"
    # Plain arrays, not model.save: a tenth of the time, and it keeps the RNG states.
    save_variables(model, directory / variables_name, augmenter)
    best_name = None
    if state.best_weights is not None:
        best_name = f"best-{state.best_epoch:03d}.npz"
        # Written when this epoch is the best (a resumed epoch overwrites any torn file of its own).
        if state.best_epoch == state.epoch or not (directory / best_name).exists():
            np.savez(directory / best_name, **{f"w{index}": weight for index, weight in enumerate(state.best_weights)})
    record = {
        "epoch": state.epoch,
        # Early stopping fired or the last epoch is done: only publishing remains.
        "finished": state.finished(epochs),
        "recipe": recipe,
        "backend": keras.backend.backend(),
        "variables": variables_name,
        "best_weights": best_name,
        "state": state.to_record(),
    }
    write_json_atomic(directory / LATEST_FILE, record)
    # Older epochs are no longer needed once latest.json names this one.
    for path in directory.iterdir():
        if path.suffix == ".npz" and path.name not in (variables_name, best_name):
            path.unlink(missing_ok=True)


def restore(directory: Path, record: dict[str, Any], model: Any, augmenter: Any = None) -> TrainingState:
    """Load the checkpoint `record` names into `model` (built, with its training state) and return its state.

    A checkpoint is resumed on the backend that wrote it: variables such as RNG
    states are not interchangeable between backends.
    """
    import keras

    directory = Path(directory)
    backend = keras.backend.backend()
    if record["backend"] != backend:
        raise RunDirectoryError(
            f"the interrupted run in {directory} was trained on the {record['backend']} backend; "
            f"resume it with --backend {record['backend']} (this process uses {backend})"
        )
    restore_variables(model, directory / record["variables"], augmenter)
    best_weights = None
    if record["best_weights"]:
        with np.load(directory / record["best_weights"]) as archive:
            best_weights = [archive[f"w{index}"] for index in range(len(archive.files))]
    return TrainingState.from_record(record["state"], best_weights)


def variable_groups(model: Any, augmenter: Any) -> dict[str, list]:
    """What a checkpoint holds: the model's, the optimizer's and the augmenter's variables."""
    return {"model": model.variables, "optimizer": model.optimizer.variables,
            "augmenter": augmenter.variables if augmenter is not None else []}


def save_variables(model: Any, path: Path, augmenter: Any = None) -> None:
    """Every model, optimizer and augmenter variable, in order, as one .npz file."""
    import keras

    np.savez(path, **{f"{prefix}_{index}": keras.ops.convert_to_numpy(variable.value)
                      for prefix, variables in variable_groups(model, augmenter).items()
                      for index, variable in enumerate(variables)})


def restore_variables(model: Any, path: Path, augmenter: Any = None) -> None:
    """Load what save_variables wrote into a model of the same recipe whose optimizer is built."""
    with np.load(path) as archive:
        for prefix, variables in variable_groups(model, augmenter).items():
            for index, variable in enumerate(variables):
                variable.assign(archive[f"{prefix}_{index}"])
