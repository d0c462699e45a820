"""Does today's training loop compute what an earlier commit's did? Per-epoch numbers, side by side.

    python benchmarks/compare_loop.py COMMIT [--seeds 1 2 3 4 5] [--epochs N]

Checks out COMMIT in a temporary git worktree, trains the seed recipe (JAX) for
each seed with that commit's code and with this checkout's, in separate
processes on this machine, and compares every history.csv column except the
seconds, and the median seconds per epoch (epochs 2..n) of each. Prints one line per seed, then the
speed ratio over all seeds, and exits 1 if any number differs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
COMPARED = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")

# Trains with whichever mnist_keras is first on sys.path; old commits have train.train, new ones pipeline.train_run.
TRAINING = """
import dataclasses, json, os, sys
sys.path.insert(0, {source!r})
os.environ["KERAS_BACKEND"] = "jax"
from mnist_keras.config import Config
from mnist_keras.data.mnist import load_mnist
config = dataclasses.replace(Config(), seed={seed}, epochs={epochs})
try:
    from mnist_keras.training.run import train_run
    metrics = train_run(config, load_mnist(), {out!r}, verbose=0, export_onnx=False)
except ImportError:
    from mnist_keras.training.train import train
    metrics = train(config, load_mnist(), {out!r}, verbose=0)
print(json.dumps(metrics["test_accuracy"]))
"""


def train(source: Path, seed: int, epochs: int, out: Path) -> tuple[list[dict[str, str]], float]:
    code = TRAINING.format(source=str(source), seed=seed, epochs=epochs, out=str(out))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "KERAS_BACKEND": "jax"})
    if result.returncode != 0:
        raise SystemExit(f"training with {source} failed: {result.stderr.strip().splitlines()[-1]}")
    with open(out / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle)), json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit", help="the earlier commit to compare against")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--epochs", type=int, default=30, help="at most this many epochs (default: the seed's 30)")
    options = parser.parse_args(argv)
    differing, earlier_seconds, today_seconds = 0, [], []
    with tempfile.TemporaryDirectory() as directory:
        worktree = Path(directory) / "earlier"
        subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", str(worktree), options.commit],
                       check=True, capture_output=True)
        try:
            for seed in options.seeds:
                earlier, earlier_accuracy = train(worktree / "src", seed, options.epochs, Path(directory) / f"e{seed}")
                today, today_accuracy = train(REPOSITORY / "src", seed, options.epochs, Path(directory) / f"t{seed}")
                same = [{key: row[key] for key in COMPARED} for row in earlier] == [
                    {key: row[key] for key in COMPARED} for row in today]
                differing += not same
                earlier_seconds += [float(row["seconds"]) for row in earlier[1:]]
                today_seconds += [float(row["seconds"]) for row in today[1:]]
                print(f"seed {seed}: {len(earlier)} vs {len(today)} epochs, test accuracy {earlier_accuracy:.4%} vs "
                      f"{today_accuracy:.4%}: {'identical' if same else 'DIFFERENT'} per-epoch numbers", flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "remove", "--force", str(worktree)],
                           capture_output=True)
    earlier_median, today_median = statistics.median(earlier_seconds), statistics.median(today_seconds)
    print(f"median s/epoch (epochs 2..n, all seeds): {options.commit[:10]} {earlier_median:.3f}, today "
          f"{today_median:.3f} ({today_median / earlier_median:.3f}x); load average now {os.getloadavg()[0]:.1f}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
