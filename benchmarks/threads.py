"""What the fixed thread count costs: training seconds pinned to one core with the recipe's 2 threads against 1.

    python benchmarks/threads.py [--recipes seed cnn] [--epochs 3] [--repeats 3] [--out runs/threads] [--runs DIR]

A run's engine splits its sums by its thread count, so the recipes run 2 threads
wherever they are (`Config.threads`), which makes a run pinned to one core (a
seed study's trial) give the digits of the same seed on two. Two threads on one
core take turns; this measures what that costs. Each arm trains `--epochs` of a
recipe, seed 1, in a child process (`taskset -c CORES mnist-keras train
--threads N`), `--repeats` times, arms interleaved; the table gives the median
training seconds (metrics.json's train_seconds, compilation included), whether
the arm's history and accuracy match the two-core run's, and the ratio of the
one-core arms. Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import subprocess
import sys
from pathlib import Path

from harness import child_environment, load_average, machine_line, run_child, write_results

from mnist_keras.backends import FAMILY_BACKENDS, thread_environment
from mnist_keras.recipes import RECIPES, get_recipe

# (label, taskset cores, --threads)
ARMS = (
    ("two cores, 2 threads (the default)", "0,1", 2),
    ("one core, 2 threads (the default)", "0", 2),
    ("one core, 1 thread (--threads 0)", "0", 0),
)
TRAIN_TIMEOUT_S = 1800


def train(recipe: str, cores: str, threads: int, epochs: int, out: Path) -> tuple[float, list[dict], float]:
    """Train one arm; return its train_seconds, its history without seconds, and its test accuracy."""
    command = ["taskset", "-c", cores, sys.executable, "-m", "mnist_keras.cli", "train", "--recipe", recipe,
               "--seed", "1", "--epochs", str(epochs), "--threads", str(threads), "--no-onnx", "--overwrite",
               "--out", str(out)]
    environment = {key: value for key, value in child_environment().items() if key not in thread_environment(1)}
    run_child(command, f"{recipe} on cores {cores} with {threads} threads", timeout=TRAIN_TIMEOUT_S, env=environment)
    metrics = json.loads((out / "metrics.json").read_text())
    rows = list(csv.DictReader(io.StringIO((out / "history.csv").read_text())))
    for row in rows:
        del row["seconds"]
    return metrics["train_seconds"], rows, metrics["test_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=["seed", "cnn"], choices=sorted(RECIPES))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/threads"), help="where threads.json and .md go")
    parser.add_argument("--runs", type=Path, default=Path("runs/threads"), help="where the arms' runs are trained")
    args = parser.parse_args()
    print(f"load average before: {load_average():.2f}", flush=True)
    lines = ["| recipe (backend) | arm | median train s | digits as on two cores | accuracy |",
             "| --- | --- | ---: | --- | ---: |"]
    results: dict = {"epochs": args.epochs, "repeats": args.repeats, "recipes": {}}
    for recipe in args.recipes:
        seconds: dict[str, list[float]] = {label: [] for label, _, _ in ARMS}
        outcome: dict[str, tuple[list[dict], float]] = {}
        for repeat in range(args.repeats):
            for label, cores, threads in ARMS:
                took, history, accuracy = train(recipe, cores, threads, args.epochs,
                                                args.runs / recipe / f"{cores.replace(',', '-')}-t{threads}")
                seconds[label].append(took)
                outcome[label] = (history, accuracy)
                print(f"  {recipe} repeat {repeat + 1}: {label}: {took:.1f} s", flush=True)
        reference = outcome[ARMS[0][0]]
        backend = FAMILY_BACKENDS[get_recipe(recipe).model]
        rows = {}
        for label, _, _ in ARMS:
            median = statistics.median(seconds[label])
            same = outcome[label] == reference
            rows[label] = {"seconds": seconds[label], "median_s": median, "same_digits": same,
                           "test_accuracy": outcome[label][1]}
            lines.append(f"| {recipe} ({backend}) | {label} | {median:.1f} | {'yes' if same else 'no'} | "
                         f"{outcome[label][1]:.2%} |")
        ratio = rows[ARMS[1][0]]["median_s"] / rows[ARMS[2][0]]["median_s"]
        lines.append(f"| {recipe} ({backend}) | one core: 2 threads / 1 thread | **{ratio:.2f}** | | |")
        results["recipes"][recipe] = {"arms": rows, "one_core_ratio": ratio}
    table = "\n".join([*lines, "", f"{args.epochs} epochs, seed 1, median of {args.repeats}; {machine_line()}"])
    print(table)
    print(f"load average after: {load_average():.2f}")
    write_results(args.out, "threads", results, table)


if __name__ == "__main__":
    main()
