"""Non-digits drawn as a pen draws them: letters, symbols, doodles, partial and crossed-out digits.

Each generator takes a NumPy random generator (and, for the kinds made from
digits, MNIST training digits) and returns a drawing: ink = 1 on a black
canvas, any size. `mnist_keras.data.nondigits` passes every drawing through
`images.mnist_style`, the path a user's image takes, so the strokes end up as
thick as MNIST's: the pen width here is a share of the shape's longer side,
the share MNIST's strokes have of its 20-pixel box.

Letters and symbols come from the Hershey single-stroke vector fonts (the
`Hershey-Fonts` package: centre lines of strokes, not outlines), jittered,
slanted, rotated and squashed so no two are drawn alike. Characters a person
would read as a digit are never drawn (`DIGIT_LOOK_ALIKES` says which and
why).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from mnist_keras.constants import IMAGE_SIDE, PIXEL_MAX

Stroke = np.ndarray  # (points, 2) float: x right, y down, in a unit box
Strokes = list[Stroke]

# ---------------------------------------------------------------- what is never drawn

# Written by hand, each of these is read as the digit beside it by people too; training
# the model to call them "not a digit" would teach it to refuse real digits.
DIGIT_LOOK_ALIKES = {
    "0": "OoDQCcUu°",  # a closed or nearly closed loop
    "1": "IlijJ|!/\\()[]{},'`\":;",  # one stroke (or two dots stacked), with or without a flag
    "2": "Zz?",
    "3": "ʒ",  # (handwritten E is kept: its straight back stroke is what a 3 never has)
    "4": "yY",  # open 4s
    "5": "Ss$§",
    "6": "bGδσ",
    "7": "T⌐",
    "8": "B∞",
    "9": "qgP",
}
EXCLUDED = frozenset("".join(DIGIT_LOOK_ALIKES.values()) + "0123456789")
# a, e, h, E, R and & were left out before as look-alikes of 9, 9, 4, 3, 9 and 8; drawn
# with a pen they are what users' non-digits most often are (issue 22), and their shapes
# differ from the digit's in a stroke a reader looks for (a's stem on the baseline, e's
# bar, h's ascender, E's back, R's leg, &'s crossing tail), so they are trained now.
CAPITALS = "AEFHKLMNRVWX"
LOWERCASE = "adefhkmnprtvwx"
SYMBOLS = "#%&*+=@<>~^"

# Hershey fonts: simplex and duplex sans, Roman, Times and two scripts (joined-up shapes).
HERSHEY_FONTS = ("futural", "futuram", "rowmans", "rowmand", "timesr", "scripts", "scriptc", "cursive")

# ---------------------------------------------------------------- how the pen draws

CANVAS = 96  # pixels a side; mnist_style shrinks the shape to MNIST's 20-pixel box
SHAPE_SIDES = (48, 80)  # the shape's longer side on the canvas
# MNIST's strokes are about 2.8 pixels wide in its 20-pixel box (0.14 of the box); people's
# pens and canvases vary round that.
PEN_SHARES = (0.08, 0.2)
SLANT = 0.35  # horizontal shear, as a share of height
ROTATION_DEGREES = 15.0
ASPECT_RANGE = (0.75, 1.3)  # width stretched by this factor
JITTER = 0.02  # per-point hand tremor, share of the box
WOBBLE = 0.04  # slow drift along a stroke, share of the box
RESAMPLE_STEP = 0.02  # points along a stroke, so a straight segment can wobble too


@functools.cache
def hershey_font(name: str):
    from HersheyFonts import HersheyFonts

    font = HersheyFonts()
    font.load_default_font(name)
    font.normalize_rendering(1)
    return font


def hershey_strokes(character: str, font_name: str) -> Strokes:
    """One character's pen strokes in the font, as polylines with y pointing down."""
    strokes = [np.array(stroke, dtype=np.float64) for stroke in hershey_font(font_name).strokes_for_text(character)]
    strokes = [stroke * [1.0, -1.0] for stroke in strokes if len(stroke) >= 2]
    if not strokes:
        raise ValueError(f"font {font_name!r} has no strokes for {character!r}")
    return strokes


def resample(stroke: Stroke, step: float = RESAMPLE_STEP) -> Stroke:
    """Points every `step` along the polyline (the corners kept)."""
    points = [stroke[0]]
    for start, end in itertools.pairwise(stroke):
        pieces = max(1, math.ceil(np.linalg.norm(end - start) / step))
        points.extend(start + (end - start) * t for t in np.linspace(0, 1, pieces + 1)[1:])
    return np.array(points)


def normalise(strokes: Strokes) -> Strokes:
    """Strokes scaled together into the unit box, longer side 1, centred."""
    points = np.concatenate(strokes)
    low, high = points.min(axis=0), points.max(axis=0)
    side = max(float((high - low).max()), 1e-9)
    centre = (low + high) / 2
    return [(stroke - centre) / side + 0.5 for stroke in strokes]


def hand_drawn(strokes: Strokes, rng: np.random.Generator) -> Strokes:
    """Strokes in a unit box as a hand draws them: slanted, turned, stretched, trembling, drifting."""
    angle = math.radians(rng.uniform(-ROTATION_DEGREES, ROTATION_DEGREES))
    slant, aspect = rng.uniform(-SLANT, SLANT), rng.uniform(*ASPECT_RANGE)
    rotate = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    shape = rotate @ np.array([[aspect, -slant], [0.0, 1.0]])
    drawn = []
    for stroke in normalise(strokes):
        points = resample(stroke)
        drift = ndimage.gaussian_filter1d(rng.normal(0, 1, points.shape), sigma=max(2.0, len(points) / 6), axis=0)
        drift = drift / (np.abs(drift).max() + 1e-9) * rng.uniform(0, WOBBLE)
        points = points + drift + rng.normal(0, rng.uniform(0, JITTER), points.shape)
        drawn.append((points - 0.5) @ shape.T + 0.5)
    return normalise(drawn)


def pen(strokes: Strokes, rng: np.random.Generator, pen_shares: tuple[float, float] = PEN_SHARES) -> np.ndarray:
    """Unit-box strokes drawn on the canvas with a round pen: float ink in [0, 1]."""
    side = rng.uniform(*SHAPE_SIDES)
    origin = rng.uniform(4, CANVAS - side - 4, 2)
    width = max(2, round(rng.uniform(*pen_shares) * side))
    image = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(image)
    radius = width / 2
    for stroke in strokes:
        points = [tuple(point) for point in origin + stroke * side]
        if len(points) > 1:
            draw.line(points, fill=PIXEL_MAX, width=width, joint="curve")
        for x, y in (points[0], points[-1]):  # round pen ends, as a ballpoint's
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=PIXEL_MAX)
    return np.asarray(image, dtype=np.float64) / PIXEL_MAX


def character(characters: str, rng: np.random.Generator) -> np.ndarray:
    """One of `characters` in a random Hershey font, drawn by hand."""
    text = str(rng.choice(list(characters)))
    return pen(hand_drawn(hershey_strokes(text, str(rng.choice(HERSHEY_FONTS))), rng), rng)


def pen_capital(rng: np.random.Generator) -> np.ndarray:
    return character(CAPITALS, rng)


def pen_lowercase(rng: np.random.Generator) -> np.ndarray:
    return character(LOWERCASE, rng)


def pen_symbol(rng: np.random.Generator) -> np.ndarray:
    return character(SYMBOLS, rng)


# ---------------------------------------------------------------- doodles


def polyline(*points: Sequence[float]) -> Stroke:
    return np.array(points, dtype=np.float64)


def arc(centre: Sequence[float], radius: Sequence[float], start: float, end: float, samples: int = 40) -> Stroke:
    t = np.linspace(start, end, samples)
    return np.stack([centre[0] + radius[0] * np.cos(t), centre[1] + radius[1] * np.sin(t)], axis=1)


def tick(rng: np.random.Generator) -> Strokes:
    corner = rng.uniform(0.25, 0.45)
    return [polyline((0, rng.uniform(0.45, 0.7)), (corner, 1), (1, rng.uniform(0, 0.15)))]


def cross(rng: np.random.Generator) -> Strokes:
    a, b = rng.uniform(0, 0.2, 2)
    return [polyline((a, 0), (1, 1 - b)), polyline((1 - b, a), (b, 1))]


def arrow(rng: np.random.Generator) -> Strokes:
    """A shaft with an open head, pointing anywhere."""
    head = rng.uniform(0.2, 0.35)
    shaft = polyline((0, 0.5), (1, 0.5))
    barbs = polyline((1 - head, 0.5 - head * 0.8), (1, 0.5), (1 - head, 0.5 + head * 0.8))
    angle = rng.uniform(0, 2 * math.pi)
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return [(stroke - 0.5) @ turn.T + 0.5 for stroke in (shaft, barbs)]


def underline(rng: np.random.Generator) -> Strokes:
    """One to three horizontal lines, straight or wavy, as under a word."""
    lines = int(rng.integers(1, 4))
    x = np.linspace(0, 1, 30)
    wave = rng.uniform(0, 0.08) * np.sin(2 * math.pi * x * rng.uniform(1, 4))
    return [np.stack([x, 0.2 * row + wave], axis=1) for row in range(lines)]


def spiral(rng: np.random.Generator) -> Strokes:
    turns = rng.uniform(1.8, 4.0)  # fewer turns than this would look like a 6 or a 0
    t = np.linspace(0, 2 * math.pi * turns, 200)
    radius = t / t.max()
    return [np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)]


def zigzag(rng: np.random.Generator) -> Strokes:
    teeth = int(rng.integers(4, 9))  # two or three teeth would draw a Z, a 2 or a 3
    x = np.linspace(0, 1, teeth + 1)
    y = np.where(np.arange(teeth + 1) % 2 == 0, 0.0, rng.uniform(0.3, 0.8))
    points = np.stack([x, y], axis=1)
    return [points[:, ::-1] if rng.random() < 0.5 else points]


def star(rng: np.random.Generator) -> Strokes:
    t = -math.pi / 2 + np.arange(6) * 4 * math.pi / 5
    return [np.stack([np.cos(t), np.sin(t)], axis=1)]


def heart(rng: np.random.Generator) -> Strokes:
    t = np.linspace(0, 2 * math.pi, 80)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return [np.stack([x, y], axis=1)]


def house(rng: np.random.Generator) -> Strokes:
    roof = rng.uniform(0.3, 0.5)
    outline = polyline((0, roof), (0.5, 0), (1, roof), (1, 1), (0, 1), (0, roof), (1, roof))
    door = polyline((0.4, 1), (0.4, 0.7), (0.6, 0.7), (0.6, 1))
    return [outline, door]


def face(rng: np.random.Generator) -> Strokes:
    """A smiley: the eyes and mouth inside the circle are what a 0 never has."""
    mouth = arc((0.5, 0.5), (0.25, rng.uniform(0.1, 0.22)), 0.2 * math.pi, 0.8 * math.pi, 20)
    eyes = [arc((x, 0.38), (0.04, 0.05), 0, 2 * math.pi, 10) for x in (0.35, 0.65)]
    return [arc((0.5, 0.5), (0.5, 0.5), 0, 2 * math.pi, 60), mouth, *eyes]


def sun(rng: np.random.Generator) -> Strokes:
    rays = int(rng.integers(6, 11))
    strokes = [arc((0.5, 0.5), (0.22, 0.22), 0, 2 * math.pi, 40)]
    for angle in np.linspace(0, 2 * math.pi, rays, endpoint=False) + rng.uniform(0, 1):
        direction = np.array([math.cos(angle), math.sin(angle)])
        strokes.append(np.stack([0.5 + 0.3 * direction, 0.5 + 0.5 * direction]))
    return strokes


def stick_figure(rng: np.random.Generator) -> Strokes:
    head = arc((0.5, 0.12), (0.1, 0.12), 0, 2 * math.pi, 24)
    body = polyline((0.5, 0.24), (0.5, 0.62))
    arms = polyline((0.15, rng.uniform(0.3, 0.5)), (0.5, 0.38), (0.85, rng.uniform(0.3, 0.5)))
    legs = polyline((0.25, 1), (0.5, 0.62), (0.75, 1))
    return [head, body, arms, legs]


def animal(rng: np.random.Generator) -> Strokes:
    """A horse, dog or cat as children draw one: a body, four legs, a neck and head, a tail."""
    length, depth = rng.uniform(0.55, 0.7), rng.uniform(0.18, 0.28)
    top = rng.uniform(0.3, 0.4)
    body = arc((0.5, top + depth / 2), (length / 2, depth / 2), 0, 2 * math.pi, 40)
    legs = [polyline((x, top + depth * 0.9), (x + rng.uniform(-0.04, 0.04), rng.uniform(0.85, 1.0)))
            for x in np.linspace(0.5 - length * 0.38, 0.5 + length * 0.38, 4)]
    front = 0.5 + length / 2 * (1 if rng.random() < 0.5 else -1)
    side = np.sign(front - 0.5)
    neck_top = (front + side * 0.1, top - rng.uniform(0.15, 0.25))
    neck = polyline((front - side * 0.05, top + depth * 0.2), neck_top)
    head = polyline(neck_top, (neck_top[0] + side * 0.15, neck_top[1] + 0.08),
                    (neck_top[0] + side * 0.12, neck_top[1] + 0.14), (neck_top[0] - side * 0.02, neck_top[1] + 0.06))
    back = 0.5 - side * length / 2
    tail = polyline((back, top + depth * 0.3), (back - side * 0.12, top + depth * rng.uniform(0.5, 1.6)))
    ears = polyline((neck_top[0], neck_top[1]), (neck_top[0] + side * 0.02, neck_top[1] - 0.07),
                    (neck_top[0] + side * 0.06, neck_top[1] + 0.01))
    return [body, *legs, neck, head, tail, ears]


def cloud(rng: np.random.Generator) -> Strokes:
    bumps = int(rng.integers(4, 8))
    t = np.linspace(0, 2 * math.pi, bumps * 20)
    radius = 1 + 0.18 * np.abs(np.sin(t * bumps / 2))
    return [np.stack([1.6 * radius * np.cos(t), radius * np.sin(t)], axis=1)]


def loops(rng: np.random.Generator) -> Strokes:
    """A row of cursive loops, "eeee" or "llll", as someone testing a pen."""
    count = rng.uniform(3, 7)
    t = np.linspace(0, 2 * math.pi * count, int(60 * count))
    radius = rng.uniform(0.3, 0.6)
    return [np.stack([t / t.max() * count + radius * np.cos(t), radius * np.sin(t)], axis=1)]


def hatching(rng: np.random.Generator) -> Strokes:
    """Four to eight short parallel strokes, as shading."""
    count = int(rng.integers(4, 9))
    lean = rng.uniform(-0.4, 0.4)
    return [polyline((k / count, 0), (k / count + lean, 1)) for k in range(count)]


DOODLES = {
    "tick": tick, "cross": cross, "arrow": arrow, "underline": underline, "spiral": spiral, "zigzag": zigzag,
    "star": star, "heart": heart, "house": house, "face": face, "sun": sun, "stick_figure": stick_figure,
    "animal": animal, "cloud": cloud, "loops": loops, "hatching": hatching,
}


def doodle(rng: np.random.Generator) -> np.ndarray:
    return pen(hand_drawn(DOODLES[str(rng.choice(list(DOODLES)))](rng), rng), rng)


def smudge(rng: np.random.Generator) -> np.ndarray:
    """A thick, blurred rub of ink: a short stroke far wider than a pen's, smeared."""
    turns = np.cumsum(rng.normal(0, 0.6, 12)) + rng.uniform(0, 2 * math.pi)
    path = np.cumsum(np.stack([np.cos(turns), np.sin(turns)], axis=1), axis=0)
    image = pen(normalise([path]), rng, pen_shares=(0.35, 0.6))
    blurred = Image.fromarray((image * PIXEL_MAX).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(2, 6)))
    return np.asarray(blurred, dtype=np.float64) / PIXEL_MAX * rng.uniform(0.5, 1.0)


# ---------------------------------------------------------------- made from MNIST training digits

DIGIT_SIDE = 64  # an MNIST digit enlarged to this on the canvas before it is cut or crossed out
KEPT_INK = (0.3, 0.65)  # a partial digit keeps this share of the digit's ink
# A remnant whose ink spreads less than this across its main direction (the ratio of the
# spreads along its two principal axes) is one stroke: a 1 at some slant.
MIN_PARTIAL_SPREAD = 0.4
# Digits whose parts are still a digit: any part of a 1 or a 7 is a 1 or a 7.
NO_PARTIALS = (1, 7)
# A stroke through the middle of a 7 is a European 7, one slash through a 0 a slashed zero,
# and a bar through a 4 its own bar: these digits are only crossed out by an X or hatching.
NO_SINGLE_STRIKE = (0, 4, 7)
STRIKE_KINDS = ("strike", "slash", "x", "hatch", "scribble")


def enlarged(digit: np.ndarray) -> np.ndarray:
    """An MNIST digit (uint8 28×28) as ink on the canvas, enlarged and centred."""
    ink = np.asarray(Image.fromarray(np.asarray(digit, dtype=np.uint8)).resize((DIGIT_SIDE, DIGIT_SIDE),
                                                                                Image.Resampling.BILINEAR))
    canvas = np.zeros((CANVAS, CANVAS))
    offset = (CANVAS - DIGIT_SIDE) // 2
    canvas[offset : offset + DIGIT_SIDE, offset : offset + DIGIT_SIDE] = ink / PIXEL_MAX
    return canvas


def spread(ink: np.ndarray) -> float:
    """How far ink spreads across its main direction: minor over major principal spread, in [0, 1]."""
    rows, columns = np.nonzero(ink > 0.3)
    if len(rows) < 3:
        return 0.0
    spreads = np.linalg.eigvalsh(np.cov(np.stack([rows, columns]).astype(np.float64)))
    return float(math.sqrt(max(spreads[0], 0.0) / max(spreads[1], 1e-9)))


def partial_digit(digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Part of a training digit: the ink on one side of a line through its centre of mass (half a 0)."""
    usable = np.flatnonzero(~np.isin(labels, NO_PARTIALS))
    ink = enlarged(digits[0])
    for _ in range(20):
        ink = enlarged(digits[int(rng.choice(usable))])
        centre = np.array(ndimage.center_of_mass(ink))
        angle = rng.uniform(0, 2 * math.pi)
        rows, columns = np.mgrid[0:CANVAS, 0:CANVAS]
        side = (rows - centre[0]) * math.sin(angle) + (columns - centre[1]) * math.cos(angle)
        kept = ink * (side > rng.uniform(-6, 6))
        share = kept.sum() / max(ink.sum(), 1e-9)
        if KEPT_INK[0] <= share <= KEPT_INK[1] and spread(kept) >= MIN_PARTIAL_SPREAD:
            return kept
    return kept


def crossed_out(digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A training digit struck through: a line, a slash, an X, hatching or a scribble over it."""
    index = int(rng.integers(len(digits)))
    ink, label = enlarged(digits[index]), int(labels[index])
    kinds = [kind for kind in STRIKE_KINDS if not (label in NO_SINGLE_STRIKE and kind in ("strike", "slash"))]
    kind = str(rng.choice(kinds))
    low, high = (CANVAS - DIGIT_SIDE) / 2, (CANVAS + DIGIT_SIDE) / 2
    reach = rng.uniform(0, 8)  # the strike runs past the digit by this much

    def across(y0: float, y1: float) -> Stroke:
        return polyline((low + 4 - reach, y0), (high - 4 + reach, y1))

    middle = (low + high) / 2
    if kind == "strike":
        strokes = [across(*(middle + rng.uniform(-8, 8, 2)))]
    elif kind == "slash":
        strokes = [across(high - 6, low + 6)] if rng.random() < 0.5 else [across(low + 6, high - 6)]
    elif kind == "x":
        strokes = [across(low + 6, high - 6), across(high - 6, low + 6)]
    elif kind == "hatch":
        count = int(rng.integers(3, 6))
        strokes = [across(y, y + rng.uniform(-10, 10)) for y in np.linspace(low + 10, high - 10, count)]
    else:
        teeth = int(rng.integers(5, 10))
        x = np.linspace(low + 6, high - 6, teeth + 1)
        y = np.where(np.arange(teeth + 1) % 2 == 0, middle - 14, middle + 14) + rng.normal(0, 3, teeth + 1)
        strokes = [np.stack([x, y], axis=1)]
    width = max(2, round(rng.uniform(0.7, 1.3) * 0.14 * DIGIT_SIDE * 20 / IMAGE_SIDE))
    image = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        points = resample(stroke / CANVAS) * CANVAS
        points = points + rng.normal(0, 0.8, points.shape)
        draw.line([tuple(point) for point in points], fill=PIXEL_MAX, width=width, joint="curve")
    return np.maximum(ink, np.asarray(image, dtype=np.float64) / PIXEL_MAX)
