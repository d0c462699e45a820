"""Numbers written with MNIST digits: to measure `mnist-keras read` (`benchmarks/numbers.py`).

`compose_number(lines, rng)` writes rows of MNIST digits (uint8 28×28, light on
black) as a person writes a number: each digit scaled a little differently,
on an uneven baseline, slanted, with gaps from touching (strokes that overlap)
to wide, one or two lines; then as a photo or a canvas export: dark on light or
light on dark, noise, blur, PNG or JPEG. `write_numbers` draws a set of them
from the digits given (the MNIST *test* digits, which the model never saw) and
records what each one says.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from mnist_keras.constants import PIXEL_MAX

DIGITS_PER_LINE = (2, 8)
TWO_LINE_SHARE = 0.3  # of the numbers, this share is written on two lines
DIGIT_HEIGHTS = (28, 80)  # pixels: a digit's height in the image, from a small crop to a large photo
SCALE_JITTER = (0.8, 1.2)  # each digit's height, times the number's
BASELINE_JITTER = 0.12  # of the digit height, up or down, each digit
SLANT = (-0.3, 0.3)  # the writer's slant (columns per row), for the whole number
SLANT_JITTER = 0.05  # each digit's own, around the writer's
# Gaps between neighbours, measured row by row (the closest their strokes come),
# as a share of the digit height; touching neighbours overlap by up to TOUCH_OVERLAP.
GAPS = (0.06, 0.7)
TOUCH_OVERLAP = (0.0, 0.1)
LINE_GAPS = (0.15, 0.6)  # between lines, of the digit height
MARGINS = (0.2, 1.0)  # round the number, of the digit height
INK_LEVEL = 0.3  # of full scale: a pixel of the digit at least this bright is its ink, for spacing
PAPER_LEVELS = (0.75, 1.0)
INK_LEVELS = (0.0, 0.3)
NOISE_SIGMAS = (0.0, 0.05)  # of full scale
BLUR_SIGMAS = (0.0, 1.2)  # pixels
JPEG_QUALITIES = (60, 95)
FORMATS = ("png", "jpeg")


@dataclasses.dataclass(frozen=True)
class Number:
    """One composed image: its file's bytes and suffix, what it says, and whether two digits touch."""

    data: bytes
    suffix: str
    text: str
    touching: bool


def uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def shaped_digit(digit: np.ndarray, height: float, slant: float) -> np.ndarray:
    """An MNIST digit cropped to its ink, scaled to `height` pixels tall, slanted; float ink in [0, 1]."""
    ink = np.asarray(digit, dtype=np.float64) / PIXEL_MAX
    rows, columns = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    scale = height / ink.shape[0]
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(height)))
    ink = np.asarray(Image.fromarray(ink.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR))
    # Shear: row r moves right by slant × (bottom − r), so slant > 0 leans right as handwriting does.
    # One affine map: output (row, column) reads the input at (row, column − shift(row)), linear along the row.
    extra = int(np.ceil(abs(slant) * ink.shape[0]))
    offset = -slant * (ink.shape[0] - 1) - (extra if slant < 0 else 0)
    sheared = ndimage.affine_transform(ink, np.array([[1.0, 0.0], [slant, 1.0]]), offset=(0.0, offset),
                                       output_shape=(ink.shape[0], ink.shape[1] + extra), order=1, mode="grid-constant")
    return np.clip(sheared, 0.0, 1.0)


def row_extents(ink: np.ndarray, top: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a band (top, height) of the line: leftmost and rightmost inked column of `ink` placed at top."""
    left = np.full(height, np.inf)
    right = np.full(height, -np.inf)
    for row in range(ink.shape[0]):
        columns = np.flatnonzero(ink[row] >= INK_LEVEL)
        if columns.size and 0 <= top + row < height:
            left[top + row], right[top + row] = columns[0], columns[-1]
    return left, right


def compose_line(digits: Sequence[np.ndarray], rng: np.random.Generator, height: float, slant: float,
                 touch_at: int | None) -> np.ndarray:
    """One line of digits, light ink on black; the pair (touch_at, touch_at + 1) touches."""
    return render_line(place_line(digits, rng, height, slant, touch_at))


def render_line(placed: Sequence[tuple[int, int, np.ndarray]]) -> np.ndarray:
    """Placed digits (top, left, ink) drawn into one line, light ink on black."""
    band = max(top + image.shape[0] for top, _, image in placed)
    width = max(left + image.shape[1] for _, left, image in placed)
    line = np.zeros((band, width))
    for top, left, image in placed:
        region = line[top : top + image.shape[0], left : left + image.shape[1]]
        np.maximum(region, image, out=region)
    return line


def place_line(digits: Sequence[np.ndarray], rng: np.random.Generator, height: float, slant: float,
               touch_at: int | Collection[int] | None,
               overlap: tuple[float, float] = TOUCH_OVERLAP) -> list[tuple[int, int, np.ndarray]]:
    """Where each digit of a line goes: (top, left, its shaped ink), left to right. The pair (i, i + 1)
    touches for i in `touch_at` (one index or several): its strokes overlap by `overlap` of the height."""
    touching = {touch_at} if isinstance(touch_at, int) else set(touch_at or ())
    shaped = [shaped_digit(digit, height * uniform(rng, SCALE_JITTER), slant + rng.normal(0, SLANT_JITTER))
              for digit in digits]
    band = int(np.ceil(max(image.shape[0] for image in shaped) + 2 * BASELINE_JITTER * height)) + 1
    bottom = band - int(np.ceil(BASELINE_JITTER * height)) - 1
    tops = [int(np.clip(round(bottom - image.shape[0] + rng.uniform(-1, 1) * BASELINE_JITTER * height),
                        0, band - image.shape[0])) for image in shaped]
    # Place each digit so the closest its strokes come to the line so far (row by row) is the gap wanted.
    placed_right = np.full(band, -np.inf)
    lefts = []
    for index, (image, top) in enumerate(zip(shaped, tops)):
        left_edge, right_edge = row_extents(image, top, band)
        if index == 0:
            offset = 0
        else:
            if index - 1 in touching:
                gap = -uniform(rng, overlap) * height - 1
            else:
                gap = uniform(rng, GAPS) * height
            both = np.isfinite(left_edge) & np.isfinite(placed_right)
            if both.any():
                offset = int(np.ceil(np.max(placed_right[both] - left_edge[both]) + gap))
            else:
                offset = int(np.ceil(np.max(placed_right[np.isfinite(placed_right)]) + gap))
            offset = max(offset, lefts[-1] + 1)
        lefts.append(offset)
        placed_right = np.maximum(placed_right, np.where(np.isfinite(right_edge), right_edge + offset, -np.inf))
    return list(zip(tops, lefts, shaped))


def compose_number(lines: Sequence[Sequence[np.ndarray]], rng: np.random.Generator,
                   touching: bool = False, heights: tuple[float, float] = DIGIT_HEIGHTS) -> tuple[np.ndarray, str]:
    """Lines of MNIST digits → (the number as a grey image in [0, 1], dark on light or light on dark,
    noisy and blurred; where its touching pair is, "line:index" or ""), before encoding."""
    height = uniform(rng, heights)
    slant = uniform(rng, SLANT)
    touch_line = int(rng.integers(len(lines))) if touching else -1
    touch_where = ""
    rows = []
    for index, digits in enumerate(lines):
        touch_at = int(rng.integers(len(digits) - 1)) if index == touch_line else None
        if touch_at is not None:
            touch_where = f"{index}:{touch_at}"
        rows.append(compose_line(digits, rng, height, slant, touch_at))
    line_gap = round(uniform(rng, LINE_GAPS) * height)
    width = max(row.shape[1] for row in rows)
    stacked = []
    for index, row in enumerate(rows):
        indent = int(rng.integers(0, width - row.shape[1] + 1))
        stacked.append(np.pad(row, ((0, 0), (indent, width - row.shape[1] - indent))))
        if index < len(rows) - 1:
            stacked.append(np.zeros((line_gap, width)))
    ink = np.concatenate(stacked)
    margin = [round(uniform(rng, MARGINS) * height) for _ in range(4)]
    ink = np.pad(ink, ((margin[0], margin[1]), (margin[2], margin[3])))
    blur = uniform(rng, BLUR_SIGMAS)
    if blur > 0.2:
        ink = ndimage.gaussian_filter(ink, blur)
    if rng.random() < 0.5:
        paper, pen = uniform(rng, PAPER_LEVELS), uniform(rng, INK_LEVELS)
    else:
        paper, pen = 1 - uniform(rng, PAPER_LEVELS), 1 - uniform(rng, INK_LEVELS)
    gray = paper + (pen - paper) * ink + rng.normal(0, uniform(rng, NOISE_SIGMAS), ink.shape)
    return np.clip(gray, 0.0, 1.0), touch_where


def encode(gray: np.ndarray, rng: np.random.Generator, formats: Sequence[str] = FORMATS) -> tuple[bytes, str]:
    """A grey image as PNG or JPEG bytes (one of `formats`, at random), and the file suffix."""
    image = Image.fromarray(np.rint(gray * PIXEL_MAX).astype(np.uint8))
    buffer = io.BytesIO()
    if formats[int(rng.integers(len(formats)))] == "png":
        image.save(buffer, "PNG")
        return buffer.getvalue(), ".png"
    image.save(buffer, "JPEG", quality=int(rng.integers(JPEG_QUALITIES[0], JPEG_QUALITIES[1] + 1)))
    return buffer.getvalue(), ".jpg"


def draw_numbers(digits: np.ndarray, labels: np.ndarray, count: int, seed: int = 0,
                 touching: bool = False, lengths: tuple[int, int] = DIGITS_PER_LINE,
                 two_line_share: float = TWO_LINE_SHARE, heights: tuple[float, float] = DIGIT_HEIGHTS,
                 formats: Sequence[str] = FORMATS) -> list[Number]:
    """`count` numbers written with digits drawn from (`digits`, `labels`); with a touching pair each if asked."""
    rng = np.random.default_rng(seed)
    numbers = []
    for _ in range(count):
        line_count = 2 if rng.random() < two_line_share else 1
        chosen = [rng.integers(len(labels), size=int(rng.integers(lengths[0], lengths[1] + 1)))
                  for _ in range(line_count)]
        gray, _ = compose_number([[digits[index] for index in line] for line in chosen], rng, touching, heights)
        data, suffix = encode(gray, rng, formats)
        text = "\n".join("".join(str(int(labels[index])) for index in line) for line in chosen)
        numbers.append(Number(data, suffix, text, touching))
    return numbers


def write_numbers(numbers: Sequence[Number], directory: str | Path, prefix: str = "number") -> list[Path]:
    """Each number's file in `directory` (made if needed), in order."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, number in enumerate(numbers):
        paths.append(directory / f"{prefix}-{index:05d}{number.suffix}")
        paths[-1].write_bytes(number.data)
    return paths
