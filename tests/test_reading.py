"""Reading numbers (`mnist-keras read`, POST /read) on images the tests write with Pillow's built-in font.

`fakes.GlyphPredictor` reads that font's digits exactly, so these tests check
the finding (marks, lines, order, boxes, joins, refusals), not a model.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from fakes import GlyphPredictor, glyph, write_text
from fastapi.testclient import TestClient
from PIL import Image

from mnist_keras.constants import NUM_CLASSES
from mnist_keras.inference import reading
from mnist_keras.inference.images import ImageError
from mnist_keras.inference.reading import (
    SEVERAL_DIGITS_REASON,
    Mark,
    contact_rows,
    digit_count,
    predict_grey,
    read_grey,
    read_image_bytes,
)

MARK_FIELDS = {"digit", "confidence", "probabilities", "is_digit", "box"}


@pytest.fixture(scope="module")
def glyphs() -> GlyphPredictor:
    return GlyphPredictor()


def image_bytes(gray: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.rint(np.clip(gray, 0, 1) * 255).astype(np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def digits_of(reading: dict) -> list[list[int]]:
    return [[mark["digit"] for mark in line if mark["is_digit"]] for line in reading["lines"]]


def assert_well_formed(reading: dict, width: int, height: int) -> None:
    assert set(reading) == {"text", "lines"}
    for line in reading["lines"]:
        assert line, "an empty line is never listed"
        for mark in line:
            assert set(mark) == MARK_FIELDS
            assert len(mark["probabilities"]) == NUM_CLASSES
            assert mark["confidence"] == max(mark["probabilities"])
            x0, y0, x1, y1 = mark["box"]
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        lefts = [mark["box"][0] for mark in line]
        assert lefts == sorted(lefts), "each line reads left to right"
    assert reading["text"] == "\n".join("".join(map(str, line)) for line in digits_of(reading) if line)


# ---------------------------------------------------------------- finding the digits


@pytest.mark.parametrize("lines", [["2026"], ["0123456789"], ["12", "345"], ["907", "1", "64"]])
def test_reads_every_digit_in_reading_order(glyphs, lines):
    gray = write_text(lines)
    reading = read_grey(gray, glyphs)
    assert reading["text"] == "\n".join(lines)
    assert_well_formed(reading, gray.shape[1], gray.shape[0])


def test_lines_go_top_to_bottom_and_boxes_hold_their_digit(glyphs):
    gray = write_text(["58", "31"])
    reading = read_grey(gray, glyphs)
    first, second = reading["lines"]
    assert max(mark["box"][3] for mark in first) <= min(mark["box"][1] for mark in second)
    for mark in first + second:
        x0, y0, x1, y1 = mark["box"]
        inside = gray[y0:y1, x0:x1]
        assert (inside < 0.5).any(), "every box holds ink"
    # Nothing inked lies outside every box.
    outside = gray < 0.5
    for mark in first + second:
        x0, y0, x1, y1 = mark["box"]
        outside[y0:y1, x0:x1] = False
    assert not outside.any()


def test_boxes_are_in_the_images_own_pixels(glyphs):
    gray = write_text(["47"])
    height, width = gray.shape
    plain = read_grey(gray, glyphs)
    doubled = read_grey(gray, glyphs, size=(2 * width, 2 * height))
    for mark, big in zip(plain["lines"][0], doubled["lines"][0]):
        assert big["box"] == [2 * value for value in mark["box"]]


def test_light_on_dark_uneven_baselines_and_wide_gaps(glyphs):
    assert read_grey(write_text(["3852"], dark_on_light=False), glyphs)["text"] == "3852"
    assert read_grey(write_text(["4815"], baselines=[0.0, 0.2, -0.2, 0.1]), glyphs)["text"] == "4815"
    assert read_grey(write_text(["19"], gap=2.0), glyphs)["text"] == "19"


@pytest.mark.parametrize("mark", ["-", "x", "."])
def test_marks_that_are_not_digits_stay_out_of_the_text(glyphs, mark):
    reading = read_grey(write_text([f"12{mark}34"]), glyphs)
    assert reading["text"] == "1234"
    refused = [found for line in reading["lines"] for found in line if not found["is_digit"]]
    assert len(refused) == 1
    digits_boxes = [found["box"] for found in reading["lines"][0] if found["is_digit"]]
    assert digits_boxes[1][2] <= refused[0]["box"][0] < refused[0]["box"][2] <= digits_boxes[2][0]


def test_a_digit_broken_in_two_reads_as_one(glyphs):
    gray = write_text(["575"])
    ink = gray < 0.5
    columns = np.flatnonzero(ink.any(axis=0))
    rows = np.flatnonzero(ink.any(axis=1))
    # Break the middle 7 across its stem: a blank band through the lower third of its box.
    middle = columns[(columns > gray.shape[1] // 3) & (columns < 2 * gray.shape[1] // 3)]
    cut = rows[0] + (rows[-1] - rows[0]) // 2
    broken = gray.copy()
    broken[cut : cut + 3, middle[0] : middle[-1] + 1] = 1.0
    assert (broken < 0.5).sum() < ink.sum(), "the cut took ink away"
    assert read_grey(broken, glyphs)["text"] == "575"


def test_pieces_touch_in_the_rows_where_one_is_next_to_the_other():
    stem = Mark(0, 0, np.ones((10, 3), dtype=bool))
    assert contact_rows(stem, Mark(2, 3, np.ones((4, 3), dtype=bool))) == 4  # side by side, rows 2-5
    assert contact_rows(stem, Mark(9, 3, np.ones((3, 3), dtype=bool))) == 2  # sharing row 9, and diagonally row 10
    assert contact_rows(stem, Mark(0, 5, np.ones((10, 3), dtype=bool))) == 0  # a column apart


def test_a_thick_one_is_not_cut_along_its_stroke(monkeypatch):
    """scikit-learn's 8×8 "1"s upscaled, as `mnist-keras predict` gets them from optdigits files, with the
    shipped models: a cut down the thick stroke leaves two thinner "1"s touching all the way down
    (SPLIT_MAX_CONTACT), which `predict` refused as "several digits" before that rule."""
    from mnist_keras.evaluation.handwriting import load_optdigits, optdigit_png
    from mnist_keras.inference.predictors import load_predictor
    from mnist_keras.inference.shipped import shipped_model_dir

    predictor = load_predictor(shipped_model_dir())
    images, labels = load_optdigits()
    ones = [np.asarray(optdigit_png(ink, "dark-on-light"), dtype=np.float64) / 255
            for ink in images[labels == 1][:120]]

    def read_as_several() -> int:
        return sum(digit_count(read_grey(gray, predictor)) >= 2 for gray in ones)

    assert read_as_several() <= 2
    monkeypatch.setattr(reading, "SPLIT_MAX_CONTACT", math.inf)
    assert read_as_several() >= 10


def test_ruled_lines_and_specks_are_not_marks(glyphs):
    gray = write_text(["206"])
    gray[gray.shape[0] - 8 : gray.shape[0] - 6, :] = 0.1  # a ruled line edge to edge
    gray[5, 5] = 0.0  # a speck
    reading = read_grey(gray, glyphs)
    assert reading["text"] == "206"
    assert sum(len(line) for line in reading["lines"]) == 3


def test_a_blank_image_reads_as_empty_text(glyphs):
    assert read_grey(np.ones((60, 90)), glyphs) == {"text": "", "lines": []}
    assert read_grey(np.zeros((60, 90)), glyphs) == {"text": "", "lines": []}
    assert read_image_bytes(image_bytes(np.full((40, 40), 0.8)), glyphs)["text"] == ""


def test_a_one_digit_image_reads_as_predict_reads_it(glyphs):
    for digit in (0, 4, 7):
        gray = write_text([str(digit)])
        [[mark]] = read_grey(gray, glyphs)["lines"]
        answer = predict_grey(gray, glyphs)
        assert mark["digit"] == answer["digit"] == digit
        assert mark["probabilities"] == answer["probabilities"]
        assert "reason" not in answer


def test_an_mnist_style_field_is_one_digit(glyphs):
    from mnist_keras.inference.images import digit_input

    field = digit_input(glyph(3))  # 28×28, light on black, as MNIST has it
    [[mark]] = read_grey(field, glyphs)["lines"]
    assert mark["digit"] == 3 and mark["box"] == [0, 0, 28, 28]


def test_predict_refuses_several_digits_with_a_reason(glyphs):
    answer = predict_grey(write_text(["2026"]), glyphs)
    assert answer["is_digit"] is False
    assert answer["reason"] == SEVERAL_DIGITS_REASON


def test_undecodable_bytes_are_an_image_error(glyphs):
    with pytest.raises(ImageError):
        read_image_bytes(b"not an image at all", glyphs)


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def glyph_cli(monkeypatch, glyphs, tiny_run):
    """`mnist-keras` with the run (a real run directory, `tiny_run`) read by the glyph reader."""
    from mnist_keras import commands

    monkeypatch.setattr(commands, "load_predictor", lambda run, *args, **kwargs: glyphs)
    from mnist_keras.cli import main

    return lambda args: main([args[0], str(tiny_run), *args[2:]])


def test_read_command_prints_one_json_line_per_image(glyph_cli, tmp_path, capsys):
    number, blank = tmp_path / "year.png", tmp_path / "blank.jpg"
    number.write_bytes(image_bytes(write_text(["1969", "42"])))
    blank.write_bytes(image_bytes(np.ones((50, 50)), "JPEG"))
    assert glyph_cli(["read", str(tmp_path), str(number), str(blank)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [record["file"] for record in records] == [str(number), str(blank)]
    assert [record["text"] for record in records] == ["1969\n42", ""]
    assert [len(line) for line in records[0]["lines"]] == [4, 2]


def test_read_command_bad_image_is_exit_2_with_one_line(glyph_cli, tmp_path, capsys):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    good.write_bytes(image_bytes(write_text(["88"])))
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert glyph_cli(["read", str(tmp_path), str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert records[0]["text"] == "88" and set(records[1]) == {"file", "error"}
    [error] = captured.err.strip().splitlines()
    assert error.startswith("mnist-keras read: error:") and str(bad) in error


def test_predict_command_says_several_digits(glyph_cli, tmp_path, capsys):
    path = tmp_path / "phone.png"
    path.write_bytes(image_bytes(write_text(["0701"])))
    assert glyph_cli(["predict", str(tmp_path), str(path)]) == 0
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["is_digit"] is False and record["reason"] == SEVERAL_DIGITS_REASON


# ---------------------------------------------------------------- the service


@pytest.fixture(scope="module")
def client(glyphs) -> TestClient:
    from mnist_keras.serving.app import create_app

    return TestClient(create_app(glyphs), raise_server_exceptions=False)


def test_read_route_upload_answers_as_the_cli(client, glyphs):
    data = image_bytes(write_text(["31", "415"]))
    response = client.post("/read", files={"file": ("pi.png", data, "image/png")})
    assert response.status_code == 200, response.text
    assert response.json() == json.loads(json.dumps(read_image_bytes(data, glyphs)))
    assert response.json()["text"] == "31\n415"


def test_read_route_json_pixels_of_any_size(client):
    gray = write_text(["27"])
    pixels = (1.0 - gray).round(3).tolist()  # ink = 1, as the pixels API has it
    response = client.post("/read", json={"pixels": pixels})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == "27"
    height, width = gray.shape
    assert all(0 <= mark["box"][2] <= width and 0 <= mark["box"][3] <= height for mark in body["lines"][0])


def test_read_route_blank_and_bad_requests(client):
    blank = client.post("/read", files={"file": ("blank.png", image_bytes(np.ones((30, 30))), "image/png")})
    assert blank.status_code == 200 and blank.json() == {"text": "", "lines": []}
    # Only a margin line down one edge (a ruled line, not a mark): nothing written, not a 500.
    margin = client.post("/read", json={"pixels": [[0.0] * 27 + [1.0]] * 28})
    assert margin.status_code == 200 and margin.json() == {"text": "", "lines": []}, margin.text
    for response, status in [
        (client.post("/read", files={"file": ("x.png", b"junk", "image/png")}), 415),
        (client.post("/read", json={"pixels": [[0.0, 2.0]]}), 422),
        (client.post("/read", json={"pixels": [[0.0, 0.5], [0.1]]}), 422),
        (client.post("/read", json={"nothing": 1}), 422),
        (client.post("/read", content=b"x", headers={"content-type": "text/plain"}), 415),
    ]:
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"error"} and "\n" not in body["error"]


def test_predict_route_refuses_several_digits(client):
    data = image_bytes(write_text(["365"]))
    response = client.post("/predict", files={"file": ("days.png", data, "image/png")})
    assert response.status_code == 200, response.text
    assert response.json()["is_digit"] is False and response.json()["reason"] == SEVERAL_DIGITS_REASON
    single = client.post("/predict", files={"file": ("one.png", image_bytes(write_text(["6"])), "image/png")})
    assert single.json()["digit"] == 6 and "reason" not in single.json()


def test_read_route_is_documented_counted_and_guarded(glyphs):
    from mnist_keras.serving.app import create_app
    from mnist_keras.serving.service import ServiceLimits

    client = TestClient(create_app(glyphs, limits=ServiceLimits(max_image_bytes=2000), api_token="t0ken"),
                        raise_server_exceptions=False)
    headers = {"Authorization": "Bearer t0ken"}
    assert client.post("/read", json={"pixels": [[0.0]]}).status_code == 401
    schema = client.get("/openapi.json", headers=headers).json()
    assert "/read" in schema["paths"] and "post" in schema["paths"]["/read"]
    big = image_bytes(np.random.default_rng(0).random((200, 200)))
    assert len(big) > 2000
    assert client.post("/read", files={"file": ("big.png", big, "image/png")}, headers=headers).status_code == 413
    small = image_bytes(write_text(["5"], size=24))
    assert client.post("/read", files={"file": ("s.png", small, "image/png")}, headers=headers).status_code == 200
    metrics = client.get("/metrics", headers=headers).text
    for status in (200, 401, 413):
        assert f'mnist_keras_requests_total{{method="POST",route="/read",status="{status}"}} 1.0' in metrics
