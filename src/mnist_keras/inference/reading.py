"""Numbers, not just digits: every digit in an image, in reading order (`mnist-keras read`).

`read_grey(gray, predictor)` is the whole of it, a pure function from a grey
image (as `images.decode_grey` gives it) and a predictor to the record
`mnist-keras read` prints and `POST /read` answers:

    {"text": "2026\\n17", "lines": [[{"digit": 2, "confidence": ..., "probabilities": [...],
                                      "is_digit": true, "box": [x0, y0, x1, y1]}, ...], ...]}

`text` holds one line per written line that has a digit (top to bottom, each
left to right); `lines` lists every mark found, digits and marks that are not
digits alike (a dash, a letter, a scribble: `is_digit` false, left out of
`text`). A box is in the image's own pixels, as Pillow's `Image.crop` takes it
(x1 and y1 one past the mark). A blank image reads as `"text": ""`.

How the digits are found, on the ink `images.find_ink` measures (the same
background removal and threshold a single digit gets):
1. Marks: the ink's 8-connected blobs, specks and ruled lines (thin, edge to
   edge) dropped. A piece lying over or under another (a 5's flag apart from
   its body, a 7's crossbar over its stem) is merged into it: digits on a line
   sit side by side, so two blobs that share most of their columns are one
   digit, unless together they are far taller than either (a digit of the next
   line down).
2. Lines: marks whose heights overlap by half the smaller one are on one line,
   and so is everything they chain to, so uneven baselines, different sizes
   and a line that drifts up or down stay one line.
3. Broken digits: close neighbours on a line (a 0 whose top did not close, a
   9's loop apart from its stem) are read as one when the model is surer of
   them together than apart, and their columns overlap or the model is unsure
   of one of them alone (a "1" standing beside a digit stays a digit).
4. Touching neighbours: a mark wider than a digit is tall (against the line's
   height), or a narrower one the model is unsure of, may be two digits whose
   strokes meet. The mark reader (`inference.marks`, trained on touching
   MNIST training digits) reads it whole first; when it is sure (READER_SURE),
   its answer stands: one digit, or several, cut apart between the columns it
   read them in, each with both models' say on its digit, as long as the model
   accepts every piece as a digit (the reader knows nothing but digits: a dash
   or a scribble is the model's to refuse). When it is not (or there is none),
   the mark is cut where the column ink profile is thinnest (straight
   and slanted cuts), along the paths that cross the least ink (winding
   between strokes that overlap) or, for several blobs, between them, but never so that
   the pieces touch down most of the mark's height (that is one thick stroke cut along
   its length, not two digits); the split stands when the model is surer of the two pieces (the product of their probabilities)
   than of the whole (by a margin, for a mark that is not wide). Wide or
   refused pieces are looked at again, so three touching digits come apart.
5. Each mark goes through the same steps as a single digit (`stroke_ink`, then
   `digit_input`: specks and strays off, crop, 20-pixel box, centre of mass, thick
   soft strokes thinned),
   and `decision.is_digit` says whether it is one; a mark less than half as
   tall as the digits (a dot, a dash) is not one. When one digit is found and
   it holds every stroke `predict` would read, its answer is `predict`'s (the
   same input, the same probabilities): a one-digit image reads the same
   through `read` as through `predict`, stray marks listed beside it.

`predict_grey` is `predict`'s answer for one image, which also reads it: given
several digits it says so (`is_digit` false, `"reason": "several digits: use
read"`) rather than name one. The `reason` key appears only then, so records
of images that are refused for any other reason, or not refused, are as before.
`read_image_files` and `predict_image_files` are the file-level entries the
CLI uses (the service uses the `*_bytes` ones).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import EllipsisType
from typing import Any

import numpy as np
from scipy import ndimage

from mnist_keras.constants import NUM_CLASSES, NUM_PIXELS
from mnist_keras.inference.decision import digit_probabilities, is_digit
from mnist_keras.inference.images import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    BlankImageError,
    ImageError,
    Ink,
    decode_grey,
    decode_grey_file,
    digit_input,
    find_ink,
    is_mnist_style,
    keep_strokes,
    mnist_style,
    normalise_28,
    stroke_ink,
)
from mnist_keras.inference.marks import MarkReader, MarkReading, shipped_mark_reader
from mnist_keras.inference.predictors import Predictor, prediction_record

# Blobs smaller than this share of the largest are specks (images.MIN_COMPONENT_FRACTION's rule).
SPECK_FRACTION = 0.02
# The height of a set of marks' digits: the median of those at least this share as tall as the tallest
# (a 5's flag, a dash or a dot is not a digit's height).
TYPICAL_HEIGHT_SHARE = 0.5
# Two blobs are one digit when they share at least this share of the narrower one's columns,
# and together are at most MERGE_MAX_GROWTH times as tall as the taller one (a 5's flag over
# its body adds 10-30% to its height) or MERGE_MAX_HEIGHT times a digit's height (a digit
# broken across the middle); a digit of the next line down makes them as tall again.
MERGE_COLUMN_SHARE = 0.5
MERGE_MAX_GROWTH = 1.4
MERGE_MAX_HEIGHT = 1.2
# Marks are on one line when their rows overlap by at least this share of the shorter one.
LINE_ROW_SHARE = 0.5
# Neighbours on a line at most this far apart (of the line's height) may be one broken digit,
# if together they are at most JOIN_MAX_WIDTH times as wide as the line is tall.
JOIN_MAX_GAP = 0.15
JOIN_MAX_WIDTH = 1.5
# ... and only when their columns overlap (a 0's broken top over its body) or the model is
# unsure of one of them alone (its answer's probability under JOIN_UNSURE): a "1" standing
# beside a digit is a digit of its own, read with confidence.
JOIN_UNSURE = 0.7
# A mark is looked at for touching digits when it is this much wider than its line is tall
# (one digit is at most about as wide as it is tall: MNIST's widest are 1.1 times their
# height), or when it is at least SPLIT_UNSURE_WIDTH as wide and the model is unsure of it:
# `is_digit` refuses it, or its digit's probability is under SPLIT_UNSURE (two digits read
# as one are "not a digit", or a digit the model hesitates over). A mark that is not wide
# splits only when the pieces are surer than the whole by SPLIT_UNSURE_GAIN (a digit cut in
# two often gives a sliver read as a sure "1" beside a piece still read as the digit), and a
# piece of a split is looked at again only when it is wide or refused.
SPLIT_WIDE = 1.1
SPLIT_UNSURE_WIDTH = 0.6
SPLIT_UNSURE = 0.9
SPLIT_UNSURE_GAIN = 0.15
# Each piece of a split is at least this share of the mark's width (a "1" beside a digit is
# about a fifth) and this share of the line's height tall. Cuts fall in the middle band
# of the mark (SPLIT_BAND of its width from either side).
SPLIT_MIN_PIECE_WIDTH = 0.15
SPLIT_MIN_PIECE_HEIGHT = 0.4
# The two pieces of a cut touch in at most this share of the mark's rows: two digits that touch meet over
# a stroke's width or a crossing, while a cut along one thick stroke (an optdigits "1" upscaled from 8×8)
# leaves pieces that touch all the way down. Chosen on numbers composed with seeds 10 and 11 (200 each)
# and the optdigits files: at 0.5 / 0.6 / 0.65 / 0.8 and without the rule, seed 10's touching pairs read
# 77.0 / 79.5 / 80.0 / 80.0 / 80.0% whole (separate 94.5% for all), and 0 / 4 / 4 / 14 / 61 of 3,594
# single optdigits files read as several digits; seed 11 reads the same with and without it at 0.65.
# The mark reader's cuts are left alone: at 0.5 on them too, seed 10's touching pairs read 55.5%.
SPLIT_MAX_CONTACT = 0.65
SPLIT_BAND = 0.2
# Cuts are tried along these slants (columns shifted by this many pixels per row, leaning
# right going up, as slanted handwriting does), at the deepest few valleys of each one's
# column ink profile.
SPLIT_SLANTS = (-0.3, -0.15, 0.0, 0.15, 0.3)
SPLIT_CUTS_PER_SLANT = 3
# Cuts are also tried along the SEAM_CUTS cheapest paths from the top of the mark to its bottom,
# within the middle band, each row a column left, right or straight down: each ink pixel crossed
# costs 1 and each step aside SEAM_BEND, so a path winds between overlapping strokes, and of two
# crossing as little ink the straighter wins. A wide mark the model refuses as one digit is two
# when the geometric mean of its pieces' probabilities beats the whole's (two digits that overlap
# come apart with a bitten edge each, which the plain product would hold against the split).
SEAM_CUTS = 4
SEAM_BEND = 0.01
# A mark looked at for touching digits is first read whole by the mark reader (`inference.marks`);
# its answer stands when it is at least this sure (`marks.decode`'s confidence): several digits,
# cut apart where it read them, or one digit, left whole. Less sure, the cuts below are tried instead.
# A mark that is not wide and that the model accepts as one digit is split only at READER_SURE_SPLIT: the
# reader's commonest slip is a single digit's tail read as a "1" beside it. Both chosen on numbers composed
# from MNIST test digits with other seeds than the benchmark's (10 and 11, 200 each) and on 1,000 single MNIST
# test digits as photos (evaluation.handwriting.write_photos), the shipped models: READER_SURE
# 0.9 / 0.8 / 0.7 read 94.0 / 94.0 / 93.0% of separate numbers and 80.5 / 82.5 / 83.5% with a touching pair;
# READER_SURE_SPLIT 0.8 / 0.95 / 0.99 then give 94.0 / 94.5 / 94.0% separate, 82.5 / 81.5 / 80.0% touching,
# and 19 / 12 / 12 single-digit photos read as several digits (by the cuts alone: 13). With the rule that
# the model must accept every piece (added after), 94.5% / 80.0% / 12 at READER_SURE_SPLIT 0.95.
READER_SURE = 0.8
READER_SURE_SPLIT = 0.95
# Three touching digits need two splits; a mark is split at most this deep.
MAX_SPLIT_DEPTH = 3
# A mark from one edge of the image to the other, at most this thick (of its length), is a ruled line.
RULE_THICKNESS = 0.1
# A mark less tall than this share of the digits' height is not a digit (a dot, a dash, a speck).
SMALL_MARK = 0.5
# `predict` refuses an image in which `read` finds at least this many digits.
SEVERAL_DIGITS = 2
SEVERAL_DIGITS_REASON = "several digits: use read"
# Every blob touches its 8 neighbours: a thin diagonal stroke is one blob, not a row of dots.
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclasses.dataclass(frozen=True)
class Mark:
    """One mark on the page: its pixels (`mask`), placed at (`top`, `left`) in the working image."""

    top: int
    left: int
    mask: np.ndarray

    @property
    def height(self) -> int:
        return self.mask.shape[0]

    @property
    def width(self) -> int:
        return self.mask.shape[1]

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def centre_column(self) -> float:
        """The column of the mark's centre of mass: its place in reading order, slant or not."""
        return self.left + float(np.nonzero(self.mask)[1].mean())

    def window(self, shape: tuple[int, int], margin: int = 1) -> tuple[tuple[slice, slice], np.ndarray]:
        """The mark's box grown by `margin` pixels (within an image of `shape`) and its mask in that box."""
        top, left = max(0, self.top - margin), max(0, self.left - margin)
        bottom, right = min(shape[0], self.bottom + margin), min(shape[1], self.right + margin)
        mask = np.zeros((bottom - top, right - left), dtype=bool)
        mask[self.top - top : self.bottom - top, self.left - left : self.right - left] = self.mask
        return (slice(top, bottom), slice(left, right)), mask


def combine(marks: Sequence[Mark]) -> Mark:
    """One mark holding the pixels of all of `marks`."""
    top, left = min(mark.top for mark in marks), min(mark.left for mark in marks)
    mask = np.zeros((max(mark.bottom for mark in marks) - top, max(mark.right for mark in marks) - left), bool)
    for mark in marks:
        mask[mark.top - top : mark.bottom - top, mark.left - left : mark.right - left] |= mark.mask
    return Mark(top, left, mask)


def trimmed(top: int, left: int, mask: np.ndarray) -> Mark | None:
    """The mark of `mask`'s pixels (placed at top, left), cut to their box; None when it has none."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    return Mark(top + int(rows[0]), left + int(columns[0]),
                mask[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1])


def contact_rows(first: Mark, second: Mark) -> int:
    """In how many rows two marks touch: a pixel of one is next to (or on) a pixel of the other."""
    both = combine([first, second])
    grown = np.zeros(both.mask.shape, dtype=bool)
    grown[first.top - both.top : first.bottom - both.top, first.left - both.left : first.right - both.left] = first.mask
    grown = ndimage.binary_dilation(grown, structure=EIGHT_CONNECTED)
    other = np.zeros(both.mask.shape, dtype=bool)
    other[second.top - both.top : second.bottom - both.top,
          second.left - both.left : second.right - both.left] = second.mask
    return int((grown & other).any(axis=1).sum())


# ---------------------------------------------------------------- finding the marks


def blobs(mask: np.ndarray) -> list[Mark]:
    """The 8-connected blobs of `mask`, without specks (much smaller than the largest)."""
    labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    found = []
    for index, box in enumerate(ndimage.find_objects(labels)):
        if sizes[index] >= SPECK_FRACTION * sizes.max():
            found.append(Mark(box[0].start, box[1].start, labels[box] == index + 1))
    return found


def typical_height(marks: Sequence[Mark]) -> float:
    """The height of the digits among `marks`: the median of those not much shorter than the tallest."""
    tallest = max(mark.height for mark in marks)
    return float(np.median([mark.height for mark in marks if mark.height >= TYPICAL_HEIGHT_SHARE * tallest]))


def one_digit(first: Mark, second: Mark, digit_height: float) -> bool:
    """Whether two marks are pieces of one digit: one over the other, together not taller than a digit
    (or than either piece by much), so not a digit of the next line."""
    shared = min(first.right, second.right) - max(first.left, second.left)
    if shared < MERGE_COLUMN_SHARE * min(first.width, second.width):
        return False
    height = max(first.bottom, second.bottom) - min(first.top, second.top)
    return height <= MERGE_MAX_GROWTH * max(first.height, second.height) or height <= MERGE_MAX_HEIGHT * digit_height


def merge_pieces(marks: list[Mark]) -> list[Mark]:
    """Marks with the pieces of each digit that lie over one another (a flag, a crossbar) merged into one."""
    if not marks:
        return []
    digit_height = typical_height(marks)
    marks = list(marks)
    merged = True
    while merged:
        merged = False
        for i, j in itertools.combinations(range(len(marks)), 2):
            if one_digit(marks[i], marks[j], digit_height):
                marks[i] = combine([marks[i], marks[j]])
                del marks[j]
                merged = True
                break
    return marks


def same_line(first: Mark, second: Mark) -> bool:
    shared = min(first.bottom, second.bottom) - max(first.top, second.top)
    return shared >= LINE_ROW_SHARE * min(first.height, second.height)


def group_lines(marks: list[Mark]) -> list[list[Mark]]:
    """Marks grouped into written lines (chained by overlapping rows), top to bottom, each left to right."""
    parent = list(range(len(marks)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for i, j in itertools.combinations(range(len(marks)), 2):
        if same_line(marks[i], marks[j]):
            parent[root(i)] = root(j)
    lines: dict[int, list[Mark]] = {}
    for index, mark in enumerate(marks):
        lines.setdefault(root(index), []).append(mark)
    ordered = [sorted(line, key=lambda mark: mark.centre_column) for line in lines.values()]
    return sorted(ordered, key=lambda line: float(np.median([(mark.top + mark.bottom) / 2 for mark in line])))


# ---------------------------------------------------------------- splitting touching digits


def blob_partitions(mark: Mark, height: float) -> list[tuple[Mark, Mark]]:
    """A mark of several blobs, cut between them (left to right) where both sides hold a digit-tall blob."""
    parts = blobs(mark.mask)
    if sum(part.height >= SPLIT_MIN_PIECE_HEIGHT * height for part in parts) < 2:
        return []
    parts.sort(key=lambda part: part.centre_column)
    candidates = []
    for cut in range(1, len(parts)):
        left, right = combine(parts[:cut]), combine(parts[cut:])
        candidates.append((Mark(mark.top + left.top, mark.left + left.left, left.mask),
                           Mark(mark.top + right.top, mark.left + right.left, right.mask)))
    return candidates


def column_cuts(mark: Mark) -> list[tuple[Mark, Mark]]:
    """A mark cut in two along straight and slanted lines, where its column ink profile has its deepest valleys."""
    rows, columns = np.nonzero(mark.mask)
    middle = (mark.height - 1) / 2
    candidates = []
    for slant in SPLIT_SLANTS:
        # Column of each pixel once the slant is taken out (rows above the middle shift left for slant > 0).
        position = np.rint(columns + slant * (rows - middle)).astype(int)
        position -= position.min()
        profile = np.convolve(np.bincount(position), np.ones(3) / 3, mode="same")
        band = np.arange(math.ceil(SPLIT_BAND * len(profile)), math.floor((1 - SPLIT_BAND) * len(profile)) + 1)
        band = band[(band > 0) & (band < len(profile) - 1)]
        valleys = band[(profile[band] <= profile[band - 1]) & (profile[band] <= profile[band + 1])]
        if not valleys.size:
            valleys = band
        for cut in valleys[np.argsort(profile[valleys], kind="stable")[:SPLIT_CUTS_PER_SLANT]]:
            pieces = []
            for side in (position < cut, position >= cut):
                piece = np.zeros_like(mark.mask)
                piece[rows[side], columns[side]] = True
                pieces.append(trimmed(mark.top, mark.left, piece))
            if pieces[0] is not None and pieces[1] is not None:
                candidates.append((pieces[0], pieces[1]))
    return candidates


def seam_cuts(mark: Mark) -> list[tuple[Mark, Mark]]:
    """A mark cut in two along top-to-bottom paths that cross the least ink (moving at most a column
    a row, so they wind between strokes that overlap), ending at the cheapest few columns of the middle band."""
    mask = mark.mask
    rows, width = mask.shape
    if width < 3:
        return []
    band = np.arange(math.ceil(SPLIT_BAND * width), math.floor((1 - SPLIT_BAND) * width) + 1)
    band = band[(band > 0) & (band < width - 1)]
    if not band.size:
        return []
    cost = np.full((rows, width), np.inf)
    cost[:, band] = mask[:, band]
    total = cost[0].copy()
    came = np.zeros((rows, width), dtype=np.int64)
    for row in range(1, rows):
        options = np.stack([np.r_[np.inf, total[:-1]] + SEAM_BEND, total, np.r_[total[1:], np.inf] + SEAM_BEND])
        step = np.argmin(options, axis=0)
        came[row] = np.arange(width) + step - 1
        total = options[step, np.arange(width)] + cost[row]
    candidates, used = [], set()
    for end in band[np.argsort(total[band], kind="stable")]:
        path = np.empty(rows, dtype=np.int64)
        path[-1] = end
        for row in range(rows - 1, 0, -1):
            path[row - 1] = came[row, path[row]]
        key = tuple(path // 2)
        if key in used:
            continue
        used.add(key)
        left = mask & (np.arange(width)[None, :] < path[:, None])
        pieces = (trimmed(mark.top, mark.left, left), trimmed(mark.top, mark.left, mask & ~left))
        if pieces[0] is not None and pieces[1] is not None:
            candidates.append(pieces)
        if len(candidates) == SEAM_CUTS:
            break
    return candidates


def digit_score(outputs: np.ndarray) -> float:
    """How sure the model is that an input is one digit (any): its largest digit probability, which
    with the "not a digit" class is also lowered by that class."""
    return float(np.max(np.asarray(outputs)[:NUM_CLASSES]))


def answer_score(outputs: np.ndarray) -> float:
    """How sure the model is of its answer, digit or "not a digit"."""
    return float(np.max(outputs))


# ---------------------------------------------------------------- reading


@dataclasses.dataclass(frozen=True)
class Reading:
    """One mark as the model read it: the mark, its 28×28 model input and the model's outputs for it."""

    mark: Mark
    image: np.ndarray
    outputs: np.ndarray


@dataclasses.dataclass
class Reader:
    """Reads the marks of one image's ink, batching the model's calls; `marks` reads a mark that may be
    several touching digits whole (None: only the cuts)."""

    ink: Ink
    predictor: Predictor
    marks: MarkReader | None = None

    def mark_ink(self, mark: Mark) -> tuple[tuple[slice, slice], np.ndarray] | None:
        """A mark's window in the image and its strokes' ink there (`stroke_ink`); None for only specks."""
        window, mask = mark.window(self.ink.mask.shape)
        try:
            return window, stroke_ink(self.ink, mask, window)
        except BlankImageError:
            return None

    def inputs(self, marks: Sequence[Mark]) -> list[np.ndarray | None]:
        """Each mark's 28×28 model input, made as a single digit's is; None for a mark that is only specks."""
        return [None if (found := self.mark_ink(mark)) is None else digit_input(found[1]) for mark in marks]

    def read(self, marks: Sequence[Mark]) -> list[Reading | None]:
        """Each mark read by the model, in one batch; None for a mark that is only specks."""
        images = self.inputs(marks)
        present = [image for image in images if image is not None]
        rows = iter(self.predictor.predict(np.stack([image.reshape(NUM_PIXELS) for image in present]))
                    if present else [])
        return [None if image is None else Reading(mark, image, next(rows)) for mark, image in zip(marks, images)]

    def read_line(self, line: Sequence[Mark]) -> list[Reading]:
        """A line's marks as digits (and non-digits), left to right: broken digits joined, touching ones split."""
        height = typical_height(line)
        readings = [reading for reading in self.read(line) if reading is not None]
        return [digit for reading in self.join_broken(readings, height) for digit in self.split(reading, height)]

    def join_broken(self, readings: list[Reading], height: float) -> list[Reading]:
        """Neighbours that are one digit broken in two (a 9's loop apart from its stem) joined.

        Close neighbours are joined when the model is surer of them as one
        digit than of the two answers apart (the product of their probabilities,
        digit or "not a digit"): two digits side by side read as one are "not a
        digit", and so is a dash or a letter beside a digit.
        """
        pairs = {}
        for index in range(len(readings) - 1):
            first, second = readings[index].mark, readings[index + 1].mark
            joined = combine([first, second])
            if (second.left - first.right <= JOIN_MAX_GAP * height and joined.width <= JOIN_MAX_WIDTH * height
                    and joined.height <= MERGE_MAX_HEIGHT * height):
                pairs[index] = joined
        joined_readings = dict(zip(pairs, self.read(list(pairs.values()))))
        # best[i]: the likeliest reading of the first i marks, as (probability, readings).
        best: list[tuple[float, list[Reading]]] = [(1.0, [])]
        for index, reading in enumerate(readings):
            score, found = best[index]
            options = [(score * answer_score(reading.outputs), found + [reading])]
            joined = joined_readings.get(index - 1)
            if joined is not None and self.may_join(readings[index - 1], reading) \
                    and is_digit(joined.image, joined.outputs):
                score, found = best[index - 1]
                options.append((score * digit_score(joined.outputs), found + [joined]))
            best.append(max(options, key=lambda option: option[0]))
        return best[-1][1]

    @staticmethod
    def may_join(first: Reading, second: Reading) -> bool:
        overlap = second.mark.left < first.mark.right
        return overlap or min(answer_score(first.outputs), answer_score(second.outputs)) < JOIN_UNSURE

    def split(self, reading: Reading, height: float, depth: int = 0) -> list[Reading]:
        """A mark as one or more digits: split in two (and the pieces again) when the model is surer of the
        two pieces as digits (the product of their probabilities) than of the whole as one."""
        mark, outputs = reading.mark, reading.outputs
        if depth >= MAX_SPLIT_DEPTH:
            return [reading]
        candidates = blob_partitions(mark, height)
        wide = mark.width >= SPLIT_WIDE * height
        refused = not is_digit(reading.image, outputs)
        unsure = refused or (depth == 0 and digit_score(outputs) < SPLIT_UNSURE)
        if wide or (unsure and mark.width >= SPLIT_UNSURE_WIDTH * height):
            if depth == 0 and (whole := self.read_whole(reading, wide or refused)) is not None:
                return whole
            candidates += column_cuts(mark) + seam_cuts(mark)
        candidates = [(left, right) for left, right in candidates
                      if min(left.height, right.height) >= SPLIT_MIN_PIECE_HEIGHT * height
                      and min(left.width, right.width) >= SPLIT_MIN_PIECE_WIDTH * mark.width
                      and contact_rows(left, right) <= SPLIT_MAX_CONTACT * mark.height]
        if not candidates:
            return [reading]
        pieces = self.read([piece for pair in candidates for piece in pair])
        best, best_score = None, digit_score(outputs) + (0.0 if wide or refused else SPLIT_UNSURE_GAIN)
        for left, right in zip(pieces[::2], pieces[1::2]):
            if left is not None and right is not None:
                score = digit_score(left.outputs) * digit_score(right.outputs)
                if wide and refused:
                    score = math.sqrt(score)
                if score > best_score:
                    best, best_score = (left, right), score
        if best is None:
            return [reading]
        return [digit for piece in best for digit in self.split(piece, height, depth + 1)]

    def read_whole(self, reading: Reading, doubtful: bool = True) -> list[Reading] | None:
        """The mark as the mark reader reads it, when it is sure: one digit (the mark as the model read
        it), or several (surer still, READER_SURE_SPLIT, unless the mark is `doubtful`: wide, or refused
        as one digit), each with both models' say on its digit, the mark cut between the columns the
        reader read them in; None when there is no reader, it is unsure, or the model refuses a piece."""
        if self.marks is None:
            return None
        if (windowed := self.mark_ink(reading.mark)) is None:
            return None
        window, ink = windowed
        [found] = self.marks.read([ink])
        if found.confidence < READER_SURE or not found.digits:
            return None
        if len(found.digits) == 1:
            return [reading]
        if not doubtful and found.confidence < READER_SURE_SPLIT:
            return None
        pieces = cut_at_spans(reading.mark, found, window[1].start)
        if pieces is None:
            return None
        readings = []
        for piece, read, probabilities in zip(pieces, self.read(pieces), found.probabilities):
            if read is None or not is_digit(read.image, read.outputs):
                return None  # the reader knows only digits: a piece the model refuses is not one it may name
            # Both models' say on which digit: the reader's, and the model's on the piece cut out.
            both = probabilities * digit_probabilities(read.outputs)
            both = both / both.sum() if both.sum() > 0 else probabilities
            outputs = both if read.outputs.size == NUM_CLASSES else np.append(both, 0.0)
            readings.append(Reading(piece, read.image, outputs.astype(np.float32)))
        return readings


def cut_at_spans(mark: Mark, found: MarkReading, window_left: int) -> list[Mark] | None:
    """A mark cut by columns into the digits the mark reader read in it: between two digits, halfway
    from where one's columns end to where the next one's begin (`found.spans`, in the columns of the
    window from `window_left` the reader was given). None when a piece would have no ink."""
    shift = window_left - mark.left
    cuts = np.array([(found.spans[index][1] + found.spans[index + 1][0]) / 2 + shift
                     for index in range(len(found.spans) - 1)])
    owner = np.searchsorted(cuts, np.arange(mark.width) + 0.5)
    pieces = []
    for index in range(len(found.digits)):
        piece = trimmed(mark.top, mark.left, mark.mask & (owner == index)[None, :])
        if piece is None:
            return None
        pieces.append(piece)
    return pieces


def read_grey(gray: np.ndarray, predictor: Predictor, size: tuple[int, int] | None = None,
              mark_reader: MarkReader | None | EllipsisType = ...) -> dict[str, Any]:
    """Every digit in a grey image (float in [0, 1], any size, any polarity), in reading order.

    `size` is the (width, height) of the image the array was decoded from
    (`images.decode_grey` returns it), so boxes are in that image's pixels;
    by default, the array's. `mark_reader` reads marks that may be touching digits whole
    (default: the one that ships, `marks.shipped_mark_reader()`; None: cuts only).
    Returns {"text", "lines"} (see the module's docstring).
    """
    if mark_reader is ...:
        mark_reader = shipped_mark_reader()
    gray = np.asarray(gray, dtype=np.float64)
    if gray.ndim != 2:
        raise ImageError(f"expected a 2-D grey image, got shape {gray.shape}")
    height, width = gray.shape
    scale_x, scale_y = (size[0] / width, size[1] / height) if size else (1.0, 1.0)

    def record(reading: Reading, digit_height: float) -> dict[str, Any]:
        mark = reading.mark
        box = [math.floor(mark.left * scale_x), math.floor(mark.top * scale_y),
               math.ceil(mark.right * scale_x), math.ceil(mark.bottom * scale_y)]
        answer = prediction_record(reading.outputs, reading.image) | {"box": box}
        if mark.height < SMALL_MARK * digit_height:
            answer["is_digit"] = False  # a dot, a dash, a speck: far shorter than the digits beside it
        return answer

    if is_mnist_style(gray):
        # Already one digit as MNIST has it: the whole field, normalised as `predict` does.
        try:
            image = normalise_28(gray)
        except BlankImageError:
            return {"text": "", "lines": []}
        [outputs] = predictor.predict(image.reshape(1, NUM_PIXELS))
        lines = [[record(Reading(Mark(0, 0, np.ones_like(gray, dtype=bool)), image, outputs), 0.0)]]
    else:
        try:
            ink = find_ink(gray)
        except BlankImageError:
            return {"text": "", "lines": []}
        reader = Reader(ink, predictor, mark_reader)
        marks = merge_pieces([mark for mark in blobs(ink.mask) if not is_rule(mark, ink.mask.shape)])
        if not marks:
            return {"text": "", "lines": []}  # ruled lines and specks only: nothing written
        readings = [found for line in group_lines(marks) if (found := reader.read_line(line))]
        digit_height = typical_height(marks)
        lines = [[record(reading, digit_height) for reading in line] for line in readings]
        digits = [(row, column) for row, line in enumerate(lines) for column, answer in enumerate(line)
                  if answer["is_digit"]]
        if len(digits) == 1 and only_strokes(ink, readings[digits[0][0]][digits[0][1]].mark):
            # One digit, and nothing else `predict` would look at: `predict`'s input, and its answer.
            row, column = digits[0]
            image = mnist_style(gray)
            [outputs] = predictor.predict(image.reshape(1, NUM_PIXELS))
            lines[row][column] = record(Reading(readings[row][column].mark, image, outputs), 0.0)
    text = "\n".join(text_line for line in lines
                     if (text_line := "".join(str(mark["digit"]) for mark in line if mark["is_digit"])))
    return {"text": text, "lines": lines}


def is_rule(mark: Mark, shape: tuple[int, int]) -> bool:
    """Whether a mark is a ruled line or a margin (what `images.ruled_lines` leaves of one): thin,
    from one edge of the image to the other."""
    across = mark.left == 0 and mark.right == shape[1] and mark.height <= RULE_THICKNESS * mark.width
    down = mark.top == 0 and mark.bottom == shape[0] and mark.width <= RULE_THICKNESS * mark.height
    return across or down


def only_strokes(ink: Ink, mark: Mark) -> bool:
    """Whether every stroke `predict` would read in the image (`images.keep_strokes`: the ink without
    specks and stray marks) is part of `mark`."""
    kept = keep_strokes(ink.mask)
    (rows, columns), inside = mark.window(ink.mask.shape, margin=0)
    kept[rows, columns] &= ~inside
    return not kept.any()


def digit_count(reading: dict[str, Any]) -> int:
    return sum(mark["is_digit"] for line in reading["lines"] for mark in line)


def several_digits(gray: np.ndarray, predictor: Predictor,
                   mark_reader: MarkReader | None | EllipsisType = ...) -> dict[str, Any]:
    """What to add to a single digit's record for the whole image `gray`: a refusal with its reason
    when `read_grey` finds several digits in it, else nothing."""
    if digit_count(read_grey(gray, predictor, mark_reader=mark_reader)) >= SEVERAL_DIGITS:
        return {"is_digit": False, "reason": SEVERAL_DIGITS_REASON}
    return {}


def predict_grey(gray: np.ndarray, predictor: Predictor, top_k: int | None = None,
                 mark_reader: MarkReader | None | EllipsisType = ...) -> dict[str, Any]:
    """`predict`'s record for one grey image: the model's one digit, refused (`is_digit` false, with a
    `reason`) when `read_grey` (with `mark_reader`) finds several digits in it. Raises ImageError for a
    blank image."""
    image = mnist_style(gray)
    [outputs] = predictor.predict(image.reshape(1, NUM_PIXELS))
    return prediction_record(outputs, image, top_k) | several_digits(gray, predictor, mark_reader)


# ---------------------------------------------------------------- bytes and files


def read_image_bytes(
    data: bytes, predictor: Predictor, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS,
    mark_reader: MarkReader | None | EllipsisType = ...,
) -> dict[str, Any]:
    """`read_grey` for image file bytes (what `POST /read` answers); ImageError for bytes that are no image."""
    gray, size = decode_grey(data, max_bytes=max_bytes, max_pixels=max_pixels)
    return read_grey(gray, predictor, size, mark_reader)


def predict_image_bytes(
    data: bytes, predictor: Predictor, top_k: int | None = None,
    max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS,
) -> dict[str, Any]:
    """`predict_grey` for image file bytes; ImageError for bytes that are no image, or a blank one."""
    gray, _ = decode_grey(data, max_bytes=max_bytes, max_pixels=max_pixels)
    return predict_grey(gray, predictor, top_k)


def read_image_files(predictor: Predictor, paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """`mnist-keras read`: one record per file, in order: `file` plus the reading, or `file` plus `error`."""
    return [file_record(path, lambda gray, size: read_grey(gray, predictor, size)) for path in paths]


def predict_image_files(
    predictor: Predictor, paths: Iterable[str | Path], top_k: int | None = None
) -> list[dict[str, Any]]:
    """`mnist-keras predict`: one record per file, in order: `file` plus a prediction, or `file` plus `error`."""
    return [file_record(path, lambda gray, size: predict_grey(gray, predictor, top_k)) for path in paths]


def file_record(path: str | Path, answer) -> dict[str, Any]:
    record: dict[str, Any] = {"file": str(path)}
    try:
        gray, size = decode_grey_file(path)
        return record | answer(gray, size)
    except ImageError as error:
        message = str(error)
        return record | {"error": message if message.startswith(f"{path}: ") else f"{path}: {message}"}
