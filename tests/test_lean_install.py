"""The lean install for real: `pip install .` into a fresh venv, with no extras, reads digits and holds no engine.

Full lane: it fetches the lean dependencies from the package index (or pip's cache).
The same behaviour is checked in the fast lane with the engines blocked in one process
(test_lean.py); this is the install a user gets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
from fakes import glyph
from harness import project_copy, tree_megabytes
from PIL import Image

# The bound on the lean venv, and what must not be in it.
MAX_LEAN_MB = 500
ENGINES = ("tensorflow", "jax", "jaxlib", "torch", "keras")
INSTALL_TIMEOUT_S = 1200

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lean_venv(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lean")
    source = project_copy(folder / "source")
    venv.create(folder / "venv", with_pip=True)
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([str(folder / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", str(source)], env=environment, check=True, capture_output=True,
                   timeout=INSTALL_TIMEOUT_S)
    return folder / "venv"


def lean_cli(lean_venv: Path, *argv: str) -> subprocess.CompletedProcess:
    environment = {"PATH": f"{lean_venv / 'bin'}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run([str(lean_venv / "bin" / "mnist-keras"), *argv], check=False, capture_output=True,
                          text=True, env=environment, timeout=300, cwd=lean_venv.parent)


def test_the_lean_venv_holds_no_engine_and_stays_under_500_mb(lean_venv):
    installed = subprocess.run([str(lean_venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
                               capture_output=True, text=True, check=True).stdout
    names = {package["name"].lower() for package in json.loads(installed)}
    assert "mnist-keras" in names and "onnxruntime" in names
    assert not names & set(ENGINES), names & set(ENGINES)
    size = tree_megabytes(lean_venv)
    print(f"lean venv: {size:.0f} MB, {len(names)} packages (Python {sys.version.split()[0]})")
    assert size <= MAX_LEAN_MB, f"the lean venv is {size:.0f} MB"


def test_the_lean_venv_predicts_and_reads_with_the_shipped_model_and_a_run(lean_venv, tiny_run, tmp_path):
    image = tmp_path / "four.png"
    Image.fromarray(np.uint8(np.clip(1.0 - np.pad(glyph(4), 24), 0, 1) * 255)).save(image)
    shipped = lean_cli(lean_venv, "predict", str(image))
    assert shipped.returncode == 0, shipped.stderr
    assert json.loads(shipped.stdout)["digit"] == 4
    read = lean_cli(lean_venv, "read", str(image))
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout)["text"] == "4"
    given = lean_cli(lean_venv, "predict", str(tiny_run), str(image))
    assert given.returncode == 0, given.stderr
    assert 0 <= json.loads(given.stdout)["digit"] <= 9
    lacking = lean_cli(lean_venv, "train", "--out", str(tmp_path / "run"))
    assert lacking.returncode == 2 and "pip install 'mnist-keras[train]'" in lacking.stderr
    assert not (tmp_path / "run").exists()
