"""The exported web page (`mnist-keras export RUN --format web`): what it weighs and how fast it answers.

    python benchmarks/web_page.py RUN [--ort-dir DIR] [--loads 3] [--drawings 12] [--out benchmarks/results]

Exports RUN's page to a temporary folder, serves it with Python's http.server
on 127.0.0.1 (plain static files: no COOP/COEP headers, so ONNX Runtime Web
runs on one thread, as on GitHub Pages), and drives headless Chromium:

- page weight: every file the page fetches before its first answer (the
  browser's own list), in bytes and gzipped (level 6, what static hosts send);
- time to first answer, with an empty browser cache (a fresh browser profile
  each of `--loads` times, median): navigation start to the model being ready,
  plus the first reading of a drawing (its first run compiles the page's code),
  both timed by the page itself;
- per-drawing latency: `--drawings` digits drawn stroke by stroke; for the
  final reading of each (pixels to answer, timed in the page), the median and
  the slowest, with its preparation (prepare.js: the same steps as `predict`)
  and the model's run (ONNX Runtime Web, wasm SIMD, one thread) apart.

Prints the machine (CPU model and its widest vector extension), Chromium's
version and the figures; `--out DIR` writes them too, as DIR/web_page.json and
DIR/web_page.md (the table the README quotes).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import http.server
import itertools
import json
import math
import statistics
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

import harness

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1000,900",
)
PAGE_TIMEOUT_SECONDS = 60
PAD_SIDE = 280  # the drawing canvas, in CSS pixels (mnist_keras/web/index.html)
POINTS_PER_SEGMENT = 8
GZIP_LEVEL = 6  # nginx's and most static hosts' default
# Digits as strokes on the 280×280 pad (pen down ... pen up), as a person draws them.
ELLIPSE = [(140 + 55 * math.sin(2 * math.pi * step / 24), 140 - 85 * math.cos(2 * math.pi * step / 24))
           for step in range(25)]
DRAWINGS = [
    [[(140, 45), (140, 235)]],
    [[(75, 55), (205, 55), (115, 235)]],
    [ELLIPSE],
    [[(95, 45), (70, 160), (210, 160)], [(175, 70), (175, 240)]],
    [[(85, 80), (110, 50), (150, 42), (190, 60), (195, 100), (170, 140), (90, 230), (210, 230)]],
    [[(85, 60), (140, 40), (195, 70), (150, 130), (200, 180), (150, 235), (80, 215)]],
]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # http.server's signature
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", harness.free_port()),
                                             functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def new_browser():
    """Headless Chromium with a fresh profile (an empty cache)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(PAGE_TIMEOUT_SECONDS)
    return driver


def wait(driver, script: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, PAGE_TIMEOUT_SECONDS, poll_frequency=0.01).until(lambda driver: driver.execute_script(script))


def draw(driver, strokes) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    pad = driver.find_element("id", "pad")
    for stroke in strokes:
        actions = ActionChains(driver, duration=10)
        start_x, start_y = stroke[0]
        actions.move_to_element_with_offset(pad, int(start_x - PAD_SIDE / 2), int(start_y - PAD_SIDE / 2))
        actions.click_and_hold()
        position = (int(start_x), int(start_y))
        for (from_x, from_y), (to_x, to_y) in itertools.pairwise(stroke):
            for step in range(1, POINTS_PER_SEGMENT + 1):
                target = (int(from_x + (to_x - from_x) * step / POINTS_PER_SEGMENT),
                          int(from_y + (to_y - from_y) * step / POINTS_PER_SEGMENT))
                actions.move_by_offset(target[0] - position[0], target[1] - position[1])
                position = target
        actions.release()
        actions.perform()


def final_reading(driver) -> dict[str, float]:
    """Once the page has answered the drawing as it is now: that reading's timings (ms)."""
    wait(driver, "const pad = document.getElementById('pad'), result = document.getElementById('result');"
                 "return result.dataset.version === pad.dataset.version && result.dataset.state !== 'busy';")
    timings = driver.execute_script(
        "const data = document.getElementById('result').dataset;"
        "return {state: data.state, total: +data.milliseconds, prepare: +data.prepareMilliseconds,"
        " answered: +data.answeredAt};")
    if timings["state"] != "ready":
        raise RuntimeError(f"the page did not answer: {driver.find_element('id', 'status').text}")
    return timings


def open_page(driver, url: str) -> float:
    """Load the page; the milliseconds from navigation start until its model was ready."""
    driver.get(url)
    wait(driver, "return document.getElementById('result').dataset.state !== 'loading';")
    ready = driver.execute_script("const mark = performance.getEntriesByName('model-ready')[0];"
                                  "return mark ? mark.startTime : null;")
    if ready is None:
        raise RuntimeError(f"the page did not start: {driver.find_element('id', 'status').text}")
    return ready


def page_weight(driver, url: str, folder: Path) -> list[dict]:
    """Each file the page fetched (the page itself first): bytes, and bytes gzipped."""
    fetched = driver.execute_script("return performance.getEntriesByType('resource').map(entry => entry.name);")
    files = []
    for address in [url, *fetched]:
        path = urlparse(address).path.lstrip("/") or "index.html"
        data = (folder / path).read_bytes()
        files.append({"file": path, "bytes": len(data), "gzipped": len(gzip.compress(data, GZIP_LEVEL))})
    return files


def measure(run: Path, ort_dir: str | None, loads: int, drawings: int) -> dict:
    from mnist_keras.inference.web_export import export_web

    with tempfile.TemporaryDirectory() as temporary:
        folder = export_web(run, Path(temporary) / "site", ort_dir=ort_dir)
        server, url = serve(folder)
        try:
            cold = []
            for _ in range(loads):
                driver = new_browser()
                try:
                    ready = open_page(driver, url)
                    draw(driver, DRAWINGS[1])
                    first = final_reading(driver)
                    cold.append({"ready_ms": ready, "first_reading_ms": first["total"],
                                 "first_answer_ms": ready + first["total"]})
                    weight = page_weight(driver, url, folder)
                    browser_version = driver.capabilities.get("browserVersion")
                    page = driver.execute_script(
                        "return {isolated: self.crossOriginIsolated, threads: document.body.dataset.threads};")
                finally:
                    driver.quit()
            driver = new_browser()
            try:
                open_page(driver, url)
                readings = []
                for index in range(drawings):
                    driver.find_element("id", "clear").click()
                    draw(driver, DRAWINGS[index % len(DRAWINGS)])
                    readings.append(final_reading(driver))
            finally:
                driver.quit()
        finally:
            server.shutdown()
    totals = [reading["total"] for reading in readings]
    prepares = [reading["prepare"] for reading in readings]
    record, metrics = (json.loads((run / name).read_text()) for name in ("config.json", "metrics.json"))
    return {
        "run": {"recipe": record.get("recipe_name"), "model": record["recipe"].get("model"),
                "seed": record["recipe"].get("seed"), "test_accuracy": metrics.get("test_accuracy")},
        "machine": harness.machine_line(),
        "chromium": browser_version,
        "onnxruntime_web": json.loads((Path(__file__).resolve().parents[1] / "src" / "mnist_keras" / "web"
                                       / "package.json").read_text())["dependencies"]["onnxruntime-web"],
        "cross_origin_isolated": page["isolated"],
        "threads": page["threads"],
        "load_average": harness.load_average(),
        "files": weight,
        "page_bytes": sum(entry["bytes"] for entry in weight),
        "page_gzipped_bytes": sum(entry["gzipped"] for entry in weight),
        "cold_loads": cold,
        "ready_ms": statistics.median(load["ready_ms"] for load in cold),
        "first_answer_ms": statistics.median(load["first_answer_ms"] for load in cold),
        "drawings": drawings,
        "reading_median_ms": statistics.median(totals),
        "reading_max_ms": max(totals),
        "prepare_median_ms": statistics.median(prepares),
        "model_median_ms": statistics.median(total - prepare for total, prepare in zip(totals, prepares)),
    }


def report(results: dict) -> str:
    run = results["run"]
    lines = [f"run: recipe {run['recipe']} ({run['model']}, seed {run['seed']}), test accuracy {run['test_accuracy']}",
             f"machine: {results['machine']} (load average {results['load_average']:.2f})",
             (f"browser: headless Chromium {results['chromium']}, ONNX Runtime Web {results['onnxruntime_web']} "
              f"(wasm, threads {results['threads']}, cross-origin isolated {results['cross_origin_isolated']})"),
             "", "| file | bytes | gzipped |", "| --- | ---: | ---: |"]
    lines += [f"| {entry['file']} | {entry['bytes']:,} | {entry['gzipped']:,} |" for entry in results["files"]]
    lines += [f"| **page, all files** | **{results['page_bytes']:,}** | **{results['page_gzipped_bytes']:,}** |", "",
              (f"time to first answer (empty cache, median of {len(results['cold_loads'])}): "
               f"{results['first_answer_ms']:.0f} ms (model ready at {results['ready_ms']:.0f} ms)"),
              (f"per drawing ({results['drawings']} drawings, final reading of each): median "
               f"{results['reading_median_ms']:.1f} ms (preparation {results['prepare_median_ms']:.1f} ms, "
               f"model {results['model_median_ms']:.1f} ms), slowest {results['reading_max_ms']:.1f} ms")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run directory")
    parser.add_argument("--ort-dir", help="onnxruntime-web's dist folder (default: the cache, or npm once)")
    parser.add_argument("--loads", type=int, default=3, help="cold page loads for the time to first answer")
    parser.add_argument("--drawings", type=int, default=12, help="digits drawn for the per-drawing latency")
    parser.add_argument("--out", type=Path, help="also write web_page.json and web_page.md here")
    args = parser.parse_args(argv)
    results = measure(args.run, args.ort_dir, args.loads, args.drawings)
    table = report(results)
    print(table, end="")
    if args.out:
        harness.write_results(args.out, "web_page", results, f"`python benchmarks/web_page.py RUN`\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
