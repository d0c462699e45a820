"""Thick soft strokes thinned (`images.thinned`) or not: what `predict` reads right on each real-digit set.

    python benchmarks/thinning.py RUN [--count 2000] [--seed 0] [--negatives 2000]

The sets are `benchmarks/handwriting.py`'s (optdigits files, faint 28×28
drawings, re-drawn, photos, MNIST test digits as files), read from their files
as `predict` prepares them, with thinning (today's preparation) and without it
(THICK_STROKE_WIDTH raised out of reach); plus the held-out non-digits refused.
A digit counts when it is accepted (`is_digit`) and its digit is right.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", metavar="RUN", help="run directory (model.onnx or model.keras)")
    parser.add_argument("--count", type=int, default=2000, help="MNIST test digits per derived set (default 2000)")
    parser.add_argument("--negatives", type=int, default=2000, help="held-out non-digits (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the derived sets (default 0)")
    args = parser.parse_args(argv)

    import harness

    from mnist_keras.data.mnist import load_mnist
    from mnist_keras.evaluation import handwriting
    from mnist_keras.evaluation.redraw import write_redrawn
    from mnist_keras.inference import images
    from mnist_keras.inference.decision import digit_probabilities
    from mnist_keras.inference.predictors import load_predictor

    predictor = load_predictor(Path(args.run))
    mnist = load_mnist()
    digits, labels = mnist.x_test[: args.count], mnist.y_test[: args.count]
    width = images.THICK_STROKE_WIDTH
    with tempfile.TemporaryDirectory(prefix="thinning-") as directory:
        root = Path(directory)
        sets = {"optdigits files": handwriting.write_optdigits(root / "optdigits"),
                "faint 28x28": (handwriting.write_images(handwriting.faint_user_digits(digits, seed=args.seed),
                                                         labels, root / "faint", "faint"), labels),
                "re-drawn": (write_redrawn(digits, root / "redrawn", seed=args.seed), labels),
                "photos": (handwriting.write_photos(digits, root / "photos", seed=args.seed)[0], labels),
                "MNIST test files": (handwriting.write_images(digits, labels, root / "mnist", "mnist"), labels)}
        negatives = handwriting.heldout_negatives(args.negatives, args.seed)
        rows = {}
        for name, threshold in (("thinned", width), ("not thinned", np.inf)):
            images.THICK_STROKE_WIDTH = threshold
            row = {}
            for set_name, (paths, set_labels) in sets.items():
                inputs, readable = handwriting.read_files(paths)
                outputs = predictor.predict(inputs.reshape(len(inputs), -1))
                right = handwriting.is_digit_rates(inputs, outputs, readable) \
                    & (digit_probabilities(outputs).argmax(axis=1) == set_labels)
                row[set_name] = float(right.mean())
            inputs, readable = handwriting.negative_inputs(negatives, root / f"negatives-{len(rows)}")
            outputs = predictor.predict(inputs.reshape(len(inputs), -1))
            row["non-digits refused"] = float((~handwriting.is_digit_rates(inputs, outputs, readable)).mean())
            rows[name] = row
        images.THICK_STROKE_WIDTH = width
    print(harness.machine_line())
    print(f"run {args.run}; thick strokes: wider than {width} px, faintest {images.THICK_INK_CUT} of ink cut")
    print("| set | thinned | not thinned |\n| --- | ---: | ---: |")
    for set_name in rows["thinned"]:
        print(f"| {set_name} | {rows['thinned'][set_name]:.2%} | {rows['not thinned'][set_name]:.2%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
