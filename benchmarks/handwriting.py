"""Accuracy on handwriting that is not MNIST, and the "not a digit" decision, for one or more runs.

    python benchmarks/handwriting.py RUN [RUN ...] [--count 2000] [--negatives 2000] [--seed 0] [--json FILE]

Every image is read by the same code as `mnist-keras predict`: files through
`mnist_keras.inference.images.preprocess_image_file`, the run's Keras model, then
`digit_probabilities` and `is_digit` from `mnist_keras.inference.decision`. Sets:

- optdigits: scikit-learn's 1,797 8×8 digits upscaled to 64×64 PNG, dark on
  light and light on dark (3,594 files);
- faint 28×28: MNIST test digits as users' own 28×28 drawings (thin, ink
  peaking at grey 140, off-centre), saved as PNG;
- re-drawn: MNIST test digits re-drawn on paper by `mnist_keras.evaluation.redraw`;
- photos: MNIST test digits photographed on paper
  (`mnist_keras.evaluation.handwriting.write_photos`: a shadow, lined paper,
  coloured paper, a stray dot, a ruled line, in turn);
- MNIST test: the test set through the image path (28×28 PNG files);
- held-out negatives: `mnist_keras.evaluation.handwriting.heldout_negatives`
  (letters drawn as pen strokes and in STIX / Computer Modern fonts, words,
  spirals, zigzags, loops, noise, stripes, checkerboards, flat grey), files and
  raw pixels.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import harness
import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", metavar="RUN", nargs="+", help="run directories")
    parser.add_argument("--count", type=int, default=2000, help="MNIST test digits per derived set (default 2000)")
    parser.add_argument("--negatives", type=int, default=2000, help="held-out non-digits (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the derived sets (default 0)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument("--outputs", metavar="FILE",
                        help="also save every input and model output to FILE (.npz, first run), to calibrate is_digit")
    args = parser.parse_args(argv)

    harness.select_backend_for_run(args.runs[0])

    from mnist_keras.data.mnist import load_mnist
    from mnist_keras.evaluation import handwriting
    from mnist_keras.evaluation.redraw import write_redrawn
    from mnist_keras.inference.predictors import KerasPredictor

    mnist = load_mnist()
    digits, labels = mnist.x_test[: args.count], mnist.y_test[: args.count]
    sets: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="handwriting-") as directory:
        root = Path(directory)
        paths, optdigit_labels = handwriting.write_optdigits(root / "optdigits")
        sets["optdigits"] = (*handwriting.read_files(paths), optdigit_labels)
        faint = handwriting.faint_user_digits(digits, seed=args.seed)
        sets["faint 28x28"] = (*handwriting.read_files(handwriting.write_images(faint, labels, root / "faint",
                                                                                  "faint")), labels)
        sets["re-drawn"] = (*handwriting.read_files(write_redrawn(digits, root / "redrawn", seed=args.seed)), labels)
        photo_paths, _ = handwriting.write_photos(digits, root / "photos", seed=args.seed)
        sets["photos"] = (*handwriting.read_files(photo_paths), labels)
        sets["MNIST test"] = (*handwriting.read_files(handwriting.write_images(digits, labels, root / "mnist",
                                                                                 "mnist")), labels)
        negatives = handwriting.heldout_negatives(args.negatives, args.seed)
        negative_inputs, negative_readable = handwriting.negative_inputs(negatives, root / "negatives")

    results = {}
    for run in args.runs:
        predictor = KerasPredictor(run)
        results[run] = measure(predictor, sets, negatives, negative_inputs, negative_readable)
        print_run(run, results[run])
        if args.outputs and run == args.runs[0]:
            save_outputs(args.outputs, predictor, sets, negatives, negative_inputs, negative_readable)
    if args.json:
        harness.write_json(args.json, results)
    return 0


# Thresholds tried for the trade-off table: "not a digit" probability (11-output models) or
# 1 - top probability (10-output models) at or above which an image is refused.
TRADEOFF_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def refusal_scores(inputs: np.ndarray, outputs: np.ndarray, readable: np.ndarray) -> np.ndarray:
    """How strongly each image looks like no digit, in [0, 1]; 2 for what the image rules or reading refuse."""
    from mnist_keras.constants import NUM_CLASSES
    from mnist_keras.inference.decision import MAX_INK_COVERAGE, ink_coverage

    outputs = np.asarray(outputs, dtype=np.float64)
    scores = outputs[:, NUM_CLASSES] if outputs.shape[1] > NUM_CLASSES else 1 - outputs.max(axis=1)
    refused_anyway = ~readable | np.array([ink_coverage(image) > MAX_INK_COVERAGE for image in inputs])
    return np.where(refused_anyway, 2.0, scores)


def tradeoff(digit_scores: np.ndarray, negative_scores: np.ndarray) -> list[dict]:
    """For each threshold: the share of real digits kept as digits and of non-digits refused."""
    return [{"threshold": threshold, "digits_kept": round(float((digit_scores < threshold).mean()), 4),
             "negatives_refused": round(float((negative_scores >= threshold).mean()), 4)}
            for threshold in TRADEOFF_THRESHOLDS]


def measure(predictor, sets, negatives, negative_inputs, negative_readable) -> dict:
    from mnist_keras.evaluation.handwriting import is_digit_rates
    from mnist_keras.inference.decision import digit_probabilities

    figures: dict = {"sets": {}}
    digit_scores = []
    for name, (inputs, readable, labels) in sets.items():
        outputs = predictor.predict(inputs.reshape(len(inputs), -1))
        digit_scores.append(refusal_scores(inputs, outputs, readable))
        correct = (digit_probabilities(outputs).argmax(axis=1) == labels) & readable
        kept = is_digit_rates(inputs, outputs, readable)
        figures["sets"][name] = {"images": len(labels), "accuracy": round(float(correct.mean()), 4),
                                 "is_digit_true": round(float(kept.mean()), 4),
                                 "unreadable": int((~readable).sum())}
    outputs = predictor.predict(negative_inputs.reshape(len(negative_inputs), -1))
    refused = ~is_digit_rates(negative_inputs, outputs, negative_readable)
    figures["tradeoff"] = tradeoff(np.concatenate(digit_scores),
                                   refusal_scores(negative_inputs, outputs, negative_readable))
    kinds = np.array([negative.kind for negative in negatives])
    figures["negatives"] = {"images": len(negatives), "is_digit_false": round(float(refused.mean()), 4),
                            "per_kind": {kind: round(float(refused[kinds == kind].mean()), 4)
                                         for kind in dict.fromkeys(kinds)}}
    return figures


def save_outputs(path, predictor, sets, negatives, negative_inputs, negative_readable) -> None:
    arrays = {}
    for name, (inputs, readable, labels) in sets.items():
        key = name.replace(" ", "_")
        arrays[f"{key}_inputs"], arrays[f"{key}_readable"], arrays[f"{key}_labels"] = inputs, readable, labels
        arrays[f"{key}_outputs"] = predictor.predict(inputs.reshape(len(inputs), -1))
    arrays["negatives_inputs"], arrays["negatives_readable"] = negative_inputs, negative_readable
    arrays["negatives_outputs"] = predictor.predict(negative_inputs.reshape(len(negative_inputs), -1))
    arrays["negatives_kinds"] = np.array([negative.kind for negative in negatives])
    np.savez_compressed(path, **arrays)


def print_run(run: str, figures: dict) -> None:
    print(f"\nrun {run}")
    print(f"{'set':<14} {'images':>7} {'accuracy':>9} {'is_digit true':>14}")
    for name, row in figures["sets"].items():
        print(f"{name:<14} {row['images']:>7,} {row['accuracy']:>9.2%} {row['is_digit_true']:>14.2%}")
    negatives = figures["negatives"]
    print(f"{'non-digits':<14} {negatives['images']:>7,} {'':>9} {1 - negatives['is_digit_false']:>14.2%}"
          f"   (is_digit false {negatives['is_digit_false']:.2%})")
    print("  " + ", ".join(f"{kind} {rate:.0%}" for kind, rate in negatives["per_kind"].items()))
    print("trade-off (all real-digit sets pooled): threshold, digits kept, non-digits refused")
    for row in figures["tradeoff"]:
        print(f"  {row['threshold']:>5.2f}  {row['digits_kept']:>7.2%}  {row['negatives_refused']:>7.2%}")


if __name__ == "__main__":
    sys.exit(main())
