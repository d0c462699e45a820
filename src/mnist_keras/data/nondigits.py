"""'That's not a digit': synthetic non-digits to train on, in families.

`synthetic_negatives(count, seed, families, digits=..., labels=...)` draws
things that are not one handwritten digit, from the families named:

- "capitals", "lowercase", "symbols": letters and symbols drawn as pen strokes
  (`mnist_keras.data.strokes`, Hershey single-stroke fonts) and rendered from
  fonts; lowercase also has words;
- "doodles": ticks, crosses, arrows, underlines, spirals, zigzags, stars,
  faces, animals, smudges, scribbles, tangles;
- "partial_digits": part of an MNIST training digit (half a 0), digit strings;
- "crossed_out": MNIST training digits struck through;
- "patterns": noise, stripes, checkerboards, grids, blobs, flat grey.

Each is drawn in the form the model sees it: on a larger canvas and passed
through `images.mnist_style`, exactly like a user's image file, or (for the
patterns a client can send as raw pixels) as a 28×28 field as it is. Holding
whole families out of training and measuring on them is
`benchmarks/open_set.py`.

The decision itself, `is_digit`, lives in `mnist_keras.inference.decision`. The
older held-out negatives in `mnist_keras.evaluation.handwriting` share no fonts
with this module, but their pen-stroke letters are now a family here.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

from mnist_keras.constants import IMAGE_SIDE, PIXEL_MAX
from mnist_keras.data import strokes
from mnist_keras.inference.images import ImageError, mnist_style

# ---------------------------------------------------------------- what we draw

# Fonts shipped with matplotlib (a dependency already), so the generator gives
# the same images on every machine. The held-out set uses STIX and Computer
# Modern instead, so it measures generalisation to unseen letter shapes.
TRAINING_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
)

# Letters and symbols rendered from fonts: the same characters as the pen-stroke ones
# (strokes.CAPITALS, LOWERCASE, SYMBOLS; digit look-alikes are never drawn, see
# strokes.DIGIT_LOOK_ALIKES), plus symbols only fonts have. Ticks, crosses, arrows, stars
# and hearts are left to the doodles, so holding out one family holds out its shapes.
FONT_CAPITALS = strokes.CAPITALS + "ΔΦΨΩ"
FONT_LOWERCASE = strokes.LOWERCASE + "αλπω"
FONT_SYMBOLS = strokes.SYMBOLS + "÷×€¥¶©®µ√≠≈※♣♠"
GLYPHS = FONT_CAPITALS + FONT_LOWERCASE + FONT_SYMBOLS
WORDS = ("the", "mint", "hello", "keras", "ok", "yes", "no", "cat", "word", "hi", "Ask", "Why", "win", "RUN")
DIGIT_STRING_LENGTHS = (2, 4)  # "several digits side by side"

CANVAS = 64  # side of the drawing canvas, pixels; mnist_style shrinks it to the 20-pixel box
FONT_SIZES = (34, 50)
STROKE_WIDTHS = (0, 3)  # extra outline width of a glyph, pixels on the canvas
PEN_WIDTHS = (2, 7)  # width of scribble strokes on the canvas
ROTATION_DEGREES = 20.0
SHEAR = 0.3
SCALE_RANGE = (0.8, 1.15)
ELASTIC_ALPHA = (0.0, 4.0)  # displacement in canvas pixels
ELASTIC_SIGMA = 5.0

# Scribbles must be long compared with a digit's stroke (MNIST's strokes are
# about 2-3 box heights long in all), so they never look like a single digit.
WALK_STEPS = (30, 90)
WALK_TURN_SIGMAS = (0.4, 1.3)  # radians per step
MIN_WALK_LENGTH_RATIO = 4.0  # path length / bounding-box side; MNIST digits are about 2-3
MAX_REDRAWS = 8
TANGLE_CURVES = (3, 6)

# Each family's kinds and their shares within it; then each family's share of a set. Pen
# strokes lead: that is how users draw (issue 22: the non-digits that got through were
# drawn letters, symbols and scribbles), and fonts add shapes a pen set lacks.
FAMILIES: dict[str, dict[str, float]] = {
    "capitals": {"pen_capital": 0.75, "font_capital": 0.25},
    "lowercase": {"pen_lowercase": 0.65, "font_lowercase": 0.2, "word": 0.15},
    "symbols": {"pen_symbol": 0.75, "font_symbol": 0.25},
    "doodles": {"doodle": 0.6, "smudge": 0.1, "scribble": 0.2, "tangle": 0.1},
    "partial_digits": {"partial_digit": 0.75, "digit_string": 0.25},
    "crossed_out": {"crossed_out": 1.0},
    "patterns": {"noise": 0.25, "stripes": 0.2, "checkerboard": 0.15, "grid": 0.15, "blob": 0.15, "flat": 0.1},
}
FAMILY_WEIGHTS = {"capitals": 0.16, "lowercase": 0.18, "symbols": 0.13, "doodles": 0.17, "partial_digits": 0.1,
                  "crossed_out": 0.1, "patterns": 0.16}
ALL_FAMILIES = tuple(FAMILIES)
# The families drawn from MNIST training digits: they need `digits` and `labels`.
DIGIT_FAMILIES = ("partial_digits", "crossed_out")


@functools.cache
def font_directory() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.cache
def load_font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_directory() / name), size)


def draw_text(text: str, font: ImageFont.FreeTypeFont, stroke: int, canvas: int = CANVAS) -> np.ndarray:
    """`text` in white on a black canvas wide enough for it, float in [0, 1]."""
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    width = max(canvas, right - left + 8)
    height = max(canvas, bottom - top + 8)
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).text(((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top), text,
                               fill=PIXEL_MAX, font=font, stroke_width=stroke, stroke_fill=PIXEL_MAX)
    return np.asarray(image, dtype=np.float32) / PIXEL_MAX


def distort(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random rotation, shear, scale and elastic wobble, so printed shapes look drawn by hand."""
    height, width = ink.shape
    angle = math.radians(rng.uniform(-ROTATION_DEGREES, ROTATION_DEGREES))
    shear = rng.uniform(-SHEAR, SHEAR)
    scale = rng.uniform(*SCALE_RANGE)
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    matrix = np.array([[cos, -sin + shear * cos], [sin, cos + shear * sin]])
    centre = np.array([height / 2, width / 2])
    offset = centre - matrix @ centre
    warped = ndimage.affine_transform(ink, matrix, offset=offset, order=1)
    alpha = rng.uniform(*ELASTIC_ALPHA)
    if alpha > 0:
        fields = [ndimage.gaussian_filter(rng.uniform(-1, 1, ink.shape), ELASTIC_SIGMA) for _ in range(2)]
        fields = [field / (np.abs(field).max() + 1e-9) * alpha for field in fields]
        rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        warped = ndimage.map_coordinates(warped, [rows + fields[0], columns + fields[1]], order=1)
    return np.clip(warped, 0.0, 1.0)


def font_glyph(characters: str, rng: np.random.Generator) -> np.ndarray:
    font = load_font(str(rng.choice(TRAINING_FONTS)), int(rng.integers(*FONT_SIZES)))
    return distort(draw_text(str(rng.choice(list(characters))), font, int(rng.integers(*STROKE_WIDTHS))), rng)


def word(rng: np.random.Generator) -> np.ndarray:
    font = load_font(str(rng.choice(TRAINING_FONTS)), int(rng.integers(*FONT_SIZES)))
    return distort(draw_text(str(rng.choice(WORDS)), font, int(rng.integers(*STROKE_WIDTHS))), rng)


def digit_string(rng: np.random.Generator) -> np.ndarray:
    digits = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(*DIGIT_STRING_LENGTHS, endpoint=True))))
    font = load_font(str(rng.choice(TRAINING_FONTS)), int(rng.integers(*FONT_SIZES)))
    return distort(draw_text(digits, font, int(rng.integers(*STROKE_WIDTHS))), rng)


def pen_canvas(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    image = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(image).line([tuple(point) for point in points], fill=PIXEL_MAX,
                               width=int(rng.integers(*PEN_WIDTHS)), joint="curve")
    return np.asarray(image, dtype=np.float32) / PIXEL_MAX


def scribble(rng: np.random.Generator) -> np.ndarray:
    """A random walk with momentum: long, turning, crossing itself (never one digit-like stroke)."""
    for _ in range(MAX_REDRAWS):
        steps = int(rng.integers(*WALK_STEPS))
        turns = np.cumsum(rng.normal(0, rng.uniform(*WALK_TURN_SIGMAS), steps)) + rng.uniform(0, 2 * math.pi)
        path = np.cumsum(np.stack([np.cos(turns), np.sin(turns)], axis=1), axis=0)
        extent = float(np.ptp(path, axis=0).max())
        if steps >= MIN_WALK_LENGTH_RATIO * extent:
            break
    path -= path.min(axis=0)
    path = path / max(float(path.max()), 1e-9) * (CANVAS - 12) + 6
    return pen_canvas(path, rng)


def bezier(points: np.ndarray, samples: int = 40) -> np.ndarray:
    t = np.linspace(0, 1, samples)[:, None]
    p0, p1, p2, p3 = points
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3


def tangle(rng: np.random.Generator) -> np.ndarray:
    """Several cubic Bézier curves through random points, drawn as one stroke."""
    curves = int(rng.integers(*TANGLE_CURVES, endpoint=True))
    anchors = rng.uniform(6, CANVAS - 6, size=(curves * 3 + 1, 2))
    path = np.concatenate([bezier(anchors[3 * k : 3 * k + 4]) for k in range(curves)])
    return pen_canvas(path, rng)


def noise(rng: np.random.Generator) -> np.ndarray:
    """White, blurred or sparse noise over the whole field."""
    choice = rng.integers(3)
    if choice == 0:
        return rng.uniform(0, 1, (CANVAS, CANVAS)) * rng.uniform(0.3, 1)
    if choice == 1:
        field = ndimage.gaussian_filter(rng.normal(0, 1, (CANVAS, CANVAS)), rng.uniform(1, 4))
        return np.clip((field - field.mean()) / (field.std() + 1e-9) * rng.uniform(0.2, 0.6) + 0.5, 0, 1)
    return (rng.uniform(0, 1, (CANVAS, CANVAS)) < rng.uniform(0.03, 0.3)).astype(np.float64)


def oriented_coordinates(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    angle = rng.uniform(0, math.pi)
    rows, columns = np.meshgrid(np.arange(CANVAS), np.arange(CANVAS), indexing="ij")
    return (rows * math.cos(angle) + columns * math.sin(angle),
            -rows * math.sin(angle) + columns * math.cos(angle))


def stripes(rng: np.random.Generator) -> np.ndarray:
    along, _ = oriented_coordinates(rng)
    period = rng.uniform(5, 20)
    return (np.sin(2 * math.pi * along / period) > rng.uniform(-0.5, 0.5)).astype(np.float64)


def checkerboard(rng: np.random.Generator) -> np.ndarray:
    along, across = oriented_coordinates(rng) if rng.random() < 0.5 else np.meshgrid(
        np.arange(CANVAS), np.arange(CANVAS), indexing="ij")
    cell = rng.uniform(4, 16)
    return ((np.floor(along / cell) + np.floor(across / cell)) % 2).astype(np.float64)


def grid(rng: np.random.Generator) -> np.ndarray:
    along, across = oriented_coordinates(rng) if rng.random() < 0.3 else np.meshgrid(
        np.arange(CANVAS), np.arange(CANVAS), indexing="ij")
    period, width = rng.uniform(7, 20), rng.uniform(1, 4)
    return ((np.mod(along, period) < width) | (np.mod(across, period) < width)).astype(np.float64)


def blob(rng: np.random.Generator) -> np.ndarray:
    """Filled ellipses, rectangles or soft blobs."""
    image = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = rng.uniform(0, CANVAS * 0.6, 2)
        x1, y1 = x0 + rng.uniform(12, CANVAS * 0.6), y0 + rng.uniform(12, CANVAS * 0.6)
        (draw.ellipse if rng.random() < 0.6 else draw.rectangle)([x0, y0, x1, y1], fill=PIXEL_MAX)
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(1, 5)))
    return np.asarray(image, dtype=np.float64) / PIXEL_MAX


def flat(rng: np.random.Generator) -> np.ndarray:
    """A flat or gently graded grey field (the model sees it as it is: there is no shape to centre)."""
    level = rng.uniform(0.15, 1.0)
    if rng.random() < 0.5:
        return np.full((IMAGE_SIDE, IMAGE_SIDE), level)
    along, _ = oriented_coordinates(rng)
    ramp = along[:IMAGE_SIDE, :IMAGE_SIDE]
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-9)
    return np.clip(level * (1 - rng.uniform(0, 0.6) * ramp), 0, 1)


GENERATORS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "pen_capital": strokes.pen_capital, "pen_lowercase": strokes.pen_lowercase, "pen_symbol": strokes.pen_symbol,
    "font_capital": functools.partial(font_glyph, FONT_CAPITALS),
    "font_lowercase": functools.partial(font_glyph, FONT_LOWERCASE),
    "font_symbol": functools.partial(font_glyph, FONT_SYMBOLS),
    "word": word, "digit_string": digit_string, "doodle": strokes.doodle, "smudge": strokes.smudge,
    "scribble": scribble, "tangle": tangle,
    "noise": noise, "stripes": stripes, "checkerboard": checkerboard, "grid": grid, "blob": blob, "flat": flat,
}
# Kinds drawn from MNIST training digits: called with (digits, labels, rng).
DIGIT_GENERATORS: dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]] = {
    "partial_digit": strokes.partial_digit, "crossed_out": strokes.crossed_out,
}
# Field patterns reach the model both ways: as an image file (through mnist_style,
# which crops and re-centres them) and as raw 28×28 pixels a client sends.
FIELD_KINDS = ("noise", "stripes", "checkerboard", "grid", "flat")
RAW_FIELD_SHARE = 0.5
CACHE_SWITCH = "MNIST_KERAS_NONDIGIT_CACHE"


def as_model_input(drawing: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A drawing (ink = 1, any size) → 28×28 float in [0, 1] as the model would receive it."""
    if kind in FIELD_KINDS and (drawing.shape == (IMAGE_SIDE, IMAGE_SIDE) or rng.random() < RAW_FIELD_SHARE):
        if drawing.shape != (IMAGE_SIDE, IMAGE_SIDE):
            drawing = np.asarray(Image.fromarray(drawing.astype(np.float32), mode="F").resize(
                (IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BILINEAR))
        return np.clip(drawing, 0.0, 1.0)
    try:
        return mnist_style(drawing)
    except ImageError:  # a pattern with no contrast left is blank to the page too: show it as it is
        return np.clip(np.asarray(Image.fromarray(drawing.astype(np.float32), mode="F").resize(
            (IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BILINEAR)), 0.0, 1.0)


def synthetic_negatives(count: int, seed: int, families: Sequence[str] = ALL_FAMILIES,
                        digits: np.ndarray | None = None, labels: np.ndarray | None = None) -> np.ndarray:
    """`count` images that are not one handwritten digit, from `families`: uint8 (count, 28, 28), ink = 255.

    The families share the set in proportion to FAMILY_WEIGHTS. "partial_digits"
    and "crossed_out" are made from `digits` (uint8 N×28×28 MNIST *training*
    digits, never test digits) and their `labels`. Deterministic for a given
    (count, seed, families, digits); each image is drawn from its own stream,
    so the first n images of a larger set are the same as a set of n. Drawing
    takes a few milliseconds an image, so sets are kept in the cache directory,
    keyed by the source of the code that draws them.
    """
    families = check_families(families)
    if any(family in DIGIT_FAMILIES for family in families) and (digits is None or labels is None):
        raise ValueError(f"the families {', '.join(DIGIT_FAMILIES)} are drawn from MNIST training digits: "
                         "pass digits= and labels=")
    path = cache_path(count, seed, families, digits, labels)
    if path is not None and path.exists():
        try:
            cached = np.load(path)
            if cached.shape == (count, IMAGE_SIDE, IMAGE_SIDE) and cached.dtype == np.uint8:
                return cached
        except (OSError, ValueError):
            pass  # a damaged cache file is redrawn below
    images = draw_negatives(count, seed, families, digits, labels)[0]
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.partial.npy")
            np.save(partial, images)
            os.replace(partial, path)
        except OSError:
            pass  # a read-only cache only costs time
    return images


def check_families(families: Sequence[str]) -> tuple[str, ...]:
    """The families in FAMILIES order; ValueError for an unknown one or none."""
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown or not families:
        raise ValueError(f"unknown or no non-digit families {unknown}; choose from {', '.join(FAMILIES)}")
    return tuple(family for family in FAMILIES if family in families)


def cache_path(count: int, seed: int, families: Sequence[str] = ALL_FAMILIES, digits: np.ndarray | None = None,
               labels: np.ndarray | None = None) -> Path | None:
    """Where a set is cached; None when caching is off (MNIST_KERAS_NONDIGIT_CACHE=0)."""
    if os.environ.get(CACHE_SWITCH, "1") == "0":
        return None
    import mnist_keras.inference.images

    source = hashlib.sha256()
    for module_file in (__file__, strokes.__file__, mnist_keras.inference.images.__file__):
        source.update(Path(module_file).read_bytes())
    source.update(",".join(families).encode())
    if digits is not None and labels is not None and any(family in DIGIT_FAMILIES for family in families):
        source.update(np.ascontiguousarray(digits, dtype=np.uint8).tobytes())
        source.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    from mnist_keras.data.mnist import default_cache_dir

    return default_cache_dir() / "nondigit" / f"{source.hexdigest()[:16]}-{seed}-{count}.npy"


def family_kinds(families: Sequence[str]) -> tuple[list[str], list[str], np.ndarray]:
    """Every kind the families draw, the family of each, and each kind's share of a set."""
    kinds, owners, weights = [], [], []
    total = sum(FAMILY_WEIGHTS[family] for family in families)
    for family in families:
        for kind, share in FAMILIES[family].items():
            kinds.append(kind)
            owners.append(family)
            weights.append(FAMILY_WEIGHTS[family] / total * share)
    return kinds, owners, np.array(weights) / sum(weights)


def draw_negatives(count: int, seed: int, families: Sequence[str] = ALL_FAMILIES, digits: np.ndarray | None = None,
                   labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`count` negatives (uint8 N×28×28, not cached) and the family each was drawn from."""
    kinds, owners, weights = family_kinds(check_families(families))
    out = np.empty((count, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    drawn_from = np.empty(count, dtype=object)
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        choice = int(rng.choice(len(kinds), p=weights))
        kind = kinds[choice]
        drawing = (DIGIT_GENERATORS[kind](digits, labels, rng) if kind in DIGIT_GENERATORS
                   else GENERATORS[kind](rng))
        image = as_model_input(drawing, kind, rng)
        out[index] = np.rint(np.clip(image, 0.0, 1.0) * PIXEL_MAX).astype(np.uint8)
        drawn_from[index] = owners[choice]
    return out, drawn_from.astype(str)
