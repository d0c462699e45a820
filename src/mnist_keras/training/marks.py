"""Train the mark reader (`mnist_keras.inference.marks`): one to three touching digits read whole.

    python -m mnist_keras.training.marks OUT [--samples 80000] [--epochs 8] [--test-samples 3000] [--seed 0]
                                             [--data PATH] [--ship]

(`make mark-reader` trains it into runs/mark-reader/ and ships it.) The marks
are written with MNIST *training* digits, as `mnist_keras.evaluation.numbers`
writes numbers (scaled, slanted, on an uneven baseline) but with every pair of
neighbours touching or close, and then made into the reader's input the way
`read` makes it from a photo: drawn on paper (either polarity, noise, blur),
found by `images.find_ink` and lifted by `images.stroke_ink`. A share of
them are single digits, so the reader says "one" as surely as "two". Each
frame is labelled with the digit whose middle it is (within CORE of the
digit's width from its centre of mass), else BLANK.

`train_mark_reader` returns the model and what it measured on marks written
with MNIST *test* digits (whole-mark accuracy by count); `export_mark_reader`
writes the ONNX file and card the package ships, checked against Keras first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mnist_keras.constants import IMAGE_SIDE
from mnist_keras.evaluation.numbers import INK_LEVEL, SLANT, place_line, render_line, uniform
from mnist_keras.inference.images import BlankImageError, find_ink, stroke_ink
from mnist_keras.inference.marks import (
    BLANK,
    CLASSES,
    FRAME_COLUMNS,
    FRAMES,
    MAX_DIGITS,
    READER_CARD,
    READER_DIR,
    READER_MODEL,
    READER_WIDTH,
    Placement,
    decode,
    reader_input,
)

# How many digits a training mark holds, and how often: single digits teach it to say "one".
DIGIT_COUNTS = tuple(range(1, MAX_DIGITS + 1))
DIGIT_COUNT_SHARES = (0.3, 0.45, 0.25)
# Neighbours overlap by up to this share of the height, or stand up to this far apart (negative overlap):
# a mark the reader is asked about is one blob or blobs close enough to be taken for one digit.
OVERLAP = (-0.08, 0.15)
HEIGHTS = (24.0, 64.0)  # pixels: the digits' height as written
MARGIN = 4  # pixels of paper round the mark
PAPER_LEVELS = (0.7, 1.0)
INK_LEVELS = (0.0, 0.3)
NOISE_SIGMAS = (0.0, 0.04)
BLUR_SIGMAS = (0.0, 1.0)
# A frame is a digit's when its middle is within this share of the digit's width (its inked columns)
# from the digit's centre of mass, or is the frame nearest that centre; other frames are BLANK.
CORE = 0.25
BATCH_SIZE = 128
LEARNING_RATE = 2e-3
SAMPLES = 80_000
TEST_SAMPLES = 3_000
EPOCHS = 8
CHUNK = 2_000  # marks per random stream (and per task for the worker processes)
# The ONNX export must give Keras's probabilities to this much.
EXPORT_TOLERANCE = 1e-4

Placed = Sequence[tuple[int, int, np.ndarray]]  # (top, left, ink) of each digit, as place_line gives them


def written_mark(images: np.ndarray, labels: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One mark of touching or close digits drawn from (`images`, `labels`), as the reader sees it, its
    frames' labels (FRAMES: digit + 1, or BLANK) and its digits."""
    from scipy import ndimage

    count = int(rng.choice(DIGIT_COUNTS, p=DIGIT_COUNT_SHARES))
    chosen = rng.integers(len(labels), size=count)
    placed = place_line([images[index] for index in chosen], rng, uniform(rng, HEIGHTS), uniform(rng, SLANT),
                        range(count - 1), overlap=OVERLAP)
    ink = np.pad(render_line(placed), MARGIN)
    blur = uniform(rng, BLUR_SIGMAS)
    if blur > 0.2:
        ink = ndimage.gaussian_filter(ink, blur)
    paper, pen = uniform(rng, PAPER_LEVELS), uniform(rng, INK_LEVELS)
    if rng.random() < 0.5:
        paper, pen = 1 - paper, 1 - pen
    gray = np.clip(paper + (pen - paper) * ink + rng.normal(0, uniform(rng, NOISE_SIGMAS), ink.shape), 0, 1)
    field, placement = reader_input(stroke_ink(find_ink(gray)))
    digits = [int(labels[index]) for index in chosen]
    return field, frame_labels(placed, digits, placement), digits


def frame_labels(placed: Placed, digits: Sequence[int], placement: Placement) -> np.ndarray:
    """Each frame's class: the digit (+ 1) whose middle it is, else BLANK (see CORE)."""
    centres, halves = [], []
    for _, left, shaped in placed:
        columns = np.flatnonzero((shaped >= INK_LEVEL).any(axis=0))
        mass = shaped.sum(axis=0)
        centre = left + MARGIN + float((mass * np.arange(mass.size)).sum() / mass.sum())
        centres.append(placement.to_input(centre))
        width = (columns[-1] - columns[0] + 1) * placement.scale if columns.size else 0.0
        halves.append(max(CORE * width, FRAME_COLUMNS / 2))
    middles = (np.arange(FRAMES) + 0.5) * FRAME_COLUMNS
    distance = np.abs(middles[:, None] - np.asarray(centres)[None, :])
    nearest = distance.argmin(axis=1)
    inside = distance[np.arange(FRAMES), nearest] <= np.asarray(halves)[nearest]
    return np.where(inside, np.asarray(digits)[nearest] + 1, BLANK).astype(np.int32)


def written_chunk(images: np.ndarray, labels: np.ndarray, count: int,
                  seed: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` marks (N × IMAGE_SIDE × READER_WIDTH, uint8 ink), their frame labels (N × FRAMES) and their
    digits (N × MAX_DIGITS, -1 past the last), from one random stream."""
    rng = np.random.default_rng(list(seed))
    fields = np.zeros((count, IMAGE_SIDE, READER_WIDTH), dtype=np.uint8)
    frames = np.zeros((count, FRAMES), dtype=np.int32)
    written = np.full((count, MAX_DIGITS), -1, dtype=np.int32)
    made = 0
    while made < count:
        try:
            field, frames[made], digits = written_mark(images, labels, rng)
        except BlankImageError:
            continue  # too faint on too noisy a paper to find: as `read` would miss it
        fields[made] = np.rint(field * 255)
        written[made, : len(digits)] = digits
        made += 1
    return fields, frames, written


_SOURCE: tuple[np.ndarray, np.ndarray] | None = None  # the digits a worker process writes with


def _set_source(images: np.ndarray, labels: np.ndarray) -> None:
    global _SOURCE
    _SOURCE = (images, labels)


def _written_chunk(count: int, seed: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    assert _SOURCE is not None, "a worker writes only after _set_source"
    return written_chunk(*_SOURCE, count, seed)


def written_marks(images: np.ndarray, labels: np.ndarray, count: int, seed: int,
                  workers: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` marks, frame labels and digits (as `written_chunk`), written in chunks of CHUNK by `workers`
    processes; the same marks for any number of workers."""
    jobs = [(min(CHUNK, count - start), (seed, index)) for index, start in enumerate(range(0, count, CHUNK))]
    if workers <= 1 or len(jobs) == 1:
        chunks = [written_chunk(images, labels, size, chunk_seed) for size, chunk_seed in jobs]
    else:
        import concurrent.futures
        import multiprocessing

        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                                    initializer=_set_source, initargs=(images, labels)) as pool:
            chunks = list(pool.map(_written_chunk, *zip(*jobs)))
    fields, frames, written = (np.concatenate(arrays) for arrays in zip(*chunks))
    return fields, frames, written


def build_reader():
    """The reader's network: conv stages down to one row of FRAMES frames, then each frame's class logits."""
    import keras
    from keras import layers

    inputs = keras.Input((IMAGE_SIDE, READER_WIDTH, 1), name="ink")
    x = inputs
    for filters in (32, 64):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(96, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    # The remaining rows into one: each frame sees its strip's whole height.
    x = layers.Conv2D(128, (x.shape[1], 1), use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Reshape((FRAMES, 128))(x)
    # Neighbouring strips: whether a strip is a digit's middle depends on the digit's whole width.
    x = layers.Conv1D(128, 5, padding="same", activation="relu")(x)
    x = layers.Dropout(0.25)(x)
    logits = layers.Dense(CLASSES, name="logits")(x)
    return keras.Model(inputs, logits, name="mark_reader")


def frame_probabilities(model, fields: np.ndarray) -> np.ndarray:
    import keras

    logits = model.predict(fields.astype(np.float32)[..., None] / 255, batch_size=512, verbose=0)
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))


def mark_accuracy(frames: np.ndarray, written: np.ndarray) -> dict[str, float]:
    """Share of marks read exactly (every digit, nothing extra), overall and by the number of digits."""
    read = [decode(rows).digits for rows in frames]
    expected = [tuple(int(digit) for digit in row if digit >= 0) for row in written]
    right = np.array([a == b for a, b in zip(read, expected)])
    counts = (written >= 0).sum(axis=1)
    measured = {"marks": float(right.mean())}
    for count in DIGIT_COUNTS:
        if (counts == count).any():
            measured[f"marks_of_{count}"] = float(right[counts == count].mean())
    return measured


def train_mark_reader(mnist, samples: int = SAMPLES, epochs: int = EPOCHS, seed: int = 0,
                      test_samples: int = TEST_SAMPLES):
    """The trained reader and its accuracy on marks written with MNIST test digits."""
    from mnist_keras.backends import cores_available

    # The marks are written (by forked workers) before Keras starts its threads.
    workers = cores_available()
    fields, frames, _ = written_marks(mnist.x_train, mnist.y_train, samples, seed, workers)
    test_fields, _, test_written = written_marks(mnist.x_test, mnist.y_test, test_samples, seed + 1, workers)
    import keras

    keras.utils.set_random_seed(seed)
    model = build_reader()
    steps = epochs * int(np.ceil(samples / BATCH_SIZE))
    schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, decay_steps=steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(fields.astype(np.float32)[..., None] / 255, frames, batch_size=BATCH_SIZE, epochs=epochs,
              verbose=2, shuffle=True)
    measured = mark_accuracy(frame_probabilities(model, test_fields), test_written)
    return model, measured | {"samples": samples, "epochs": epochs, "seed": seed, "test_samples": test_samples}


def export_mark_reader(model, measured: dict, out_dir: str | Path) -> Path:
    """reader.onnx (the ink → its frames' probabilities) and reader.json in `out_dir`, the ONNX checked
    against Keras first (a failed check writes nothing)."""
    import keras

    from mnist_keras.inference.marks import MarkReader

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    probabilities = keras.Model(model.inputs, keras.layers.Softmax(name="frames")(model.outputs[0]))
    check = np.random.default_rng(0).random((8, IMAGE_SIDE, READER_WIDTH, 1), dtype=np.float32)
    expected = keras.ops.convert_to_numpy(probabilities(check, training=False))
    path = out_dir / READER_MODEL
    staging = out_dir / f".{READER_MODEL}.partial"
    probabilities.export(str(staging), format="onnx", verbose=False)
    if not np.allclose(MarkReader(staging).frames(check), expected, atol=EXPORT_TOLERANCE):
        staging.unlink()
        raise RuntimeError("the mark reader's ONNX export does not reproduce Keras; nothing written")
    staging.replace(path)
    (out_dir / READER_CARD).write_text(json.dumps(measured, indent=2) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # the ONNX export is Keras's, under TensorFlow
    parser = argparse.ArgumentParser(prog="python -m mnist_keras.training.marks",
                                     description="Train the mark reader (touching digits read whole).")
    parser.add_argument("out", metavar="OUT", help=f"directory for {READER_MODEL} and {READER_CARD}")
    parser.add_argument("--samples", type=int, default=SAMPLES, help=f"training marks (default {SAMPLES:,})")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"(default {EPOCHS})")
    parser.add_argument("--test-samples", type=int, default=TEST_SAMPLES,
                        help=f"marks of MNIST test digits it is measured on (default {TEST_SAMPLES:,})")
    parser.add_argument("--seed", type=int, default=0, help="seed for writing the marks and for training")
    parser.add_argument("--data", metavar="PATH", help="MNIST files, as for mnist-keras --data")
    parser.add_argument("--ship", action="store_true", help=f"also write it into {READER_DIR}")
    args = parser.parse_args(argv)
    from mnist_keras.data.mnist import load_mnist

    model, measured = train_mark_reader(load_mnist(args.data), args.samples, args.epochs, args.seed,
                                        args.test_samples)
    path = export_mark_reader(model, measured, args.out)
    if args.ship:
        export_mark_reader(model, measured, READER_DIR)
    print(json.dumps(measured))
    print(f"mark reader → {path}" + (f" and {READER_DIR}" if args.ship else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
