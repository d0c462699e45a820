"""What the benchmark scripts share: children that report JSON lines, a free port, the machine line, results files.

A measurement that needs its own Keras backend or its own peak memory runs in
a child process, which prints one JSON object per line (`emit`); the parent
runs it with `run_json` (its last JSON line is the result) or `run_child` (all
of its output), under a timeout. A child that fails or runs out of time raises
`ChildFailed`, whose message ends with the last lines of the child's stderr.

Scripts run as `python benchmarks/NAME.py`, which puts this folder on
`sys.path`; the peers (`peers/common.py`) add it themselves, and the tests that
load a script by its path have it from pytest's `pythonpath` in pyproject.toml.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
PROJECT = BENCHMARKS.parent
RESULTS_DIR = BENCHMARKS / "results"  # where the committed figures of the README live
SEED_TEST_ACCURACY = 0.9843  # the seed notebook's published test accuracy
STDERR_TAIL_LINES = 10  # enough for a Python traceback's last frames and its error line
# A child that loads TensorFlow prints its C++ start-up notices (no CUDA, oneDNN) on stderr,
# whose tail a failure quotes: level 3 leaves only fatal errors there.
QUIET_TENSORFLOW = {"TF_CPP_MIN_LOG_LEVEL": "3"}


class ChildFailed(RuntimeError):
    """A child process exited non-zero or ran out of time; `returncode` is None when it ran out of time."""

    def __init__(self, what: str, returncode: int | None, stderr: str, timeout: float | None = None) -> None:
        self.returncode = returncode
        self.stderr = stderr
        how = f"did not finish within {timeout:g} s" if returncode is None else f"failed (exit {returncode})"
        super().__init__(f"{what} {how}: {stderr_tail(stderr)}")

    @property
    def last_line(self) -> str:
        """The child's last line on stderr: for a user error, the one-line message."""
        return last_line(self.stderr)


def last_line(text: str) -> str:
    return (text.strip().splitlines() or ["no output"])[-1]


def stderr_tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(tail) if tail else "no output on stderr"


def child_environment(backend: str | None = None) -> dict[str, str]:
    """This process's environment for a child: TensorFlow quiet, and KERAS_BACKEND `backend`
    (or unset, so that the child chooses its model family's default)."""
    environment = {**os.environ, **QUIET_TENSORFLOW}
    environment.pop("KERAS_BACKEND", None)
    if backend:
        environment["KERAS_BACKEND"] = backend
    return environment


def text_of(output: str | bytes | None) -> str:
    """What a timed-out child had printed (subprocess hands it over as bytes, str or None)."""
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def run_child(command: Sequence[str], what: str, *, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run `command` to the end and return its stdout; ChildFailed (named `what`) if it fails or outlasts `timeout` s."""
    try:
        result = subprocess.run(list(command), env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as expired:
        raise ChildFailed(what, None, text_of(expired.stderr), timeout) from None
    if result.returncode != 0:
        raise ChildFailed(what, result.returncode, result.stderr)
    return result.stdout


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """The JSON objects a child printed, one per line, in order (other lines are passed over)."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def run_json(command: Sequence[str], what: str, *, timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `command` and return the last JSON line it printed: the child's result."""
    stdout = run_child(command, what, timeout=timeout, env=env)
    lines = json_lines(stdout)
    if not lines:
        raise ChildFailed(what, 0, f"it printed no JSON line; its stdout ended:\n{stderr_tail(stdout)}")
    return lines[-1]


def emit(fields: dict[str, Any]) -> None:
    """The child's side: one JSON line on stdout, flushed at once so the parent sees it even if the child dies."""
    print(json.dumps(fields), flush=True)


def load_average() -> float:
    """The 1-minute load average: other work on the machine slows every row, and this shows how much there was."""
    return os.getloadavg()[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the moment of asking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def machine_line(python: bool = False) -> str:
    """`mnist_keras.environment.machine_description()` (CPU model, cores, OS), with Python's version if asked."""
    from mnist_keras.environment import machine_description

    line = machine_description()
    return f"{line}, Python {platform.python_version()}" if python else line


def write_json(path: Path | str, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_results(out: Path, stem: str, results: dict[str, Any], table: str) -> None:
    """OUT/STEM.json (the figures) and OUT/STEM.md (the table the README quotes), OUT made if need be."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{stem}.json", results)
    (out / f"{stem}.md").write_text(table, encoding="utf-8")


def select_backend_for_run(run: Path | str) -> str:
    """Choose KERAS_BACKEND if set, else the default backend of the run's model family, as `mnist-keras predict`
    does; call it before anything imports Keras."""
    from mnist_keras.backends import select_backend
    from mnist_keras.rundir import read_run_config

    return select_backend(family=read_run_config(Path(run)).model)


def train_on_seeds(config, mnist, seeds: Sequence[int]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Train `config` once per seed, each run in a temporary directory without ONNX export; yields (seed, metrics).

    Select the backend first: this imports the training code, and with it Keras.
    """
    import dataclasses

    from mnist_keras.training.run import train_run

    for seed in seeds:
        with tempfile.TemporaryDirectory() as directory:
            metrics = train_run(dataclasses.replace(config, seed=seed), mnist, Path(directory) / "run", verbose=0,
                                export_onnx=False)
        yield seed, metrics


def project_copy(destination: Path) -> Path:
    """The project's files (tracked and new, not ignored) copied to `destination`, as a fresh clone has them:
    a wheel built there holds no file of an older build/ left in the checkout."""
    listed = subprocess.run(["git", "-C", str(PROJECT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (PROJECT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / name, destination / name)
    return destination


def tree_megabytes(folder: Path) -> float:
    """The size of the files under `folder` (symbolic links not followed), in MB."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink()) / 1e6
