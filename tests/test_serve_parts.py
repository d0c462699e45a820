"""The service's parts on their own: the route table, limits, the decode pool, body parsing, the Service
dependency, the middlewares."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import UploadFile
from starlette.requests import Request

from mnist_keras.constants import NUM_CLASSES, NUM_PIXELS
from mnist_keras.serving import routes
from mnist_keras.serving.app import create_app
from mnist_keras.serving.bodies import RequestProblem, read_json_body, unsupported, upload_bytes
from mnist_keras.serving.handlers import current_service
from mnist_keras.serving.metrics import ServiceMetrics
from mnist_keras.serving.middleware import CloseWhileDraining
from mnist_keras.serving.service import JSON_BYTES_PER_NUMBER, DecodePool, Readiness, Service, ServiceLimits


def request_with(body: bytes, content_type: str = "application/json") -> Request:
    """A Starlette request whose body is `body`, as the ASGI server would hand it over."""
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [(b"content-type", content_type.encode())]}
    return Request(scope, receive)


def run(coroutine):
    return asyncio.run(coroutine)


def test_json_limit_is_a_full_batch_of_pixels():
    limits = ServiceLimits(max_batch_images=3)
    assert limits.max_json_bytes == 3 * NUM_PIXELS * JSON_BYTES_PER_NUMBER


def test_decode_pool_runs_work_on_its_own_threads():
    pool = DecodePool(workers=2)
    try:
        name = run(pool.run(lambda: threading.current_thread().name))
        assert name.startswith("mnist-keras-decode")
    finally:
        pool.shutdown()


def test_json_body_parsing():
    assert run(read_json_body(request_with(json.dumps({"pixels": [1, 2]}).encode()), "pixels", 1000)) == [1, 2]
    cases = [
        (b"x" * 2000, 413, "over the limit"),
        (b"{not json", 422, "not valid JSON"),
        (json.dumps([1, 2]).encode(), 422, "object with the key 'pixels'"),
        (b"[" * 100_000 + b"]" * 100_000, 422, "JSON"),
    ]
    for body, status, message in cases:
        with pytest.raises(RequestProblem, match=message) as caught:
            run(read_json_body(request_with(body), "pixels", max_bytes=1000 if status == 413 else 10**7))
        assert caught.value.status_code == status


def test_uploads_must_be_files_within_the_limit():
    import io

    upload = UploadFile(io.BytesIO(b"12345"), filename="digit.png")
    assert run(upload_bytes(upload, "file", 5)) == b"12345"
    too_big = UploadFile(io.BytesIO(b"123456"), filename="digit.png")
    with pytest.raises(RequestProblem) as caught:
        run(upload_bytes(too_big, "file", 5))
    assert caught.value.status_code == 413
    with pytest.raises(RequestProblem) as caught:
        run(upload_bytes("just text", "file", 5))
    assert caught.value.status_code == 422


def test_unsupported_content_type_names_what_to_send():
    problem = unsupported(request_with(b"", "text/plain"), "file", "pixels")
    assert problem.status_code == 415 and "'text/plain'" in str(problem) and "'pixels'" in str(problem)


# ---------------------------------------------------------------- the route table


class Uniform:
    """A predictor that answers the same probability for every digit."""

    name = "uniform"

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        return np.full((len(pixels), NUM_CLASSES), 1 / NUM_CLASSES, dtype=np.float32)


def test_open_paths_and_reading_routes_come_from_the_table():
    assert routes.OPEN_PATHS == {"/", "/healthz", "/about", "/docs", "/redoc", "/openapi.json"}
    assert routes.OPEN_PREFIXES == ("/static/", "/static-offline-docs/")
    assert routes.READING_ROUTES == ("/predict", "/predict/batch", "/read")
    for path in ("/", "/healthz", "/static/app.js", "/static-offline-docs/swagger-ui.css"):
        assert routes.is_open_path(path), path
    for path in ("/predict", "/predict/batch", "/metrics", "/docs/oauth2-redirect", "/static", "/nowhere"):
        assert not routes.is_open_path(path), path


def test_metrics_label_a_request_by_its_route_never_its_raw_path():
    assert routes.route_label("/predict") == "/predict"
    assert routes.route_label("/static/app.js") == "/static"
    assert routes.route_label("/static-offline-docs/redoc.js") == "/static-offline-docs"
    for invented in ("/static", "/predict/", "/predict/batch/x", "/nowhere", "/static-extra/x"):
        assert routes.route_label(invented) == routes.OTHER_ROUTE, invented
    assert len({route.path for route in routes.ROUTES}) == len(routes.ROUTES)  # one entry per path


def test_the_app_answers_exactly_the_routes_in_the_table():
    app = create_app(Uniform())
    served = {route.path: set(getattr(route, "methods", None) or ()) for route in app.routes}
    assert served == {route.path: set(route.methods) if not route.files else set() for route in routes.ROUTES}


# ---------------------------------------------------------------- the Service, as the handlers get it


def test_handlers_reach_the_service_through_the_dependency():
    app = create_app(Uniform())
    client = TestClient(app)
    assert client.get("/healthz").json() == {"status": "ok", "predictor": "uniform"}
    assert asyncio.run(current_service(Request({"type": "http", "app": app}))) is app.state.service
    # A stand-in Service, given to every handler by overriding the one dependency.
    other = Service(Uniform(), {"run": "stand-in"}, ServiceLimits(), ServiceMetrics(), Readiness())
    app.dependency_overrides[current_service] = lambda: other
    assert client.get("/about").json() == {"run": "stand-in"}


def test_a_draining_service_says_not_ready_and_closes_each_connection():
    readiness = Readiness()
    client = TestClient(create_app(Uniform(), readiness=readiness))
    assert client.get("/healthz").status_code == 200
    assert "connection" not in client.get("/about").headers
    readiness.drain()
    health = client.get("/healthz")
    assert health.status_code == 503 and "shutting down" in health.json()["error"]
    assert health.headers["connection"] == "close"
    # It still answers everything else, each answer closing its connection.
    answer = client.post("/predict", json={"pixels": [[0.0] * 27 + [1.0]] * 28})
    assert answer.status_code == 200 and answer.headers["connection"] == "close"


def test_close_while_draining_adds_the_header_once_it_drains():
    def answering(headers):
        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
        return app

    def headers_sent(app) -> list:
        sent = []

        async def send(message):
            sent.append(message)

        run(app({"type": "http"}, None, send))
        return sent[0]["headers"]

    readiness = Readiness()
    plain = CloseWhileDraining(answering([(b"content-type", b"text/plain")]), readiness)
    closing = CloseWhileDraining(answering([(b"connection", b"close")]), readiness)
    assert headers_sent(plain) == [(b"content-type", b"text/plain")]
    readiness.drain()
    assert headers_sent(plain) == [(b"content-type", b"text/plain"), (b"connection", b"close")]
    assert headers_sent(closing) == [(b"connection", b"close")]


def test_about_carries_the_not_a_digit_threshold_and_its_cost(tmp_path):
    from mnist_keras.inference.decision import NOT_DIGIT_THRESHOLD
    from mnist_keras.serving.service import describe_source

    (tmp_path / "metrics.json").write_text(json.dumps({"test_accuracy": 0.9955, "test_refused": 4,
                                                       "test_accuracy_with_refusals": 0.9951}))
    about = describe_source(tmp_path, predictor=object())
    assert about["not_digit_threshold"] == NOT_DIGIT_THRESHOLD
    assert (about["test_refused"], about["test_accuracy_with_refusals"]) == (4, 0.9951)
