"""One training run end to end: train, evaluate, export, report, publish (atomically).

Interim: delegates to mnist_keras.train.train while the loop is rewritten; the
signature is the one to build on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnist_keras.config import Config
from mnist_keras.data import Mnist
from mnist_keras.state import TrainingState

EpochHook = Callable[[TrainingState, Path], None]


def train_run(
    config: Config,
    mnist: Mnist,
    run_dir: str | Path,
    *,
    verbose: int | None = None,
    resume: bool = True,
    on_epoch: EpochHook | None = None,
) -> dict[str, Any]:
    """Train `config` on `mnist` into the run directory `run_dir`; return metrics.json's contents.

    `on_epoch(state, checkpoint_dir)` is called after each epoch's checkpoint is
    committed in `checkpoint_dir` (a directory with latest.json and the files it
    names). Copying such a directory's contents to
    `checkpoint.checkpoint_dir(rundir.staging_path(run_dir))` before calling
    `train_run` resumes the run from that epoch.
    """
    from mnist_keras.train import train

    return train(config, mnist, run_dir, verbose=verbose, resume=resume, on_epoch=on_epoch)
