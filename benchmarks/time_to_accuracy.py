"""Time to accuracy: our recipes against published peers, in one run on one machine.

    python benchmarks/time_to_accuracy.py [--quick] [--seeds 1 2 3 4 5] [--peer-seeds 1 2 3]
                                          [--row-seeds ROW=S,S ...] [--recipes NAME ...] [--peers NAME ...] [--out DIR]

Rows are our recipes (`mnist-keras train --recipe NAME --seed S`, each on its
family's default backend, read back from the run's metrics.json) and the peers
in benchmarks/peers/ (each a script that trains a published recipe as its
authors wrote it and prints one JSON line per evaluation point). Every run is
its own process, one after another. Writes DIR/time_to_accuracy.json, .md (the
table) and .png (test accuracy against training seconds), with the machine and
its CPU's AVX-512/AMX/bf16 flags beside them.

Columns, headline first: how many times faster than each peer the row trains
(the peer's median training seconds over the row's: a ratio holds from CPU to
CPU where seconds do not), training seconds (median over seeds), test accuracy
(mean over seeds), and the training seconds at which the mean test accuracy
first reaches the seed's 98.43%, 99.0% and 99.5% (for a row that only reports
its end, that is its training time, if it gets there). `--quick` is a smoke run (one seed, one epoch, a slice of MNIST for the
peers): it checks the command and its files, it measures nothing.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness

# The parent imports Keras (for the machine line): keep TensorFlow's start-up notices off the terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BENCHMARKS = Path(__file__).resolve().parent
PEERS_DIR = BENCHMARKS / "peers"
DEFAULT_OUT = harness.RESULTS_DIR
RESULT_STEM = "time_to_accuracy"
RECIPES = ("seed", "fast", "cnn", "speedrun")
DEFAULT_SEEDS = (1, 2, 3, 4, 5)
# The peers train for minutes each (pytorch/examples' 14 epochs are the longest), so fewer seeds by default.
DEFAULT_PEER_SEEDS = (1, 2, 3)
TARGETS = (harness.SEED_TEST_ACCURACY, 0.99, 0.995)
QUICK_RECIPES = ("seed",)
QUICK_PEERS = ("keras_mnist_convnet", "train_mnist_fast")
QUICK_EPOCHS = 1
QUICK_TRAIN_IMAGES = 3_000  # the peers' slice in --quick; our recipes train one full epoch
QUICK_TEST_IMAGES = 1_000  # the table's note names this count
# CPU flags (from /proc/cpuinfo) that decide whether bfloat16 or wide vectors can pay off.
CPU_FEATURES = {"avx512": ("avx512f",), "amx": ("amx_tile",), "bf16": ("avx512_bf16", "amx_bf16")}
RUN_TIMEOUT_SECONDS = 3600  # one run; pytorch/examples' 14 epochs take minutes on two cores


@dataclass(frozen=True)
class Peer:
    """A published recipe, run by its script in benchmarks/peers/."""

    name: str  # the key for --peers
    title: str  # the table's row name
    script: str
    needs: str  # the module the script cannot run without


PEERS = (
    Peer("seed_notebook", "seed notebook's code (Keras+TF MLP)", "seed_notebook.py", "tensorflow"),
    Peer("keras_mnist_convnet", "keras-io mnist_convnet (Keras+TF)", "keras_mnist_convnet.py", "tensorflow"),
    Peer("pytorch_mnist", "pytorch/examples mnist (PyTorch)", "pytorch_mnist.py", "torch"),
    Peer("train_mnist_fast", "train_mnist_fast 1 epoch (PyTorch)", "train_mnist_fast.py", "torch"),
)
PEERS_BY_NAME = {peer.name: peer for peer in PEERS}


class Unavailable(Exception):
    """A row that cannot run here (a recipe the CLI refuses, a peer whose library is missing)."""


# ------------------------------------------------------------------ running one seed of one row


def cli_command() -> list[str]:
    """The `mnist-keras` console script installed beside this Python (the same environment)."""
    script = Path(sys.executable).with_name("mnist-keras")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from mnist_keras.cli import main; sys.exit(main())"]


def run_recipe(recipe: str, seed: int, quick: bool, keep: Path | None = None) -> dict[str, Any]:
    """One seed of one of our recipes through the CLI: its points, and its end (the run kept under `keep`)."""
    with tempfile.TemporaryDirectory() as directory:
        run_dir = Path(directory) / "run" if keep is None else keep / f"{recipe}-seed{seed}"
        if keep is not None:
            shutil.rmtree(run_dir, ignore_errors=True)
        command = [*cli_command(), "train", "--recipe", recipe, "--seed", str(seed), "--out", str(run_dir)]
        if quick:
            # No warm-up: a recipe warming up over one epoch or more could not be cut to one epoch otherwise.
            command += ["--epochs", str(QUICK_EPOCHS), "--warmup-epochs", "0"]
        try:
            # No KERAS_BACKEND: each recipe runs on its own family's default backend.
            harness.run_child(command, f"recipe {recipe} (seed {seed})", timeout=RUN_TIMEOUT_SECONDS,
                              env=harness.child_environment())
        except harness.ChildFailed as failure:
            if failure.returncode == 2:  # a user error: for us, a recipe this checkout does not have
                raise Unavailable(failure.last_line) from None
            raise
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        with open(run_dir / "history.csv", newline="", encoding="utf-8") as handle:
            history = list(csv.DictReader(handle))
    return {"seed": seed, "points": recipe_points(history, metrics),
            "final": {"epochs": metrics.get("epochs_trained", len(history)), "seconds": metrics["train_seconds"],
                      "test_accuracy": metrics["test_accuracy"]}}


def recipe_points(history: list[dict[str, str]], metrics: dict[str, Any]) -> list[dict[str, float]]:
    """Evaluation points of a run: per epoch when history.csv has test accuracy, else only the run's end."""
    if history and all(row.get("test_accuracy") for row in history):
        seconds, points = 0.0, []
        for row in history:
            seconds += float(row["seconds"])
            points.append({"epoch": int(row["epoch"]), "seconds": seconds,
                           "test_accuracy": float(row["test_accuracy"])})
        return points
    return [{"epoch": metrics.get("epochs_trained", len(history)), "seconds": metrics["train_seconds"],
             "test_accuracy": metrics["test_accuracy"]}]


def run_peer(peer: Peer, seed: int, quick: bool) -> dict[str, Any]:
    """One seed of one peer script: its points, and its end."""
    command = [sys.executable, str(PEERS_DIR / peer.script), "--seed", str(seed)]
    if quick:
        command += ["--epochs", str(QUICK_EPOCHS), "--train-limit", str(QUICK_TRAIN_IMAGES),
                    "--test-limit", str(QUICK_TEST_IMAGES)]
    lines = harness.json_lines(harness.run_child(command, f"peer {peer.name} (seed {seed})",
                                                 timeout=RUN_TIMEOUT_SECONDS, env=harness.child_environment()))
    skipped = next((line["skipped"] for line in lines if "skipped" in line), None)
    if skipped:
        raise Unavailable(skipped)
    final = next(line for line in lines if line.get("final"))
    return {"seed": seed, "points": [line for line in lines if not line.get("final")],
            "final": {key: final[key] for key in ("epochs", "seconds", "test_accuracy")}}


# ------------------------------------------------------------------ summarising rows


def mean_curve(runs: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Evaluation point k across seeds: median seconds, mean test accuracy (points every seed reached)."""
    shared = min(len(run["points"]) for run in runs)
    curve = [{"epoch": runs[0]["points"][index]["epoch"],
              "seconds": statistics.median(run["points"][index]["seconds"] for run in runs),
              "test_accuracy": statistics.mean(run["points"][index]["test_accuracy"] for run in runs)}
             for index in range(shared)]
    return curve


def time_to(curve: list[dict[str, float]], target: float) -> float | None:
    """The seconds of the first point whose mean accuracy reaches `target`, or None."""
    return next((point["seconds"] for point in curve if point["test_accuracy"] >= target), None)


def summarise(key: str, name: str, kind: str, runs: list[dict[str, Any]], load_average: float) -> dict[str, Any]:
    curve = mean_curve(runs)
    final_seconds = [run["final"]["seconds"] for run in runs]
    final_accuracies = [run["final"]["test_accuracy"] for run in runs]
    # The end is a point too (e.g. the seed's restored best weights), so targets reached only there still count.
    ends = [*curve, {"seconds": statistics.median(final_seconds), "test_accuracy": statistics.mean(final_accuracies)}]
    return {
        "key": key, "name": name, "kind": kind, "seeds": [run["seed"] for run in runs], "runs": runs, "curve": curve,
        "train_seconds_median": statistics.median(final_seconds),
        # The first seed's run met the coldest compilation cache of this benchmark (a cold one if it was empty).
        "train_seconds_first": final_seconds[0],
        "test_accuracy_mean": statistics.mean(final_accuracies),
        "test_accuracy_min": min(final_accuracies),
        "time_to": {f"{target:.4f}": time_to(ends, target) for target in TARGETS},
        "load_average": load_average,
    }


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Per row and peer: the peer's median training seconds over the row's (above 1: the row is faster)."""
    peers = [row for row in rows if row["kind"] == "peer"]
    for row in rows:
        row["times_faster_than"] = {peer["key"]: peer["train_seconds_median"] / row["train_seconds_median"]
                                    for peer in peers}


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, bool | None]:
    """Whether the CPU has AVX-512, AMX and a bfloat16 instruction (None where /proc/cpuinfo is unreadable)."""
    from mnist_keras.environment import cpu_flags

    flags = cpu_flags(cpuinfo)
    if flags is None:
        return {feature: None for feature in CPU_FEATURES}
    return {feature: any(flag in flags for flag in names) for feature, names in CPU_FEATURES.items()}


def benchmark(options: argparse.Namespace) -> dict[str, Any]:
    """Run every selected row over its seeds; return the results document."""
    rows, unavailable = [], []
    jobs = [(recipe, "recipe", options.row_seeds.get(recipe, options.seeds)) for recipe in options.recipes] + \
           [(peer, "peer", options.row_seeds.get(peer, options.peer_seeds)) for peer in options.peers]
    started = time.perf_counter()
    for key, kind, seeds in jobs:
        peer = PEERS_BY_NAME.get(key) if kind == "peer" else None
        name = peer.title if peer else f"mnist-keras --recipe {key}"
        if peer and importlib.util.find_spec(peer.needs) is None:
            print(f"skipped: {name} ({peer.needs} is not installed)", file=sys.stderr, flush=True)
            unavailable.append({"key": key, "name": name, "kind": kind, "reason": f"{peer.needs} is not installed"})
            continue
        runs = []
        try:
            for seed in seeds:
                print(f"running: {name}, seed {seed}", file=sys.stderr, flush=True)
                runs.append(run_peer(peer, seed, options.quick) if peer else run_recipe(key, seed, options.quick, options.keep))
        except Unavailable as reason:
            print(f"unavailable: {name} ({reason})", file=sys.stderr, flush=True)
            unavailable.append({"key": key, "name": name, "kind": kind, "reason": str(reason)})
            continue
        rows.append(summarise(key, name, kind, runs, harness.load_average()))
    add_ratios(rows)
    return {"machine": harness.machine_line(), "cpu_features": cpu_features(), "mode": "quick" if options.quick else "full",
            "targets": list(TARGETS), "rows": rows, "unavailable": unavailable,
            "wall_seconds": time.perf_counter() - started}


# ------------------------------------------------------------------ the table and the plot


def seconds_text(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.1f} s"


def markdown_table(results: dict[str, Any]) -> str:
    features = ", ".join(f"{feature} {'yes' if present else 'no' if present is not None else 'unknown'}"
                         for feature, present in results["cpu_features"].items())
    peers = [row for row in results["rows"] if row["kind"] == "peer"]
    target_headers = [f"to {target:.2%}" for target in results["targets"]]
    lines = [
        f"Machine: {results['machine']} (CPU: {features}); {results['mode']} run. Training seconds include "
        "compilation and tracing, exclude the test-set evaluations; accuracy is on the "
        f"{'first 1,000 (peers) or all 10,000 (recipes)' if results['mode'] == 'quick' else '10,000'} test images. "
        "load: the 1-minute load average after the row (2.0 = both cores busy with other work).",
        "",
        "| row | " + "".join(f"× faster than {peer['key']} | " for peer in peers)
        + "seeds | training s (median) | test accuracy (mean) | " + " | ".join(target_headers) + " | load |",
        "| --- | " + "---: | " * len(peers) + "--- | ---: | ---: | " + "---: | " * len(target_headers) + "---: |",
    ]
    for row in results["rows"]:
        cells = [row["name"], *(f"**{row['times_faster_than'][peer['key']]:.2f}×**" for peer in peers),
                 ",".join(map(str, row["seeds"])), f"{row['train_seconds_median']:.1f}",
                 f"{row['test_accuracy_mean']:.2%}",
                 *(seconds_text(row["time_to"][f"{target:.4f}"]) for target in results["targets"]),
                 f"{row['load_average']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for row in results["unavailable"]:
        lines.append(f"| {row['name']} | unavailable: {row['reason']} |" + " |" * (3 + len(target_headers) + len(peers)))
    return "\n".join(lines) + "\n"


def accuracy_figure(rows: list[dict[str, Any]], targets: list[float], ax=None):
    """Mean test accuracy against median training seconds, one line (or point) per row; returns the Figure."""
    import matplotlib.pyplot as plt

    figure, ax = (plt.subplots(figsize=(9, 5.5)) if ax is None else (ax.figure, ax))
    for row in rows:
        points = row["curve"] or [{"seconds": row["train_seconds_median"], "test_accuracy": row["test_accuracy_mean"]}]
        style = "o-" if row["kind"] == "recipe" else "s--"
        ax.plot([point["seconds"] for point in points], [100 * point["test_accuracy"] for point in points], style,
                label=row["name"], markersize=5)
    for target in targets:
        ax.axhline(100 * target, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("training seconds (median over seeds, log scale)")
    ax.set_ylabel("test accuracy, % (mean over seeds)")
    lowest = min([100 * point["test_accuracy"] for row in rows for point in row["curve"]] + [100 * min(targets)])
    ax.set_ylim(max(lowest - 0.2, 90), 100)
    ax.legend(fontsize="small", loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    return figure


def write_results(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    harness.write_results(out, RESULT_STEM, results, markdown_table(results))
    figure = accuracy_figure(results["rows"], results["targets"])
    figure.suptitle(results["machine"], fontsize="small")
    figure.tight_layout()
    figure.savefig(out / f"{RESULT_STEM}.png", dpi=100)
    plt.close(figure)


# ------------------------------------------------------------------ command line


def row_seeds(text: str) -> tuple[str, list[int]]:
    """`ROW=S,S,...` (a recipe or peer name and its seeds), for --row-seeds."""
    row, _, seeds = text.partition("=")
    if row not in (*RECIPES, *PEERS_BY_NAME):
        raise argparse.ArgumentTypeError(f"unknown row {row!r}; choose one of {', '.join((*RECIPES, *PEERS_BY_NAME))}")
    try:
        return row, [int(seed) for seed in seeds.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: seeds must be whole numbers, as in cnn=1,2") from None


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: one seed, one epoch, recipes {', '.join(QUICK_RECIPES)} and peers "
                             f"{', '.join(QUICK_PEERS)} unless chosen")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds for our recipes (default 1-5)")
    parser.add_argument("--peer-seeds", nargs="+", type=int, help="seeds for the peers (default 1-3)")
    parser.add_argument("--row-seeds", nargs="+", type=row_seeds, default=[], metavar="ROW=S,S",
                        help="seeds for one row, instead of --seeds or --peer-seeds (e.g. cnn=1,2 pytorch_mnist=1)")
    parser.add_argument("--recipes", nargs="*", choices=RECIPES, help=f"default: all ({', '.join(RECIPES)})")
    parser.add_argument("--peers", nargs="*", choices=list(PEERS_BY_NAME), help="default: all")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"where {RESULT_STEM}.json, .md and .png go (default {DEFAULT_OUT})")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep our recipes' run directories, as DIR/RECIPE-seedN (default: none kept)")
    options = parser.parse_args(argv)
    options.row_seeds = dict(options.row_seeds)
    if options.seeds is None:
        options.seeds = list(DEFAULT_SEEDS[:1] if options.quick else DEFAULT_SEEDS)
    if options.peer_seeds is None:
        options.peer_seeds = list(DEFAULT_SEEDS[:1] if options.quick else DEFAULT_PEER_SEEDS)
    if options.recipes is None:
        options.recipes = list(QUICK_RECIPES if options.quick else RECIPES)
    if options.peers is None:
        options.peers = list(QUICK_PEERS if options.quick else PEERS_BY_NAME)
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_arguments(argv)
    results = benchmark(options)
    write_results(results, options.out)
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
