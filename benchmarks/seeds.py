"""Train the seed recipe once per seed and summarise: the README's results table.

    python benchmarks/seeds.py --seeds 1 2 3 4 5 [--recipe-file FILE] [--out runs/seeds]

Prints a markdown table (test accuracy mean ± std, epochs, median seconds per
epoch, backend, machine) and writes it as JSON to benchmarks/results/seeds.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from mnist_keras import environment
from mnist_keras.config import Config, load_config
from mnist_keras.data import load_mnist
from mnist_keras.evaluate import read_history
from mnist_keras.pipeline import train_run as train

RESULTS = Path(__file__).parent / "results" / "seeds.json"


def run_seeds(config: Config, seeds: list[int], out: Path) -> dict:
    mnist = load_mnist()
    runs = []
    for seed in seeds:
        run_dir = out / f"seed-{seed}"
        metrics = train(dataclasses.replace(config, seed=seed), mnist, run_dir, verbose=0)
        # Epoch 1 includes compilation; the median of the rest is the steady-state speed.
        epoch_seconds = [row["seconds"] for row in read_history(run_dir)[1:]]
        runs.append({
            "seed": seed,
            "test_accuracy": metrics["test_accuracy"],
            "epochs_trained": metrics["epochs_trained"],
            "train_seconds": metrics["train_seconds"],
            "median_epoch_seconds": statistics.median(epoch_seconds) if epoch_seconds else None,
        })
        print(f"seed {seed}: test accuracy {metrics['test_accuracy']:.4f}, {metrics['epochs_trained']} epochs, "
              f"{metrics['train_seconds']:.1f} s", flush=True)
    accuracies = [run["test_accuracy"] for run in runs]
    return {
        "recipe": config.to_dict(),
        "backend": environment.backend_name(),
        "versions": environment.library_versions(),
        "machine": environment.machine_description(),
        "runs": runs,
        "mean_test_accuracy": statistics.mean(accuracies),
        "std_test_accuracy": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
    }


def markdown_table(summary: dict) -> str:
    lines = [
        "| seed | test accuracy | epochs | train seconds | median s/epoch |",
        "| --- | --- | --- | --- | --- |",
    ]
    for run in summary["runs"]:
        lines.append(f"| {run['seed']} | {run['test_accuracy']:.2%} | {run['epochs_trained']} | "
                     f"{run['train_seconds']:.1f} | {run['median_epoch_seconds']:.2f} |")
    lines.append(f"| **mean ± std** | **{summary['mean_test_accuracy']:.2%} ± {summary['std_test_accuracy']:.2%}** | "
                 f"{statistics.mean(run['epochs_trained'] for run in summary['runs']):.1f} | "
                 f"{statistics.mean(run['train_seconds'] for run in summary['runs']):.1f} | "
                 f"{statistics.median(run['median_epoch_seconds'] for run in summary['runs']):.2f} |")
    lines.append("")
    lines.append(f"Backend {summary['backend']} (Keras {summary['versions'].get('keras')}); "
                 f"machine: {summary['machine']}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--config", help="recipe file (default: the seed recipe)")
    parser.add_argument("--out", type=Path, default=Path("runs/seeds"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    config = load_config(args.config) if args.config else Config()
    summary = run_seeds(config, args.seeds, args.out)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(summary, indent=2) + "\n")
    print(markdown_table(summary))


if __name__ == "__main__":
    main()
