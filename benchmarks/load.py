"""Load test for the prediction service: N concurrent clients drive POST /predict on loopback for a bounded time.

    python benchmarks/load.py RUN --clients 16 --seconds 30 [--payload mixed] [--workers 2] [--json results.json]
    python benchmarks/load.py --url http://127.0.0.1:8000 [--pid PID] --clients 16 --seconds 30

Without --url it starts `mnist-keras serve RUN [--workers N]` on a free
loopback port and stops it afterwards with SIGTERM (it must exit 0). Each
client keeps one HTTP/1.1 connection and posts, one after another, what the
drawing page posts: 280×280 PNGs of hand-drawn digits 0-9 (or, with --payload
pixels, the same digits as 784 JSON pixels; with --payload mixed, PNG
uploads, JSON pixels and batches of 8 to /predict/batch in turn).

Every answer is checked, not just its status: the documented fields, the
28×28 image, and the digit and probabilities the model gives for the same
input in this process (with RUN), or that the idle service gave before the
load began (with --url only). The server's resident memory (all its worker
processes together) is sampled throughout: after a concurrent warm-up
(start), its peak, and at the end.

Prints requests/s, p50/p90/p99 latency, errors (any answer but 200, or a
failed connection), wrong answers and memory; exits 1 if any request failed
or was answered wrongly.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import numpy as np
from PIL import Image, ImageDraw

from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES

BOUNDARY = "mnist-keras-load-boundary"
STARTUP_TIMEOUT_SECONDS = 180
REQUEST_TIMEOUT_SECONDS = 30
PAD_SIDE = 280  # the drawing page's canvas
PEN_WIDTH = 18
PERCENTILES = (50, 90, 99)
PREDICTION_FIELDS = {"digit", "confidence", "probabilities", "is_digit", "image"}
BATCH_SIZE = 8  # images per /predict/batch request in the mixed payload
# Answers are rounded to 6 decimals; the same input through the same model agrees far closer than this.
PROBABILITY_TOLERANCE = 1e-4
MEMORY_SAMPLE_SECONDS = 0.25
MEGABYTE = 1024 * 1024
MAX_ERRORS_KEPT = 3

# Digits 0-9 as pen strokes on the 280×280 pad: polylines, or ellipses given as boxes.
STROKES: dict[int, list[list[tuple[int, int]]]] = {
    1: [[(140, 50), (140, 230)]],
    2: [[(80, 85), (115, 52), (175, 58), (190, 110), (80, 228), (205, 228)]],
    3: [[(80, 60), (190, 60), (130, 130), (190, 168), (172, 222), (80, 226)]],
    4: [[(172, 230), (172, 50), (70, 172), (212, 172)]],
    5: [[(192, 55), (92, 55), (86, 130), (170, 124), (196, 180), (160, 230), (80, 224)]],
    6: [[(182, 50), (104, 118), (86, 190), (130, 234), (186, 202), (172, 150), (94, 168)]],
    7: [[(75, 55), (205, 55), (115, 235)]],
    9: [[(190, 95), (185, 235)]],
}
ELLIPSES: dict[int, list[tuple[int, int, int, int]]] = {
    0: [(80, 45, 200, 235)],
    8: [(95, 45, 185, 135), (85, 135, 195, 235)],
    9: [(90, 45, 190, 140)],
}


def drawn_digit_png(digit: int, side: int = PAD_SIDE) -> bytes:
    """`digit` drawn in black on a white 280×280 canvas, as the drawing page uploads it (or scaled to `side`)."""
    image = Image.new("RGB", (PAD_SIDE, PAD_SIDE), "white")
    draw = ImageDraw.Draw(image)
    for line in STROKES.get(digit, []):
        draw.line(line, fill="black", width=PEN_WIDTH, joint="curve")
    for box in ELLIPSES.get(digit, []):
        draw.ellipse(box, outline="black", width=PEN_WIDTH)
    if side != PAD_SIDE:
        image = image.resize((side, side), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class Payload:
    """One request body, where it goes, the 28×28 images the service will read, and the answers it must get."""

    body: bytes
    content_type: str
    images: list[np.ndarray]
    path: str = "/predict"
    expected: list[dict[str, Any]] | None = None  # one {"digit", "probabilities"} per image


def upload_body(files: list[tuple[str, bytes]], field_name: str) -> bytes:
    parts = [f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field_name}\"; filename=\"{name}\"\r\n"
             f"Content-Type: image/png\r\n\r\n".encode() + png + b"\r\n" for name, png in files]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def make_payloads(kind: str) -> list[Payload]:
    """The ten drawn digits as request bodies: multipart PNG uploads to /predict (280×280, or the
    largest accepted, 4096×4096, for kind "big-png"), the same digits as JSON pixels, or (kind
    "mixed") uploads, JSON pixels and batches of BATCH_SIZE to /predict/batch in turn."""
    from mnist_keras.inference.images import MAX_IMAGE_PIXELS, image_as_lists, pixels_to_image, preprocess_image_bytes

    side = math.isqrt(MAX_IMAGE_PIXELS) if kind == "big-png" else PAD_SIDE
    multipart = f"multipart/form-data; boundary={BOUNDARY}"
    pngs = [drawn_digit_png(digit, side) for digit in range(NUM_CLASSES)]
    images = [preprocess_image_bytes(png) for png in pngs]
    # JSON pixels are a client's 28×28 image: the service reads them through their own path.
    sent = [image_as_lists(image) for image in images]
    read = [pixels_to_image(pixels) for pixels in sent]
    uploads = [Payload(upload_body([(f"{digit}.png", png)], "file"), multipart, [image])
               for digit, (png, image) in enumerate(zip(pngs, images))]
    pixels = [Payload(json.dumps({"pixels": pixels}).encode(), "application/json", [image])
              for pixels, image in zip(sent, read)]
    if kind == "pixels":
        return pixels
    if kind != "mixed":
        return uploads
    batches = []
    for first in range(NUM_CLASSES):
        digits = [(first + offset) % NUM_CLASSES for offset in range(BATCH_SIZE)]
        if first % 2:
            body = json.dumps({"images": [sent[digit] for digit in digits]}).encode()
            batches.append(Payload(body, "application/json", [read[d] for d in digits], "/predict/batch"))
        else:
            body = upload_body([(f"{digit}.png", pngs[digit]) for digit in digits], "files")
            batches.append(Payload(body, multipart, [images[d] for d in digits], "/predict/batch"))
    return [payload for trio in zip(uploads, pixels, batches) for payload in trio]


def expect_in_process(payloads: list[Payload], run: str) -> str:
    """Fill in each payload's expected answers from the run's model in this process; the predictor's name."""
    from mnist_keras.inference.predictors import load_predictor, predict_images

    predictor = load_predictor(run)
    for payload in payloads:
        payload.expected = [{"digit": record["digit"], "probabilities": record["probabilities"]}
                            for record in predict_images(predictor, payload.images)]
    return predictor.name


def problem_with(answer: bytes, payload: Payload) -> str | None:
    """What is wrong with a 200 answer to `payload`, or None if it is the right answer."""
    try:
        records = json.loads(answer)
    except ValueError:
        return f"answer is not JSON: {answer[:100]!r}"
    if payload.path == "/predict":
        records = [records]
    if not isinstance(records, list) or len(records) != len(payload.expected):
        return f"answer is not {len(payload.expected)} record(s)"
    for record, expected in zip(records, payload.expected):
        if (problem := record_problem(record, expected)) is not None:
            return problem
    return None


def record_problem(record: Any, expected: dict[str, Any]) -> str | None:
    if not isinstance(record, dict) or set(record) != PREDICTION_FIELDS:
        return f"answer has fields {sorted(record) if isinstance(record, dict) else type(record).__name__}"
    if np.asarray(record["image"]).shape != (IMAGE_SIDE, IMAGE_SIDE):
        return "answer's image is not 28x28"
    if record["digit"] != expected["digit"]:
        return f"digit {record['digit']}, expected {expected['digit']}"
    if not np.allclose(record["probabilities"], expected["probabilities"], atol=PROBABILITY_TOLERANCE):
        return f"probabilities {record['probabilities']}, expected {expected['probabilities']}"
    return None


def wait_until_up(url: str, server: subprocess.Popen | None) -> dict:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            if server is not None and server.poll() is not None:
                raise SystemExit(f"the server exited with status {server.returncode} before answering") from None
            if time.monotonic() > deadline:
                raise SystemExit(f"no answer from {url}/healthz within {STARTUP_TIMEOUT_SECONDS} s") from None
            time.sleep(0.2)


@dataclass
class Tally:
    """What the clients saw; list appends are atomic, so the client threads share one."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)


def client_loop(host: str, port: int, payloads: list[Payload], first: int, deadline: float, tally: Tally) -> None:
    """Post the payloads in turn (from `first`) until the deadline on one keep-alive connection."""
    connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_SECONDS)
    index = first
    while time.monotonic() < deadline:
        payload = payloads[index % len(payloads)]
        index += 1
        headers = {"Content-Type": payload.content_type, "Content-Length": str(len(payload.body))}
        started = time.perf_counter()
        try:
            connection.request("POST", payload.path, body=payload.body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as error:
            tally.errors.append(f"{type(error).__name__}: {error}")
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_SECONDS)
            continue
        elapsed = time.perf_counter() - started
        if response.status != 200:
            tally.errors.append(f"HTTP {response.status}: {answer[:200]!r}")
            continue
        tally.latencies.append(elapsed)
        problem = problem_with(answer, payload)
        if problem is not None:
            tally.wrong.append(problem)
    connection.close()


def run_clients(host: str, port: int, payloads: list[Payload], clients: int, seconds: float) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=client_loop, args=(host, port, payloads, number, deadline, tally))
        for number in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


def expect_from_idle_service(host: str, port: int, payloads: list[Payload]) -> None:
    """Each payload once, one at a time: the answers the service gives when idle are the expected ones
    (without RUN); with RUN they must already match the in-process model."""
    connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_SECONDS)
    for number, payload in enumerate(payloads):
        connection.request("POST", payload.path, body=payload.body, headers={"Content-Type": payload.content_type})
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise SystemExit(f"the service does not answer {payload.path} (payload {number}): "
                             f"HTTP {response.status} {answer!r}")
        if payload.expected is None:
            records = json.loads(answer)
            payload.expected = [{"digit": record["digit"], "probabilities": record["probabilities"]}
                                for record in (records if isinstance(records, list) else [records])]
        elif (problem := problem_with(answer, payload)) is not None:
            raise SystemExit(f"the idle service answers payload {number} wrongly: {problem}")
    connection.close()


class MemoryWatch:
    """Samples a process's resident memory, with its children's (the workers), in a background thread;
    `peak` is the largest sample."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.peak = self.now()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def now(self) -> int:
        import psutil

        total = 0
        for process in [self.process, *self.process.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:  # a worker being replaced
                pass
        return total

    def sample(self) -> None:
        while not self.stopped.wait(MEMORY_SAMPLE_SECONDS):
            self.peak = max(self.peak, self.now())

    def stop(self) -> int:
        """Stop sampling; the final resident memory."""
        self.stopped.set()
        self.thread.join()
        final = self.now()
        self.peak = max(self.peak, final)
        return final


def run_load(url: str, clients: int, seconds: float, warm_up: float, payloads: list[Payload],
             pid: int | None) -> dict[str, Any]:
    """Drive `url`/predict with `clients` concurrent clients for `seconds` after a concurrent warm-up."""
    parsed = urllib.parse.urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    expect_from_idle_service(host, port, payloads)
    # Threads, connections and allocator pools grow on first use: memory is measured after that.
    warm = run_clients(host, port, payloads, clients, warm_up)
    watch = MemoryWatch(pid) if pid is not None else None
    start_memory = watch.now() if watch else None

    started = time.perf_counter()
    tally = run_clients(host, port, payloads, clients, seconds)
    elapsed = time.perf_counter() - started
    end_memory = watch.stop() if watch else None

    milliseconds = np.asarray(tally.latencies) * 1000
    answered = len(tally.latencies)
    megabytes = (lambda value: None if value is None else round(value / MEGABYTE, 1))
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "warm_up_seconds": warm_up,
        "requests": answered,
        "requests_per_second": round(answered / elapsed, 1),
        **{f"p{percentile}_ms": round(float(np.percentile(milliseconds, percentile)), 1) if answered else None
           for percentile in PERCENTILES},
        "errors": len(tally.errors) + len(warm.errors),
        "wrong_answers": len(tally.wrong) + len(warm.wrong),
        "first_errors": (warm.errors + tally.errors + warm.wrong + tally.wrong)[:MAX_ERRORS_KEPT],
        "memory_start_mb": megabytes(start_memory),
        "memory_peak_mb": megabytes(watch.peak if watch else None),
        "memory_end_mb": megabytes(end_memory),
        "memory_growth_mb": megabytes(end_memory - start_memory) if watch else None,
        "machine": harness.machine_line(python=True),
    }


def start_server(run: str, workers: int) -> tuple[subprocess.Popen, str]:
    """`mnist-keras serve RUN --workers N` on a free loopback port: the process and its URL."""
    port = harness.free_port()
    source = str(Path(__file__).resolve().parents[1] / "src")
    python_path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    server = subprocess.Popen(
        [sys.executable, "-m", "mnist_keras.cli", "serve", run, "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": python_path},
    )
    return server, f"http://127.0.0.1:{port}"


def print_results(results: dict) -> None:
    print(f"service      {results['url']} ({results['predictor']} predictor, {results['workers']} worker(s)), "
          f"payload {results['payload']}")
    print(f"machine      {results['machine']}")
    print(f"clients      {results['clients']} for {results['seconds']} s (after {results['warm_up_seconds']} s warm-up)")
    print(f"requests     {results['requests']} ({results['requests_per_second']} requests/s)")
    print(f"latency      p50 {results['p50_ms']} ms, p90 {results['p90_ms']} ms, p99 {results['p99_ms']} ms")
    first_error = f" (first: {results['first_errors'][0]})" if results["first_errors"] else ""
    print(f"errors       {results['errors']}, wrong answers {results['wrong_answers']}{first_error}")
    if results["memory_start_mb"] is not None:
        print(f"server RSS   start {results['memory_start_mb']} MB, peak {results['memory_peak_mb']} MB, "
              f"end {results['memory_end_mb']} MB (growth {results['memory_growth_mb']:+} MB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="?", metavar="RUN",
                        help="run directory: served (unless --url is given) and read in-process for the expected answers")
    parser.add_argument("--url", help="an already running service, e.g. http://127.0.0.1:8000")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, to watch its memory")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to drive the service (default 10)")
    parser.add_argument("--warm-up", type=float, default=2.0,
                        help="seconds of concurrent load before measuring (default 2)")
    parser.add_argument("--payload", choices=("png", "pixels", "big-png", "mixed"), default="png",
                        help="uploaded 280x280 PNGs (default, like the drawing page), JSON pixels, 4096x4096 "
                             "PNGs (the largest accepted: the most decoding memory per request), or mixed: "
                             f"uploads, JSON pixels and batches of {BATCH_SIZE} in turn")
    parser.add_argument("--workers", type=int, default=1, help="with RUN: serve with this many workers (default 1)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args(argv)
    if args.run is None and args.url is None:
        parser.error("give RUN (to start a server), --url (to use a running one), or both")
    if args.clients < 1 or args.seconds <= 0 or args.warm_up < 0 or args.workers < 1:
        parser.error("--clients and --workers must be at least 1, --seconds positive and --warm-up not negative")

    payloads = make_payloads(args.payload)
    predictor = expect_in_process(payloads, args.run) if args.run else None
    server, url, pid = None, args.url, args.pid
    if url is None:
        server, url = start_server(args.run, args.workers)
        pid = server.pid
    try:
        health = wait_until_up(url, server)
        results = {"url": url, "predictor": health.get("predictor", predictor), "payload": args.payload,
                   "workers": args.workers if server is not None else None,
                   **run_load(url, args.clients, args.seconds, args.warm_up, payloads, pid)}
    finally:
        if server is not None:
            server.terminate()  # SIGTERM: a graceful shutdown, which must exit 0
            results_code = server.wait(timeout=60)
    if server is not None and results_code != 0:
        results["errors"] += 1
        results["first_errors"].append(f"the server exited {results_code} after SIGTERM")

    print_results(results)
    if args.json:
        harness.write_json(args.json, results)
    return 0 if results["errors"] == 0 and results["wrong_answers"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
