"""The run directory: its file names, atomic writes, and publishing a finished run.

A run is built in a hidden staging directory next to its final name and moved
into place only when every file is written, so a crash, a kill or a Ctrl-C
never leaves a half-written run under the final name.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mnist_keras.config import Config
from mnist_keras.errors import ConfigError, RunDirectoryError
from mnist_keras.training.state import HISTORY_COLUMNS

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
FIGURES_DIR = "figures"
REPORT_FILE = "report.html"
ONNX_FILE = "model.onnx"
REQUIRED_FILES = (MODEL_FILE, CONFIG_FILE, HISTORY_FILE, METRICS_FILE)
# What answers without Keras: an exported model with the recipe and test metrics it came from
# (the model that ships in the package is one; so is a run, which holds more).
EXPORTED_MODEL_FILES = (ONNX_FILE, CONFIG_FILE, METRICS_FILE)
def staging_path(run_dir: Path) -> Path:
    """Where a run is built before it is published under `run_dir`."""
    return run_dir.parent / f".{run_dir.name}.partial"


def umask_file_mode() -> int:
    """The mode a plainly created file gets (tempfile makes 0600 files; ours should not differ)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Write a file so readers see either the old content or the new, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        temporary = Path(handle.name)
        try:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), umask_file_mode())
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    os.replace(temporary, path)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirectoryError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunDirectoryError(f"{path} is not valid JSON ({error})") from None


def history_csv(rows: list[dict[str, float]]) -> str:
    """history.csv's text: one row per epoch with HISTORY_COLUMNS."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def replace_path(source: Path, destination: Path) -> None:
    """Move `source` (a file or a directory) to `destination`, replacing what was there.

    A directory is swapped in by two renames: readers see the old one or the new
    one, never a mix; the old one is removed afterwards.
    """
    source, destination = Path(source), Path(destination)
    if not (destination.is_dir() and not destination.is_symlink()):
        os.replace(source, destination)
        return
    previous = destination.parent / f".{destination.name}.replaced"
    shutil.rmtree(previous, ignore_errors=True)
    os.replace(destination, previous)
    os.replace(source, destination)
    shutil.rmtree(previous, ignore_errors=True)


def publish(staging: Path, run_dir: Path) -> None:
    """Move a finished staging directory to `run_dir`, replacing any previous run there."""
    replace_path(staging, run_dir)


def check_run_dir(run_dir: Path) -> Path:
    """Raise RunDirectoryError unless `run_dir` holds a complete run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirectoryError(f"run directory {run_dir} does not exist")
    missing = [name for name in REQUIRED_FILES if not (run_dir / name).is_file()]
    if missing:
        raise RunDirectoryError(f"run directory {run_dir} is incomplete: missing {', '.join(missing)}")
    return run_dir


def check_model_dir(model_dir: Path) -> Path:
    """Raise RunDirectoryError unless `model_dir` can answer: a complete run, or an exported model
    (EXPORTED_MODEL_FILES, no model.keras)."""
    model_dir = Path(model_dir)
    if model_dir.is_dir() and not (model_dir / MODEL_FILE).exists() \
            and all((model_dir / name).is_file() for name in EXPORTED_MODEL_FILES):
        return model_dir
    return check_run_dir(model_dir)


def is_exported_model(model_dir: Path) -> bool:
    """Whether `model_dir` holds an exported model only (ONNX, no model.keras)."""
    return not (Path(model_dir) / MODEL_FILE).exists()


def current_onnx_export(run_dir: Path) -> Path | None:
    """The run's model.onnx if it exists and is not older than model.keras (a stale export is not used)."""
    onnx_path = Path(run_dir) / ONNX_FILE
    if not onnx_path.is_file():
        return None
    if not is_exported_model(run_dir) and onnx_path.stat().st_mtime < (Path(run_dir) / MODEL_FILE).stat().st_mtime:
        return None
    return onnx_path


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """A run's config.json as a dict with a 'recipe' table; RunDirectoryError if it is not one."""
    path = Path(run_dir) / CONFIG_FILE
    record = read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("recipe"), dict):
        raise RunDirectoryError(f"{path} has no 'recipe' table; is this a mnist-keras run directory?")
    return record


def read_run_config(run_dir: Path) -> Config:
    """The recipe recorded in a run's config.json; a malformed file is a RunDirectoryError."""
    path = Path(run_dir) / CONFIG_FILE
    record = read_run_record(run_dir)
    try:
        return Config.from_dict(record["recipe"])
    except ConfigError as error:
        raise RunDirectoryError(f"{path}: {error}") from None
