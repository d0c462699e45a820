"""One training run end to end: train → evaluate → export → report → publish, atomically.

A run is assembled in a hidden staging directory beside its final name
(`rundir.staging_path`), checkpointed there after every epoch, and moved into
place only once every file is written. If anything after training fails (the
report, the export), the finished training is kept as a checkpoint in staging:
running the same command again finishes the run without training again.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

from mnist_keras import environment
from mnist_keras.backends import cores_available, thread_count, use_threads
from mnist_keras.config import Config
from mnist_keras.data.mnist import Mnist
from mnist_keras.errors import RunDirectoryError, TrainingDiverged, TrainingInterrupted, UserError
from mnist_keras.evaluation import metrics as evaluate
from mnist_keras.inference.decision import digit_probabilities
from mnist_keras.reporting import run_report
from mnist_keras.rundir import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    history_csv,
    publish,
    staging_path,
    write_json_atomic,
    write_text_atomic,
)
from mnist_keras.training import checkpoint
from mnist_keras.training.checkpoint import Checkpointer
from mnist_keras.training.train import Trained, train

# What the ONNX export needs; without them a run is served by Keras.
EXPORTER_MODULES = ("tensorflow", "tf2onnx", "onnx", "onnxruntime")


def train_run(
    config: Config,
    mnist: Mnist,
    run_dir: str | Path,
    *,
    verbose: int | None = None,
    resume: bool = True,
    checkpointer: Checkpointer | None = None,
    export_onnx: bool = True,
    recipe_name: str | None = None,
) -> dict[str, Any]:
    """Train `config` on `mnist` into the run directory `run_dir`; return metrics.json's contents.

    An interrupted run of the same recipe at `run_dir` resumes from its last
    checkpoint unless `resume` is False. Checkpoints are kept by `checkpointer`,
    by default `Checkpointer.for_run(run_dir, config)`; a sweep passes one of its
    own (built the same way) that also reports each checkpoint to Ray Tune.
    Copying a checkpoint directory's files to `run_checkpoint_dir(run_dir)` before
    calling `train_run` resumes from that epoch. `model.onnx` is exported when
    the exporter is installed and `export_onnx` is true. Any run already at
    `run_dir` is replaced.
    """
    run_dir = Path(run_dir)
    use_threads(config.threads)  # the CLI and a sweep's trials did so before Keras loaded; in-process callers here
    staging = staging_path(run_dir)
    checkpointer = checkpointer if checkpointer is not None else Checkpointer.for_run(run_dir, config)
    if checkpointer.directory != checkpoint.run_checkpoint_dir(run_dir):
        raise ValueError(f"the checkpointer of {run_dir} must keep its checkpoints in "
                         f"{checkpoint.run_checkpoint_dir(run_dir)}, not {checkpointer.directory}")
    if not resume or checkpointer.latest() is None:
        shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True, exist_ok=True)
    try:
        trained = train(config, mnist, checkpointer, verbose)
    except BaseException as error:
        raise training_failure(error, run_dir) from None
    try:
        metrics = write_run(trained, config, mnist, staging, export_onnx, recipe_name)
    except (Exception, KeyboardInterrupt) as error:
        reason = "interrupted" if isinstance(error, KeyboardInterrupt) else f"failed: {one_line(error)}"
        raise RunDirectoryError(
            f"training finished, but writing the run {reason}; the trained model is kept in {staging}: "
            f"run the same command again to finish the run without training again"
        ) from error
    publish(staging, run_dir)
    shutil.rmtree(checkpoint.checkpoint_dir(run_dir), ignore_errors=True)
    return metrics


def training_failure(error: BaseException, run_dir: Path) -> BaseException:
    """The error to report for a training that did not finish; staging is dropped if it kept nothing."""
    staging = staging_path(run_dir)
    kept = checkpoint.read_latest(checkpoint.run_checkpoint_dir(run_dir))
    if kept is None:
        shutil.rmtree(staging, ignore_errors=True)
    if isinstance(error, KeyboardInterrupt):
        where = f"after epoch {kept['epoch']}" if kept else "before the first epoch ended"
        resume_hint = f"; resume with: mnist-keras train --resume {run_dir}" if kept else ""
        return TrainingInterrupted(f"training interrupted {where}{resume_hint}")
    if isinstance(error, TrainingDiverged):
        kept_note = (f"; the last good checkpoint (epoch {kept['epoch']}) is kept in {staging}" if kept
                     else "; no epoch finished before it diverged, so nothing was kept")
        return TrainingDiverged(f"{error}{kept_note}")
    return error


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def exporter_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in EXPORTER_MODULES)


def run_config_record(config: Config, mnist: Mnist, recipe_name: str | None) -> dict[str, Any]:
    """config.json: the recipe (and the named recipe it started from), the backend, versions, the data's MD5s."""
    record = {
        "recipe": config.to_dict(),
        "backend": environment.backend_name(),
        # The engine's intra-op threads (they decide the digits) and the cores the run could use.
        "threads": thread_count(config.threads),
        "cores": cores_available(),
        "versions": environment.library_versions(),
        "data": {"source": mnist.source, "md5": mnist.checksums},
    }
    if recipe_name is not None:
        record["recipe_name"] = recipe_name
    return record


def write_run(
    trained: Trained, config: Config, mnist: Mnist, directory: Path, export_onnx: bool, recipe_name: str | None
) -> dict[str, Any]:
    """Every run file, inside `directory` (staging): config, history, model, metrics, model.onnx, report."""
    model, state = trained.model, trained.state
    write_json_atomic(directory / CONFIG_FILE, run_config_record(config, mnist, recipe_name))
    write_text_atomic(directory / HISTORY_FILE, history_csv(state.history))
    model.save(directory / MODEL_FILE)
    # Keep the test-set probabilities: the report draws its figures from them.
    outputs = evaluate.predict_outputs(model, mnist.x_test)
    probabilities = digit_probabilities(outputs)
    metrics = evaluate.model_metrics(model, mnist.y_test, probabilities)
    metrics.update(evaluate.refusal_metrics(mnist.y_test, mnist.x_test, outputs))
    metrics.update(evaluate.training_summary(state.history, state.train_seconds))
    # Real handwriting that is not MNIST: scikit-learn's optdigits as image files, read as `predict` reads them.
    metrics["handwriting_accuracy"] = evaluate.handwriting_accuracy(model)
    write_json_atomic(directory / METRICS_FILE, metrics)
    if export_onnx and exporter_installed():
        from mnist_keras.inference.export import export_run

        try:
            export_run(directory, "onnx")
        except UserError as error:
            raise RunDirectoryError(f"the ONNX export failed ({error})") from None
    # Written inside the staging directory, so no run is ever published without its report.
    run_report.build_report(directory, mnist, probabilities)
    return metrics
