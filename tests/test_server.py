"""The service as an operator runs it: `mnist-keras serve` in its own process, on a loopback port.

Slow and silent clients are cut off within the bound while others are served;
SIGTERM finishes every accepted request and exits 0, and under load from 16
clients loses no request that got a connection; two workers share the port
and `/metrics` sums them; JSON access logs; the default number of workers is
the number of cores the process may use. In-process: closing the port answers
the connections in its backlog; headers over the bound get 431; the API token
and the metrics' content.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
import uvicorn
from fakes import serving_in_thread
from fastapi.testclient import TestClient

from mnist_keras.serving.app import create_app
from mnist_keras.serving.metrics import AccessText, JsonLines
from mnist_keras.serving.server import MAX_HEADER_BYTES, DeadlineProtocol, close_listeners

STARTUP_SECONDS = 120
REQUEST_TIMEOUT = 1.5
IDLE_TIMEOUT = 1.0
SLACK_SECONDS = 2.0  # scheduling on a loaded two-core machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def digit_pixels() -> list[list[float]]:
    pixels = np.zeros((28, 28))
    pixels[4:24, 13:15] = 1.0
    return pixels.tolist()


class Server:
    """`mnist-keras serve` in a child process; stopped by its own pid only."""

    def __init__(self, run: Path, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mnist_keras.cli", "serve", str(run), "--port", str(self.port), *flags],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
        )
        self.reader = threading.Thread(target=self.read_output, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("the server did not start:\n" + "".join(self.log))
            time.sleep(0.2)

    def read_output(self) -> None:
        for line in self.process.stdout:
            self.log.append(line)

    def terminate(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=5)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def serving(tiny_run) -> Iterator[Server]:
    server = Server(tiny_run, "--request-timeout", str(REQUEST_TIMEOUT), "--idle-timeout", str(IDLE_TIMEOUT))
    yield server
    server.stop()


def closed_after(connection: socket.socket, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closed `connection` (or `limit`), and what it sent before closing."""
    started = time.monotonic()
    connection.settimeout(limit)
    received = b""
    try:
        while chunk := connection.recv(4096):
            received += chunk
    except TimeoutError:
        return limit, received
    except ConnectionResetError:
        pass
    return time.monotonic() - started, received


def test_stalled_clients_are_cut_off_while_others_are_served(serving):
    silent = [socket.create_connection(("127.0.0.1", serving.port)) for _ in range(8)]
    half_headers = [socket.create_connection(("127.0.0.1", serving.port)) for _ in range(8)]
    half_bodies = [socket.create_connection(("127.0.0.1", serving.port)) for _ in range(8)]
    for connection in half_headers:
        connection.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n")
    for connection in half_bodies:
        connection.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                           b"content-length: 5000\r\n\r\n{\"pixels\": [0.0, ")
    # Meanwhile a normal client is answered at once.
    answer = httpx.post(serving.url + "/predict", json={"pixels": digit_pixels()}, timeout=10)
    assert answer.status_code == 200
    limit = REQUEST_TIMEOUT + SLACK_SECONDS
    with ThreadPoolExecutor(len(silent) * 3) as pool:
        silent_results = list(pool.map(lambda c: closed_after(c, limit), silent))
        header_results = list(pool.map(lambda c: closed_after(c, limit), half_headers))
        body_results = list(pool.map(lambda c: closed_after(c, limit), half_bodies))
    for seconds, received in silent_results:
        assert seconds < IDLE_TIMEOUT + SLACK_SECONDS and received == b""
    for seconds, received in header_results + body_results:
        assert seconds < limit
        assert received.startswith(b"HTTP/1.1 408"), received
        assert json.loads(received.split(b"\r\n\r\n", 1)[1])["error"].startswith("request not received whole")
    for connection in silent + half_headers + half_bodies:
        connection.close()
    assert httpx.get(serving.url + "/healthz", timeout=5).status_code == 200
    assert serving.terminate() == 0


def test_sigterm_finishes_every_accepted_request(serving):
    body = json.dumps({"images": [digit_pixels()] * 16}).encode()

    def slow_request(_: int) -> int:
        # Accepted and half sent when SIGTERM arrives; the rest follows within the request timeout.
        with socket.create_connection(("127.0.0.1", serving.port)) as connection:
            connection.sendall(b"POST /predict/batch HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                               b"content-length: %d\r\n\r\n" % len(body) + body[:100])
            time.sleep(0.8)
            connection.sendall(body[100:])
            connection.settimeout(30)
            received = b""
            while chunk := connection.recv(65536):
                received += chunk
            return int(received.split(b" ", 2)[1])

    with ThreadPoolExecutor(12) as pool:
        answers = pool.map(slow_request, range(12))
        time.sleep(0.4)
        code = serving.terminate()
        statuses = list(answers)
    assert statuses == [200] * 12
    assert code == 0
    with pytest.raises(httpx.TransportError):  # and it no longer accepts
        httpx.get(serving.url + "/healthz", timeout=2)


LOAD_CLIENTS = 16
ANSWERS_BEFORE_SIGTERM = 200  # mid-load: every client is busy when the signal arrives
DRAIN_PERIOD = 2.0  # long enough to see /healthz answer 503 on a loaded machine
CONNECT_TIMEOUT = 15.0  # a connection attempt after the port closes is refused, or times out: never lost work


def hammer(port: int, keep_alive: bool, answers: list, errors: list) -> None:
    """POST /predict until the server stops taking connections: each answer's time and status in `answers`,
    each request that had a connection but no answer in `errors`. `keep_alive` reuses a connection until
    the server says it closes it; otherwise every request gets a new connection."""
    body = json.dumps({"pixels": digit_pixels()})
    connection = None
    while True:
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=CONNECT_TIMEOUT)
            try:
                connection.connect()
            except OSError:  # refused (or never answered): no connection, so nothing was lost
                return
        try:
            connection.request("POST", "/predict", body, {"content-type": "application/json"})
            response = connection.getresponse()
            response.read()
            answers.append((time.monotonic(), response.status))
        except (OSError, http.client.HTTPException) as error:
            errors.append(f"{'kept-alive' if keep_alive else 'new'} connection: {error!r}")
            connection.close()
            return
        if not keep_alive or response.will_close:
            connection.close()
            connection = None


def health_while_draining(port: int) -> tuple[int, dict] | None:
    """/healthz on new connections, from SIGTERM until it is no longer 200: its status and body, or None if
    the port closed first."""
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=CONNECT_TIMEOUT)
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            answer = response.status, json.loads(response.read())
        except OSError:
            return None
        finally:
            connection.close()
        if answer[0] != 200:
            return answer
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_answers_every_connection(tiny_run, workers):
    server = Server(tiny_run, "--drain-period", str(DRAIN_PERIOD), "--workers", str(workers))
    answers, errors = [], []
    try:
        clients = [threading.Thread(target=hammer, args=(server.port, index % 2 == 0, answers, errors))
                   for index in range(LOAD_CLIENTS)]
        for client in clients:
            client.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while len(answers) < ANSWERS_BEFORE_SIGTERM and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        health = health_while_draining(server.port)
        code = server.wait()
        for client in clients:
            client.join(timeout=CONNECT_TIMEOUT * 2)
    finally:
        server.stop()
    assert errors == [], "".join(server.log[-40:])
    assert len(answers) > ANSWERS_BEFORE_SIGTERM and {status for _, status in answers} == {200}
    assert any(when > signalled + DRAIN_PERIOD / 2 for when, _ in answers)  # still served while draining
    assert health is not None and health[0] == 503 and "shutting down" in health[1]["error"]
    assert code == 0
    assert not any(client.is_alive() for client in clients)


def test_two_workers_share_the_port_and_the_metrics(tiny_run):
    server = Server(tiny_run, "--workers", "2", "--access-log", "json")
    try:
        sent = 40
        for _ in range(sent):  # a new connection each: the kernel spreads them over both workers
            with httpx.Client() as client:
                assert client.post(server.url + "/predict", json={"pixels": digit_pixels()}).status_code == 200
        scrape = httpx.get(server.url + "/metrics").text
        counted = sum(float(line.rsplit(" ", 1)[1]) for line in scrape.splitlines()
                      if line.startswith("mnist_keras_requests_total{") and 'route="/predict"' in line)
        assert counted == sent
        assert server.terminate() == 0
    finally:
        server.stop()
    access = [json.loads(line) for line in server.log if line.startswith("{") and '"path"' in line]
    predictions = [line for line in access if line["path"] == "/predict"]
    assert len(predictions) == sent and {line["status"] for line in predictions} == {200}
    assert len({line["pid"] for line in predictions}) == 2


def test_serve_refuses_bad_timeouts_and_workers(tiny_run):
    from mnist_keras.cli import main

    for flags in (["--workers", "0"], ["--request-timeout", "0"], ["--idle-timeout", "inf"],
                  ["--graceful-timeout", "soon"], ["--access-log", "xml"]):
        with pytest.raises(SystemExit) as caught:
            main(["serve", str(tiny_run), *flags])
        assert caught.value.code == 2


# ---------------------------------------------------------------- in process: closing the port


QUEUED_CONNECTIONS = 20


class Greeting(asyncio.Protocol):
    """Says hello on each connection it is given, and closes it."""

    def connection_made(self, transport) -> None:
        transport.write(b"hello")
        transport.close()


def queued_clients(port: int) -> list[socket.socket]:
    """Connections made while the event loop is busy (this call blocks it): they wait in the backlog."""
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(QUEUED_CONNECTIONS)]


def heard(client: socket.socket) -> bytes:
    try:
        return client.recv(16)
    except ConnectionResetError:
        return b"reset"
    finally:
        client.close()


def test_closing_the_port_answers_every_connection_waiting_in_the_backlog():
    async def scenario() -> tuple[list[bytes], list[bytes], bool]:
        loop = asyncio.get_running_loop()
        # What closing at once does (uvicorn's own shutdown): every queued connection is reset.
        plain = await loop.create_server(Greeting, "127.0.0.1", 0, backlog=2 * QUEUED_CONNECTIONS)
        clients = queued_clients(plain.sockets[0].getsockname()[1])
        plain.close()
        dropped = [heard(client) for client in clients]
        # close_listeners first takes in what is queued, then closes.
        server = await loop.create_server(Greeting, "127.0.0.1", 0, backlog=2 * QUEUED_CONNECTIONS)
        port = server.sockets[0].getsockname()[1]
        clients = queued_clients(port)
        await close_listeners([server], deadline=loop.time() + STARTUP_SECONDS)
        kept = await asyncio.gather(*(asyncio.to_thread(heard, client) for client in clients))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            refused = False
        except ConnectionRefusedError:
            refused = True
        return dropped, kept, refused

    dropped, kept, refused = asyncio.run(scenario())
    assert dropped == [b"reset"] * QUEUED_CONNECTIONS
    assert kept == [b"hello"] * QUEUED_CONNECTIONS
    assert refused  # and the port is closed afterwards


# ---------------------------------------------------------------- in process: the bound on headers


@pytest.fixture
def deadline_server() -> Iterator[int]:
    """uvicorn serving the app on a free loopback port with our protocol, in a thread of this process: its port."""
    config = uvicorn.Config(create_app(Constant(CONFIDENT_ONE)), host="127.0.0.1", port=free_port(),
                            http=partial(DeadlineProtocol, request_timeout=STARTUP_SECONDS), loop="auto",
                            lifespan="on", log_level="warning")
    with serving_in_thread(config, STARTUP_SECONDS):
        yield config.port


def exchange(port: int, request: bytes) -> bytes:
    """Send `request` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=STARTUP_SECONDS) as connection:
        connection.sendall(request)
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except ConnectionResetError:  # closed with part of the request unread
            pass
    return received


def get_with_headers(headers: list[tuple[str, str]]) -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}Connection: close\r\n\r\n".encode()


def test_headers_over_the_bound_get_431_as_json_and_a_closed_connection(deadline_server):
    room = MAX_HEADER_BYTES - 200  # the request line, Host and Connection fit in what is left
    within = [("X-Padding", "a" * room)]
    one_too_large = [("X-Padding", "a" * (MAX_HEADER_BYTES + 1))]
    many_small = [(f"X-Part-{index}", "b" * 100) for index in range(MAX_HEADER_BYTES // 100 + 1)]
    answered = exchange(deadline_server, get_with_headers(within))
    assert answered.startswith(b"HTTP/1.1 200 ") and b'"status":"ok"' in answered
    for headers in (one_too_large, many_small):
        refused = exchange(deadline_server, get_with_headers(headers))
        head, _, body = refused.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431 "), refused[:200]
        assert b"content-type: application/json" in head.lower() and b"connection: close" in head.lower()
        assert json.loads(body) == {"error": f"request headers are over the limit of {MAX_HEADER_BYTES:,} bytes"}


# ---------------------------------------------------------------- the default number of workers


def default_workers_with_cores(cores: set[int]) -> int:
    """The serve command's default --workers in a child process that may run on `cores` only."""
    code = "from mnist_keras.serving.settings import defaults; print(defaults()['workers'])"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, cores),
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}).stdout
    return int(output)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_the_default_worker_count_is_the_cores_the_process_may_use():
    ours = sorted(os.sched_getaffinity(0))
    assert default_workers_with_cores({ours[0]}) == 1
    assert default_workers_with_cores(set(ours)) == len(ours)
    if len(ours) > 2:
        assert default_workers_with_cores(set(ours[:2])) == 2


# ---------------------------------------------------------------- in process: token and metrics


class Constant:
    """A predictor that always answers the same ten probabilities."""

    name = "constant"

    def __init__(self, probabilities: list[float]) -> None:
        self.probabilities = np.array([probabilities], dtype=np.float32)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        return np.repeat(self.probabilities, len(pixels), axis=0)


CONFIDENT_ONE = [0.001] * 10
CONFIDENT_ONE[1] = 0.991


def test_api_token_guards_the_api_but_not_the_page_or_health():
    client = TestClient(create_app(Constant(CONFIDENT_ONE), api_token="s3cret-token"))
    pixels = {"pixels": digit_pixels()}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"},
                    {"Authorization": "Bearer s3cret-token "}):
        refused = client.post("/predict", json=pixels, headers=headers)
        assert refused.status_code == 401 and "API token" in refused.json()["error"]
        assert refused.headers["www-authenticate"] == "Bearer"
        assert client.get("/metrics", headers=headers).status_code == 401
    good = {"Authorization": "Bearer s3cret-token"}
    assert client.post("/predict", json=pixels, headers=good).json()["digit"] == 1
    assert client.post("/predict/batch", json={"images": [digit_pixels()]}, headers=good).status_code == 200
    assert client.get("/metrics", headers=good).status_code == 200
    for path in ("/", "/healthz", "/about", "/static/app.js", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    # Without a token nothing is guarded.
    assert TestClient(create_app(Constant(CONFIDENT_ONE))).post("/predict", json=pixels).status_code == 200


def metric_value(scrape: str, name: str, **labels: str) -> float:
    for line in scrape.splitlines():
        if line.startswith(name + "{") and all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} is not in the scrape")


def test_metrics_count_requests_outcomes_and_name_the_model():
    client = TestClient(create_app(Constant(CONFIDENT_ONE)))
    flat_grey = [[0.5] * 28] * 28
    client.post("/predict", json={"pixels": digit_pixels()})
    client.post("/predict/batch", json={"images": [digit_pixels(), flat_grey]})
    client.post("/predict", json={"pixels": [[0.0] * 28] * 28})  # blank: refused
    client.get("/nowhere")
    scrape = client.get("/metrics")
    assert scrape.headers["content-type"].startswith("text/plain")
    text = scrape.text
    assert metric_value(text, "mnist_keras_requests_total", route="/predict", status="200") == 1
    assert metric_value(text, "mnist_keras_requests_total", route="/predict", status="422") == 1
    assert metric_value(text, "mnist_keras_requests_total", route="/predict/batch", status="200") == 1
    assert metric_value(text, "mnist_keras_requests_total", route="other", status="404") == 1
    assert metric_value(text, "mnist_keras_images_total", outcome="digit") == 2
    assert metric_value(text, "mnist_keras_images_total", outcome="not_digit") == 1
    assert metric_value(text, "mnist_keras_images_total", outcome="refused") == 1
    assert metric_value(text, "mnist_keras_request_duration_seconds_count", route="/predict") == 2
    assert metric_value(text, "mnist_keras_model_info", predictor="constant") == 1


def test_about_names_the_run_that_answers(tiny_run):
    about = TestClient(create_app(tiny_run)).get("/about").json()
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert about["run"] == tiny_run.name
    assert about["model"] == "mlp"
    assert about["test_accuracy"] == metrics["test_accuracy"]
    assert about["predictor"] in ("onnxruntime", "keras")


def test_json_access_lines_are_one_object_each():
    record = logging.LogRecord("mnist_keras.access", logging.INFO, __file__, 1, "", None, None)
    record.access = {"method": "GET", "path": "/healthz", "status": 200}
    line = json.loads(JsonLines().format(record))
    assert line["path"] == "/healthz" and line["status"] == 200 and line["level"] == "info"
    message = logging.LogRecord("mnist_keras", logging.WARNING, __file__, 1, "slow %s", ("client",), None)
    assert json.loads(JsonLines().format(message))["message"] == "slow client"


def test_json_access_lines_keep_text_that_is_not_utf8():
    message = logging.LogRecord("mnist_keras", logging.WARNING, __file__, 1, "file %s", ("caf\udce9.png",), None)
    assert json.loads(JsonLines().format(message))["message"] == "file caf\udce9.png"


@pytest.mark.parametrize("use_colors", [False, True])
def test_text_access_lines_are_uvicorns_own(use_colors):
    from uvicorn.config import LOGGING_CONFIG
    from uvicorn.logging import AccessFormatter

    line_format = LOGGING_CONFIG["formatters"]["access"]["fmt"]
    ours, uvicorns = (formatter(fmt=line_format, use_colors=use_colors) for formatter in (AccessText, AccessFormatter))
    for level, args in [(logging.INFO, ("127.0.0.1:5555", "POST", "/predict", "1.1", 200)),
                        (logging.INFO, ("10.0.0.2:80", "GET", "/static/app.js?v=2", "1.0", 404)),
                        (logging.WARNING, (None, "GET", "/caf%C3%A9", "1.1", 599)),
                        (logging.INFO, ("127.0.0.1:1", "HEAD", "/", "1.1", 431))]:
        record = logging.LogRecord("uvicorn.access", level, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None)
        before = dict(record.__dict__)
        line = ours.format(record)
        assert record.__dict__ == {**before, "message": record.getMessage()}  # only what logging itself adds
        assert line == uvicorns.format(record) and str(args[1]) in line
        assert ours.format(record) == line  # the status text, once remembered, is the same
