"""Seed studies: one recipe trained once per seed on the sweep engine, summarised as mean ± std.

`mnist-keras seeds RECIPE --seeds 1-5 --out DIR` is a sweep whose only searched
setting is `seed` (a grid), so it gets everything a sweep has (concurrency,
retries, --resume, a cluster); it then writes DIR/seeds.json and the markdown
table DIR/seeds.md that the README's results tables are copied from.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mnist_keras.config import Config
from mnist_keras.errors import UserError
from mnist_keras.rundir import write_json_atomic, write_text_atomic
from mnist_keras.sweeps.space import Dimension, Space
from mnist_keras.sweeps.tune import SweepResult

SEEDS_JSON = "seeds.json"
SEEDS_MD = "seeds.md"


def parse_seeds(text: str) -> tuple[int, ...]:
    """"1-5" or "1,2,7" or "1-3,9" → the seeds, in order, each once; UserError for anything else."""
    seeds: list[int] = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        low, dash, high = part.partition("-")
        try:
            first, last = int(low), int(high) if dash else int(low)
        except ValueError:
            raise UserError(f"--seeds expects numbers and ranges like 1-5 or 1,2,7; got {text!r}") from None
        if first > last:
            raise UserError(f"--seeds range {part!r} runs backwards")
        seeds.extend(seed for seed in range(first, last + 1) if seed not in seeds)
    if not seeds:
        raise UserError("--seeds names no seed")
    return tuple(seeds)


def seed_space(recipe: Config, seeds: Sequence[int]) -> Space:
    space = Space(recipe, (Dimension("seed", "grid", tuple(seeds)),))
    for seed in seeds:
        space.config_for({"seed": seed})  # a seed the recipe refuses is reported before Ray starts
    return space


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(result: SweepResult, recipe: Config, recipe_name: str, machine: str, backend: str) -> dict[str, Any]:
    """seeds.json's content: one entry per seed and the mean ± std of test accuracy and training time."""
    runs = sorted(
        ({"seed": row["seed"], "test_accuracy": row["test_accuracy"], "epochs_trained": row["epochs_trained"],
          "train_seconds": row["train_seconds"], "trial_id": row["trial_id"]}
         for row in result.rows if row["status"] == "completed"),
        key=lambda run: run["seed"],
    )
    if not runs:
        raise UserError(f"no seed finished; see the trials in {result.out}")
    accuracy_mean, accuracy_std = mean_std([run["test_accuracy"] for run in runs])
    seconds_mean, seconds_std = mean_std([run["train_seconds"] for run in runs])
    return {
        "recipe_name": recipe_name,
        "recipe": recipe.to_dict(),
        "backend": backend,
        "machine": machine,
        "runs": runs,
        "failed_seeds": sorted(row["seed"] for row in result.rows if row["status"] != "completed"),
        "mean_test_accuracy": accuracy_mean,
        "std_test_accuracy": accuracy_std,
        "mean_train_seconds": seconds_mean,
        "std_train_seconds": seconds_std,
    }


def markdown_table(summary: dict[str, Any]) -> str:
    lines = [
        f"Recipe `{summary['recipe_name']}`, backend {summary['backend']}, {summary['machine']}.",
        "",
        "| seed | test accuracy | epochs | train seconds |",
        "| --- | --- | --- | --- |",
    ]
    for run in summary["runs"]:
        lines.append(f"| {run['seed']} | {run['test_accuracy']:.2%} | {run['epochs_trained']} | "
                     f"{run['train_seconds']:.1f} |")
    lines.append(f"| **mean ± std** | **{summary['mean_test_accuracy']:.2%} ± {summary['std_test_accuracy']:.2%}** "
                 f"| | **{summary['mean_train_seconds']:.1f} ± {summary['std_train_seconds']:.1f}** |")
    return "\n".join(lines) + "\n"


def write_summary(out: Path, summary: dict[str, Any]) -> str:
    """DIR/seeds.json and DIR/seeds.md; returns the markdown."""
    table = markdown_table(summary)
    write_json_atomic(out / SEEDS_JSON, summary)
    write_text_atomic(out / SEEDS_MD, table)
    return table
