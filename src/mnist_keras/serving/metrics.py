"""The service's Prometheus metrics and its access log, measured by one ASGI middleware.

`ServiceMetrics` holds the metrics (prometheus-client): requests by route,
method and status; a latency histogram by route; images by outcome (digit,
not_digit, refused); and the model that answers. A route is labelled by its
path in the route table (mnist_keras.serving.routes), never by the raw path:
a client cannot invent label values. With several workers
(`PROMETHEUS_MULTIPROC_DIR` set before the workers start) every worker writes
its values there and `/metrics` sums them (the client library's multiprocess
mode); otherwise the app's own registry is read.
`RequestMetrics` times every request, counts it, and when asked writes one
JSON line per request to the `mnist_keras.access` logger. `JsonLines` and
`AccessText` format the log lines: ours as JSON, uvicorn's access lines as
its own text.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.logging import AccessFormatter

from mnist_keras.serving.routes import READING_ROUTES, route_label

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# One image takes ~1-10 ms to read, a batch of 64 up to ~0.3 s on two cores; slow clients and queueing show above.
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OUTCOMES = ("digit", "not_digit", "refused")
ACCESS_LOGGER = "mnist_keras.access"
# Label sets whose metric children RequestMetrics keeps at hand: far more than routes × methods × statuses in use.
MAX_CACHED_LABELS = 1024

access_logger = logging.getLogger(ACCESS_LOGGER)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_DIR_VARIABLE) or None


class ServiceMetrics:
    """The service's metrics, in a registry of their own (several apps may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("mnist_keras_requests", "HTTP requests answered, by route, method and status",
                                ("route", "method", "status"), registry=self.registry)
        self.latency = Histogram("mnist_keras_request_duration_seconds",
                                 "time from a request's start to the end of its answer, by route",
                                 ("route",), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.images = Counter("mnist_keras_images",
                              "images read, by outcome: digit, not_digit, or refused (a request to a reading route "
                              "answered 4xx: a bad image or body)", ("outcome",), registry=self.registry)
        self.model = Gauge("mnist_keras_model_info", "the model that answers (always 1; the labels say which)",
                           ("run", "recipe", "model", "predictor"), multiprocess_mode="max", registry=self.registry)
        # Every outcome shows from the start, at 0; its child is looked up here, once.
        self.images_by_outcome = {outcome: self.images.labels(outcome) for outcome in OUTCOMES}

    def describe_model(self, about: dict[str, Any]) -> None:
        self.model.labels(*(str(about.get(key) or "") for key in ("run", "recipe", "model", "predictor"))).set(1)

    def count_readings(self, is_digit: Iterable[bool]) -> None:
        digits, not_digits = self.images_by_outcome["digit"], self.images_by_outcome["not_digit"]
        for answer in is_digit:
            (digits if answer else not_digits).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format, summed over every worker in multiprocess mode."""
        registry = self.registry
        if multiprocess_dir() is not None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class RequestMetrics:
    """ASGI middleware: count and time every HTTP request; optionally one JSON access-log line each."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, json_access_log: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.json_access_log = json_access_log
        self.children_by_key: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before answering
        recorded = False

        async def send_and_note(message: Message) -> None:
            nonlocal status, recorded
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Counted before the last byte leaves: a client that has its answer finds it counted.
                recorded = True
                self.record(scope, status, time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            if not recorded:
                self.record(scope, status, time.perf_counter() - started)

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        route = route_label(scope["path"])
        requests, latency, refused = self.children(route, scope["method"], status)
        requests.inc()
        latency.observe(seconds)
        if refused is not None:
            refused.inc()
        if self.json_access_log:
            client = scope.get("client")
            access_logger.info("", extra={"access": {
                "client": f"{client[0]}:{client[1]}" if client else None,
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round(1000 * seconds, 3),
                "pid": os.getpid(),
            }})


    def children(self, route: str, method: str, status: int) -> tuple[Any, Any, Any]:
        """The request counter, the latency histogram and (for a refused image) the image counter of one
        route, method and status; looked up once each (a client's method is bounded by the server's parser)."""
        key = (route, method, status)
        found = self.children_by_key.get(key)
        if found is None:
            refused = route in READING_ROUTES and 400 <= status < 500 and status != 401
            found = (self.metrics.requests.labels(route, method, str(status)), self.metrics.latency.labels(route),
                     self.metrics.images_by_outcome["refused"] if refused else None)
            if len(self.children_by_key) < MAX_CACHED_LABELS:
                self.children_by_key[key] = found
        return found


class JsonLines(logging.Formatter):
    """One JSON object per log line: time, level, logger, and the access fields or the message."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        access = getattr(record, "access", None)
        if access is not None:
            line.update(access)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(line).decode()  # a tenth of json.dumps's time: one line per request adds up
        except TypeError:  # text orjson will not write (a lone surrogate): the standard library escapes it
            return json.dumps(line)


class AccessText(AccessFormatter):
    """uvicorn's text access lines, to the character, at half the cost: one line per request adds up.

    uvicorn's formatter copies each record twice (so as to leave it unchanged
    for other handlers) before logging's formatting; here the line's fields go
    into the format from a dict of their own, and the record is left as it
    was. Coloured lines (a terminal) are uvicorn's own. The format is %-style,
    as uvicorn's.
    """

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, use_colors: bool | None = None) -> None:
        super().__init__(fmt=fmt, datefmt=datefmt, style="%", use_colors=use_colors)
        self.line_format = fmt or "%(message)s"
        self.status_texts: dict[int, str] = {}  # "200 OK", by status code

    def formatMessage(self, record: logging.LogRecord) -> str:
        if self.use_colors:
            return super().formatMessage(record)
        client_addr, method, full_path, http_version, status_code = record.args  # as uvicorn logs them
        status = int(status_code)
        status_text = self.status_texts.get(status)
        if status_text is None:
            status_text = self.status_texts.setdefault(status, self.get_status_code(status))
        levelname = record.levelname
        return self.line_format % {
            **record.__dict__,
            "levelprefix": levelname + ":" + " " * (8 - len(levelname)),
            "client_addr": client_addr,
            "request_line": f"{method} {full_path} HTTP/{http_version}",
            "status_code": status_text,
        }
