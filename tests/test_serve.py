"""The web service through FastAPI's TestClient: the happy paths and every bad request."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES, NUM_PIXELS
from mnist_keras.inference.images import pixels_to_image, preprocess_image_bytes
from mnist_keras.serving.app import create_app
from mnist_keras.serving.handlers import STATIC_DIR
from mnist_keras.serving.service import ServiceLimits

PREDICTION_FIELDS = {"digit", "confidence", "probabilities", "is_digit", "image"}


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def drawing(band: int) -> bytes:
    """A canvas-like PNG: a black bar on white at row band `band` (the tiny synthetic model reads bands)."""
    image = Image.new("RGB", (280, 280), "white")
    ImageDraw.Draw(image).rectangle([50, 20 + 22 * band, 230, 36 + 22 * band], fill="black")
    return png(image)


def mnist_pixels(band: int) -> np.ndarray:
    pixels = np.zeros((IMAGE_SIDE, IMAGE_SIDE))
    pixels[2 + 2 * band : 4 + 2 * band, 4:24] = 1.0
    return pixels


@pytest.fixture(scope="module")
def predictor(tiny_run):
    from mnist_keras.inference.predictors import load_predictor

    return load_predictor(tiny_run)


@pytest.fixture(scope="module")
def client(predictor) -> TestClient:
    # Server exceptions become responses, so a 500 shows up as a status a test can see.
    return TestClient(create_app(predictor), raise_server_exceptions=False)


def assert_error(response, status: int, match: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    assert match.lower() in body["error"].lower()
    assert "\n" not in body["error"]


def assert_prediction(record: dict) -> None:
    assert set(record) == PREDICTION_FIELDS
    assert 0 <= record["digit"] < NUM_CLASSES
    assert len(record["probabilities"]) == NUM_CLASSES
    assert sum(record["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert record["confidence"] == max(record["probabilities"])
    assert np.asarray(record["image"]).shape == (IMAGE_SIDE, IMAGE_SIDE)


# ---------------------------------------------------------------- happy paths


def test_create_app_from_a_run_directory(tiny_run):
    with TestClient(create_app(tiny_run)) as client:
        # ONNX Runtime is a dependency, so the fastest predictor answers.
        assert client.get("/healthz").json() == {"status": "ok", "predictor": "onnxruntime"}


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_drawing_page_is_served_and_works_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for element in ('id="pad"', 'id="clear"', 'id="seen"', 'id="bars"', 'id="digit"'):
        assert element in page.text
    for name in ("app.js", "drawing.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    # No scripts, styles or fonts from elsewhere: everything the page loads is ours.
    for path in STATIC_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name


def test_openapi_docs_work_offline(client):
    docs = client.get("/docs")
    assert docs.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text) + re.findall(r"url: '([^']+)'", docs.text)
    assert any(asset.endswith(".js") for asset in assets)
    for asset in assets:
        assert asset.startswith("/"), f"/docs loads {asset} from elsewhere"
        assert client.get(asset).status_code == 200, asset
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/healthz"} <= set(schema["paths"])
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)


def test_predict_upload_uses_the_image_path(client, predictor):
    data = drawing(4)
    response = client.post("/predict", files={"file": ("digit.png", data, "image/png")})
    assert response.status_code == 200
    record = response.json()
    assert_prediction(record)
    model_input = preprocess_image_bytes(data)
    np.testing.assert_allclose(record["image"], model_input, atol=1e-4)
    np.testing.assert_allclose(record["probabilities"], predictor.predict(model_input.reshape(1, -1))[0], atol=1e-5)


def test_predict_json_pixels_nested_and_flat(client, predictor):
    pixels = mnist_pixels(6)
    nested = client.post("/predict", json={"pixels": pixels.tolist()})
    flat = client.post("/predict", json={"pixels": pixels.ravel().tolist()})
    assert nested.status_code == flat.status_code == 200
    assert nested.json() == flat.json()
    record = nested.json()
    assert_prediction(record)
    # Client pixels already in MNIST's form are the model's input as they are.
    np.testing.assert_array_equal(record["image"], pixels)
    assert record["digit"] == int(np.argmax(predictor.predict(pixels.reshape(1, NUM_PIXELS))[0]))


def test_batch_of_files_keeps_order(client):
    bands = [1, 8, 3]
    files = [("files", (f"{band}.png", drawing(band), "image/png")) for band in bands]
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 200
    records = response.json()
    assert len(records) == len(bands)
    for band, record in zip(bands, records):
        single = client.post("/predict", files={"file": ("one.png", drawing(band), "image/png")}).json()
        assert record == single


def test_batch_of_pixels(client):
    images = [mnist_pixels(band).tolist() for band in (0, 9)]
    response = client.post("/predict/batch", json={"images": images})
    assert response.status_code == 200
    records = response.json()
    # Client pixels are normalised like a 28×28 image file (the top band is moved to the centre).
    for record, image in zip(records, images):
        np.testing.assert_allclose(record["image"], pixels_to_image(image), atol=1e-4)
    for record in records:
        assert_prediction(record)


# ---------------------------------------------------------------- bad requests


def test_not_an_image_is_415(client):
    response = client.post("/predict", files={"file": ("notes.png", b"just some text", "image/png")})
    assert_error(response, 415, "not an image")


def test_truncated_image_is_422(client):
    data = png(Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 120), dtype=np.uint8)))
    response = client.post("/predict", files={"file": ("cut.png", data[: len(data) // 2], "image/png")})
    assert_error(response, 422, "truncated")


def test_blank_image_is_422(client):
    response = client.post("/predict", files={"file": ("blank.png", png(Image.new("RGB", (280, 280), "white")),
                                                       "image/png")})
    assert_error(response, 422, "no ink")


@pytest.mark.parametrize(
    "body, match",
    [
        ({"pixels": [0.5] * (NUM_PIXELS - 1)}, "shape"),
        ({"pixels": [[0.5] * IMAGE_SIDE] * 3}, "shape"),
        ({"pixels": [1.5] * NUM_PIXELS}, "[0, 1]"),
        ({"pixels": [-1] * NUM_PIXELS}, "[0, 1]"),
        ({"pixels": ["white"] * NUM_PIXELS}, "pixels must be"),
        ({"pixels": None}, "shape"),
        ({"pixels": [0.0] * NUM_PIXELS}, "no ink"),
        ({"pixel": [0.5] * NUM_PIXELS}, "'pixels'"),
        ([0.5] * NUM_PIXELS, "'pixels'"),
    ],
)
def test_bad_pixels_are_422(client, body, match):
    assert_error(client.post("/predict", json=body), 422, match)


@pytest.mark.parametrize(
    "raw, match",
    [
        (b'{"pixels": [' + b", ".join([b"NaN"] * NUM_PIXELS) + b"]}", "finite"),
        (b'{"pixels": [' + b", ".join([b"Infinity"] * NUM_PIXELS) + b"]}", "finite"),
        (b'{"pixels": [1e999999]}', "shape"),
        (b'{"pixels": [' + b"1" + b"0" * 500 + b"]}", "pixels must be"),
        (b"{not json", "not valid json"),
        (b"\xff\xfe\x00", "not valid json"),
        (b"[" * 100_000 + b"]" * 100_000, "json"),
    ],
)
def test_malformed_json_is_422(client, raw, match):
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert_error(response, 422, match)


def test_multipart_without_the_file_field_is_422(client):
    assert_error(client.post("/predict", files={"image": ("a.png", drawing(1), "image/png")}), 422, "'file'")
    assert_error(client.post("/predict", data={"file": "not a file"}, files={"other": ("x", b"x")}), 422, "file")


@pytest.mark.parametrize("content_type", ["text/plain", "image/png", "application/x-www-form-urlencoded", None])
def test_unsupported_content_type_is_415(client, content_type):
    headers = {"content-type": content_type} if content_type else {}
    assert_error(client.post("/predict", content=drawing(1), headers=headers), 415, "content type")


def test_broken_multipart_is_4xx(client):
    response = client.post("/predict", content=b"--x\r\nnonsense", headers={"content-type": "multipart/form-data"})
    assert 400 <= response.status_code < 500 and "error" in response.json()


def test_multipart_the_parser_refuses_is_422_or_413(client, predictor):
    response = client.post("/predict", content=b"x", headers={"content-type": "multipart/form-data"})
    assert_error(response, 422, "boundary")
    limited = TestClient(create_app(predictor, ServiceLimits(max_batch_images=2)))
    files = [("files", (f"{index}.png", drawing(index), "image/png")) for index in range(5)]
    assert_error(limited.post("/predict/batch", files=files), 413, "too many files")


def test_json_over_its_limit_is_413_before_parsing(predictor):
    client = TestClient(create_app(predictor, ServiceLimits(max_batch_images=2)))
    # Two images' worth of pixels fit; a body of numbers well beyond that is refused unparsed.
    images = [mnist_pixels(band).tolist() for band in range(2)]
    assert client.post("/predict/batch", json={"images": images}).status_code == 200
    big = b'{"images": [' + b"0.5, " * (2 * NUM_PIXELS * 32 // 5) + b"0.5]}"
    response = client.post("/predict/batch", content=big, headers={"content-type": "application/json"})
    assert_error(response, 413, "JSON body")


def test_only_a_few_images_are_decoded_at_once(predictor, monkeypatch):
    # Each decode can take ~100 MB, so concurrency bounds memory: many clients, few decodes.
    from mnist_keras.serving import service

    decoding, most = 0, 0
    lock = threading.Lock()
    real_decode = service.decode_grey

    def watched_decode(data: bytes, **limits):
        nonlocal decoding, most
        with lock:
            decoding += 1
            most = max(most, decoding)
        try:
            time.sleep(0.05)  # long enough for the other requests to arrive meanwhile
            return real_decode(data, **limits)
        finally:
            with lock:
                decoding -= 1

    monkeypatch.setattr(service, "decode_grey", watched_decode)
    client = TestClient(create_app(predictor, ServiceLimits(max_concurrent_decodes=2)))
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(
            lambda band: client.post("/predict", files={"file": ("d.png", drawing(band), "image/png")}), range(8)
        ))
    assert [response.status_code for response in responses] == [200] * 8
    assert most == 2


def test_body_over_the_request_limit_is_413(predictor):
    client = TestClient(create_app(predictor, ServiceLimits(max_request_bytes=10_000)), raise_server_exceptions=False)
    big = bytes(20_000)
    assert_error(client.post("/predict", files={"file": ("big.png", big, "image/png")}), 413, "limit")
    # Without a Content-Length (streamed), the bytes that arrive are counted instead.
    chunks = (bytes(1000) for _ in range(20))
    assert_error(client.post("/predict", content=chunks, headers={"content-type": "application/json"}), 413, "limit")
    # A declared length over the limit is refused before the body is read.
    response = client.post("/predict", content=b"{}", headers={"content-type": "application/json",
                                                               "content-length": "999999999"})
    assert response.status_code == 413


def test_image_over_the_byte_or_pixel_limit_is_413(predictor):
    data = drawing(2)
    small_files = TestClient(create_app(predictor, ServiceLimits(max_image_bytes=len(data) - 1)))
    assert_error(small_files.post("/predict", files={"file": ("d.png", data, "image/png")}), 413, "limit")
    few_pixels = TestClient(create_app(predictor, ServiceLimits(max_image_pixels=280 * 280 - 1)))
    assert_error(few_pixels.post("/predict", files={"file": ("d.png", data, "image/png")}), 413, "pixels")


def test_batch_limits_and_errors(predictor, client):
    limited = TestClient(create_app(predictor, ServiceLimits(max_batch_images=2)))
    three = [mnist_pixels(band).tolist() for band in range(3)]
    assert_error(limited.post("/predict/batch", json={"images": three}), 413, "limit of 2")
    files = [("files", (f"{band}.png", drawing(band), "image/png")) for band in range(3)]
    assert_error(limited.post("/predict/batch", files=files), 413, "limit of 2")
    assert_error(client.post("/predict/batch", json={"images": []}), 422, "at least one")
    assert_error(client.post("/predict/batch", json={"images": "pixels"}), 422, "list")
    assert_error(client.post("/predict/batch", json={"images": [three[0], [0.5]]}), 422, "item 1")
    bad_files = [("files", ("a.png", drawing(1), "image/png")), ("files", ("b.png", b"text", "image/png"))]
    assert_error(client.post("/predict/batch", files=bad_files), 415, "item 1")
    assert_error(client.post("/predict/batch", files={"file": ("a.png", drawing(1), "image/png")}), 422, "'files'")
    assert_error(client.post("/predict/batch", content=b"x", headers={"content-type": "text/csv"}), 415)


def test_unknown_paths_and_methods_are_json(client):
    assert_error(client.get("/nowhere"), 404)
    assert_error(client.get("/predict"), 405)


# ---------------------------------------------------------------- nothing a client sends makes a 500

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=30) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=60,
)


@given(value=JSON_VALUES)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_json_gets_a_4xx_or_an_answer(client, value):
    for path, key in (("/predict", "pixels"), ("/predict/batch", "images")):
        response = client.post(path, content=json.dumps({key: value}), headers={"content-type": "application/json"})
        assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"] == "application/json"


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the corrupt metadata it reads
@given(data=st.binary(max_size=2000), prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"\xff\xd8\xff",
                                                               b"BM", b"RIFF\x00\x00\x00\x00WEBP", b"II*\x00"]))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_upload_gets_a_4xx_or_an_answer(client, data, prefix):
    response = client.post("/predict", files={"file": ("upload", prefix + data, "application/octet-stream")})
    assert response.status_code == 200 or 400 <= response.status_code < 500, response.text


# ---------------------------------------------------------------- the serve command


def test_serve_command_refuses_bad_input(tmp_path, tiny_run, capsys):
    from mnist_keras.cli import main

    assert main(["serve", str(tmp_path / "no-run")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    for port in ("70000", "http"):
        with pytest.raises(SystemExit) as caught:
            main(["serve", str(tiny_run), "--port", port])
        assert caught.value.code == 2
