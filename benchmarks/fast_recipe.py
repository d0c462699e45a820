"""Train a named recipe (or variants of it) on seeds 1-5; print test accuracy and training time.

    python benchmarks/fast_recipe.py [--recipe fast|seed] ['{"epochs": 8, "batch_size": 256}' ...]

Each argument is a JSON table of overrides on top of the recipe. Used to choose
the fast recipe and to check the seed recipe's accuracy on the default path.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys

import harness

from mnist_keras.recipes import RECIPES, get_recipe

SEEDS = (1, 2, 3, 4, 5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="fast", choices=sorted(RECIPES),
                        help="named recipe to start from (default fast)")
    parser.add_argument("overrides", nargs="*", metavar="JSON",
                        help='a table of overrides per variant, e.g. \'{"epochs": 8}\' (default: the recipe as it is)')
    args = parser.parse_args(argv)

    from mnist_keras.backends import select_backend

    recipe = get_recipe(args.recipe)
    select_backend(None, recipe.model)
    from mnist_keras.data.mnist import load_mnist

    mnist = load_mnist()
    for overrides in args.overrides or ["{}"]:
        config = dataclasses.replace(recipe, **json.loads(overrides))
        accuracies, seconds = [], []
        for seed, metrics in harness.train_on_seeds(config, mnist, SEEDS):
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
