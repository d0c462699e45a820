"""Handwriting that is not MNIST, as files a user would send, and held-out non-digits: to measure the image path.

- `write_optdigits`: scikit-learn's bundled digits (UCI optdigits, 1,797 digits
  by 43 writers, 8×8, 17 grey levels) upscaled and saved as PNG, dark ink on
  light paper and light on dark.
- `faint_user_digits`: "users' own 28×28 digits": MNIST test digits thinned,
  moved off-centre and shrunk a little, their ink peaking near grey 140/255.
- `heldout_negatives`: non-digits drawn by code that shares no fonts or shape
  code with the training generator in `mnist_keras.data.nondigits` (other
  fonts, letters drawn as jittered pen strokes, spirals and zigzags, value
  noise, drawn stripes). The training generator now draws pen-stroke letters,
  spirals and zigzags of its own, so these are no longer unseen *kinds*: the
  held-family protocol in `benchmarks/open_set.py` measures that.
- `handwriting_accuracy(predict_fn)`: accuracy on the optdigits files read by
  the same path as `mnist-keras predict`, for metrics.json.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mnist_keras.constants import IMAGE_SIDE, NUM_PIXELS, PIXEL_MAX

# ---------------------------------------------------------------- optdigits as files

OPTDIGITS_MAX = 16  # load_digits' pixel values run from 0 to 16
OPTDIGITS_SIDE = 64  # saved size: 8× upscaled, as a user would enlarge a thumbnail
POLARITIES = ("dark-on-light", "light-on-dark")


def load_optdigits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as float (N, 8, 8) ink in [0, 1], and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images / OPTDIGITS_MAX, digits.target.astype(np.int64)


def optdigit_png(ink: np.ndarray, polarity: str) -> Image.Image:
    """One 8×8 digit (ink in [0, 1]) upscaled with bilinear smoothing, as a grey PNG image."""
    grey = 1.0 - ink if polarity == "dark-on-light" else ink
    small = Image.fromarray(np.rint(grey * PIXEL_MAX).astype(np.uint8), mode="L")
    return small.resize((OPTDIGITS_SIDE, OPTDIGITS_SIDE), Image.Resampling.BILINEAR)


def write_optdigits(directory: str | Path, polarities: Sequence[str] = POLARITIES) -> tuple[list[Path], np.ndarray]:
    """Save every optdigit in each polarity as PNG; return the paths and their labels (same order)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    images, labels = load_optdigits()
    paths, path_labels = [], []
    for polarity in polarities:
        for index, (ink, label) in enumerate(zip(images, labels)):
            path = directory / f"optdigits-{polarity}-{index:04d}-{label}.png"
            optdigit_png(ink, polarity).save(path)
            paths.append(path)
            path_labels.append(label)
    return paths, np.array(path_labels)


def read_files(paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs (N, 28, 28) for the files `mnist-keras predict` can read, and a mask of which could."""
    from mnist_keras.inference.images import ImageError, preprocess_image_file

    inputs = np.zeros((len(paths), IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    readable = np.zeros(len(paths), dtype=bool)
    for index, path in enumerate(paths):
        try:
            inputs[index] = preprocess_image_file(path)
            readable[index] = True
        except ImageError:
            pass
    return inputs, readable


PredictFn = Callable[[np.ndarray], np.ndarray]


def handwriting_accuracy(predict_fn: PredictFn) -> float:
    """Accuracy on the optdigits files (both polarities) read as `mnist-keras predict` reads them.

    `predict_fn` maps float32 (N, 784) pixels in [0, 1] to model outputs (N, 10
    or 11); an unreadable file counts as wrong.
    """
    from mnist_keras.inference.decision import digit_probabilities

    inputs, readable, labels = optdigits_inputs()
    outputs = np.asarray(predict_fn(inputs.reshape(-1, NUM_PIXELS)))
    predicted = digit_probabilities(outputs).argmax(axis=1)
    return float(((predicted == labels) & readable).mean())


def optdigits_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The optdigits files as the model reads them: inputs (N, 28, 28), which files were readable, labels.

    Writing and reading the 3,594 files takes seconds, so the result is kept
    in the cache directory, keyed by the code that makes and reads them.
    """
    path = optdigits_cache_path()
    try:
        with np.load(path) as cached:
            return cached["inputs"], cached["readable"], cached["labels"]
    except (OSError, ValueError, KeyError):
        pass  # not there yet, or damaged: made again below
    with tempfile.TemporaryDirectory(prefix="optdigits-") as directory:
        paths, labels = write_optdigits(directory)
        inputs, readable = read_files(paths)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")
        np.savez(partial, inputs=inputs, readable=readable, labels=labels)
        os.replace(partial, path)
    except OSError:
        pass  # a read-only cache only costs time
    return inputs, readable, labels


def optdigits_cache_path() -> Path:
    import mnist_keras.inference.images
    from mnist_keras.data.mnist import default_cache_dir

    source = hashlib.sha256()
    for module_file in (__file__, mnist_keras.inference.images.__file__):
        source.update(Path(module_file).read_bytes())
    return default_cache_dir() / "handwriting" / f"optdigits-{source.hexdigest()[:16]}.npz"


# ---------------------------------------------------------------- users' own faint thin 28×28 digits

FAINT_PEAK = 140 / PIXEL_MAX  # the brightest ink users' 28×28 drawings reach
THIN_CORE = 0.55  # keep only MNIST ink above this level: strokes about half as wide
FAINT_SCALES = (0.6, 0.9)  # the digit's size relative to MNIST's 20-pixel box
FAINT_MAX_SHIFT = 4  # pixels off-centre, each way


def faint_user_digit(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One MNIST digit (uint8 28×28) → a 28×28 uint8 image as a user's canvas gives it: thin, faint, off-centre."""
    ink = np.asarray(digit, dtype=np.float64) / PIXEL_MAX
    thin = np.clip((ink - THIN_CORE) / (1 - THIN_CORE), 0.0, 1.0)
    scale = rng.uniform(*FAINT_SCALES)
    side = max(4, round(IMAGE_SIDE * scale))
    small = np.asarray(Image.fromarray(thin.astype(np.float32), mode="F").resize((side, side),
                                                                                  Image.Resampling.BILINEAR))
    small = small / max(float(small.max()), 1e-9)
    field = np.zeros((IMAGE_SIDE, IMAGE_SIDE))
    room = IMAGE_SIDE - side
    top = int(np.clip(room // 2 + rng.integers(-FAINT_MAX_SHIFT, FAINT_MAX_SHIFT + 1), 0, room))
    left = int(np.clip(room // 2 + rng.integers(-FAINT_MAX_SHIFT, FAINT_MAX_SHIFT + 1), 0, room))
    field[top : top + side, left : left + side] = small
    return np.rint(np.clip(field, 0, 1) * FAINT_PEAK * PIXEL_MAX).astype(np.uint8)


def faint_user_digits(digits: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([faint_user_digit(digit, rng) for digit in digits])


def write_images(images: np.ndarray, labels: Sequence[int], directory: str | Path, prefix: str) -> list[Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (image, label) in enumerate(zip(images, labels)):
        path = directory / f"{prefix}-{index:05d}-{label}.png"
        Image.fromarray(image, mode="L").save(path)
        paths.append(path)
    return paths


# ---------------------------------------------------------------- photographed digits

PHOTO_CONDITIONS = ("shadow", "lined paper", "coloured paper", "stray dot", "ruled line")
PHOTO_SIDES = (160, 260)  # pixels: a phone photo cropped round the digit
PHOTO_DIGIT_FRACTIONS = (0.35, 0.55)  # the digit's height as a share of the photo
PAPER_REFLECTANCE = (0.8, 0.95)
INK_REFLECTANCE = (0.05, 0.25)
SHADOW_DEPTHS = (0.35, 0.6)  # how much light the shadowed side loses
RULE_REFLECTANCE = (0.45, 0.7)  # printed blue ruling, as grey
RULE_WIDTHS = (1, 3)  # pixels
RULE_TILT_DEGREES = 2.0
PAPER_COLOURS = ((1.0, 0.95, 0.6), (1.0, 0.8, 0.85), (0.75, 0.9, 1.0), (0.8, 1.0, 0.8))  # yellow, pink, blue, green
DOT_RADII = (0.5, 0.8)  # a pen's tap: about as wide as the stroke
PHOTO_NOISE = 3.0  # sensor noise, in 0..255 units
# MNIST's strokes: 2.79 pixels wide in a 20-pixel box (2 × ink area / outline, ink above 0.5).
MNIST_STROKE_FRACTION = 2.79 / 20


def place_digit(digit: np.ndarray, side: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """An MNIST digit as ink coverage in [0, 1] on a side×side field, and its box (top, left, bottom, right)."""
    from mnist_keras.evaluation.redraw import crop

    ink = crop(np.asarray(digit, dtype=np.float64) / PIXEL_MAX)
    margin = side // 8
    # The digit's height is a share of the photo; a wide digit is made smaller to fit inside the margins.
    scale = min(rng.uniform(*PHOTO_DIGIT_FRACTIONS) * side / ink.shape[0], (side - 2 * margin) / ink.shape[1])
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    large = np.clip(np.asarray(Image.fromarray(ink.astype(np.float32), mode="F").resize(
        size, Image.Resampling.BICUBIC)), 0.0, 1.0)
    height, width = large.shape
    top = int(rng.integers(margin, max(margin + 1, side - height - margin)))
    left = int(rng.integers(margin, max(margin + 1, side - width - margin)))
    field = np.zeros((side, side))
    field[top : top + height, left : left + width] = large
    return field, (top, left, top + height, left + width)


def photo_digit(digit: np.ndarray, condition: str, rng: np.random.Generator) -> np.ndarray:
    """One MNIST digit (uint8 28×28) → a photo of it written on paper: uint8 grey (H, W) or RGB (H, W, 3).

    Light × reflectance, as a camera sees it: ink and printed lines reflect less
    light than paper, and a shadow darkens paper and ink alike.
    """
    side = int(rng.integers(*PHOTO_SIDES))
    coverage, (top, left, bottom, right) = place_digit(digit, side, rng)
    stroke = MNIST_STROKE_FRACTION * (bottom - top)  # the digit's stroke width, as MNIST's
    rows, columns = np.mgrid[0:side, 0:side].astype(np.float64)
    marks = np.zeros((side, side))  # other marks on the paper: reflectance lost, in [0, 1]
    mark_reflectance = rng.uniform(*RULE_REFLECTANCE)
    if condition in ("lined paper", "ruled line"):
        tilt = math.tan(math.radians(rng.uniform(-RULE_TILT_DEGREES, RULE_TILT_DEGREES)))
        width = rng.uniform(*RULE_WIDTHS)
        baseline = bottom + rng.uniform(-0.05, 0.15) * (bottom - top)  # written on, or just above, the line
        if condition == "lined paper":
            spacing = (bottom - top) * rng.uniform(1.1, 1.5)
            offsets = baseline + spacing * np.arange(-4, 5)
        else:
            # One dark pen or printed line beside the digit: under it, above it, or a margin line.
            mark_reflectance = rng.uniform(INK_REFLECTANCE[0], RULE_REFLECTANCE[1])
            gap = rng.uniform(0.15, 0.4) * (bottom - top)
            offsets = np.array([bottom + gap if rng.random() < 0.5 else top - gap])
            if rng.random() < 0.3:
                rows, columns = columns, rows
                offsets = np.array([right + gap if rng.random() < 0.5 else left - gap])
        along = rows - tilt * (columns - side / 2)
        for offset in offsets:
            marks = np.maximum(marks, np.clip(width / 2 + 0.5 - np.abs(along - offset), 0, 1))
        rows, columns = np.mgrid[0:side, 0:side].astype(np.float64)
    if condition == "stray dot":
        radius = stroke * rng.uniform(*DOT_RADII)
        distance = rng.uniform(0.3, 0.7) * (bottom - top)
        angle = rng.uniform(0, 2 * math.pi)
        centre = ((top + bottom) / 2 + math.sin(angle) * ((bottom - top) / 2 + distance),
                  (left + right) / 2 + math.cos(angle) * ((right - left) / 2 + distance))
        centre = np.clip(centre, radius + 1, side - radius - 1)
        dot = np.clip(radius + 0.5 - np.hypot(rows - centre[0], columns - centre[1]), 0, 1)
        coverage = np.maximum(coverage, dot)
    paper = rng.uniform(*PAPER_REFLECTANCE)
    ink = rng.uniform(*INK_REFLECTANCE)
    reflectance = paper - (paper - mark_reflectance) * marks
    reflectance = reflectance - (reflectance - ink) * coverage
    light = np.ones((side, side))
    if condition == "shadow":
        angle = rng.uniform(0, 2 * math.pi)
        along = (rows - side / 2) * math.sin(angle) + (columns - side / 2) * math.cos(angle)
        depth = rng.uniform(*SHADOW_DEPTHS)
        if rng.random() < 0.5:  # a gradual fall-off of light across the page
            light = 1 - depth * (along / side + 0.5)
        else:  # the soft edge of a hand's or phone's shadow
            edge = rng.uniform(-0.3, 0.3) * side
            light = 1 - depth / (1 + np.exp(-(along - edge) / (side * rng.uniform(0.02, 0.1))))
    grey = light * reflectance
    if condition == "coloured paper":
        tint = np.array(PAPER_COLOURS[int(rng.integers(len(PAPER_COLOURS)))])
        ink_colour = np.array([0.1, 0.1, 0.5]) if rng.random() < 0.5 else np.array([0.1, 0.1, 0.1])
        tinted_paper = grey[..., None] * tint
        colour = tinted_paper + (ink_colour * ink / 0.25 - tinted_paper) * coverage[..., None]
        noisy = colour * PIXEL_MAX + rng.normal(0, PHOTO_NOISE, colour.shape)
        return np.rint(np.clip(noisy, 0, PIXEL_MAX)).astype(np.uint8)
    noisy = grey * PIXEL_MAX + rng.normal(0, PHOTO_NOISE, grey.shape)
    return np.rint(np.clip(noisy, 0, PIXEL_MAX)).astype(np.uint8)


def write_photos(digits: np.ndarray, directory: str | Path, seed: int = 0,
                 conditions: Sequence[str] = PHOTO_CONDITIONS) -> tuple[list[Path], list[str]]:
    """Each digit photographed under one condition (in turn), saved as PNG; the paths and conditions, in order."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 31_337])
    paths, used = [], []
    for index, digit in enumerate(digits):
        condition = conditions[index % len(conditions)]
        array = photo_digit(digit, condition, rng)
        path = directory / f"photo-{index:05d}-{condition.replace(' ', '-')}.png"
        Image.fromarray(array, mode="RGB" if array.ndim == 3 else "L").save(path)
        paths.append(path)
        used.append(condition)
    return paths, used


# ---------------------------------------------------------------- held-out non-digits

# Letters drawn as pen strokes: polylines in a unit box (x right, y down).
PEN_LETTERS: dict[str, list[list[tuple[float, float]]]] = {
    "A": [[(0, 1), (0.5, 0), (1, 1)], [(0.25, 0.55), (0.75, 0.55)]],
    "E": [[(1, 0), (0, 0), (0, 1), (1, 1)], [(0, 0.5), (0.7, 0.5)]],
    "F": [[(1, 0), (0, 0), (0, 1)], [(0, 0.45), (0.7, 0.45)]],
    "H": [[(0, 0), (0, 1)], [(1, 0), (1, 1)], [(0, 0.5), (1, 0.5)]],
    "K": [[(0, 0), (0, 1)], [(1, 0), (0, 0.55), (1, 1)]],
    "M": [[(0, 1), (0, 0), (0.5, 0.6), (1, 0), (1, 1)]],
    "N": [[(0, 1), (0, 0), (1, 1), (1, 0)]],
    "R": [[(0, 1), (0, 0), (0.75, 0), (0.95, 0.25), (0.75, 0.5), (0, 0.5)], [(0.4, 0.5), (1, 1)]],
    "V": [[(0, 0), (0.5, 1), (1, 0)]],
    "W": [[(0, 0), (0.25, 1), (0.5, 0.35), (0.75, 1), (1, 0)]],
    "X": [[(0, 0), (1, 1)], [(1, 0), (0, 1)]],
    "+": [[(0.5, 0), (0.5, 1)], [(0, 0.5), (1, 0.5)]],
    "#": [[(0.35, 0), (0.25, 1)], [(0.75, 0), (0.65, 1)], [(0, 0.33), (1, 0.33)], [(0, 0.67), (1, 0.67)]],
    "*": [[(0.5, 0), (0.5, 1)], [(0.07, 0.25), (0.93, 0.75)], [(0.93, 0.25), (0.07, 0.75)]],
    "=": [[(0, 0.35), (1, 0.35)], [(0, 0.65), (1, 0.65)]],
    "<": [[(1, 0), (0, 0.5), (1, 1)]],
    "m": [[(0, 1), (0, 0.3)], [(0, 0.4), (0.25, 0.25), (0.5, 0.4), (0.5, 1)], [(0.5, 0.4), (0.75, 0.25),
                                                                               (1, 0.4), (1, 1)]],
    "w": [[(0, 0.3), (0.2, 1), (0.5, 0.5), (0.8, 1), (1, 0.3)]],
    "k": [[(0, 0), (0, 1)], [(0.8, 0.35), (0, 0.7), (0.8, 1)]],
    "x": [[(0, 0.3), (1, 1)], [(1, 0.3), (0, 1)]],
}
HELDOUT_FONTS = ("STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
                 "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf")
HELDOUT_GLYPHS = "AEFHKLMNRVWXYkmnrtvwx#%*+=@<>"
HELDOUT_WORDS = ("apple", "digit", "note", "hey", "MNIST", "xyz", "Ok", "draw", "seven", "text")
HELDOUT_KINDS = ("pen_letter", "font_glyph", "word", "spiral", "zigzag", "loops", "noise", "stripes",
                 "checkerboard", "flat")
PAPER_SIDE = 112  # pixels: the side of a held-out "photo" file


@dataclass(frozen=True)
class Negative:
    """One held-out non-digit: `image` is a dark-on-light grey file image, or with `raw`, 28×28 pixels (ink = 1)."""

    kind: str
    image: np.ndarray
    raw: bool = False


def paper_with_strokes(strokes: list[np.ndarray], width: float) -> np.ndarray:
    """Dark pen strokes (polylines in paper pixels) on white paper, float in [0, 1]."""
    image = Image.new("L", (PAPER_SIDE, PAPER_SIDE), PIXEL_MAX)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        draw.line([tuple(point) for point in stroke], fill=0, width=max(1, round(width)), joint="curve")
    return np.asarray(image, dtype=np.float64) / PIXEL_MAX


def in_box(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit-box points → paper pixels, the box 40-80% of the paper somewhere on it."""
    size = rng.uniform(0.4, 0.8) * PAPER_SIDE
    origin = rng.uniform(4, PAPER_SIDE - size - 4, 2)
    return origin + points * size


def heldout_negative(kind: str, rng: np.random.Generator) -> Negative:
    width = rng.uniform(2, 9)
    if kind == "pen_letter":
        letter = PEN_LETTERS[str(rng.choice(list(PEN_LETTERS)))]
        jitter = rng.uniform(0.02, 0.06)
        box = rng.uniform(4, PAPER_SIDE * 0.35), rng.uniform(0.4, 0.8) * PAPER_SIDE
        strokes = [np.array(box[0]) + (np.array(stroke, dtype=float) + rng.normal(0, jitter, (len(stroke), 2)))
                   * box[1] for stroke in letter]
        return Negative(kind, paper_with_strokes(strokes, width))
    if kind in ("font_glyph", "word"):
        text = str(rng.choice(list(HELDOUT_GLYPHS) if kind == "font_glyph" else list(HELDOUT_WORDS)))
        font = ImageFont.truetype(str(font_path(str(rng.choice(HELDOUT_FONTS)))), int(rng.integers(40, 70)))
        image = Image.new("L", (PAPER_SIDE * 2 if kind == "word" else PAPER_SIDE, PAPER_SIDE), PIXEL_MAX)
        ImageDraw.Draw(image).text((8, 8), text, fill=0, font=font)
        return Negative(kind, np.asarray(image, dtype=np.float64) / PIXEL_MAX)
    if kind == "spiral":
        turns = rng.uniform(2, 5)
        t = np.linspace(0, 2 * math.pi * turns, 200)
        points = 0.5 + 0.5 * np.stack([np.cos(t), np.sin(t)], 1) * (t / t.max())[:, None]
        return Negative(kind, paper_with_strokes([in_box(points, rng)], min(width, 5)))
    if kind == "zigzag":
        teeth = int(rng.integers(4, 10))
        x = np.linspace(0, 1, teeth * 2 + 1)
        y = np.where(np.arange(len(x)) % 2 == 0, 0.0, 1.0) * rng.uniform(0.3, 1)
        points = np.stack([x, y], 1)
        if rng.random() < 0.5:
            points = points[:, ::-1]
        return Negative(kind, paper_with_strokes([in_box(points, rng)], width))
    if kind == "loops":
        loops = rng.uniform(3, 7)
        t = np.linspace(0, 2 * math.pi * loops, 300)
        radius = rng.uniform(0.15, 0.3)
        points = np.stack([t / t.max() * (1 - 2 * radius) + radius + radius * np.cos(t * 1.0),
                           0.5 + radius * np.sin(t)], 1)
        return Negative(kind, paper_with_strokes([in_box(points, rng)], min(width, 5)))
    if kind == "noise":
        cells = int(rng.integers(3, 12))
        coarse = Image.fromarray(rng.uniform(0, 1, (cells, cells)).astype(np.float32), mode="F")
        field = np.asarray(coarse.resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BICUBIC))
        if rng.random() < 0.5:
            field = (rng.uniform(0, 1, (IMAGE_SIDE, IMAGE_SIDE)) < rng.uniform(0.05, 0.5)).astype(np.float64)
        return Negative(kind, np.clip(field, 0, 1), raw=True)
    if kind == "stripes":
        spacing = rng.uniform(8, 24)
        angle = rng.choice([0.0, 90.0, 45.0, -45.0, rng.uniform(0, 180)])
        image = Image.new("L", (PAPER_SIDE * 2, PAPER_SIDE * 2), PIXEL_MAX)
        draw = ImageDraw.Draw(image)
        for y in np.arange(0, PAPER_SIDE * 2, spacing):
            draw.line([(0, y), (PAPER_SIDE * 2, y)], fill=0, width=max(1, round(spacing * rng.uniform(0.2, 0.6))))
        image = image.rotate(float(angle), fillcolor=PIXEL_MAX).crop(
            (PAPER_SIDE // 2, PAPER_SIDE // 2, PAPER_SIDE * 3 // 2, PAPER_SIDE * 3 // 2))
        return Negative(kind, np.asarray(image, dtype=np.float64) / PIXEL_MAX, raw=bool(rng.random() < 0.5))
    if kind == "checkerboard":
        cells = int(rng.integers(3, 9))
        board = np.kron((np.indices((cells, cells)).sum(axis=0) % 2).astype(np.float64),
                        np.ones((PAPER_SIDE // cells + 1,) * 2))[:PAPER_SIDE, :PAPER_SIDE]
        return Negative(kind, board, raw=bool(rng.random() < 0.5))
    if kind == "flat":
        return Negative(kind, np.full((IMAGE_SIDE, IMAGE_SIDE), rng.uniform(0.1, 1.0)), raw=True)
    raise ValueError(f"unknown kind {kind!r}")


def font_path(name: str) -> Path:
    from mnist_keras.data.nondigits import font_directory

    return font_directory() / name


def heldout_negatives(count: int, seed: int) -> list[Negative]:
    """`count` held-out non-digits, the kinds in turn; deterministic per seed."""
    rng = np.random.default_rng([seed, 7_777])
    return [heldout_negative(HELDOUT_KINDS[index % len(HELDOUT_KINDS)], rng) for index in range(count)]


def negative_inputs(negatives: Sequence[Negative], directory: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs for held-out negatives: files saved as PNG and read like `predict`; raw pixels as they are.

    Returns (inputs (N, 28, 28), readable mask): a file the image path refuses
    (blank) counts as refused, i.e. "not a digit".
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    inputs = np.zeros((len(negatives), IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    readable = np.ones(len(negatives), dtype=bool)
    for index, negative in enumerate(negatives):
        if negative.raw:
            image = negative.image
            if image.shape != (IMAGE_SIDE, IMAGE_SIDE):
                # a pattern sent as pixels: light ink on dark, 28×28
                image = 1.0 - np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize(
                    (IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BILINEAR))
            inputs[index] = np.clip(image, 0, 1)
            continue
        path = directory / f"negative-{index:05d}-{negative.kind}.png"
        Image.fromarray(np.rint(negative.image * PIXEL_MAX).astype(np.uint8), mode="L").save(path)
        file_inputs, ok = read_files([path])
        inputs[index], readable[index] = file_inputs[0], ok[0]
    return inputs, readable


def is_digit_rates(inputs: np.ndarray, outputs: np.ndarray, readable: np.ndarray | None = None) -> np.ndarray:
    """`decision.is_digit` for each input and output row; unreadable inputs are False (refused)."""
    from mnist_keras.inference.decision import is_digit

    decisions = np.array([is_digit(image, row) for image, row in zip(inputs, outputs)], dtype=bool)
    return decisions if readable is None else decisions & readable

