"""Load test for the prediction service: N concurrent clients drive POST /predict on loopback for a bounded time.

    python benchmarks/load.py RUN --clients 16 --seconds 10 [--json results.json]
    python benchmarks/load.py --url http://127.0.0.1:8000 --clients 16 --seconds 10

Without --url it starts `mnist-keras serve RUN` on a free loopback port and
stops it afterwards. Each client keeps one HTTP/1.1 connection and posts, one
after another, what the drawing page posts: a 280×280 PNG of a hand-drawn
digit (or, with --payload pixels, 784 JSON pixels). Prints requests/s, p50,
p90 and p99 latency and the error count (any answer but 200, or a failed
connection); exits 1 if there were errors.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mnist_keras.constants import IMAGE_SIDE

BOUNDARY = "mnist-keras-load-boundary"
STARTUP_TIMEOUT_SECONDS = 180
REQUEST_TIMEOUT_SECONDS = 30
WARM_UP_REQUESTS = 5
PAD_SIDE = 280  # the drawing page's canvas
PERCENTILES = (50, 90, 99)


def drawn_digit_png() -> bytes:
    """A 7 drawn on a white 280×280 canvas, as the drawing page uploads it."""
    image = Image.new("RGB", (PAD_SIDE, PAD_SIDE), "white")
    ImageDraw.Draw(image).line([(75, 55), (205, 55), (115, 235)], fill="black", width=18, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def request_body(payload: str) -> tuple[bytes, str]:
    """(body, content type) of one /predict request."""
    if payload == "pixels":
        pixels = np.zeros((IMAGE_SIDE, IMAGE_SIDE))
        pixels[4:24, 13:16] = 1.0  # a "1"
        return json.dumps({"pixels": pixels.tolist()}).encode(), "application/json"
    png = drawn_digit_png()
    body = (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"digit.png\"\r\n"
        f"Content-Type: image/png\r\n\r\n"
    ).encode() + png + f"\r\n--{BOUNDARY}--\r\n".encode()
    return body, f"multipart/form-data; boundary={BOUNDARY}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


def client_loop(host: str, port: int, body: bytes, content_type: str, deadline: float,
                latencies: list[float], errors: list[str]) -> None:
    """Post until the deadline on one keep-alive connection, recording each latency or error."""
    headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
    connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_SECONDS)
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            connection.request("POST", "/predict", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as error:
            errors.append(f"{type(error).__name__}: {error}")
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_SECONDS)
            continue
        elapsed = time.perf_counter() - started
        if response.status != 200:
            errors.append(f"HTTP {response.status}: {answer[:200]!r}")
        else:
            latencies.append(elapsed)
    connection.close()


def run_load(url: str, clients: int, seconds: float, payload: str) -> dict:
    """Drive `url`/predict with `clients` concurrent clients for `seconds`; the measured figures."""
    parsed = urllib.parse.urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    body, content_type = request_body(payload)
    warm_up_errors: list[str] = []
    client_loop(host, port, body, content_type, time.monotonic() + 1, [], warm_up_errors)
    if warm_up_errors:
        raise SystemExit(f"the service does not answer /predict: {warm_up_errors[0]}")

    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds
    started = time.perf_counter()
    threads = [
        threading.Thread(target=client_loop, args=(host, port, body, content_type, deadline, latencies, errors))
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    milliseconds = np.asarray(latencies) * 1000
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "payload": payload,
        "requests": len(latencies),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        **{f"p{percentile}_ms": round(float(np.percentile(milliseconds, percentile)), 1) if len(latencies) else None
           for percentile in PERCENTILES},
        "errors": len(errors),
        "first_errors": errors[:3],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU, {platform.system()} {platform.release()}, "
                   f"Python {platform.python_version()}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="?", metavar="RUN", help="run directory to serve (unless --url is given)")
    parser.add_argument("--url", help="an already running service, e.g. http://127.0.0.1:8000")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to drive the service (default 10)")
    parser.add_argument("--payload", choices=("png", "pixels"), default="png",
                        help="an uploaded 280x280 PNG (default, like the drawing page) or JSON pixels")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args(argv)
    if (args.run is None) == (args.url is None):
        parser.error("give either RUN (to start a server) or --url (to use a running one)")
    if args.clients < 1 or args.seconds <= 0:
        parser.error("--clients must be at least 1 and --seconds positive")

    server = None
    url = args.url
    if url is None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        source = str(Path(__file__).resolve().parents[1] / "src")
        python_path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
        environment = {**os.environ, "PYTHONPATH": python_path}
        server = subprocess.Popen(
            [sys.executable, "-m", "mnist_keras.cli", "serve", args.run, "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment,
        )
    try:
        health = wait_until_up(url, server)
        results = {"url": url, "predictor": health.get("predictor"),
                   **run_load(url, args.clients, args.seconds, args.payload)}
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)

    print(f"service      {results['url']} ({results['predictor']} predictor), payload {results['payload']}")
    print(f"machine      {results['machine']}")
    print(f"clients      {results['clients']} for {results['seconds']} s")
    print(f"requests     {results['requests']} ({results['requests_per_second']} requests/s)")
    print(f"latency      p50 {results['p50_ms']} ms, p90 {results['p90_ms']} ms, p99 {results['p99_ms']} ms")
    first_error = f" (first: {results['first_errors'][0]})" if results["errors"] else ""
    print(f"errors       {results['errors']}{first_error}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0 if results["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
