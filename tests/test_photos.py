"""Photos as phones take them: a 48 MP JPEG is read, a photo taken sideways reads upright, and a
decompression bomb is still refused (one line, exit 2 from the CLI, 413 from the service)."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from fakes import GlyphPredictor, glyph
from fastapi.testclient import TestClient
from PIL import Image

from mnist_keras.inference.images import MAX_PIXELS_PER_BYTE, ImageTooLargeError, decode_grey
from mnist_keras.inference.reading import predict_image_bytes, read_image_bytes

PHONE_SIZE = (8000, 6000)  # what a 48 MP phone camera saves


@pytest.fixture(scope="module")
def glyphs() -> GlyphPredictor:
    return GlyphPredictor()


def paper_with(text: str, size: tuple[int, int], height: int, at: tuple[int, int]) -> Image.Image:
    """Light paper of `size` with `text` written in the built-in font, `height` pixels tall, its top-left at `at`."""
    paper = Image.new("L", size, 235)
    left, top = at
    for character in text:
        ink = glyph(character)
        scale = height / ink.shape[0]
        mark = Image.fromarray(np.rint(ink * 255).astype(np.uint8)).resize(
            (round(ink.shape[1] * scale), height), Image.Resampling.BILINEAR)
        paper.paste(Image.new("L", mark.size, 20), (left, top), mark)
        left += mark.width + height // 3
    return paper


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def phone_photo() -> bytes:
    return jpeg(paper_with("7", PHONE_SIZE, 2400, (3000, 1800)))


def test_a_48_mp_phone_photo_is_read(glyphs, phone_photo):
    assert len(phone_photo) * MAX_PIXELS_PER_BYTE >= PHONE_SIZE[0] * PHONE_SIZE[1], "as many bytes as a camera's"
    gray, size = decode_grey(phone_photo)
    assert size == PHONE_SIZE and max(gray.shape) < 2000, "decoded at a reduced scale"
    reading = read_image_bytes(phone_photo, glyphs)
    assert reading["text"] == "7"
    x0, y0, x1, y1 = reading["lines"][0][0]["box"]
    # The box is in the photo's own pixels: the 7 starts at (3000, 1800) and is 2400 tall.
    assert abs(x0 - 3000) < 40 and abs(y0 - 1800) < 40 and abs((y1 - y0) - 2400) < 60
    assert predict_image_bytes(phone_photo, glyphs)["digit"] == 7


def test_a_photo_taken_sideways_reads_upright(glyphs):
    upright = paper_with("49", (900, 500), 200, (200, 150))
    # Stored turned a quarter turn, with EXIF saying how to turn it back (orientation 6: rotate 90° clockwise).
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = jpeg(stored, exif=exif)
    assert Image.open(io.BytesIO(data)).size == (500, 900)
    reading = read_image_bytes(data, glyphs)
    assert reading["text"] == "49"
    assert all(box[2] <= 900 and box[3] <= 500 for box in (mark["box"] for mark in reading["lines"][0]))


def png_bomb(side: int) -> bytes:
    """A 1-bit side × side PNG that is all white: a few tens of kilobytes that decode to side² pixels."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"".join([b"\x00" + b"\xff" * ((side + 7) // 8)] * side), 9)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = png_bomb(20000)
    assert len(data) < 200_000
    return data


def test_a_decompression_bomb_is_refused(glyphs, bomb):
    with pytest.raises(ImageTooLargeError, match="100,000,000 pixels"):
        read_image_bytes(bomb, glyphs)


def test_the_cli_and_the_service_refuse_the_bomb(monkeypatch, glyphs, bomb, tiny_run, tmp_path, capsys):
    from mnist_keras import commands
    from mnist_keras.cli import main
    from mnist_keras.serving.app import create_app

    monkeypatch.setattr(commands, "load_predictor", lambda run, *args, **kwargs: glyphs)
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    for command in ("read", "predict"):
        assert main([command, str(tiny_run), str(path)]) == 2
        captured = capsys.readouterr()
        [record] = [json.loads(line) for line in captured.out.splitlines()]
        assert "pixels" in record["error"]
        assert len(captured.err.strip().splitlines()) == 1
    client = TestClient(create_app(glyphs), raise_server_exceptions=False)
    for route in ("/read", "/predict"):
        response = client.post(route, files={"file": ("bomb.png", bomb, "image/png")})
        assert response.status_code == 413 and "pixels" in response.json()["error"]
