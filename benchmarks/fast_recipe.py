"""Train a named recipe (or variants of it) on seeds 1-5; print test accuracy and training time.

    python benchmarks/fast_recipe.py [--recipe fast|seed] ['{"epochs": 8, "batch_size": 256}' ...]

Each argument is a JSON table of overrides on top of the recipe. Used to choose
the fast recipe and to check the seed recipe's accuracy on the default path.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path

SEEDS = (1, 2, 3, 4, 5)


def main(arguments: list[str]) -> None:
    from mnist_keras.backends import select_backend
    from mnist_keras.recipes import get_recipe

    recipe = get_recipe(arguments[1]) if arguments[:1] == ["--recipe"] else get_recipe("fast")
    select_backend(None, recipe.model)
    from mnist_keras.data.mnist import load_mnist
    from mnist_keras.training.run import train_run

    arguments = arguments[2:] if arguments[:1] == ["--recipe"] else arguments
    mnist = load_mnist()
    for overrides in arguments or ["{}"]:
        config = dataclasses.replace(recipe, **json.loads(overrides))
        accuracies, seconds = [], []
        for seed in SEEDS:
            with tempfile.TemporaryDirectory() as directory:
                metrics = train_run(dataclasses.replace(config, seed=seed), mnist, Path(directory) / "run",
                                    verbose=0, export_onnx=False)
            accuracies.append(metrics["test_accuracy"])
            seconds.append(metrics["train_seconds"])
            print(f"  seed {seed}: {metrics['test_accuracy']:.4f} in {metrics['train_seconds']:.1f} s", flush=True)
        print(
            f"{overrides}: mean test accuracy {statistics.mean(accuracies):.4%}, "
            f"median train time {statistics.median(seconds):.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
