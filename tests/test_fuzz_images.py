"""Hostile image files: random bytes, mutated valid files and decompression bombs.

Whatever the bytes, `preprocess_image_bytes` gives a 28×28 float32 image in
[0, 1] or raises `ImageError`: never another exception, never a hang, never
an allocation proportional to what a header claims. The hypothesis tests run
a fixed number of derandomised examples, so CI is bounded and repeatable; for
a longer hunt, `MNIST_KERAS_FUZZ_EXAMPLES=20000 python -m pytest tests/test_fuzz_images.py`
(random, not derandomised, when set).
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from mnist_keras.constants import IMAGE_SIDE
from mnist_keras.inference.images import MAX_IMAGE_PIXELS, ImageError, ImageTooLargeError, preprocess_image_bytes

# A generous bound per example: a valid image takes milliseconds. A Python-level
# loop is interrupted by the alarm; a hang inside a C decoder cannot be, so
# faulthandler ends the whole run (with every thread's traceback) a little later.
EXAMPLE_TIME_LIMIT_SECONDS = 10
HARD_TIME_LIMIT_SECONDS = 60
FUZZ_EXAMPLES = os.environ.get("MNIST_KERAS_FUZZ_EXAMPLES")
FUZZ_SETTINGS = settings(
    max_examples=int(FUZZ_EXAMPLES or 300), derandomize=FUZZ_EXAMPLES is None, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Decoding any of the bombs would take gigabytes; refusing them takes next to nothing.
BOMB_MEMORY_LIMIT_BYTES = 64 * 1024 * 1024
HUGE_SIDE = 100_000


class Hang(BaseException):
    """An example ran past its time limit (a BaseException, so no `except Exception` in the decoder hides it)."""


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def interrupt(signum: int, frame: object) -> None:
        raise Hang(f"still decoding after {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)
    faulthandler.dump_traceback_later(HARD_TIME_LIMIT_SECONDS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def outcome(data: bytes) -> np.ndarray | ImageError:
    """The model input the bytes give, or the ImageError they raise; anything else fails the test."""
    with time_limit(EXAMPLE_TIME_LIMIT_SECONDS):
        try:
            image = preprocess_image_bytes(data)
        except ImageError as error:
            message = str(error)
            assert message and "\n" not in message
            return error
    assert image.shape == (IMAGE_SIDE, IMAGE_SIDE) and image.dtype == np.float32
    assert np.isfinite(image).all()
    assert image.min() >= 0 and image.max() <= 1
    return image


# ---------------------------------------------------------------- seeds for mutation


def digit_picture(mode: str) -> Image.Image:
    """A small dark "7" on light paper, in `mode`."""
    image = Image.new("L", (48, 40), 235)
    ImageDraw.Draw(image).line([(10, 8), (38, 8), (20, 34)], fill=20, width=4)
    return image.convert(mode)


def encode(image: Image.Image, format_name: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format_name, **options)
    return buffer.getvalue()


SEED_FILES = {
    "png-L": encode(digit_picture("L"), "PNG"),
    "png-RGBA": encode(digit_picture("RGBA"), "PNG"),
    "png-P": encode(digit_picture("P"), "PNG"),
    "png-I;16": encode(digit_picture("I").point(lambda value: value * 256).convert("I;16"), "PNG"),
    "jpeg": encode(digit_picture("L"), "JPEG", quality=80),
    "jpeg-progressive": encode(digit_picture("RGB"), "JPEG", progressive=True),
    "gif": encode(digit_picture("P"), "GIF"),
    "bmp": encode(digit_picture("RGB"), "BMP"),
    "tiff": encode(digit_picture("L"), "TIFF"),
    "tiff-lzw": encode(digit_picture("RGB"), "TIFF", compression="tiff_lzw"),
    "tiff-float": encode(Image.fromarray(np.asarray(digit_picture("L"), dtype=np.float32) / 255), "TIFF"),
    "webp-lossless": encode(digit_picture("RGB"), "WEBP", lossless=True),
    "webp-lossy": encode(digit_picture("RGB"), "WEBP", quality=60),
    "ppm": encode(digit_picture("L"), "PPM"),
    "tga": encode(digit_picture("L"), "TGA", compression="tga_rle"),
    "pcx": encode(digit_picture("L"), "PCX"),
    "ico": encode(digit_picture("RGBA"), "ICO"),
}


def test_every_seed_file_reads_as_a_digit():
    # The mutations start from files that work, so each mutated byte matters.
    for name, data in SEED_FILES.items():
        result = outcome(data)
        assert not isinstance(result, ImageError), f"{name}: {result}"


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_float_image_with_non_numbers_is_refused(value):
    pixels = np.asarray(digit_picture("L"), dtype=np.float32) / 255
    pixels[0, 0] = value
    result = outcome(encode(Image.fromarray(pixels), "TIFF"))
    assert isinstance(result, ImageError) and "NaN" in str(result)


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    """A seed file with a few bytes flipped, replaced, inserted or deleted, or cut short."""
    data = bytearray(SEED_FILES[draw(st.sampled_from(sorted(SEED_FILES)))])
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[position] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        else:
            del data[position:]
        if not data:
            break
    return bytes(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the corrupt metadata it reads
@FUZZ_SETTINGS
@given(data=mutated_files())
def test_mutated_image_files(data):
    outcome(data)


@pytest.mark.filterwarnings("ignore::UserWarning")
@FUZZ_SETTINGS
@given(data=st.binary(max_size=4096))
def test_random_bytes(data):
    outcome(data)


@pytest.mark.filterwarnings("ignore::UserWarning")
@FUZZ_SETTINGS
@given(
    prefix=st.sampled_from(sorted({data[:16] for data in SEED_FILES.values()})),
    data=st.binary(max_size=4096),
)
def test_random_bytes_behind_a_real_header(prefix, data):
    # Random bytes alone rarely get past format detection; a real header sends them into the decoders.
    outcome(prefix + data)


# ---------------------------------------------------------------- decompression bombs


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header for a 1-bit image of width × height whose pixel data is a few bytes of zeros."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    # A real bomb: a kilobyte of zlib that would inflate to the whole image (capped to stay quick to make).
    rows = zlib.compress(bytes(min((width // 8 + 1) * height, 10_000_000)), 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def gif_bomb(width: int, height: int) -> bytes:
    data = bytearray(SEED_FILES["gif"])
    data[6:10] = struct.pack("<HH", width, height)  # logical screen
    descriptor = data.index(b",")  # the first image descriptor
    data[descriptor + 5 : descriptor + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def bmp_bomb(width: int, height: int) -> bytes:
    data = bytearray(SEED_FILES["bmp"])
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def jpeg_bomb(width: int, height: int) -> bytes:
    data = bytearray(SEED_FILES["jpeg"])
    frame = data.index(b"\xff\xc0")  # start of frame: length, precision, height, width
    data[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def tiff_bomb(width: int, height: int) -> bytes:
    """The seed TIFF with its ImageWidth and ImageLength tags rewritten as 32-bit values."""
    data = bytearray(SEED_FILES["tiff"])
    assert data[:2] == b"II"
    directory = struct.unpack_from("<I", data, 4)[0]
    for entry in range(struct.unpack_from("<H", data, directory)[0]):
        offset = directory + 2 + 12 * entry
        tag = struct.unpack_from("<H", data, offset)[0]
        if tag in (256, 257):
            struct.pack_into("<HHII", data, offset, tag, 4, 1, width if tag == 256 else height)
    return bytes(data)


def webp_bomb(width: int, height: int) -> bytes:
    """The lossless seed WebP with the 14-bit sizes in its VP8L header rewritten (up to 16384 a side)."""
    data = bytearray(SEED_FILES["webp-lossless"])
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    bits = struct.unpack_from("<I", data, 21)[0] & ~((1 << 28) - 1)
    struct.pack_into("<I", data, 21, bits | (width - 1) | (height - 1) << 14)
    return bytes(data)


def ppm_bomb(width: int, height: int) -> bytes:
    return f"P5\n{width} {height}\n255\n".encode() + bytes(1000)


BOMB_MAKERS = {
    "png": png_bomb, "gif": gif_bomb, "bmp": bmp_bomb, "jpeg": jpeg_bomb,
    "tiff": tiff_bomb, "webp": webp_bomb, "ppm": ppm_bomb,
}
# The largest side each format's header can state (or HUGE_SIDE where it can state more).
MAX_SIDE = {"png": HUGE_SIDE, "gif": 65535, "bmp": HUGE_SIDE, "jpeg": 65535, "tiff": HUGE_SIDE,
            "webp": 16384, "ppm": HUGE_SIDE}
# Just over our pixel limit but under Pillow's own bomb warning: only our check stands in the way.
MODEST_BOMB_SIDE = 8192


def bombs() -> dict[str, bytes]:
    """Each format's bomb at its largest size and at the modest size."""
    return {
        f"{name}-{side}": make(side, side)
        for name, make in BOMB_MAKERS.items()
        for side in (MAX_SIDE[name], MODEST_BOMB_SIDE)
    }


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", sorted(bombs()))
def test_bombs_are_refused_as_too_large(name):
    data = bombs()[name]
    assert len(data) < 100_000
    assert isinstance(outcome(data), ImageTooLargeError)


@st.composite
def declared_sizes(draw: st.DrawFn) -> tuple[str, int, int]:
    name = draw(st.sampled_from(sorted(BOMB_MAKERS)))
    return name, draw(st.integers(1, MAX_SIDE[name])), draw(st.integers(1, MAX_SIDE[name]))


@pytest.mark.filterwarnings("ignore::UserWarning")
@FUZZ_SETTINGS
@given(declared=declared_sizes())
def test_any_declared_size_over_the_limit_is_refused(declared):
    # Whatever else is in the file, a header promising too many pixels is refused before decoding.
    name, width, height = declared
    result = outcome(BOMB_MAKERS[name](width, height))
    if width * height > MAX_IMAGE_PIXELS:
        assert isinstance(result, ImageTooLargeError), result


MEMORY_PROBE = """
import json, resource, sys
from pathlib import Path
from mnist_keras.inference.images import ImageError, preprocess_image_bytes

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux

preprocess_image_bytes(Path(sys.argv[1]).read_bytes())  # warm up: imports and first-use allocations
baseline = peak()
results = {}
for path in sys.argv[2:]:
    try:
        preprocess_image_bytes(Path(path).read_bytes())
        results[path] = "decoded"
    except ImageError as error:
        results[path] = type(error).__name__
    results[path] = [results[path], peak() - baseline]
print(json.dumps(results))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kilobytes on Linux only")
def test_bombs_take_no_memory(tmp_path):
    # Peak memory is per process, so the bombs go through a fresh one that has read a normal image first.
    seed = tmp_path / "seed.png"
    seed.write_bytes(SEED_FILES["png-L"])
    paths = []
    for name, data in bombs().items():
        paths.append(tmp_path / f"bomb.{name}")
        paths[-1].write_bytes(data)
    source = Path(__file__).resolve().parents[1] / "src"
    finished = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", MEMORY_PROBE, str(seed), *map(str, paths)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(source)}, check=True,
    )
    results = json.loads(finished.stdout)
    for path, (result, growth) in results.items():
        assert result == "ImageTooLargeError", (path, result)
        assert growth < BOMB_MEMORY_LIMIT_BYTES, f"{path} raised peak memory by {growth:,} bytes"
