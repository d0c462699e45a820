"""Two concurrent one-core trials against the same two trials one after another (on every core).

    python benchmarks/concurrency.py [--recipe seed] [--epochs 3] [--limit N] [--out runs/concurrency]

Both arms run through the sweep engine (`mnist_keras.sweeps.tune`, Ray embedded), on
a grid over seeds 1 and 2, so Ray's start-up and each trial's compilation are
counted the way a user pays them. Prints the wall-clock seconds of each arm
and the ratio sequential / concurrent: above 1, concurrent trials finish the
pair sooner and `mnist_keras.sweeps.tune.DEFAULT_TRIALS_PER_NODE` should be raised. Measure on a
quiet machine; the smoke run (`--epochs 1 --limit 2000`) only proves it works.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

from mnist_keras.environment import machine_description
from mnist_keras.recipes import RECIPES, get_recipe
from mnist_keras.sweeps.space import Dimension, Space
from mnist_keras.sweeps.tune import SweepPlan, run_sweep

SEEDS = (1, 2)


def timed_sweep(space: Space, out: Path, concurrent: int, limit: int | None) -> tuple[float, list[dict]]:
    shutil.rmtree(out, ignore_errors=True)
    plan = SweepPlan(space, out, max_concurrent=concurrent, limit=limit, export_onnx=False)
    start = time.perf_counter()
    result = run_sweep(plan, progress=lambda line: print(f"  {line}", flush=True))
    return time.perf_counter() - start, result.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="seed", choices=sorted(RECIPES))
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3)")
    parser.add_argument("--limit", type=int, help="train and test on the first N images only (smoke runs)")
    parser.add_argument("--out", type=Path, default=Path("runs/concurrency"))
    args = parser.parse_args()

    # A fixed number of epochs in both arms: early stopping would make the arms unequal.
    recipe = dataclasses.replace(get_recipe(args.recipe), epochs=args.epochs, early_stopping=False)
    space = Space(recipe, (Dimension("seed", "grid", SEEDS),))
    print("two trials one after another, each on every core:", flush=True)
    sequential, sequential_rows = timed_sweep(space, args.out / "sequential", 1, args.limit)
    print("two trials at once, one core each:", flush=True)
    concurrent, concurrent_rows = timed_sweep(space, args.out / "concurrent", 2, args.limit)
    ratio = sequential / concurrent
    summary = {
        "recipe": args.recipe, "epochs": args.epochs, "limit": args.limit, "machine": machine_description(),
        "sequential_seconds": sequential, "concurrent_seconds": concurrent, "ratio": ratio,
        "train_seconds": {"sequential": [row["train_seconds"] for row in sequential_rows],
                          "concurrent": [row["train_seconds"] for row in concurrent_rows]},
    }
    print(json.dumps(summary, indent=2))
    print(f"sequential {sequential:.1f} s, concurrent {concurrent:.1f} s: ratio {ratio:.2f} "
          f"({'concurrent trials win' if ratio > 1 else 'one trial at a time wins'})")


if __name__ == "__main__":
    main()
