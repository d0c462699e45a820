"""Replace the model that ships in the package (mnist_keras.inference.shipped) with a run's, once it passes.

`ship_run` reads the run's model.onnx as the lean install will (ONNX Runtime),
scores it on the MNIST test set and on real handwriting (optdigits files), and
only when both reach their floors copies model.onnx, config.json and
metrics.json into a staging directory that replaces the shipped one in one
rename. A run that falls short changes nothing.

Run as a module (`python -m mnist_keras.evaluation.ship RUN`, what `make model`
does after training the cnn recipe) it prints what it measured.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from mnist_keras.errors import UserError
from mnist_keras.evaluation.metrics import compute_metrics, handwriting_accuracy, predict_probabilities
from mnist_keras.inference.predictors import load_predictor
from mnist_keras.inference.shipped import SHIPPED_DIR
from mnist_keras.rundir import (
    EXPORTED_MODEL_FILES,
    METRICS_FILE,
    check_run_dir,
    read_json,
    replace_path,
    staging_path,
)

# The shipped model must read MNIST at least as well as the cnn recipe's worst seed seen (99.54%),
# and real handwriting (optdigits files) no worse than the recipe's runs (96.3-97.2%).
MIN_TEST_ACCURACY = 0.995
MIN_HANDWRITING_ACCURACY = 0.96


class ShipError(UserError):
    """A run that cannot become the shipped model (missing export, accuracy under a floor)."""


def ship_run(run_dir: str | Path, mnist: Any, shipped_dir: Path = SHIPPED_DIR,
             min_test_accuracy: float = MIN_TEST_ACCURACY,
             min_handwriting_accuracy: float = MIN_HANDWRITING_ACCURACY) -> dict[str, float]:
    """Check the run's ONNX model, then make it the shipped one; return what was measured."""
    run_dir = check_run_dir(Path(run_dir))
    predictor = load_predictor(run_dir, engine="onnxruntime")
    measured = {
        "test_accuracy": compute_metrics(mnist.y_test, predict_probabilities(predictor, mnist.x_test))["test_accuracy"],
        "handwriting_accuracy": handwriting_accuracy(predictor),
    }
    recorded = read_json(run_dir / METRICS_FILE)
    if measured["test_accuracy"] < min_test_accuracy:
        raise ShipError(f"{run_dir}'s model.onnx reads {measured['test_accuracy']:.2%} of MNIST test, under the "
                        f"{min_test_accuracy:.2%} a shipped model needs; the shipped model is unchanged")
    if measured["handwriting_accuracy"] < min_handwriting_accuracy:
        raise ShipError(f"{run_dir}'s model.onnx reads {measured['handwriting_accuracy']:.2%} of the optdigits files, "
                        f"under the {min_handwriting_accuracy:.2%} a shipped model needs; the shipped model is unchanged")
    if abs(recorded.get("test_accuracy", -1) - measured["test_accuracy"]) > 1e-3:
        raise ShipError(f"{run_dir}'s model.onnx reads {measured['test_accuracy']:.2%} of MNIST test but its "
                        f"{METRICS_FILE} says {recorded.get('test_accuracy')}: re-export it (mnist-keras export)")
    staging = staging_path(shipped_dir)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name in EXPORTED_MODEL_FILES:
            shutil.copyfile(run_dir / name, staging / name)
        replace_path(staging, shipped_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return measured


def main(argv: list[str] | None = None) -> int:
    from mnist_keras.data.mnist import load_mnist

    parser = argparse.ArgumentParser(prog="python -m mnist_keras.evaluation.ship",
                                     description="Make a run's model.onnx the model that ships in the package.")
    parser.add_argument("run", metavar="RUN", help="a run directory with a current model.onnx (a cnn run)")
    parser.add_argument("--data", metavar="PATH", help="MNIST files, as for mnist-keras --data")
    args = parser.parse_args(argv)
    try:
        measured = ship_run(args.run, load_mnist(args.data))
    except UserError as error:
        print(f"ship: error: {error}", file=sys.stderr)
        return 2
    print(f"shipped {args.run} → {SHIPPED_DIR}: MNIST test {measured['test_accuracy']:.2%}, "
          f"optdigits files {measured['handwriting_accuracy']:.2%} (ONNX Runtime)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
