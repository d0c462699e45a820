"""The web service as one FastAPI app: a drawing page, a prediction API, its OpenAPI docs, metrics.

`create_app(run_dir or predictor)` builds the app; mnist_keras.serving.server
runs it under uvicorn. This module only assembles: the routes come from the
route table (mnist_keras.serving.routes) with a handler each from
mnist_keras.serving.handlers, the checks before a request reaches them from
mnist_keras.serving.middleware, and what they share is one `Service`.
Every answer to a reading route carries the 28×28 image the model saw, and
the page and the API docs work offline.
Nothing a client sends produces a 500: oversized bodies get 413, bodies that
are not images 415, and anything else malformed (blank, wrong shape, bad
values, bad JSON) 422, always as JSON `{"error": "..."}`.
With an API token, every route the table guards needs
`Authorization: Bearer <token>` (all but the page, its files, `/healthz`,
`/about` and the docs); anything else gets 401.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from mnist_keras import __version__
from mnist_keras.inference.images import ImageError, ImageTooLargeError, NotAnImageError
from mnist_keras.serving.bodies import RequestProblem
from mnist_keras.serving.handlers import (
    STATIC_DIR,
    about,
    drawing_page,
    healthz,
    metrics,
    predict,
    predict_batch,
    read,
)
from mnist_keras.serving.metrics import RequestMetrics, ServiceMetrics
from mnist_keras.serving.middleware import BearerToken, BodyLimit, CloseWhileDraining
from mnist_keras.serving.routes import BUILT_IN_PATHS, ROUTES
from mnist_keras.serving.schemas import (
    ANY_PIXELS_SCHEMA,
    ERROR_RESPONSES,
    NOT_READY_RESPONSES,
    Prediction,
    Reading,
    request_body_doc,
)
from mnist_keras.serving.service import Readiness, Service, ServiceLimits, describe_source, load_source

logger = logging.getLogger("mnist_keras.serving.app")

# The directory each files route of ours serves (the docs' files are FastAPI's own).
FILE_DIRECTORIES = {"/static": STATIC_DIR}


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Our handler for one route of the table, and what the OpenAPI docs say of it."""

    handler: Callable[..., Any]
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # FastAPI's add_api_route arguments


def endpoints(limits: ServiceLimits) -> dict[str, Endpoint]:
    """The endpoint of each route of ours (not built in, not files), by path."""
    return {
        "/": Endpoint(drawing_page, {"response_class": HTMLResponse, "include_in_schema": False}),
        "/healthz": Endpoint(healthz, {"responses": NOT_READY_RESPONSES}),
        "/about": Endpoint(about),
        "/metrics": Endpoint(metrics, {
            "response_class": Response,
            "responses": {200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
        }),
        # A record's `reason` is there only when it has one (response_model_exclude_unset).
        "/predict": Endpoint(predict, {
            "response_model": Prediction, "responses": ERROR_RESPONSES, "response_model_exclude_unset": True,
            "openapi_extra": request_body_doc("file", "pixels", many=False, max_items=1),
        }),
        "/predict/batch": Endpoint(predict_batch, {
            "response_model": list[Prediction], "responses": ERROR_RESPONSES, "response_model_exclude_unset": True,
            "openapi_extra": request_body_doc("files", "images", many=True, max_items=limits.max_batch_images),
        }),
        "/read": Endpoint(read, {
            "response_model": Reading, "responses": ERROR_RESPONSES,
            "openapi_extra": request_body_doc("file", "pixels", many=False, max_items=1,
                                              pixels_schema=ANY_PIXELS_SCHEMA),
        }),
    }


def add_routes(app: FastAPI, limits: ServiceLimits) -> None:
    """Every route in the table that is ours: a directory of files, or a handler."""
    ours = endpoints(limits)
    for route in ROUTES:
        if route.built_in:
            continue
        if route.files:
            app.mount(route.path, StaticFiles(directory=FILE_DIRECTORIES[route.path]), name=route.path.strip("/"))
            continue
        endpoint = ours.pop(route.path)
        app.router.add_api_route(route.path, endpoint.handler, methods=list(route.methods), **endpoint.options)
    if ours:
        raise ValueError(f"endpoints for routes not in the route table: {sorted(ours)}")
    # Each request is matched against the routes in turn: FastAPI's own (the docs, first in the list) go last,
    # so that the API's are found sooner. No two routes match one path, and the OpenAPI document lists only ours
    # in their own order: no answer changes.
    app.router.routes.sort(key=lambda served: served.path in BUILT_IN_PATHS)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    app.state.service.decoders.shutdown()


def create_app(source: Any, limits: ServiceLimits = ServiceLimits(), api_token: str | None = None,
               json_access_log: bool = False, readiness: Readiness | None = None) -> FastAPI:
    """The FastAPI app serving the predictor of `source` (a run directory, or an object with `.predict`).

    With `api_token`, the API needs `Authorization: Bearer <api_token>` (see BearerToken).
    `readiness` is the server's, which drains it on SIGTERM (by default one that never drains).
    """
    predictor = load_source(source)
    service = Service(predictor, describe_source(source, predictor), limits, ServiceMetrics(),
                      readiness if readiness is not None else Readiness())
    # The API docs (/docs, /redoc) load Swagger UI from the package, not a CDN: they work offline.
    app = FastAPIOffline(
        title="mnist-keras",
        version=__version__,
        description="Read handwritten digits: upload an image or send 28x28 pixels. The drawing page is at `/`.",
        lifespan=lifespan,
    )
    app.state.service = service
    # The last added runs first: every request is counted, then the token checked, then the body bounded, and
    # then a prediction goes its own lane; while the process drains, every answer, refusals included, closes
    # its connection.
    app.add_middleware(PredictionLane, handlers=LANE_HANDLERS)
    app.add_middleware(BodyLimit, max_bytes=limits.max_request_bytes)
    if api_token:
        app.add_middleware(BearerToken, token=api_token)
    app.add_middleware(RequestMetrics, metrics=service.metrics, json_access_log=json_access_log)
    app.add_middleware(CloseWhileDraining, readiness=service.readiness)
    install_error_handlers(app)
    add_routes(app, limits)
    return app


# ---------------------------------------------------------------- errors as JSON


def status_for(error: ImageError) -> int:
    if isinstance(error, ImageTooLargeError):
        return 413
    if isinstance(error, NotAnImageError):
        return 415
    return 422


async def image_error(request: Request, error: ImageError) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=status_for(error))


async def request_problem(request: Request, error: RequestProblem) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=error.status_code)


async def http_error(request: Request, error: HTTPException) -> JSONResponse:
    return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)


async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors())
    return JSONResponse({"error": problems or "invalid request"}, status_code=422)


async def client_gone(request: Request, error: ClientDisconnect) -> Response:
    # The client left (or was cut off as too slow) before its body arrived: nobody is there to answer.
    logger.info("client disconnected before its request arrived: %s %s", request.method, request.url.path)
    return Response(status_code=400)


async def internal_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unexpected error serving %s %s", request.method, request.url.path)
    return JSONResponse({"error": "internal server error"}, status_code=500)


ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]
ERROR_HANDLERS: dict[type[Exception], ErrorHandler] = {
    ImageError: image_error,
    RequestProblem: request_problem,
    HTTPException: http_error,
    RequestValidationError: validation_error,
    ClientDisconnect: client_gone,
    Exception: internal_error,
}


def install_error_handlers(app: FastAPI) -> None:
    """Every error as JSON {"error": "..."}: 4xx for what the client sent, 500 only for our own faults."""
    for error_type, handler in ERROR_HANDLERS.items():
        app.add_exception_handler(error_type, handler)


def error_handler(error: Exception) -> ErrorHandler:
    """The handler of ERROR_HANDLERS for `error`: its own type's, else its nearest base class's (as Starlette
    looks one up)."""
    for kind in type(error).__mro__:
        if kind in ERROR_HANDLERS:
            return ERROR_HANDLERS[kind]
    return internal_error


# ---------------------------------------------------------------- the prediction lane

# The requests the service answers most, each with its handler `(request, service) -> Response`.
LaneHandler = Callable[[Request, Service], Awaitable[Response]]
LANE_HANDLERS: dict[str, LaneHandler] = {
    "/predict": predict,
    "/predict/batch": predict_batch,
}


class PredictionLane:
    """ASGI middleware, the innermost of ours: a POST to a path of `handlers` is answered by its handler at once,
    called with the app's Service.

    Beneath this middleware FastAPI would take the request through its
    exception middleware, a walk of the route table, the route's dependency
    solving and its request bookkeeping: together about 8% of the app's
    instructions for one JSON image. Every check of ours is above it, so a prediction still
    is counted, needs the token and is bounded in size, and what its handler
    raises becomes the same JSON answer as on FastAPI's way (`error_handler`).
    The routes are registered with FastAPI as well, which documents them and
    answers them while the app overrides a dependency (a test's stand-in
    Service). Every other request goes on to FastAPI.
    """

    def __init__(self, app: ASGIApp, handlers: dict[str, LaneHandler]) -> None:
        self.app = app
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        app = scope.get("app")  # the FastAPI app, as Starlette sets it for every request
        if handler is None or app is None or app.dependency_overrides:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await handler(request, app.state.service)
        except Exception as error:  # noqa: BLE001 (every error, as ERROR_HANDLERS answers it on FastAPI's way)
            response = await error_handler(error)(request, error)
        await response(scope, receive, send)
