"""How well `mnist-keras predict` reads real handwriting: MNIST test digits re-drawn as people supply them.

    python benchmarks/redrawn_accuracy.py RUN [--count 10000] [--seed 0] [--json FILE]

Each test digit is re-drawn dark on light paper, 200-400 px canvas, anywhere
on it, with noise, saved in turn as RGB PNG, RGBA PNG (transparent
background), grey PNG and JPEG (`mnist_keras.evaluation.redraw`). The files are read by
the same function as `mnist-keras predict` (`mnist_keras.inference.predictors.read_image_files`)
and the accuracy compared with the model's on the same digits in MNIST form.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import harness
import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", metavar="RUN", help="run directory")
    parser.add_argument("--count", type=int, default=10_000, help="test digits to use (default: all 10,000)")
    parser.add_argument("--seed", type=int, default=0, help="seed for positions, sizes, noise (default 0)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args(argv)

    from mnist_keras.data.mnist import load_mnist, preprocess_images
    from mnist_keras.evaluation.redraw import STYLES, write_redrawn
    from mnist_keras.inference.predictors import load_predictor, read_image_files

    mnist = load_mnist()
    digits, labels = mnist.x_test[: args.count], mnist.y_test[: args.count]
    predictor = load_predictor(args.run)
    mnist_correct = predictor.predict(preprocess_images(digits)).argmax(axis=1) == labels
    with tempfile.TemporaryDirectory(prefix="redrawn-") as directory:
        paths = write_redrawn(digits, directory, seed=args.seed)
        started = time.perf_counter()
        records = read_image_files(predictor, paths)
        seconds = time.perf_counter() - started
    failed = [record for record in records if "error" in record]
    predicted = np.array([record.get("digit", -1) for record in records])
    redrawn_correct = predicted == labels
    styles = list(STYLES)
    results = {
        "run": args.run,
        "digits": len(labels),
        "mnist_form_accuracy": round(float(mnist_correct.mean()), 4),
        "redrawn_accuracy": round(float(redrawn_correct.mean()), 4),
        "per_style": {style: round(float(redrawn_correct[index :: len(styles)].mean()), 4)
                      for index, style in enumerate(styles)},
        "unreadable_files": len(failed),
        "milliseconds_per_image": round(1000 * seconds / len(labels), 2),
        "machine": harness.machine_line(python=True),
    }
    print(f"digits            {results['digits']:,} from the MNIST test set")
    print(f"MNIST form        {results['mnist_form_accuracy']:.2%}")
    print(f"re-drawn          {results['redrawn_accuracy']:.2%}  (difference "
          f"{100 * (results['redrawn_accuracy'] - results['mnist_form_accuracy']):+.2f} points)")
    for style, accuracy in results["per_style"].items():
        print(f"  {style:<15} {accuracy:.2%}")
    print(f"unreadable files  {results['unreadable_files']}")
    print(f"time              {results['milliseconds_per_image']} ms per image (decode, preprocess, predict)")
    if args.json:
        harness.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
