"""The mark reader: one mark that may be several digits whose strokes touch, read whole.

Cutting two touching digits apart leaves each a bitten edge, and a model
trained on whole MNIST digits often misreads the pieces. The mark reader
reads the mark without cutting it: a small fully convolutional network,
trained by `mnist_keras.training.marks` on one to three MNIST *training*
digits written touching or close (`mnist_keras.evaluation.numbers.place_line`),
says for each narrow column strip of the mark (a frame) which digit's middle
it is, or none (BLANK: the edges of a digit, where neighbours meet). The
digits read are the runs of frames of one digit, left to right; a blank frame
separates two equal neighbours. This is CTC's output and greedy decoding, but
trained frame by frame on where each digit was written (the training knows):
with CTC's own loss, which must find the alignment itself, a network of this
size was still on its first plateau after 470 steps (loss 6.5 after the first
157, 5.5 after 470), where frame labels train in a few epochs.

`reader_input(ink)` makes its input from a mark's ink (what `images.stroke_ink`
gives: float in [0, 1], 1 = full ink): cropped to the ink, scaled to
IMAGE_SIDE rows with its aspect kept (squeezed if wider than READER_WIDTH),
centred in an IMAGE_SIDE × READER_WIDTH field, and where the ink's columns
went (a `Placement`). `MarkReader.read` answers a `MarkReading` per mark: the
digits, each one's ten probabilities and the columns it was read in, and how
sure the reader is of the whole. `shipped_mark_reader()` is the one that ships
in the package (READER_DIR), produced by `make mark-reader`; it answers through
ONNX Runtime, so the lean install has it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES

READER_DIR = Path(__file__).parent / "mark_reader"
READER_MODEL = "reader.onnx"
READER_CARD = "reader.json"  # how it was trained and what it measured
# Up to three touching digits: a digit is at most about as wide as it is tall, so three times the
# height holds three; a wider mark is squeezed to fit.
MAX_DIGITS = 3
READER_WIDTH = MAX_DIGITS * IMAGE_SIDE
# Two 2×2 poolings: each output frame is a strip this many input columns wide.
FRAME_COLUMNS = 4
FRAMES = READER_WIDTH // FRAME_COLUMNS
# Class 0: no digit's middle (CTC's blank); digit d is class d + 1.
BLANK = 0
CLASSES = NUM_CLASSES + 1


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a mark's columns went in the reader's input: column c of the mark's ink is input column
    (c − first) × scale + offset."""

    first: int
    scale: float
    offset: int

    def to_ink(self, input_column: float) -> float:
        return (input_column - self.offset) / self.scale + self.first

    def to_input(self, ink_column: float) -> float:
        return (ink_column - self.first) * self.scale + self.offset


@dataclasses.dataclass(frozen=True)
class MarkReading:
    """What the mark reader read in one mark.

    `digits[i]` was read with `probabilities[i]` (the ten digits', summing to
    one) over the ink's columns `spans[i]` (first, one past last, in the
    columns of the ink it was given). `confidence` is the product of each
    digit's surest frame and of the surest blank frame between neighbours.
    """

    digits: tuple[int, ...]
    probabilities: tuple[np.ndarray, ...]
    spans: tuple[tuple[float, float], ...]
    confidence: float


def reader_input(ink: np.ndarray) -> tuple[np.ndarray, Placement]:
    """A mark's ink (holding some ink) → the reader's IMAGE_SIDE × READER_WIDTH input and where its columns went."""
    ink = np.asarray(ink, dtype=np.float32)
    rows, columns = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    height, width = ink.shape
    scaled_width = int(min(READER_WIDTH, max(1, round(width * IMAGE_SIDE / height))))
    scaled = np.asarray(Image.fromarray(ink, mode="F").resize((scaled_width, IMAGE_SIDE), Image.Resampling.BILINEAR))
    field = np.zeros((IMAGE_SIDE, READER_WIDTH), dtype=np.float32)
    offset = (READER_WIDTH - scaled_width) // 2
    field[:, offset : offset + scaled_width] = np.clip(scaled, 0.0, 1.0)
    return field, Placement(int(columns[0]), scaled_width / width, offset)


def decode(frames: np.ndarray, placement: Placement | None = None) -> MarkReading:
    """Greedy decoding of one mark's frame probabilities (FRAMES × CLASSES): runs of one digit, blanks dropped."""
    frames = np.asarray(frames, dtype=np.float64)
    placement = placement or Placement(0, 1.0, 0)
    best = frames.argmax(axis=1)
    runs = [(start, stop) for start, stop in run_bounds(best) if best[start] != BLANK]
    digits, probabilities, spans = [], [], []
    # How sure: each digit's surest frame, and the surest "no digit" frame between two digits (the
    # frames where neighbours meet may hesitate; one clear frame between them is enough).
    confidence = 1.0
    for index, (start, stop) in enumerate(runs):
        share = frames[start:stop, 1:].sum(axis=0)
        digits.append(int(best[start]) - 1)
        probabilities.append(share / share.sum())
        spans.append((placement.to_ink(start * FRAME_COLUMNS), placement.to_ink(stop * FRAME_COLUMNS)))
        confidence *= float(frames[start:stop, best[start]].max())
        if index and runs[index - 1][1] < start:
            confidence *= float(frames[runs[index - 1][1] : start, BLANK].max())
    return MarkReading(tuple(digits), tuple(probabilities), tuple(spans), confidence)


def run_bounds(best: np.ndarray) -> list[tuple[int, int]]:
    """The runs of equal values in `best`, as (start, stop)."""
    changes = np.flatnonzero(np.diff(best)) + 1
    starts = np.r_[0, changes]
    return list(zip(starts.tolist(), np.r_[changes, len(best)].tolist()))


class MarkReader:
    """The mark reader's ONNX model, through ONNX Runtime on one thread (the service's workers are processes)."""

    def __init__(self, path: str | Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def frames(self, inputs: np.ndarray) -> np.ndarray:
        """N × IMAGE_SIDE × READER_WIDTH inputs → N × FRAMES × CLASSES frame probabilities."""
        batch = np.asarray(inputs, dtype=np.float32).reshape(-1, IMAGE_SIDE, READER_WIDTH, 1)
        return self.session.run(None, {self.input_name: batch})[0]

    def read(self, inks: Sequence[np.ndarray]) -> list[MarkReading]:
        """Each mark's ink (each holding some ink) read, in one batch."""
        if not inks:
            return []
        prepared = [reader_input(ink) for ink in inks]
        frames = self.frames(np.stack([field for field, _ in prepared]))
        return [decode(rows, placement) for rows, (_, placement) in zip(frames, prepared)]


def reader_card(directory: str | Path = READER_DIR) -> dict:
    """The reader's card (reader.json): its training and what it measured."""
    return json.loads((Path(directory) / READER_CARD).read_text(encoding="utf-8"))


@functools.cache
def shipped_mark_reader() -> MarkReader | None:
    """The mark reader that ships in the package, loaded once; None if this copy of the package lacks it
    (then `read` cuts touching digits apart as it did before the reader)."""
    path = READER_DIR / READER_MODEL
    return MarkReader(path) if path.is_file() else None
