"""Real images → the model's input, made the way MNIST itself was made.

One preprocessing path for the `predict` command, the web service and the tests
(reading the model's answer is `mnist_keras.inference.predictors`'s):
decode with Pillow (any format and mode it reads; the first frame of an
animation), flatten transparency and colour to grey, decide whether the ink is
dark on light or light on dark, remove the background level (under uneven
light, a shadow, the paper's level estimated everywhere), drop specks, stray
marks beside the digit and ruled lines, crop to the ink,
scale the longer side to 20 pixels keeping the aspect ratio, and place the
result in a 28×28 field with its centre of mass in the middle. A 28×28 image
that already looks like MNIST (light ink on a black background) is stretched to
full contrast and put in the same box and centre: MNIST's own digits come out
unchanged, a user's faint, small or off-centre drawing comes out like them.
Client-sent 28×28 pixels go through the same normalisation.

The steps are named so that `mnist_keras.inference.reading` can give every
digit of a number the same treatment: `find_ink` (background, threshold,
ruling: once per image), `stroke_ink` (specks and stray marks off, for one
digit's pixels) and `digit_input` (crop, 20-pixel box, centre of mass, thick soft strokes thinned).
Photos as phones take them are read too: up to MAX_IMAGE_PIXELS, a large JPEG
decoded straight at a reduced scale, EXIF orientation honoured.

Everything a user can get wrong (not an image, a truncated file, no ink, too
many bytes or pixels) raises an `ImageError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import io
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from mnist_keras.constants import IMAGE_SIDE, NUM_PIXELS
from mnist_keras.errors import UserError

# Limits on what we agree to decode. The byte limit bounds memory for the
# upload itself: a phone's 48-50 MP JPEG is 10-25 MB at its camera's quality
# (8 MB refused many of them), so 32 MB. The pixel limit stops decompression
# bombs (a few kilobytes of PNG that decode to gigabytes) before any pixel is
# decoded: 100 MP is twice a 50 MP photo and above every phone camera's default
# output (108 and 200 MP sensors save 12-50 MP unless told otherwise).
MAX_IMAGE_BYTES = 32 * 1024 * 1024
MAX_IMAGE_PIXELS = 100_000_000
# Above this many pixels (the old limit, 4096 × 4096: everything accepted before
# still is) an image must also bring at least one byte per MAX_PIXELS_PER_BYTE
# pixels. Camera JPEGs carry 0.1-0.5 bytes a pixel (even a flat grey JPEG needs
# about 1/128), bombs 1/1,000-1/100,000; so a bomb under the pixel limit costs its
# sender bytes in proportion to the memory and time it asks for.
LARGE_IMAGE_PIXELS = 4096 * 4096
MAX_PIXELS_PER_BYTE = 256
# Larger images are reduced to this longer side before processing: the result is
# 20 pixels across, so more detail only costs time and memory. A JPEG is decoded
# straight at a reduced scale (1/2, 1/4 or 1/8: libjpeg's DCT scaling, Pillow's
# `draft`), so a 48 MP photo never exists at full size in memory; other formats
# are reduced as soon as they are decoded.
WORKING_SIDE = 1024

# MNIST's recipe: the digit's longer side is 20 pixels, centred by centre of
# mass in 28×28. Measured on the MNIST test set, the mean centre of mass sits
# at (14.0, 14.0) in array indices, i.e. at IMAGE_SIDE / 2.
DIGIT_BOX_SIDE = 20
CENTRE_OF_MASS_TARGET = IMAGE_SIDE / 2
# A digit whose strokes are wider than this in the 20-pixel box (twice the ink's area over its
# edge pixels, at half ink; MNIST's median is 2.9, its 90th percentile 4.0) loses the faintest
# THICK_INK_CUT of its ink: an 8x8 thumbnail enlarged, or a blurred marker, has wide soft
# strokes the model reads worse than MNIST's. Chosen on the shipped cnn model (cuts of 0.15-0.4
# above widths of 2.8-3.5 tried); `benchmarks/thinning.py`, read as `predict` reads files:
# optdigits files (64x64, bilinear) right and accepted 95.63% -> 97.50%; 2,000 MNIST test
# digits as files, as photos, re-drawn and as faint 28x28 drawings the same; held-out
# non-digits refused 90.05% -> 89.85%.
THICK_STROKE_WIDTH = 3.2
THICK_INK_CUT = 0.2

# An MNIST-style 28×28 image has a black border; this much grey is still "black".
MNIST_BORDER_LEVEL = 0.1
# Ink must differ from the background by at least this much (of full scale),
# else the image is blank: paper grain and JPEG noise stay below it.
MIN_INK_CONTRAST = 0.15
# Pixels count as ink above this fraction of the ink's contrast, or above this
# many standard deviations of the background noise, whichever is higher.
INK_THRESHOLD_FRACTION = 0.2
NOISE_SIGMAS = 4.0
# Median absolute deviation → standard deviation for normally distributed noise.
MAD_TO_SIGMA = 1.4826
# Smoothing (in working pixels) before deciding where ink is, so single-pixel
# noise neither decides the polarity nor stretches the crop.
DETECTION_BLUR_SIGMA = 1.0
# Blobs of ink smaller than this fraction of the largest are specks, not strokes.
MIN_COMPONENT_FRACTION = 0.02
# A blob's pixels touch their 4 neighbours: ndimage.label's default for 2-D, made once (building it per call
# cost more than labelling a 28×28 image).
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)
# A stray mark (a dot, a speck of dirt) beside the digit: a blob smaller than
# this fraction of the largest, further from the largest's box than this
# fraction of the box's longer side. A digit's own detached strokes (the flag
# of a 5, the bar of a 4 or 7) are closer. A pen's dot is 5-18% of a digit's
# ink (18% beside a thin 1); 0.3 and 0.2 read photos with a dot as well as
# 0.15 and 0.1 did (87.0 vs 87.5% MLP, 96.5 vs 97.0% cnn) and keep the dot
# beside a 1, and leave optdigits, MNIST and re-drawn digits unchanged.
STRAY_MARK_FRACTION = 0.3
STRAY_MARK_GAP = 0.2
# A dot is also dropped closer in, once it is clear of the digit's box, if it is
# round and filled as a pen's tap is (its blob fills at least this share of its
# box, the box is at most this much longer one way than the other, and its side
# is at most this fraction of the digit's): a detached stroke of a digit is a
# bar, not a disc.
DOT_FILL = 0.6
DOT_ASPECT = 1.5
DOT_SIDE_FRACTION = 0.35
# Uneven light (a shadow, light falling off across a photo): the paper level
# is estimated everywhere as the brightness left when dark marks narrower
# than this share of the image are closed over (and likewise for light ink),
# on a copy reduced to at most BACKGROUND_SIDE pixels. It is used only when
# that estimate varies by more than BACKGROUND_VARIATION over the image;
# evenly lit images keep the single border level.
BACKGROUND_WINDOW_FRACTION = 0.25
BACKGROUND_SIDE = 128
BACKGROUND_VARIATION = 0.1
# The ink's polarity under uneven light: the side whose marks stand out further (this percentile).
POLARITY_PERCENTILE = 99.5
# Measured at the 90th percentile: optdigits files (thick 8x-upscaled strokes)
# change by 0.30-0.56, shadowed photos by 0.005-0.11 (5th-95th percentiles).
# 0.2 cost optdigits 0.2 points; 0.12 keeps them exactly as before.
BACKGROUND_CHANGE_PERCENTILE = 90
BACKGROUND_MAX_CHANGE = 0.12
# Ruled lines: straight lines of ink across at least this share of the image
# (printed ruling, a pen line under the digit, a margin), tilted by at most
# LINE_MAX_TILT_DEGREES, looked for at steps of LINE_TILT_STEP_DEGREES, and
# at least LINE_MIN_LENGTH_RATIO times as long as the rest of the ink is wide,
# and at most LINE_MAX_THICKNESS times as thick as the rest of the ink is tall.
LINE_MIN_COVERAGE = 0.9
LINE_MAX_TILT_DEGREES = 3.0
LINE_TILT_STEP_DEGREES = 0.5
LINE_SEARCH_SIDE = 256
LINE_MIN_LENGTH_RATIO = 2.0
LINE_MAX_THICKNESS = 0.1
# Thin strokes are not thickened: growing strokes thinner than MNIST's (2.79
# pixels, measured as 2 × area / outline of ink above 0.5) by a ring of ink
# lost 0.1-0.7 points on MNIST and 0.2-0.5 on thin faint 28×28 digits (seed
# MLP, 3,000 test digits), since the 20-pixel box already restores the width.
IMAGE_DECIMALS = 4


class ImageError(UserError):
    """An image cannot be read as a digit (corrupt, truncated, blank, or not an image)."""


class NotAnImageError(ImageError):
    """The bytes are not in any image format Pillow reads."""


class ImageTooLargeError(ImageError):
    """The file has too many bytes or the image too many pixels."""


class BlankImageError(ImageError):
    """The image has no ink: nothing differs from the background."""


# ---------------------------------------------------------------- decoding


def read_image_file(path: str | Path, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of an image file, refusing a missing file or one over `max_bytes` before reading it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise ImageError(f"{path} is a directory, not an image file")
        if size > max_bytes:
            raise ImageTooLargeError(f"{path}: file is {size:,} bytes, over the limit of {max_bytes:,}")
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as error:
        raise ImageError(f"{path}: cannot read ({error.strerror or error})") from None


def decode_image(
    data: bytes, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode image bytes into a loaded Pillow image (first frame), upright per its EXIF orientation,
    and the upright image's (width, height) in its own pixels.

    A large JPEG comes back decoded at a reduced scale (at least WORKING_SIDE
    pixels on its shorter side), so the image may be smaller than the size
    returned beside it. Raises ImageTooLargeError over the byte or pixel limit
    or, for a large image, too few bytes for its pixels (all checked before
    decoding pixels), NotAnImageError for bytes Pillow does not recognise, and
    ImageError for a truncated or corrupt file.
    """
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"image is {len(data):,} bytes, over the limit of {max_bytes:,}")
    if not data:
        raise NotAnImageError("the file is empty, not an image")
    try:
        # Our own limits below are the bound; Pillow's warning (at 89 MP) would be a second line on stderr.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise NotAnImageError("not an image (no format Pillow reads: PNG, JPEG, BMP, GIF, WebP, TIFF, ...)") \
            from None
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"image has more than {max_pixels:,} pixels (decompression bomb?)") from None
    except Exception as error:  # noqa: BLE001 - malformed files make Pillow's decoders raise all kinds of exceptions
        raise ImageError(f"corrupt or truncated image ({one_line(error)})") from None
    check_pixel_count(image.width, image.height, len(data), max_pixels)
    try:
        image.seek(0)
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        size = (image.height, image.width) if orientation in TRANSPOSING_ORIENTATIONS else image.size
        if image.format == "JPEG":
            # Let the JPEG decoder scale down on its own: much faster, and memory for the reduced image only.
            image.draft(image.mode, (WORKING_SIDE, WORKING_SIDE))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # in place: no second copy of a large image
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"image has more than {max_pixels:,} pixels (decompression bomb?)") from None
    except Exception as error:  # noqa: BLE001 - as above: any failure to decode untrusted bytes is a bad file
        raise ImageError(f"corrupt or truncated image ({one_line(error)})") from None
    return image, size


# EXIF orientations 5-8 turn the stored image a quarter turn (or transpose it): width and height swap.
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def check_pixel_count(width: int, height: int, data_bytes: int, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse, from the header's size alone, an image with too many pixels, or a large one in too few bytes."""
    pixels = width * height
    if pixels > max_pixels:
        raise ImageTooLargeError(f"image is {width}x{height} = {pixels:,} pixels, over the limit of {max_pixels:,}")
    if pixels == 0:
        raise ImageError("image has no pixels")
    if pixels > LARGE_IMAGE_PIXELS and pixels > MAX_PIXELS_PER_BYTE * data_bytes:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {pixels:,} pixels in only {data_bytes:,} bytes, over "
            f"{MAX_PIXELS_PER_BYTE} pixels a byte (decompression bomb?); send it smaller"
        )


def one_line(error: BaseException) -> str:
    """An exception's message on one line, for error messages that must stay one line."""
    return " ".join(str(error).split()) or type(error).__name__


def has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def grayscale_array(image: Image.Image) -> np.ndarray:
    """A float64 array in [0, 1] of the image's brightness, any mode, transparency flattened.

    Transparent pixels take the background that contrasts with the visible
    strokes (white behind dark strokes, black behind light ones), so a canvas
    export with a transparent background reads like ink on paper.
    """
    image = reduce_to_working_size(image)
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ImageError("image has pixels that are not numbers (NaN or infinity)")
        full_scale = 1.0 if image.mode == "F" and values.max(initial=0) <= 1 else (
            65535.0 if values.max(initial=0) <= 65535 else float(values.max())
        )
        return np.clip(values / full_scale, 0.0, 1.0)
    if not has_transparency(image):
        return np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    rgba = image.convert("RGBA")
    brightness = np.asarray(rgba.convert("RGB").convert("L"), dtype=np.float64) / 255.0
    opacity = np.asarray(rgba.getchannel("A"), dtype=np.float64) / 255.0
    if opacity.sum() == 0:
        raise BlankImageError("no ink found: the image is entirely transparent")
    stroke_brightness = float((brightness * opacity).sum() / opacity.sum())
    background = 1.0 if stroke_brightness < 0.5 else 0.0
    return brightness * opacity + background * (1.0 - opacity)


def reduce_to_working_size(image: Image.Image) -> Image.Image:
    """Shrink by an integer factor so the longer side is at most WORKING_SIDE (box filter: averages, no aliasing)."""
    factor = math.ceil(max(image.size) / WORKING_SIDE)
    if factor <= 1:
        return image
    if image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        if image.mode.startswith("I;16"):
            image = image.convert("I")
        else:
            image = image.convert("RGBA" if has_transparency(image) else "RGB")
    return image.reduce(factor)


# ---------------------------------------------------------------- MNIST-style normalisation


def border_values(array: np.ndarray) -> np.ndarray:
    """The pixels of the outermost ring."""
    return np.concatenate([array[0, :], array[-1, :], array[1:-1, 0], array[1:-1, -1]])


def is_mnist_style(gray: np.ndarray) -> bool:
    """28×28, light ink on a black border: already what the model was trained on."""
    return gray.shape == (IMAGE_SIDE, IMAGE_SIDE) and float(border_values(gray).max()) <= MNIST_BORDER_LEVEL


@dataclasses.dataclass(frozen=True)
class Ink:
    """Where an image's ink is, before any blob is judged: what `find_ink` measures once per image."""

    levels: np.ndarray  # ink intensity relative to the background (0 = paper), same shape as the image
    mask: np.ndarray  # bool: pixels that count as ink, ruled lines removed, specks and stray marks not yet
    threshold: float  # the ink level above which a (smoothed) pixel counts as ink
    contrast: float  # the ink's full scale: the furthest a (smoothed) mark stands out from the paper


def find_ink(gray: np.ndarray) -> Ink:
    """The ink of a grey image, whatever the polarity; raises BlankImageError when nothing stands out.

    The background level is the median of the border (or, under uneven light,
    a smooth estimate of the paper everywhere); the ink is whichever side of it
    (darker or lighter) reaches further. Background noise and ruled lines are
    left out of the mask.
    """
    smooth = ndimage.gaussian_filter(gray, DETECTION_BLUR_SIGMA) if min(gray.shape) > 2 else gray
    uneven = uneven_background(gray)
    if uneven is not None:
        ink, smooth_ink = uneven(gray), uneven(smooth)
        contrast = float(smooth_ink.max())
    else:
        background = float(np.median(border_values(gray)))
        darker, lighter = background - float(smooth.min()), float(smooth.max()) - background
        dark_ink = darker > lighter
        ink = background - gray if dark_ink else gray - background
        smooth_ink = background - smooth if dark_ink else smooth - background
        contrast = max(darker, lighter)
    if contrast < MIN_INK_CONTRAST:
        raise BlankImageError(f"no ink found: the image is blank (contrast {contrast:.2f} of full scale)")
    border_ink = border_values(ink)
    noise = MAD_TO_SIGMA * float(np.median(np.abs(border_ink - np.median(border_ink))))
    threshold = max(INK_THRESHOLD_FRACTION * contrast, NOISE_SIGMAS * noise)
    mask = smooth_ink > threshold
    return Ink(levels=ink, mask=mask & ~ruled_lines(mask), threshold=threshold, contrast=contrast)


def stroke_ink(ink: Ink, mask: np.ndarray | None = None, window: tuple[slice, slice] | None = None) -> np.ndarray:
    """Ink intensity in [0, 1] (1 = full ink) of the strokes in `mask` (default: all of the ink), without
    specks and stray marks beside them; raises BlankImageError when none are left.

    `window` (rows, columns) limits the work to a part of the image, where `mask`
    (of the window's shape) lies; the result has the window's shape.
    """
    levels = ink.levels if window is None else ink.levels[window]
    mask = (ink.mask if window is None else ink.mask[window]) if mask is None else mask
    strokes = keep_strokes(mask)
    if not strokes.any():
        raise BlankImageError("no ink found: the image is blank")
    # Keep a pixel of margin round each stroke so anti-aliased edges survive.
    strokes = ndimage.binary_dilation(strokes, iterations=1)
    result = np.clip((levels - ink.threshold / 2) / (ink.contrast - ink.threshold / 2), 0.0, 1.0) * strokes
    if not result.any():  # only smoothing made anything stand out: noise
        raise BlankImageError("no ink found: the image is blank")
    return result


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Ink intensity in [0, 1] (1 = full ink, 0 = background), whatever the polarity, of one digit's strokes.

    `find_ink`, then `stroke_ink`: background noise, specks, stray marks beside
    the digit and ruled lines are removed; raises BlankImageError when nothing
    stands out.
    """
    return stroke_ink(find_ink(gray))


def uneven_background(gray: np.ndarray):
    """Under uneven light, a function taking a grey image to its ink (relative to the local paper); else None.

    The paper's brightness is estimated at every pixel by closing over dark
    marks (for dark ink) or opening over light ones (for light ink) with a
    window wider than any stroke; the ink is the polarity whose marks stand
    out further from it. Dark ink is measured as the share of the local paper's
    light it absorbs, so a digit in shadow reads as dark as one in full light.
    """
    if min(gray.shape) < IMAGE_SIDE:
        return None
    factor = max(1, math.ceil(max(gray.shape) / BACKGROUND_SIDE))
    small = Image.fromarray(gray.astype(np.float32), mode="F").reduce(factor) if factor > 1 else \
        Image.fromarray(gray.astype(np.float32), mode="F")
    small_array = np.asarray(small, dtype=np.float64)
    window = max(3, round(BACKGROUND_WINDOW_FRACTION * max(small_array.shape)))
    # A closing never goes below the image nor an opening above it, so the paper reads as no ink.
    closed = ndimage.grey_closing(small_array, size=(window, window))
    opened = ndimage.grey_opening(small_array, size=(window, window))
    if min(np.ptp(closed), np.ptp(opened)) <= BACKGROUND_VARIATION:
        return None
    dark_contrast = float(np.percentile((closed - small_array) / np.maximum(closed, MIN_INK_CONTRAST),
                                        POLARITY_PERCENTILE))
    light_contrast = float(np.percentile(small_array - opened, POLARITY_PERCENTILE))
    dark_ink = dark_contrast >= light_contrast
    # Strokes wider than the window survive the closing (or opening) and would be taken for
    # paper; then a window twice as wide still changes the estimate a lot, while true uneven
    # light (larger than either window) stays. Then the single border level is used instead.
    wider = (ndimage.grey_closing if dark_ink else ndimage.grey_opening)(small_array, size=(2 * window, 2 * window))
    change = wider - closed if dark_ink else opened - wider
    if float(np.percentile(change, BACKGROUND_CHANGE_PERCENTILE)) > BACKGROUND_MAX_CHANGE:
        return None
    size = (gray.shape[1], gray.shape[0])
    level = np.asarray(Image.fromarray((closed if dark_ink else opened).astype(np.float32), mode="F").resize(
        size, Image.Resampling.BILINEAR), dtype=np.float64)
    if dark_ink:
        return lambda image: np.clip((level - image) / np.maximum(level, MIN_INK_CONTRAST), 0.0, 1.0)
    return lambda image: np.clip(image - level, 0.0, 1.0)


def ruled_lines(mask: np.ndarray) -> np.ndarray:
    """The pixels of `mask` on straight lines across nearly the whole image, horizontal or vertical (ruling)."""
    if min(mask.shape) < IMAGE_SIDE or not mask.any():
        return np.zeros_like(mask)
    # Look on a copy reduced to at most LINE_SEARCH_SIDE pixels (a line stays a line), then map back.
    factor = max(1, math.ceil(max(mask.shape) / LINE_SEARCH_SIDE))
    height, width = mask.shape
    padded = np.zeros((math.ceil(height / factor) * factor, math.ceil(width / factor) * factor), dtype=bool)
    padded[:height, :width] = mask
    small = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor).any(axis=(1, 3))
    lines = np.zeros_like(small)
    for transposed in (False, True):
        grid = small.T if transposed else small
        # A line at any tilt takes one pixel from each column it crosses, so it can cover no more
        # columns than hold ink: with too few, there is no line to look for (and no time spent).
        if grid.any(axis=0).mean() < LINE_MIN_COVERAGE:
            continue
        rows, columns = np.mgrid[0 : grid.shape[0], 0 : grid.shape[1]]
        # A line a pixel or two off straight still fills its row of a mask thickened by one pixel.
        thick = ndimage.binary_dilation(grid, structure=np.ones((3, 1), dtype=bool)).ravel()
        found = np.zeros_like(grid)
        for tilt in np.arange(-LINE_MAX_TILT_DEGREES, LINE_MAX_TILT_DEGREES + 1e-9, LINE_TILT_STEP_DEGREES):
            shifted = rows + np.rint(math.tan(math.radians(tilt)) * (columns - grid.shape[1] / 2)).astype(int)
            shifted = (shifted - shifted.min()).ravel()
            length = np.bincount(shifted)
            filled = np.bincount(shifted, weights=thick)
            full = (filled >= LINE_MIN_COVERAGE * grid.shape[1]) & (length >= LINE_MIN_COVERAGE * grid.shape[1])
            if full.any():
                found |= full[shifted].reshape(grid.shape) & grid
        # A line is ruling only when it is much longer than the rest of the ink is wide: the bar
        # of a tightly cropped 7 or the stem of a 1 spans the image too, but so does its digit.
        # Ruling is also thin beside the digit, where a digit's bar is a good share of its height.
        rest = grid & ~ndimage.binary_dilation(found, iterations=1)
        rest_rows, rest_columns = np.flatnonzero(rest.any(axis=1)), np.flatnonzero(rest.any(axis=0))
        if not rest_rows.size:
            continue
        thickness = found.sum() / max(1, ndimage.label(found, FOUR_CONNECTED)[1]) / grid.shape[1]
        if (LINE_MIN_LENGTH_RATIO * (np.ptp(rest_columns) + 1) <= grid.shape[1]
                and thickness <= LINE_MAX_THICKNESS * (np.ptp(rest_rows) + 1)):
            lines |= found.T if transposed else found
    if not lines.any():
        return np.zeros_like(mask)
    full_size = np.repeat(np.repeat(lines, factor, axis=0), factor, axis=1)[:height, :width]
    # The ink within a pixel of a line is the line's own anti-aliased edge.
    return ndimage.binary_dilation(full_size, iterations=1) & mask


def keep_strokes(mask: np.ndarray) -> np.ndarray:
    """The mask without noise specks and stray marks: blobs much smaller than the largest, or small and apart."""
    labels, count = ndimage.label(mask, FOUR_CONNECTED)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    largest = int(np.argmax(sizes))
    boxes = ndimage.find_objects(labels)
    main = boxes[largest]
    reach = STRAY_MARK_GAP * max(main[0].stop - main[0].start, main[1].stop - main[1].start)
    keep = []
    for index, (size, box) in enumerate(zip(sizes, boxes)):
        if size < MIN_COMPONENT_FRACTION * sizes[largest]:
            continue
        gap = max(main[0].start - box[0].stop, box[0].start - main[0].stop,
                  main[1].start - box[1].stop, box[1].start - main[1].stop, 0)
        if size < STRAY_MARK_FRACTION * sizes[largest] and (gap > reach or (gap > 0 and is_dot(size, box, main))):
            continue
        keep.append(index + 1)
    return np.isin(labels, keep)


def is_dot(size: int, box: tuple[slice, slice], main: tuple[slice, slice]) -> bool:
    """Whether a blob of `size` pixels in `box` is a round, filled dot, small beside the digit in `main`."""
    height, width = (extent.stop - extent.start for extent in box)
    main_side = max(extent.stop - extent.start for extent in main)
    return (size >= DOT_FILL * height * width and max(height, width) <= DOT_ASPECT * min(height, width)
            and max(height, width) <= DOT_SIDE_FRACTION * main_side)


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(ink.any(axis=1))
    columns = np.flatnonzero(ink.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def scale_to_box(ink: np.ndarray, side: int = DIGIT_BOX_SIDE) -> np.ndarray:
    """Resize so the longer side is `side` pixels, keeping the aspect ratio, peak ink scaled to 1."""
    height, width = ink.shape
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Pillow's resize filters over the whole source footprint when shrinking (anti-aliasing, as MNIST did).
    resized = np.asarray(Image.fromarray(ink.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS))
    resized = np.clip(resized, 0.0, 1.0)
    peak = float(resized.max())
    # Thin strokes fade when shrunk; MNIST's strokes reach full intensity.
    return resized / peak if peak > 0 else resized


# Pixel positions as ndimage.center_of_mass weighs them (float64 grids), for digits up to 28 a side.
ROW_INDEX = np.arange(IMAGE_SIDE, dtype=np.float64)[:, np.newaxis]
COLUMN_INDEX = np.arange(IMAGE_SIDE, dtype=np.float64)[np.newaxis, :]


def centre_of_mass(digit: np.ndarray) -> tuple[float, float]:
    """(row, column) of a digit's centre of mass (at most 28×28): `ndimage.center_of_mass(digit)` to the last bit
    (the same products and sums), without its general set-up, which took longer than a digit's arithmetic."""
    height, width = digit.shape
    total = digit.sum()
    return ((digit * ROW_INDEX[:height]).sum() / total, (digit * COLUMN_INDEX[:, :width]).sum() / total)


def centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """Place `digit` (at most 28×28) in a black 28×28 field with its centre of mass at the centre."""
    height, width = digit.shape
    centre_row, centre_column = centre_of_mass(digit)
    top = min(max(round(CENTRE_OF_MASS_TARGET - centre_row), 0), IMAGE_SIDE - height)
    left = min(max(round(CENTRE_OF_MASS_TARGET - centre_column), 0), IMAGE_SIDE - width)
    field = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    field[top : top + height, left : left + width] = digit
    return field


def normalise_28(gray: np.ndarray) -> np.ndarray:
    """A 28×28 light-on-black image, stretched to full contrast and put in MNIST's box and centre.

    MNIST's own digits come out as they went in (their ink peaks at 1, their
    longer side is 20 and their centre of mass is in the middle); a faint,
    small or off-centre drawing is made like them.
    """
    peak = float(gray.max())
    if peak < MIN_INK_CONTRAST:
        raise BlankImageError("no ink found: the image is blank")
    ink = np.clip(gray / peak, 0.0, 1.0)
    ink = ink * keep_strokes(ink > INK_THRESHOLD_FRACTION)  # drop faint haze and stray specks
    cropped = crop_to_ink(ink)
    if max(cropped.shape) == DIGIT_BOX_SIDE:
        return centre_by_mass(cropped / max(float(cropped.max()), 1e-9))
    return centre_by_mass(scale_to_box(cropped))


def mnist_style(gray: np.ndarray) -> np.ndarray:
    """A grey image (float in [0, 1], any size, any polarity) → float32 28×28 MNIST-style digit, ink = 1."""
    gray = np.asarray(gray, dtype=np.float64)
    if gray.ndim != 2:
        raise ImageError(f"expected a 2-D grey image, got shape {gray.shape}")
    if is_mnist_style(gray):
        return normalise_28(gray)
    return digit_input(ink_map(gray))


def digit_input(ink: np.ndarray) -> np.ndarray:
    """One digit's ink map (any size, ink = 1) → float32 28×28 model input: cropped to the ink, its longer
    side scaled to the 20-pixel box, centred by mass, thick soft strokes thinned (`thinned`)."""
    return thinned(centre_by_mass(scale_to_box(crop_to_ink(ink))))


def stroke_width(digit: np.ndarray) -> float:
    """A digit's stroke width in pixels: twice its area over its edge (pixels at half ink or more,
    and those of them with a four-neighbour below it or off the field)."""
    mask = digit >= 0.5
    edge = np.count_nonzero(mask & ~ndimage.binary_erosion(mask, FOUR_CONNECTED))
    return 2 * np.count_nonzero(mask) / max(edge, 1)


def thinned(digit: np.ndarray) -> np.ndarray:
    """A 28×28 input whose strokes are wider than THICK_STROKE_WIDTH, without its faintest THICK_INK_CUT of
    ink (the rest stretched back to full scale); any other input unchanged."""
    if stroke_width(digit) <= THICK_STROKE_WIDTH:
        return digit
    return np.clip((digit.astype(np.float64) - THICK_INK_CUT) / (1 - THICK_INK_CUT), 0.0, 1.0).astype(np.float32)


def decode_grey(
    data: bytes, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[np.ndarray, tuple[int, int]]:
    """Image file bytes → its brightness (float64 in [0, 1], at most WORKING_SIDE a side) and the upright
    image's (width, height) in its own pixels, to map positions in the array back to the image."""
    image, size = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    try:
        return grayscale_array(image), size
    except (ValueError, OSError) as error:
        raise ImageError(f"unsupported image mode {image.mode} ({one_line(error)})") from None


def decode_grey_file(path: str | Path, max_bytes: int = MAX_IMAGE_BYTES) -> tuple[np.ndarray, tuple[int, int]]:
    """`decode_grey` for a file; ImageError messages name the file."""
    data = read_image_file(path, max_bytes=max_bytes)
    try:
        return decode_grey(data, max_bytes=max_bytes)
    except ImageError as error:
        raise type(error)(f"{path}: {error}") from None


def preprocess_image_bytes(
    data: bytes, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS
) -> np.ndarray:
    """Image file bytes → float32 28×28 in [0, 1], ink = 1: exactly what the model reads."""
    return mnist_style(decode_grey(data, max_bytes=max_bytes, max_pixels=max_pixels)[0])


def preprocess_image_file(path: str | Path, max_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
    """An image file → float32 28×28 model input; ImageError messages name the file."""
    data = read_image_file(path, max_bytes=max_bytes)
    try:
        return preprocess_image_bytes(data, max_bytes=max_bytes)
    except ImageError as error:
        raise type(error)(f"{path}: {error}") from None


def pixels_to_image(values: Any) -> np.ndarray:
    """Client-sent pixels (28×28 nested or 784 flat, numbers in [0, 1], ink = 1) → float32 28×28.

    A drawing on a black border goes through the same normalisation as a
    28×28 image file (full contrast, MNIST's box and centre: MNIST's own
    digits come out unchanged); anything else (a pattern or a field that
    fills the frame) is taken as it is. Raises ImageError for a wrong shape,
    non-numbers, NaN or values outside [0, 1], and BlankImageError for an
    image with no ink.
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise ImageError(
            f"pixels must be {IMAGE_SIDE}x{IMAGE_SIDE} nested or {NUM_PIXELS} flat numbers in [0, 1]"
        ) from None
    if array.shape not in ((IMAGE_SIDE, IMAGE_SIDE), (NUM_PIXELS,)):
        raise ImageError(
            f"pixels have shape {list(array.shape)}; expected [{IMAGE_SIDE}, {IMAGE_SIDE}] or [{NUM_PIXELS}]"
        )
    # The least and the greatest decide every check (NaN makes both NaN, outside any range): two passes.
    low, high = float(array.min()), float(array.max())
    if not 0 <= low <= high <= 1:
        if not np.isfinite(array).all():
            raise ImageError("pixels must be finite numbers (no NaN or infinity)")
        raise ImageError(f"pixels must lie in [0, 1] (ink = 1); got values from {low:g} to {high:g}")
    if high < MIN_INK_CONTRAST:
        raise BlankImageError("no ink found: the pixels are blank")
    array = array.reshape(IMAGE_SIDE, IMAGE_SIDE)
    if is_mnist_style(array):
        return normalise_28(array)
    return array.astype(np.float32)


def pixels_to_grey(values: Any, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Client-sent pixels of any size (rows of numbers in [0, 1], ink = 1) → float64 grey image, for reading.

    Raises ImageError for anything but a non-empty 2-D array of finite numbers
    in [0, 1] (ragged rows included) and ImageTooLargeError over `max_pixels`;
    a blank image is no error (it reads as no digits).
    """
    # JSON's true and false are not numbers, though NumPy would take them as 1 and 0.
    if not isinstance(values, list) or not all(
            isinstance(row, list) and all(type(value) in (int, float) for value in row) for row in values):
        raise ImageError("pixels must be rows of numbers in [0, 1], every row as long")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise ImageError("pixels must be rows of numbers in [0, 1], every row as long") from None
    if array.ndim != 2 or 0 in array.shape:
        raise ImageError(f"pixels have shape {list(array.shape)}; expected rows of numbers [height, width]")
    if array.size > max_pixels:
        raise ImageTooLargeError(f"pixels are {array.shape[1]}x{array.shape[0]} = {array.size:,} pixels, "
                                 f"over the limit of {max_pixels:,}")
    if not np.isfinite(array).all():
        raise ImageError("pixels must be finite numbers (no NaN or infinity)")
    if array.min() < 0 or array.max() > 1:
        raise ImageError(f"pixels must lie in [0, 1] (ink = 1); got values from {array.min():g} to {array.max():g}")
    return array


# ---------------------------------------------------------------- for JSON


def image_as_lists(image: np.ndarray) -> list[list[float]]:
    """A 28×28 model input as nested lists of rounded floats, for JSON."""
    return np.round(np.asarray(image, dtype=np.float64), IMAGE_DECIMALS).reshape(IMAGE_SIDE, IMAGE_SIDE).tolist()
