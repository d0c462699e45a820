"""'That's not a digit': synthetic non-digits to train on.

`synthetic_negatives(count, seed)` draws things that are not one handwritten
digit — letters and symbols that do not look like digits, scribbles, noise,
stripes, checkerboards, grids, blobs, words and digit strings, flat grey — in
the form the model sees them: drawn on a larger canvas and passed through
`images.mnist_style`, exactly like a user's image file, or (for the patterns a
client can send as raw pixels) as a 28×28 field as it is.

The decision itself, `is_digit`, lives in `mnist_keras.inference.decision`. The
held-out negatives used to measure it live in `mnist_keras.evaluation.handwriting`
and share no glyphs, fonts or shape generators with this module's training
generator.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

from mnist_keras.constants import IMAGE_SIDE, PIXEL_MAX
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

# Letters and symbols that do not look like a digit. Left out, because written
# by hand they are read as a digit by people too, and teaching the model that
# they are "not a digit" would teach it to refuse real digits:
#   O o D Q C c U u → 0 (a closed or nearly closed loop)
#   I l i j J | ! / \ ( ) [ ] , ' ` → 1 (one stroke)
#   Z z ? → 2      E ε ∑ → 3 (mirrored or rotated; handwritten E is a 3 flipped)
#   A h y Y → 4 (handwritten open 4s)      S s $ § → 5
#   b G δ σ → 6    T 7 ⌐ → 7               B & β ∞ → 8      q g a e P → 9
# and the digits themselves, alone.
GLYPHS = "FHKLMNRVWXdfkmnprtvwx#%*+=@^~<>{}÷×€¥¶©®µ√≠≈αγλπωΩΔΦΨ※☆♣♠♥✓✗→←"
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

# Each kind of non-digit and its share of the generated set. Letters come
# first: they are the hardest (closest to digits) and the most varied.
KIND_WEIGHTS = {
    "glyph": 0.30,
    "word": 0.10,
    "digit_string": 0.08,
    "scribble": 0.14,
    "tangle": 0.08,
    "noise": 0.07,
    "stripes": 0.06,
    "checkerboard": 0.05,
    "grid": 0.04,
    "blob": 0.04,
    "flat": 0.04,
}


@functools.lru_cache(maxsize=None)
def font_directory() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=None)
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


def glyph(rng: np.random.Generator) -> np.ndarray:
    font = load_font(str(rng.choice(TRAINING_FONTS)), int(rng.integers(*FONT_SIZES)))
    return distort(draw_text(str(rng.choice(list(GLYPHS))), font, int(rng.integers(*STROKE_WIDTHS))), rng)


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
    "glyph": glyph, "word": word, "digit_string": digit_string, "scribble": scribble, "tangle": tangle,
    "noise": noise, "stripes": stripes, "checkerboard": checkerboard, "grid": grid, "blob": blob, "flat": flat,
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


def synthetic_negatives(count: int, seed: int) -> np.ndarray:
    """`count` images that are not one handwritten digit: uint8 (count, 28, 28), ink = 255.

    Deterministic for a given (count, seed); each image is drawn from its own
    stream, so the first n images of a larger set are the same as a set of n.
    Drawing takes a few milliseconds an image, so sets are kept in the cache
    directory, keyed by the source of the code that draws them.
    """
    path = cache_path(count, seed)
    if path is not None and path.exists():
        try:
            cached = np.load(path)
            if cached.shape == (count, IMAGE_SIDE, IMAGE_SIDE) and cached.dtype == np.uint8:
                return cached
        except (OSError, ValueError):
            pass  # a damaged cache file is redrawn below
    images = draw_negatives(count, seed)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.partial.npy")
            np.save(partial, images)
            os.replace(partial, path)
        except OSError:
            pass  # a read-only cache only costs time
    return images


def cache_path(count: int, seed: int) -> Path | None:
    """Where a set is cached; None when caching is off (MNIST_KERAS_NONDIGIT_CACHE=0)."""
    if os.environ.get(CACHE_SWITCH, "1") == "0":
        return None
    import mnist_keras.inference.images

    source = hashlib.sha256()
    for module_file in (__file__, mnist_keras.inference.images.__file__):
        source.update(Path(module_file).read_bytes())
    from mnist_keras.data.mnist import default_cache_dir

    return default_cache_dir() / "nondigit" / f"{source.hexdigest()[:16]}-{seed}-{count}.npy"


def draw_negatives(count: int, seed: int) -> np.ndarray:
    kinds = list(KIND_WEIGHTS)
    weights = np.array([KIND_WEIGHTS[kind] for kind in kinds])
    out = np.empty((count, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        image = as_model_input(GENERATORS[kind](rng), kind, rng)
        out[index] = np.rint(np.clip(image, 0.0, 1.0) * PIXEL_MAX).astype(np.uint8)
    return out
