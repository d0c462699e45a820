"""How a run reads European handwriting styles: 1s with a flag (and a foot), 7s with a crossbar.

    python benchmarks/european_styles.py RUN [RUN ...] [--count 100] [--seed 0]

MNIST's writers were American: their 1 is one stroke and their 7 is not
crossed. Each style is drawn here as dark pen strokes on a 200×200 white
canvas (pen 6-17 px, slant, a little jitter), saved as PNG and read by the same
code as `mnist-keras predict` (`mnist_keras.inference.images.preprocess_image_file`,
the run's model, `mnist_keras.inference.decision.is_digit`). Prints, per style,
how many are read as the right digit, how many are kept as digits, and the
wrong answers.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import harness
import numpy as np
from PIL import Image, ImageDraw

CANVAS = 200
PEN_WIDTHS = (6, 18)  # pixels, [low, high)
SLANTS = (-0.2, 0.3)  # horizontal lean per unit of height, left or right
JITTER = 2.0  # pixels, per stroke point


def one_with_flag(rng: np.random.Generator, foot: bool) -> list[list[tuple[float, float]]]:
    """A 1 whose stroke starts with a flag down-left of its top; with `foot`, a bar under it."""
    flag = (rng.uniform(0.3, 0.4), rng.uniform(0.3, 0.4))
    strokes = [[flag, (0.5, 0.15), (0.5, 0.85)]]
    return strokes + ([[(0.38, 0.85), (0.62, 0.85)]] if foot else [])


def seven(rng: np.random.Generator, crossed: bool) -> list[list[tuple[float, float]]]:
    """A 7, with or without a bar across its stem."""
    bar_height = rng.uniform(0.48, 0.56)
    strokes = [[(0.3, 0.2), (0.7, 0.2), (0.45, 0.85)]]
    return strokes + ([[(0.4, bar_height), (0.68, bar_height)]] if crossed else [])


STYLES = {
    "1 with a flag": (1, lambda rng: one_with_flag(rng, foot=False)),
    "1 with a flag and a foot": (1, lambda rng: one_with_flag(rng, foot=True)),
    "7 (plain, for comparison)": (7, lambda rng: seven(rng, crossed=False)),
    "7 crossed": (7, lambda rng: seven(rng, crossed=True)),
}


def drawing(strokes: list[list[tuple[float, float]]], rng: np.random.Generator) -> Image.Image:
    """Strokes in unit coordinates drawn in black on a white canvas, slanted and jittered."""
    image = Image.new("L", (CANVAS, CANVAS), 255)
    pen = ImageDraw.Draw(image)
    width, slant = int(rng.integers(*PEN_WIDTHS)), rng.uniform(*SLANTS)
    for stroke in strokes:
        points = [((x + slant * (0.5 - y)) * CANVAS + rng.normal(0, JITTER), y * CANVAS + rng.normal(0, JITTER))
                  for x, y in stroke]
        pen.line(points, fill=0, width=width, joint="curve")
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", metavar="RUN", nargs="+", help="run directories")
    parser.add_argument("--count", type=int, default=100, help="drawings per style (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the drawings (default 0)")
    args = parser.parse_args()

    harness.select_backend_for_run(args.runs[0])

    from mnist_keras.environment import machine_description
    from mnist_keras.inference.decision import digit_probabilities, is_digit
    from mnist_keras.inference.images import preprocess_image_file
    from mnist_keras.model import load_run_model

    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="european-") as directory:
        inputs = {}
        for name, (label, strokes) in STYLES.items():
            paths = []
            for index in range(args.count):
                paths.append(Path(directory) / f"{label}-{len(inputs)}-{index}.png")
                drawing(strokes(rng), rng).save(paths[-1])
            inputs[name] = np.stack([preprocess_image_file(path).reshape(-1) for path in paths])
    print(machine_description())
    for run in args.runs:
        model = load_run_model(run)
        print(f"\nrun {run}")
        print(f"{'style':<28}{'read right':>11}{'is_digit':>10}  wrong answers")
        for name, (label, _) in STYLES.items():
            outputs = model.predict(inputs[name], verbose=0)
            answers = digit_probabilities(outputs).argmax(axis=1)
            kept = np.mean([is_digit(image, row) for image, row in zip(inputs[name], outputs)])
            wrong = Counter(int(answer) for answer in answers[answers != label])
            print(f"{name:<28}{np.mean(answers == label):>11.1%}{kept:>10.1%}  "
                  + (", ".join(f"{digit}: {count}" for digit, count in sorted(wrong.items())) or "none"))


if __name__ == "__main__":
    main()
