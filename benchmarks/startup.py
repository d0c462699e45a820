"""How soon `mnist-keras predict IMAGE` answers: the lean install against the full one, with the shipped model.

    python benchmarks/startup.py [--lean-venv DIR] [--full-venv DIR] [--repeats 7]

The lean venv (`pip install .`, no extras: ONNX Runtime, no Keras or engines) is
made at DIR if it is not there yet, from a copy of the project's files; the full
one is the venv this script runs in unless named (`make install`: Keras,
TensorFlow, JAX). Each repeat runs `predict` on one drawn digit once in each, in
turn, as a new process; the table gives the median wall seconds from start to
answer, the venv's size, and the ratio. Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import venv
from pathlib import Path

from harness import load_average, machine_line, project_copy, run_child, tree_megabytes
from PIL import Image, ImageDraw

INSTALL_TIMEOUT_S = 1800
PREDICT_TIMEOUT_S = 300


def make_lean_venv(folder: Path) -> None:
    venv.create(folder, with_pip=True)
    with tempfile.TemporaryDirectory() as scratch:
        source = project_copy(Path(scratch) / "source")
        run_child([str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   str(source)], "pip install . (no extras)", timeout=INSTALL_TIMEOUT_S)


def drawn_seven(path: Path) -> Path:
    image = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(image).line([(75, 55), (205, 55), (115, 235)], fill=0, width=22, joint="curve")
    image.save(path)
    return path


def time_predict(venv_dir: Path, image: Path) -> float:
    start = time.perf_counter()
    run_child([str(venv_dir / "bin" / "mnist-keras"), "predict", str(image)], f"predict in {venv_dir}",
              timeout=PREDICT_TIMEOUT_S)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lean-venv", type=Path, default=Path("runs/lean-venv"))
    parser.add_argument("--full-venv", type=Path, default=Path(sys.prefix))
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if not (args.lean_venv / "bin" / "mnist-keras").is_file():
        print(f"making the lean venv at {args.lean_venv} ...", flush=True)
        make_lean_venv(args.lean_venv)
    print(f"load average before: {load_average():.2f}", flush=True)
    venvs = {"lean (pip install .)": args.lean_venv, "full (make install)": args.full_venv}
    seconds: dict[str, list[float]] = {name: [] for name in venvs}
    with tempfile.TemporaryDirectory() as scratch:
        image = drawn_seven(Path(scratch) / "seven.png")
        for name, folder in venvs.items():
            time_predict(folder, image)  # warm the page cache: every repeat then starts alike
        for _ in range(args.repeats):
            for name, folder in venvs.items():
                seconds[name].append(time_predict(folder, image))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    lines = ["| install | venv MB | `predict IMAGE` wall s (median) |", "| --- | ---: | ---: |"]
    for name, folder in venvs.items():
        lines.append(f"| {name} | {tree_megabytes(folder):,.0f} | {medians[name]:.2f} |")
    lean, full = medians.values()
    lines.append(f"| full / lean | | **{full / lean:.2f}×** |")
    print("\n".join([*lines, "", f"median of {args.repeats}, shipped model, one drawn 7; {machine_line()}"]))
    print(f"load average after: {load_average():.2f}")


if __name__ == "__main__":
    main()
