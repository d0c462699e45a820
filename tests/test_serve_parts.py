"""The service's parts on their own: the route table, limits, the decode pool, body parsing, the Service
dependency, the middlewares."""

from __future__ import annotations

import asyncio
import json
import math
import threading

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import UploadFile
from starlette.requests import Request

from mnist_keras.constants import NUM_CLASSES, NUM_PIXELS
from mnist_keras.inference.images import pixels_to_image
from mnist_keras.serving import routes
from mnist_keras.serving.app import create_app
from mnist_keras.serving.bodies import RequestProblem, parse_json, read_json_body, unsupported, upload_bytes
from mnist_keras.serving.handlers import answer_soon, current_service
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


# What orjson turns down and the standard library reads: NaN and infinities, numbers beyond a double's
# range, UTF-16 and UTF-32 text, a UTF-8 byte-order mark, and lone surrogates.
ONLY_THE_STANDARD_LIBRARY_READS = [
    b'{"pixels": [NaN, Infinity, -Infinity, 0.5]}',
    b'{"pixels": [' + b"1" + b"0" * 400 + b", 0.5]}",
    b'{"pixels": [1e400, 0.5]}',
    '{"pixels": [0.25, 1]}'.encode("utf-16"),
    '{"pixels": [0.25, 1]}'.encode("utf-32-le"),
    b'\xef\xbb\xbf{"pixels": [0.25, 1]}',
    b'{"pixels": "\\ud800 alone"}',
]


def same_json_value(left, right) -> bool:
    """Equal as JSON values, NaN equal to NaN, and the same types (1 and 1.0 differ in what they become)."""
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left) and math.isnan(right):
        return True
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same_json_value(left[key], right[key]) for key in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same_json_value, left, right))
    return left == right


@pytest.mark.parametrize("body", ONLY_THE_STANDARD_LIBRARY_READS)
def test_json_orjson_refuses_is_read_by_the_standard_library(body):
    with pytest.raises(orjson.JSONDecodeError):  # the case really reaches the fallback
        orjson.loads(body)
    assert same_json_value(parse_json(body), json.loads(body))


def test_json_both_parsers_read_gives_the_same_value():
    rng = np.random.default_rng(0)
    pixels = rng.random((28, 28)).round(rng.integers(1, 17)).tolist()
    bodies = [json.dumps({"pixels": pixels}).encode(), json.dumps({"pixels": pixels}, indent=1).encode(),
              b'{"pixels": [1, 2.0, -0.0, 1e-320, 5e-324, 1.7976931348623157e308, 0.1]}',
              b'{"pixels": "\\u00e9 \\ud83d\\ude00"}', b'{"pixels": [true, false, null, {"a": []}]}']
    for body in bodies:
        assert same_json_value(parse_json(body), json.loads(body)), body[:60]


def test_json_integers_beyond_64_bits_are_the_same_number_to_every_route():
    # orjson reads them as the nearest double where json.loads keeps the exact integer ...
    huge = 10**30
    body = json.dumps({"pixels": [[huge] + [0.0] * 27] * 28}).encode()
    assert parse_json(body)["pixels"][0][0] == float(huge) and json.loads(body)["pixels"][0][0] == huge
    # ... and a route reads every number as a double: the answer is the one for the number written as a double.
    client = TestClient(create_app(Uniform()))
    as_double = body.replace(str(huge).encode(), repr(float(huge)).encode())
    for path in ("/predict", "/read"):
        answers = [client.post(path, content=sent, headers={"content-type": "application/json"})
                   for sent in (body, as_double)]
        assert answers[0].status_code == answers[1].status_code == 422
        assert answers[0].content == answers[1].content and f"{float(huge):g}" in answers[0].json()["error"]


@pytest.mark.parametrize("body", [b"{not json", b'{"pixels": [1,]}', b"\xff\xfe\x00", b"", b'{"a": 1} x'])
def test_json_neither_parser_reads_raises_the_standard_librarys_error(body):
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)) as expected:
        json.loads(body)
    with pytest.raises(expected.type) as caught:
        parse_json(body)
    assert str(caught.value) == str(expected.value)


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


def test_the_apis_routes_are_matched_before_fastapis_own_and_documented_in_the_tables_order():
    app = create_app(Uniform())
    built_in = [route.path in routes.BUILT_IN_PATHS for route in app.router.routes]
    assert built_in == sorted(built_in) and any(built_in)  # ours first, then the docs'
    documented = [route.path for route in routes.ROUTES if route.path in app.openapi()["paths"]]
    assert list(app.openapi()["paths"]) == documented


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


# ---------------------------------------------------------------- one image: on the event loop or on the pool


class Linear:
    """A predictor whose answer depends on every pixel (softmax of a fixed random map); notes its callers' threads."""

    name = "linear"

    def __init__(self) -> None:
        self.weights = np.random.default_rng(0).normal(size=(NUM_PIXELS, NUM_CLASSES)).astype(np.float32)
        self.threads: list[str] = []

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        logits = np.asarray(pixels, dtype=np.float32).reshape(-1, NUM_PIXELS) @ self.weights
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)


def digit_image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = np.zeros((28, 28))
    pixels[4:24, 8:20] = rng.random((20, 12))
    return pixels_to_image(pixels.tolist())


def test_one_image_gets_the_same_answer_on_the_event_loop_and_on_the_thread_pool():
    predictor = Linear()
    service = Service(predictor, {}, ServiceLimits(), ServiceMetrics(), Readiness())
    images = [digit_image(seed) for seed in range(3)]
    on_the_loop = [run(answer_soon(service, [image]))[0] for image in images]
    assert set(predictor.threads) == {threading.current_thread().name}  # the model ran on the event loop's thread

    async def while_the_model_is_busy(image: np.ndarray):
        # Another thread holds the model: the image waits on the thread pool and is answered once it is free.
        service.predict_lock.acquire()
        waiting = asyncio.ensure_future(answer_soon(service, [image]))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        service.predict_lock.release()
        return (await waiting)[0]

    predictor.threads.clear()
    on_the_pool = [run(while_the_model_is_busy(image)) for image in images]
    assert predictor.threads and threading.current_thread().name not in predictor.threads
    assert orjson.dumps(on_the_pool) == orjson.dumps(on_the_loop)
    assert on_the_loop == service.answer(images)  # what the three give as one batch
    assert len({orjson.dumps(record) for record in on_the_loop}) == len(images)  # three different answers


# ---------------------------------------------------------------- the prediction lane


def test_predictions_answer_the_same_on_their_lane_as_through_fastapi_and_honour_an_overridden_service():
    app = create_app(Linear())
    client = TestClient(app)
    pixels = {"pixels": digit_image(1).tolist()}
    requests = [  # (path, body): answers, and each kind of refusal the prediction handlers give
        ("/predict", pixels),
        ("/predict/batch", {"images": [pixels["pixels"], digit_image(7).tolist()]}),
        ("/predict", {"pixels": [[0.5] * 27] * 28}),  # wrong shape: 422
        ("/predict", {"image": pixels["pixels"]}),  # wrong key: 422
        ("/predict/batch", {"images": []}),  # no images: 422
        ("/predict", {"pixels": [[0.0] * 28] * 28}),  # blank: 422
    ]

    def answers() -> list[tuple[int, bytes]]:
        found = [(answer.status_code, answer.content) for answer in (client.post(path, json=body)
                                                                     for path, body in requests)]
        bad_json = client.post("/predict", content=b"{not json", headers={"Content-Type": "application/json"})
        unsupported = client.post("/predict", content=b"x", headers={"Content-Type": "text/plain"})
        return [*found, (bad_json.status_code, bad_json.content), (unsupported.status_code, unsupported.content)]

    on_the_lane = answers()
    assert [status for status, _ in on_the_lane] == [200, 200, 422, 422, 422, 422, 422, 415]
    assert orjson.loads(on_the_lane[0][1]) == app.state.service.answer([pixels_to_image(pixels["pixels"])])[0]
    # While a dependency is overridden every request goes FastAPI's way: an override giving the same Service
    # must give the same bytes.
    app.dependency_overrides[current_service] = lambda: app.state.service
    assert answers() == on_the_lane
    # A stand-in Service (its predictor answers the same for every digit) reaches the prediction routes too.
    app.dependency_overrides[current_service] = lambda: Service(Uniform(), {}, ServiceLimits(), ServiceMetrics(),
                                                                Readiness())
    stood_in = client.post("/predict", json=pixels).json()
    assert stood_in["probabilities"] == [0.1] * NUM_CLASSES
    assert stood_in["image"] == orjson.loads(on_the_lane[0][1])["image"]
    app.dependency_overrides.clear()
    assert answers() == on_the_lane


def test_an_unexpected_error_on_the_lane_is_a_json_500_as_everywhere():
    class Broken:
        def predict(self, pixels: np.ndarray) -> np.ndarray:
            raise RuntimeError("boom")

    client = TestClient(create_app(Broken()), raise_server_exceptions=False)
    answer = client.post("/predict", json={"pixels": digit_image(1).tolist()})
    assert answer.status_code == 500 and answer.json() == {"error": "internal server error"}
    # The lane is beneath every check of ours: the request was counted.
    assert 'route="/predict"' in client.get("/metrics").text


def test_error_handlers_are_looked_up_by_the_errors_nearest_base_class():
    from mnist_keras.inference.images import BlankImageError, ImageError
    from mnist_keras.serving.app import ERROR_HANDLERS, error_handler, internal_error

    assert error_handler(BlankImageError("blank")) is ERROR_HANDLERS[ImageError]
    assert error_handler(KeyError("x")) is internal_error


def test_about_carries_the_not_a_digit_threshold_and_its_cost(tmp_path):
    from mnist_keras.inference.decision import NOT_DIGIT_THRESHOLD
    from mnist_keras.serving.service import describe_source

    (tmp_path / "metrics.json").write_text(json.dumps({"test_accuracy": 0.9955, "test_refused": 4,
                                                       "test_accuracy_with_refusals": 0.9951}))
    about = describe_source(tmp_path, predictor=object())
    assert about["not_digit_threshold"] == NOT_DIGIT_THRESHOLD
    assert (about["test_refused"], about["test_accuracy_with_refusals"]) == (4, 0.9951)
