"""The web service: a drawing page, a prediction API and its OpenAPI docs (FastAPI under uvicorn).

`create_app(run_dir or predictor)` builds the app; `serve(run_dir, host, port)`
runs it. Every image goes through `mnist_keras.inference.images`, the same path as the
`predict` command, and every answer carries the 28×28 image the model saw.
The page and the API docs work offline.
Nothing a client sends produces a 500: oversized bodies get 413, bodies that
are not images 415, and anything else malformed (blank, wrong shape, bad
values, bad JSON) 422, always as JSON `{"error": "..."}`.
With an API token, every route but the page, its files, `/healthz`, `/about`
and the docs needs `Authorization: Bearer <token>`; anything else gets 401.
`/metrics` is the Prometheus scrape (mnist_keras.serving.metrics); `/about` says
which run answers. How the process runs (timeouts, workers, signals) is
mnist_keras.serving.server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnist_keras import __version__
from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES, NUM_PIXELS
from mnist_keras.inference.images import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    MIN_INK_CONTRAST,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    image_as_lists,
    pixels_to_image,
    preprocess_image_bytes,
)
from mnist_keras.inference.predictors import predict_images
from mnist_keras.serving.metrics import RequestMetrics, ServiceMetrics

STATIC_DIR = Path(__file__).parent / "static"
# A batch of the largest images plus multipart framing; JSON pixels are far smaller.
MAX_BATCH_IMAGES = 64
MAX_REQUEST_BYTES = 4 * MAX_IMAGE_BYTES
# JSON text allowed per pixel value: "0.12345678901234568, " is 21 characters. Parsed JSON
# takes ~10 times its size in Python objects (32 MB of numbers: 2 s and 320 MB), so JSON
# bodies get their own limit, room for a full batch and no more.
JSON_BYTES_PER_NUMBER = 32
# Multipart text fields we accept besides the files (none are used, a few are tolerated).
MAX_FORM_FIELDS = 16
# Images decoded at once, each on one of this many dedicated threads. A small file can
# decode to ~100 MB of pixels (a 4096x4096 PNG of a few kilobytes), so the number in
# flight bounds the service's working memory, and keeping decoding on few threads keeps
# the allocator from holding freed pixel memory in an arena per thread of the general
# pool. Decoding is CPU-bound: more at once than there are cores gains nothing.
MAX_CONCURRENT_DECODES = min(8, max(2, os.cpu_count() or 2))

logger = logging.getLogger("mnist_keras.serving.app")


Probability = Annotated[float, Field(ge=0, le=1)]


class Prediction(BaseModel):
    digit: int = Field(ge=0, le=NUM_CLASSES - 1, description="the most likely digit, 0-9")
    confidence: Probability = Field(description="its probability")
    probabilities: list[Probability] = Field(
        min_length=NUM_CLASSES, max_length=NUM_CLASSES, description=f"the {NUM_CLASSES} probabilities, for digits 0-9"
    )
    is_digit: bool = Field(description="false when the input does not look like one handwritten digit "
                                       "(letters, scribbles, noise, patterns, flat grey)")
    image: list[Annotated[list[Probability], Field(min_length=IMAGE_SIDE, max_length=IMAGE_SIDE)]] = Field(
        min_length=IMAGE_SIDE, max_length=IMAGE_SIDE,
        description=f"the {IMAGE_SIDE}x{IMAGE_SIDE} image the model read (ink = 1), after MNIST-style preprocessing",
    )


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong with the request, in one line")


class RequestProblem(Exception):
    """A request the service refuses, with the status code that says why."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "the body, the JSON, an image, or the batch is too large"},
    415: {"model": ErrorBody, "description": "not an image, or a content type other than multipart or JSON"},
    422: {"model": ErrorBody, "description": "blank image, corrupt image, wrong pixel shape or values, "
                                             "bad JSON or multipart"},
}

# The request bodies are read by hand (either content type on one route), so their
# schemas are written out here, as exactly as JSON Schema can say what is accepted:
# pixels in [0, 1], 28x28 nested or 784 flat, with some ink (one value at least
# MIN_INK_CONTRAST); only "is a readable image" is beyond a schema.
PIXEL_VALUE_SCHEMA = {"type": "number", "minimum": 0, "maximum": 1}
INK_SCHEMA = {"type": "number", "minimum": MIN_INK_CONTRAST, "maximum": 1}
PIXELS_SCHEMA = {
    "description": f"{IMAGE_SIDE}x{IMAGE_SIDE} nested or {NUM_PIXELS} flat numbers in [0, 1], ink = 1, "
                   f"at least one of them {MIN_INK_CONTRAST} or more",
    "oneOf": [
        {"type": "array", "items": PIXEL_VALUE_SCHEMA, "minItems": NUM_PIXELS, "maxItems": NUM_PIXELS,
         "contains": INK_SCHEMA},
        {"type": "array", "minItems": IMAGE_SIDE, "maxItems": IMAGE_SIDE,
         "items": {"type": "array", "items": PIXEL_VALUE_SCHEMA, "minItems": IMAGE_SIDE, "maxItems": IMAGE_SIDE},
         "contains": {"type": "array", "contains": INK_SCHEMA}},
    ],
}


def example_pixels() -> list[list[float]]:
    """A "1" as MNIST would show it: for the docs' "try it out" and schemathesis's examples."""
    pixels = np.zeros((IMAGE_SIDE, IMAGE_SIDE))
    pixels[4:24, 13:15] = 1.0
    return pixels.tolist()


def request_body_doc(file_field: str, json_field: str, many: bool, max_items: int) -> dict[str, Any]:
    """OpenAPI text for a body read by hand (multipart image(s) or JSON pixels)."""
    file_schema: dict[str, Any] = {"type": "string", "format": "binary", "description": "an image file (PNG, JPEG, ...)"}
    pixels_schema: dict[str, Any] = PIXELS_SCHEMA
    if many:
        # The batch limit is stated in words, not as maxItems: a schema tool would otherwise
        # build batches of dozens of 784-number arrays at the edge of the limit, which takes
        # minutes to generate and checks nothing the 413 tests do not.
        limit = f"1 to {max_items}; more get 413"
        file_schema = {"type": "array", "items": file_schema, "minItems": 1, "description": limit}
        pixels_schema = {"type": "array", "items": PIXELS_SCHEMA, "minItems": 1, "description": limit}
    example = [example_pixels()] if many else example_pixels()
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": [file_field], "properties": {file_field: file_schema}}
                },
                "application/json": {
                    "schema": {"type": "object", "required": [json_field], "properties": {json_field: pixels_schema}},
                    "example": {json_field: example},
                },
            },
        }
    }


class BodyLimit:
    """ASGI middleware: refuse a request body over `max_bytes` with 413 before the app sees it.

    Checks the declared Content-Length first, then counts what actually
    arrives (a client can lie or stream without a length).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = JSONResponse(
            {"error": f"request body is over the limit of {self.max_bytes:,} bytes"}, status_code=413
        )
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await too_large(scope, receive, send)
            return
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def load_source(source: Any) -> Any:
    """A predictor: `source` itself if it has `.predict`, else the run directory it names."""
    if hasattr(source, "predict"):
        return source
    from mnist_keras.inference.predictors import load_predictor
    from mnist_keras.rundir import check_run_dir

    check_run_dir(Path(source))
    return load_predictor(source)


def describe_source(source: Any, predictor: Any) -> dict[str, Any]:
    """Which run answers: its name, recipe, model family, and accuracies on MNIST and real handwriting."""
    about: dict[str, Any] = {"run": None, "recipe": None, "model": None, "predictor": predictor_name(predictor),
                             "test_accuracy": None, "handwriting_accuracy": None}
    if hasattr(source, "predict"):
        return about
    from mnist_keras.rundir import CONFIG_FILE, METRICS_FILE

    run_dir = Path(source)
    record = read_json_or_empty(run_dir / CONFIG_FILE)
    metrics = read_json_or_empty(run_dir / METRICS_FILE)
    recipe = record.get("recipe") if isinstance(record.get("recipe"), dict) else {}
    about.update(run=run_dir.resolve().name, recipe=record.get("recipe_name"), model=recipe.get("model", "mlp"),
                 test_accuracy=metrics.get("test_accuracy"), handwriting_accuracy=metrics.get("handwriting_accuracy"))
    return about


def read_json_or_empty(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or {} when it is missing or not one (what /about shows is informative only)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def predictor_name(predictor: Any) -> str:
    return str(getattr(predictor, "name", type(predictor).__name__))


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


# ---------------------------------------------------------------- limits


@dataclasses.dataclass(frozen=True)
class ServiceLimits:
    """How much one request may ask of the service."""

    max_image_bytes: int = MAX_IMAGE_BYTES
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_batch_images: int = MAX_BATCH_IMAGES
    max_concurrent_decodes: int = MAX_CONCURRENT_DECODES

    @property
    def max_json_bytes(self) -> int:
        """JSON bodies: room for a full batch of pixel arrays, and no more."""
        return self.max_batch_images * NUM_PIXELS * JSON_BYTES_PER_NUMBER


# ---------------------------------------------------------------- the decode pool


class DecodePool:
    """Image decoding on a few dedicated threads (see MAX_CONCURRENT_DECODES), off the event loop."""

    def __init__(self, workers: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mnist-keras-decode")

    async def run(self, function: Callable[[], Any]) -> Any:
        """`function()` on a decoding thread; the event loop keeps serving meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------- body parsing


async def read_json_body(request: Request, key: str, max_bytes: int) -> Any:
    """The value under `key` of a JSON object body; 413 over `max_bytes`, 422 for anything malformed."""
    data = await request.body()
    if len(data) > max_bytes:
        raise RequestProblem(413, f"JSON body is {len(data):,} bytes, over the limit of {max_bytes:,}")
    try:
        # Parsed off the event loop: a megabyte of JSON takes a noticeable moment.
        body = await run_in_threadpool(json.loads, data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestProblem(422, f"body is not valid JSON ({error})") from None
    except RecursionError:
        raise RequestProblem(422, "body is not usable JSON (nested too deeply)") from None
    if not isinstance(body, dict) or key not in body:
        raise RequestProblem(422, f"JSON body must be an object with the key {key!r}")
    return body[key]


async def upload_bytes(value: Any, field: str, max_bytes: int) -> bytes:
    """The bytes of one uploaded file; 422 for a text field, 413 over `max_bytes`."""
    if not isinstance(value, UploadFile):
        raise RequestProblem(422, f"field {field!r} must be a file upload, not text")
    data = await value.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise RequestProblem(413, f"{field}: image is over the limit of {max_bytes:,} bytes")
    return data


@contextlib.asynccontextmanager
async def read_form(request: Request, max_files: int) -> AsyncIterator[FormData]:
    """The parsed multipart body, closed afterwards; a body the parser refuses is the client's fault."""
    try:
        form = await request.form(max_files=max_files, max_fields=MAX_FORM_FIELDS)
    except HTTPException as error:  # Starlette's 400 for any multipart it cannot or will not parse
        raise multipart_problem(str(error.detail)) from None
    try:
        yield form
    finally:
        await form.close()


def unsupported(request: Request, file_field: str, json_field: str) -> RequestProblem:
    shown = media_type(request) or "none"
    return RequestProblem(
        415, f"unsupported content type {shown!r}: send multipart/form-data with field {file_field!r} "
        f"or application/json with key {json_field!r}"
    )


# ---------------------------------------------------------------- the service


class Service:
    """What the routes share: the predictor, what it is, the limits, the decode pool and the metrics."""

    def __init__(self, predictor: Any, about: dict[str, Any], limits: ServiceLimits, metrics: ServiceMetrics) -> None:
        self.predictor = predictor
        self.about = about
        self.limits = limits
        self.metrics = metrics
        metrics.describe_model(about)
        self.decoders = DecodePool(limits.max_concurrent_decodes)
        # Model calls are serialised: not every backend's predict is safe to run concurrently,
        # while decoding and preprocessing (the larger share of the work) still run in parallel.
        self.predict_lock = threading.Lock()

    def image_from_bytes(self, data: bytes) -> np.ndarray:
        return preprocess_image_bytes(data, max_bytes=self.limits.max_image_bytes,
                                      max_pixels=self.limits.max_image_pixels)

    def answer(self, images: list[np.ndarray]) -> list[dict[str, Any]]:
        """A record per image, with the 28×28 image the model read."""
        with self.predict_lock:
            records = predict_images(self.predictor, images)
        self.metrics.count_readings(record["is_digit"] for record in records)
        return [{**record, "image": image_as_lists(image)} for record, image in zip(records, images)]


def service_of(request: Request) -> Service:
    return request.app.state.service


# ---------------------------------------------------------------- routes


async def drawing_page() -> HTMLResponse:
    return HTMLResponse((STATIC_DIR / "index.html").read_text(encoding="utf-8"))


async def healthz(request: Request) -> dict[str, str]:
    """Liveness: the model is loaded and the service answers."""
    return {"status": "ok", "predictor": predictor_name(service_of(request).predictor)}


async def about(request: Request) -> dict[str, Any]:
    """Which run answers: run name, recipe, model family, predictor, MNIST and real-handwriting accuracy."""
    return service_of(request).about


async def metrics(request: Request) -> Response:
    """Prometheus text format: requests, latency, images by outcome, the model (summed over workers)."""
    payload, content_type = service_of(request).metrics.exposition()
    return Response(payload, media_type=content_type)


async def predict(request: Request) -> dict[str, Any]:
    """Read one digit: an image upload in field `file`, or JSON `{"pixels": [...]}`."""
    service = service_of(request)
    kind = media_type(request)
    if kind == "multipart/form-data":
        async with read_form(request, max_files=1) as form:
            if "file" not in form:
                raise RequestProblem(422, "multipart body has no field 'file'")
            data = await upload_bytes(form["file"], "file", service.limits.max_image_bytes)
        image = await service.decoders.run(lambda: service.image_from_bytes(data))
    elif kind == "application/json":
        image = pixels_to_image(await read_json_body(request, "pixels", service.limits.max_json_bytes))
    else:
        raise unsupported(request, "file", "pixels")
    return (await run_in_threadpool(service.answer, [image]))[0]


async def predict_batch(request: Request) -> list[dict[str, Any]]:
    """Read several digits: image uploads in field `files`, or JSON `{"images": [pixels, ...]}`."""
    service = service_of(request)
    limits = service.limits
    kind = media_type(request)
    if kind == "multipart/form-data":
        async with read_form(request, max_files=limits.max_batch_images + 1) as form:
            values = form.getlist("files")
            check_batch_size(len(values), limits.max_batch_images, "files")
            uploads = [await upload_bytes(value, f"files[{index}]", limits.max_image_bytes)
                       for index, value in enumerate(values)]
        images = await service.decoders.run(
            lambda: [with_index(index, service.image_from_bytes, data) for index, data in enumerate(uploads)]
        )
    elif kind == "application/json":
        items = await read_json_body(request, "images", limits.max_json_bytes)
        if not isinstance(items, list):
            raise RequestProblem(422, "'images' must be a list of pixel arrays")
        check_batch_size(len(items), limits.max_batch_images, "images")
        images = [with_index(index, pixels_to_image, item) for index, item in enumerate(items)]
    else:
        raise unsupported(request, "files", "images")
    return await run_in_threadpool(service.answer, images)


def add_routes(app: FastAPI, limits: ServiceLimits) -> None:
    app.add_api_route("/", drawing_page, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)
    app.add_api_route("/healthz", healthz, methods=["GET"])
    app.add_api_route("/about", about, methods=["GET"])
    app.add_api_route("/metrics", metrics, methods=["GET"], response_class=Response,
                      responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    app.add_api_route("/predict", predict, methods=["POST"], response_model=Prediction, responses=ERROR_RESPONSES,
                      openapi_extra=request_body_doc("file", "pixels", many=False, max_items=1))
    app.add_api_route("/predict/batch", predict_batch, methods=["POST"], response_model=list[Prediction],
                      responses=ERROR_RESPONSES,
                      openapi_extra=request_body_doc("files", "images", many=True, max_items=limits.max_batch_images))


def create_app(source: Any, limits: ServiceLimits = ServiceLimits(), api_token: str | None = None,
               json_access_log: bool = False) -> FastAPI:
    """The FastAPI app serving the predictor of `source` (a run directory, or an object with `.predict`).

    With `api_token`, the API needs `Authorization: Bearer <api_token>` (see BearerToken).
    """
    predictor = load_source(source)
    service = Service(predictor, describe_source(source, predictor), limits, ServiceMetrics())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.decoders.shutdown()

    # The API docs (/docs, /redoc) load Swagger UI from the package, not a CDN: they work offline.
    app = FastAPIOffline(
        title="mnist-keras",
        version=__version__,
        description="Read handwritten digits: upload an image or send 28x28 pixels. The drawing page is at `/`.",
        lifespan=lifespan,
    )
    app.state.service = service
    # The last added runs first: every request is counted, then the token checked, then the body bounded.
    app.add_middleware(BodyLimit, max_bytes=limits.max_request_bytes)
    if api_token:
        app.add_middleware(BearerToken, token=api_token)
    app.add_middleware(RequestMetrics, metrics=service.metrics, json_access_log=json_access_log)
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    add_routes(app, limits)
    return app


# What stays open with a token: the page and its files, liveness, which run answers, and the docs.
OPEN_PATHS = frozenset({"/", "/healthz", "/about", "/docs", "/redoc", "/openapi.json"})
OPEN_PREFIXES = ("/static/", "/static-offline-docs/")


class BearerToken:
    """ASGI middleware: every route but the open ones needs `Authorization: Bearer <token>`, else 401.

    The comparison takes the same time however much of the token a client got right.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if not hmac.compare_digest(given, self.expected):
            refused = JSONResponse({"error": "this service needs an API token: send 'Authorization: Bearer <token>'"},
                                   status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)


def is_open_path(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def multipart_problem(detail: str) -> RequestProblem:
    """413 when the multipart parser's limits were hit (too many parts, a part too large), else 422."""
    too_large = detail.startswith("Too many") or "exceeded maximum size" in detail
    return RequestProblem(413 if too_large else 422, f"multipart body refused: {detail}")


def check_batch_size(count: int, limit: int, field: str) -> None:
    if count == 0:
        raise RequestProblem(422, f"no images: send at least one in {field!r}")
    if count > limit:
        raise RequestProblem(413, f"{count} images in one batch, over the limit of {limit}")


def with_index(index: int, function: Any, value: Any) -> np.ndarray:
    """Call `function(value)`; an ImageError names the batch item it came from."""
    try:
        return function(value)
    except ImageError as error:
        raise type(error)(f"item {index}: {error}") from None


def status_for(error: ImageError) -> int:
    if isinstance(error, ImageTooLargeError):
        return 413
    if isinstance(error, NotAnImageError):
        return 415
    return 422


def install_error_handlers(app: FastAPI) -> None:
    """Every error as JSON {"error": "..."}: 4xx for what the client sent, 500 only for our own faults."""

    @app.exception_handler(ImageError)
    async def image_error(request: Request, error: ImageError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=status_for(error))

    @app.exception_handler(RequestProblem)
    async def request_problem(request: Request, error: RequestProblem) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status_code)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors())
        return JSONResponse({"error": problems or "invalid request"}, status_code=422)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, error: ClientDisconnect) -> Response:
        # The client left (or was cut off as too slow) before its body arrived: nobody is there to answer.
        logger.info("client disconnected before its request arrived: %s %s", request.method, request.url.path)
        return Response(status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error serving %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal server error"}, status_code=500)



