"""The drawing page in a real browser: headless Chromium draws digits stroke by stroke and reads the answer.

Uses Debian's `chromium` and `chromium-driver` packages (the CI script installs
them) through Selenium; a uvicorn server on a free loopback port serves a
well-trained model.
"""

from __future__ import annotations

import itertools
import math
import shutil
import socket
import threading
import time
from collections.abc import Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1000,900",
)
PAGE_TIMEOUT_SECONDS = 30
PAD_SIDE = 280  # the drawing canvas, in CSS pixels (static/index.html); a number's pad is wider (app.js)
NUMBER_SLOT = 175  # the width each digit of a drawn number takes on the number pad
NUMBER_SCALE = 0.75  # a number's digits, drawn a little smaller than one digit alone
POINTS_PER_SEGMENT = 8

pytestmark = [pytest.mark.real_data, pytest.mark.slow]

# Each digit as strokes (pen down ... pen up) of points on the 280×280 pad, as a person draws it.
ELLIPSE = [(140 + 55 * math.sin(2 * math.pi * step / 24), 140 - 85 * math.cos(2 * math.pi * step / 24))
           for step in range(25)]
DIGIT_STROKES = {
    1: [[(140, 45), (140, 235)]],
    7: [[(75, 55), (205, 55), (115, 235)]],
    0: [ELLIPSE],
    4: [[(95, 45), (70, 160), (210, 160)], [(175, 70), (175, 240)]],
}
# A scribble as a bored person draws one: a zigzag scrawled back and forth over the whole pad, then a loop
# through it. No digit looks like it.
SCRIBBLE_STROKES = [
    [(40 + 200 * (step % 2), 40 + 14 * step) for step in range(15)],
    [(140 + 90 * math.cos(2 * math.pi * step / 16), 140 + 50 * math.sin(2 * math.pi * step / 16))
     for step in range(17)],
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(well_trained_run) -> Iterator[str]:
    import uvicorn

    from mnist_keras.serving.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(well_trained_run), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + PAGE_TIMEOUT_SECONDS
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=PAGE_TIMEOUT_SECONDS)


@pytest.fixture(scope="module")
def browser():
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not installed: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(PAGE_TIMEOUT_SECONDS)
    yield driver
    driver.quit()


def draw(driver, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw with the mouse: for each stroke, press, move through its points in small steps, release."""
    from selenium.webdriver.common.action_chains import ActionChains

    pad = driver.find_element("id", "pad")
    width, height = pad.size["width"], pad.size["height"]
    for stroke in strokes:
        # Selenium's element offsets are from the element's centre.
        start_x, start_y = stroke[0]
        actions = ActionChains(driver, duration=10)
        actions.move_to_element_with_offset(pad, int(start_x - width / 2), int(start_y - height / 2))
        actions.click_and_hold()
        position = (int(start_x), int(start_y))
        for (from_x, from_y), (to_x, to_y) in itertools.pairwise(stroke):
            for step in range(1, POINTS_PER_SEGMENT + 1):
                fraction = step / POINTS_PER_SEGMENT
                target = (int(from_x + (to_x - from_x) * fraction), int(from_y + (to_y - from_y) * fraction))
                actions.move_by_offset(target[0] - position[0], target[1] - position[1])
                position = target
        actions.release()
        actions.perform()


def wait_for_answer(driver) -> None:
    """Until the page has an answer for the drawing as it is now (not for an earlier part of it)."""
    from selenium.webdriver.support.ui import WebDriverWait

    def answered(driver) -> bool:
        return driver.execute_script(
            "const pad = document.getElementById('pad'), result = document.getElementById('result');"
            "return result.dataset.version === pad.dataset.version && result.dataset.state !== 'busy';"
        )

    WebDriverWait(driver, PAGE_TIMEOUT_SECONDS).until(answered)


@pytest.mark.parametrize("digit", sorted(DIGIT_STROKES))
def test_drawn_digit_is_read(browser, server_url, digit):
    browser.get(server_url + "/")
    draw(browser, DIGIT_STROKES[digit])
    wait_for_answer(browser)
    assert browser.find_element("id", "result").get_attribute("data-state") == "ready", \
        browser.find_element("id", "status").text
    assert browser.find_element("id", "digit").text == str(digit)
    # The 28×28 image the model saw is shown, and the bar of the answer is the longest.
    seen_ink = browser.execute_script(
        "const c = document.getElementById('seen');"
        "return Array.from(c.getContext('2d').getImageData(0, 0, 28, 28).data).reduce((a, b) => a + b, 0);"
    )
    assert seen_ink > 28 * 28 * 255  # more than the opaque black alpha channel alone
    widths = browser.execute_script(
        "return Array.from({length: 10}, (_, d) =>"
        " parseFloat(document.getElementById('bar-' + d).firstChild.style.width));"
    )
    assert max(range(10), key=lambda index: widths[index]) == digit


def test_clear_resets_the_page(browser, server_url):
    browser.get(server_url + "/")
    draw(browser, DIGIT_STROKES[1])
    wait_for_answer(browser)
    assert browser.find_element("id", "digit").text == "1"
    browser.find_element("id", "clear").click()
    assert browser.find_element("id", "digit").text == "–"
    assert browser.find_element("id", "result").get_attribute("data-state") == "empty"
    blank_pad = browser.execute_script(
        "const c = document.getElementById('pad');"
        "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data).every(v => v === 255);"
    )
    assert blank_pad


def test_a_drawn_scribble_is_not_a_digit(browser, server_url):
    browser.get(server_url + "/")
    draw(browser, SCRIBBLE_STROKES)
    wait_for_answer(browser)
    assert browser.find_element("id", "result").get_attribute("data-state") == "ready", \
        browser.find_element("id", "status").text
    assert browser.find_element("id", "digit").text == "not a digit"
    assert browser.find_element("id", "confidence").text == ""


def test_an_answer_that_is_not_a_digit_shows_no_digit(browser, server_url):
    """The page's rule: when the service says is_digit false, show "not a digit", not a confident digit."""
    browser.get(server_url + "/")
    answer = ("{digit: 8, confidence: 0.97, probabilities: [0,0,0,0,0,0,0,0,0.97,0.03], "
              "image: Array.from({length: 28}, () => new Array(28).fill(0)), is_digit: %s}")
    browser.execute_script("showResult(" + answer % "false" + ");")
    assert browser.find_element("id", "digit").text == "not a digit"
    assert browser.find_element("id", "confidence").text == ""
    browser.execute_script("showResult(" + answer % "true" + ");")
    assert browser.find_element("id", "digit").text == "8"
    assert browser.find_element("id", "confidence").text == "97.0%"


def number_strokes(digits: list[int]) -> list[list[tuple[float, float]]]:
    """`digits` drawn side by side on the number pad, each the single-digit strokes, smaller, in a slot of its own."""
    strokes = []
    for slot, digit in enumerate(digits):
        centre = slot * NUMBER_SLOT + NUMBER_SLOT / 2
        for stroke in DIGIT_STROKES[digit]:
            strokes.append([(centre + (x - PAD_SIDE / 2) * NUMBER_SCALE, PAD_SIDE / 2 + (y - PAD_SIDE / 2) * NUMBER_SCALE)
                            for x, y in stroke])
    return strokes


def test_a_drawn_number_is_read_and_each_digit_boxed(browser, server_url):
    import json

    browser.get(server_url + "/")
    browser.find_element("css selector", 'input[name="mode"][value="number"]').click()
    assert browser.find_element("id", "pad").size["width"] > 3 * PAD_SIDE / 2
    digits = [1, 7, 0, 4]
    draw(browser, number_strokes(digits))
    wait_for_answer(browser)
    assert browser.find_element("id", "result").get_attribute("data-state") == "ready", \
        browser.find_element("id", "status").text
    assert browser.find_element("id", "text").text == "1704"
    reading = json.loads(browser.find_element("id", "result").get_attribute("data-answer"))
    (line,) = reading["lines"]
    assert [mark["digit"] for mark in line] == digits and all(mark["is_digit"] for mark in line)
    # Each box holds its own slot of the pad, left to right.
    for slot, mark in enumerate(line):
        x0, _, x1, _ = mark["box"]
        assert slot * NUMBER_SLOT <= x0 < x1 <= (slot + 1) * NUMBER_SLOT, (slot, mark["box"])
    items = [item.text for item in browser.find_elements("css selector", "#marks li")]
    assert [item.split(" ")[0] for item in items] == [str(digit) for digit in digits]
    # The boxes are drawn over the pad, not into it: the overlay has ink, the pad still only the strokes.
    overlay_ink = browser.execute_script(
        "const c = document.getElementById('boxes');"
        "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data).some(v => v > 0);"
    )
    assert overlay_ink
    browser.find_element("id", "clear").click()
    assert browser.find_element("id", "text").text == "–"
    browser.find_element("css selector", 'input[name="mode"][value="digit"]').click()
    assert browser.find_element("id", "pad").size["width"] == PAD_SIDE
