"""MNIST digits re-drawn as a person would supply them: to measure the image path on real handwriting.

MNIST's digits are light ink on black, 20 pixels tall and centred. People send
dark ink on light paper, on a larger canvas, anywhere on it, with noise, as
RGB, RGBA, grey or JPEG files. `redraw_digit` turns one MNIST digit into such
a file; the real-data test and `benchmarks/redrawn_accuracy.py` check that
`mnist-keras predict` reads them about as well as the model reads MNIST itself.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from mnist_keras.constants import PIXEL_MAX

# How each style is saved: (Pillow format, file suffix).
STYLES = {
    "rgb-png": ("PNG", ".png"),
    "rgba-png": ("PNG", ".png"),
    "gray-png": ("PNG", ".png"),
    "jpeg": ("JPEG", ".jpg"),
}
CANVAS_SIDES = (200, 400)  # pixels, a phone crop or a canvas export
DIGIT_FRACTIONS = (0.3, 0.65)  # the digit's height as a share of the canvas
PAPER_LEVELS = (0.8, 1.0)  # paper brightness, of full scale
INK_LEVELS = (0.0, 0.3)  # ink brightness, of full scale
NOISE_SIGMAS = (2.0, 10.0)  # sensor / paper noise, in 0..255 units
JPEG_QUALITIES = (60, 95)


def redraw_digit(digit: np.ndarray, style: str, rng: np.random.Generator) -> bytes:
    """One MNIST digit (uint8 28×28, light on black) → the bytes of an image file in `style` (see STYLES)."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")
    ink = crop(np.asarray(digit, dtype=np.float64) / PIXEL_MAX)
    canvas_side = int(rng.integers(CANVAS_SIDES[0], CANVAS_SIDES[1] + 1))
    scale = rng.uniform(*DIGIT_FRACTIONS) * canvas_side / max(ink.shape)
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    resized = Image.fromarray(ink.astype(np.float32), mode="F").resize(size, Image.Resampling.BICUBIC)
    large = np.clip(np.asarray(resized), 0.0, 1.0)
    top = int(rng.integers(0, canvas_side - large.shape[0] + 1))
    left = int(rng.integers(0, canvas_side - large.shape[1] + 1))
    coverage = np.zeros((canvas_side, canvas_side))
    coverage[top : top + large.shape[0], left : left + large.shape[1]] = large

    paper = rng.uniform(*PAPER_LEVELS) * PIXEL_MAX
    ink_colour = rng.uniform(*INK_LEVELS, size=3) * PIXEL_MAX  # dark ink, a little coloured
    noise = rng.normal(0.0, rng.uniform(*NOISE_SIGMAS), size=(canvas_side, canvas_side, 1))
    if style == "rgba-png":
        # A canvas export: ink strokes on a fully transparent background.
        alpha = np.clip(coverage * PIXEL_MAX + noise[..., 0] * coverage, 0, PIXEL_MAX)
        colour = np.broadcast_to(ink_colour, (canvas_side, canvas_side, 3))
        array = np.dstack([colour, alpha])
        image = Image.fromarray(np.rint(array).astype(np.uint8), mode="RGBA")
    else:
        colour = paper + (ink_colour - paper) * coverage[..., None] + noise
        rgb = Image.fromarray(np.rint(np.clip(colour, 0, PIXEL_MAX)).astype(np.uint8), mode="RGB")
        image = rgb.convert("L") if style == "gray-png" else rgb
    buffer = io.BytesIO()
    format_name, _ = STYLES[style]
    options = {"quality": int(rng.integers(JPEG_QUALITIES[0], JPEG_QUALITIES[1] + 1))} if format_name == "JPEG" else {}
    image.save(buffer, format=format_name, **options)
    return buffer.getvalue()


def crop(ink: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(ink.any(axis=1))
    columns = np.flatnonzero(ink.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def write_redrawn(digits: Sequence[np.ndarray], directory: str | Path, seed: int = 0) -> list[Path]:
    """Re-draw each digit (styles in turn) into `directory`; the file paths, in the digits' order."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    styles = list(STYLES)
    paths = []
    for index, digit in enumerate(digits):
        style = styles[index % len(styles)]
        path = directory / f"{index:05d}-{style}{STYLES[style][1]}"
        path.write_bytes(redraw_digit(digit, style, rng))
        paths.append(path)
    return paths
