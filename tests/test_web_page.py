"""The exported web page in a real browser, with no server behind it: it answers as `mnist-keras predict` does.

`export --format web` writes a well-trained run's page; Python's http.server
serves the folder (plain static files: no API, no COOP/COEP headers, so ONNX
Runtime Web runs single-threaded); headless Chromium draws digits on the pad
and loads image files. For each, the page's answer (read from the DOM) is
compared with `predict_image_files` on the same pixels: the pad saved as PNG,
or the same file. ONNX Runtime Web's files come from the cache, or npm once.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from test_browser import DIGIT_STROKES, PAGE_TIMEOUT_SECONDS, SCRIBBLE_STROKES, browser, draw, free_port  # noqa: F401
from test_web_export import drawn

from mnist_keras.constants import IMAGE_SIDE
from mnist_keras.inference.images import decode_grey_file, mnist_style
from mnist_keras.inference.predictors import load_predictor
from mnist_keras.inference.reading import predict_image_files
from mnist_keras.inference.web_export import export_web

pytestmark = [pytest.mark.real_data, pytest.mark.slow]

# The 28×28 input must match to float32 rounding (PNG pixels decode the same everywhere), and then ONNX
# Runtime Web and ONNX Runtime agree to the records' 6 decimals (measured: within 5e-7), far inside the
# issue's bar of 0.02; a JPEG is held to that bar only, since JPEG decoders may differ by a grey level.
INPUT_TOLERANCE = 1e-5
PROBABILITY_TOLERANCE = 1e-4
JPEG_PROBABILITY_TOLERANCE = 0.02
# Drawn as a person might, beyond test_browser's four digits and scribble.
MORE_STROKES = {
    "two": [[(85, 80), (110, 50), (150, 42), (190, 60), (195, 100), (170, 140), (90, 230), (210, 230)]],
    "three": [[(85, 60), (140, 40), (195, 70), (150, 130), (200, 180), (150, 235), (80, 215)]],
    "small off-centre five": [[(90, 40), (50, 40), (48, 80), (80, 78), (95, 100), (85, 125), (45, 125)]],
}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # http.server's signature
        pass


@pytest.fixture(scope="module")
def site(well_trained_run, tmp_path_factory) -> Path:
    return export_web(well_trained_run, tmp_path_factory.mktemp("web") / "site")


@pytest.fixture(scope="module")
def site_url(site) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()),
                                             functools.partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    thread.join(timeout=PAGE_TIMEOUT_SECONDS)


@pytest.fixture(scope="module")
def predictor(well_trained_run):
    return load_predictor(well_trained_run)


def wait(driver, script: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, PAGE_TIMEOUT_SECONDS).until(lambda driver: driver.execute_script(script))


def open_page(driver, url: str) -> None:
    driver.get(url)
    wait(driver, "return document.getElementById('result').dataset.state !== 'loading';")
    state = driver.find_element("id", "result").get_attribute("data-state")
    assert state == "empty", driver.find_element("id", "status").text


def page_answer(driver) -> dict:
    """Once the page has answered its latest input: the answer record (with the 28×28 input), or its error."""
    wait(driver, "const pad = document.getElementById('pad'), result = document.getElementById('result');"
                 "return result.dataset.version === pad.dataset.version && result.dataset.state !== 'busy';")
    result = driver.find_element("id", "result")
    if result.get_attribute("data-state") != "ready":
        return {"error": driver.find_element("id", "status").text}
    answer = json.loads(result.get_attribute("data-answer"))
    shown = driver.find_element("id", "digit").text
    assert shown == (str(answer["digit"]) if answer["is_digit"] else "not a digit")
    return answer


def assert_same_answer(page: dict, python: dict, expected_input: np.ndarray | None, label: str) -> None:
    """The same digit, probabilities and verdict; the same 28×28 input unless `expected_input` is None (a JPEG)."""
    assert "error" not in page, f"{label}: {page}"
    assert page["digit"] == python["digit"], label
    tolerance = PROBABILITY_TOLERANCE if expected_input is not None else JPEG_PROBABILITY_TOLERANCE
    np.testing.assert_allclose(page["probabilities"], python["probabilities"], rtol=0, atol=tolerance, err_msg=label)
    if "reason" not in python:  # predict's "several digits" refusal reads the whole image; the page does not
        assert page["is_digit"] == python["is_digit"], label
    if expected_input is not None:
        np.testing.assert_allclose(page["image"], expected_input.ravel(), rtol=0, atol=INPUT_TOLERANCE, err_msg=label)


def python_answer(predictor, path: Path) -> tuple[dict, np.ndarray]:
    [record] = predict_image_files(predictor, [path])
    return record, mnist_style(decode_grey_file(path)[0])


def test_drawn_digits_read_as_predict_reads_the_same_strokes(browser, site_url, predictor, tmp_path):  # noqa: F811
    drawings = {str(digit): strokes for digit, strokes in DIGIT_STROKES.items()}
    drawings |= {"scribble": SCRIBBLE_STROKES} | MORE_STROKES
    open_page(browser, site_url)
    for name, strokes in drawings.items():
        browser.find_element("id", "clear").click()
        draw(browser, strokes)
        answer = page_answer(browser)
        png = tmp_path / f"{name}.png"
        png.write_bytes(base64.b64decode(browser.execute_script(
            "return document.getElementById('pad').toDataURL('image/png').split(',')[1];")))
        record, expected = python_answer(predictor, png)
        assert_same_answer(answer, record, expected, name)
        if name.isdigit():  # the page reads what was drawn
            assert (answer["digit"], answer["is_digit"]) == (int(name), True), name
        if name == "scribble":
            assert answer["is_digit"] is False


def image_files(folder: Path, real_mnist) -> dict[str, Path]:
    """Files as users bring them: a photo-like digit under uneven light, light on dark, MNIST's own 28×28
    digits, a canvas export with a transparent background, a digit on ruled paper, a JPEG."""
    folder.mkdir()
    files = {}
    rng = np.random.default_rng(7)
    shadowed = drawn(size=(640, 480), strokes=[((250, 90), (400, 90), (300, 400))], width=24)
    shadowed = shadowed * np.linspace(0.5, 1.0, 640)[None, :] + rng.normal(0, 0.015, shadowed.shape)
    files["shadowed seven"] = np.clip(shadowed, 0, 1)
    files["light on dark four"] = drawn(strokes=[((95, 45), (70, 160), (210, 160)), ((175, 70), (175, 240))],
                                        ink=255, paper=0)
    ruled = drawn(size=(300, 300), strokes=[((120, 60), (160, 40), (160, 240))], width=12)
    for row in (30, 90, 150, 210, 270):
        ruled[row : row + 2, :] = np.minimum(ruled[row : row + 2, :], 0.55)
    files["one on ruled paper"] = ruled
    paths = {}
    for name, grey in files.items():
        paths[name] = folder / f"{name}.png"
        Image.fromarray(np.rint(grey * 255).astype(np.uint8), "L").save(paths[name])
    for index in range(3):
        paths[f"MNIST test digit {index}"] = folder / f"mnist-{index}.png"
        Image.fromarray(real_mnist.x_test[index], "L").save(paths[f"MNIST test digit {index}"])
    transparent = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    ImageDraw.Draw(transparent).line([(80, 70), (220, 70), (120, 250)], fill=(30, 30, 160, 255), width=20)
    paths["transparent seven"] = folder / "transparent.png"
    transparent.save(paths["transparent seven"])
    paths["jpeg two"] = folder / "two.jpg"
    Image.fromarray(np.rint(drawn(strokes=MORE_STROKES["two"]) * 255).astype(np.uint8), "L").convert("RGB").save(
        paths["jpeg two"], quality=90)
    return paths


def test_image_files_read_as_predict_reads_them(browser, site_url, predictor, real_mnist, tmp_path):  # noqa: F811
    open_page(browser, site_url)
    for name, path in image_files(tmp_path / "files", real_mnist).items():
        browser.find_element("id", "file").send_keys(str(path))
        answer = page_answer(browser)
        record, expected = python_answer(predictor, path)
        # JPEG decoders (Pillow's libjpeg, the browser's) may differ by a grey level here and there.
        assert_same_answer(answer, record, None if path.suffix == ".jpg" else expected, name)
        assert browser.find_element("id", "status").text.startswith(path.name)


def test_files_that_cannot_be_read_say_why(browser, site_url, tmp_path):  # noqa: F811
    open_page(browser, site_url)
    (tmp_path / "notes.txt").write_text("not an image")
    Image.new("L", (120, 90), 200).save(tmp_path / "blank.png")
    for name, message in (("notes.txt", "not an image this browser can decode"), ("blank.png", "no ink found")):
        browser.find_element("id", "file").send_keys(str(tmp_path / name))
        assert message in page_answer(browser)["error"]
        assert browser.find_element("id", "digit").text == "–"


def test_the_page_runs_single_threaded_from_its_own_folder_only(browser, site_url):  # noqa: F811
    open_page(browser, site_url)
    draw(browser, DIGIT_STROKES[7])
    assert page_answer(browser)["digit"] == 7
    assert browser.execute_script("return self.crossOriginIsolated;") is False
    assert browser.find_element("tag name", "body").get_attribute("data-threads") == "1"
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(entry => entry.name);")
    assert any(url.endswith("/ort/ort-wasm-simd-threaded.wasm") for url in fetched), fetched
    assert all(url.startswith(site_url) for url in fetched), fetched
    assert "Answered by run" in browser.find_element("id", "about").text


def test_without_webassembly_the_page_says_so(browser, site_url):  # noqa: F811
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                     {"source": "delete globalThis.WebAssembly;"})
    try:
        browser.get(site_url)
        wait(browser, "return document.getElementById('result').dataset.state !== 'loading';")
        assert browser.find_element("id", "result").get_attribute("data-state") == "unsupported"
        notice = browser.find_element("id", "unsupported")
        assert notice.is_displayed() and "no WebAssembly" in notice.text
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})


def test_the_page_shows_what_the_model_read(browser, site_url):  # noqa: F811
    open_page(browser, site_url)
    draw(browser, DIGIT_STROKES[0])
    answer = page_answer(browser)
    seen = browser.execute_script(
        "return Array.from(document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data)"
        ".filter((_, index) => index % 4 === 0);")
    np.testing.assert_allclose(np.asarray(seen) / 255, np.asarray(answer["image"]), rtol=0, atol=0.5 / 255 + 1e-9)
    assert len(seen) == IMAGE_SIDE * IMAGE_SIDE
