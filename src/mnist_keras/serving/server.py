"""Running the service: uvicorn with bounded slow clients, graceful shutdown, N workers and metrics.

`run(settings)` serves `settings.run_dir` (mnist_keras.serving.settings) under uvicorn. What an operator can rely on:
- **Slow and idle clients are cut off.** A connection must start a request
  within `idle_timeout` (uvicorn's keep-alive timeout, which uvicorn itself
  only arms after a first response), and a request's headers and body must
  all arrive within `request_timeout` of its first byte, or the client gets
  408 and the connection is closed (`DeadlineProtocol`, uvicorn's own
  HTTP/1.1 protocol with that one clock added; uvicorn has no such setting).
- **Graceful shutdown.** On SIGTERM or Ctrl-C uvicorn stops accepting, every
  request already accepted is answered (up to `graceful_timeout`), and the
  command exits 0.
- **Workers.** `workers` > 1 runs uvicorn's supervisor: N processes share the
  port, each loading its own predictor through `app_from_environment`. The
  metrics are summed over them in prometheus-client's multiprocess mode.
- **Access logs** as uvicorn's text lines, JSON lines, or none.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import tempfile
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from mnist_keras.serving.metrics import MULTIPROCESS_DIR_VARIABLE, multiprocess_dir
from mnist_keras.serving.settings import DEFAULT_REQUEST_TIMEOUT, TOKEN_VARIABLE, ServerSettings

RUN_VARIABLE = "MNIST_KERAS_SERVE_RUN"
ACCESS_LOG_VARIABLE = "MNIST_KERAS_ACCESS_LOG"

logger = logging.getLogger("mnist_keras.serving.server")


class DeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, plus: a request must arrive whole within `request_timeout`.

    The clock starts at a request's first byte and stops when its body has
    arrived; a client still sending when it runs out gets 408 and the
    connection is closed. New connections must start a request within
    uvicorn's keep-alive timeout, as idle kept-alive ones already must.
    """

    def __init__(self, *args: Any, request_timeout: float = DEFAULT_REQUEST_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout
        self.request_deadline: Any = None  # an asyncio.TimerHandle while a request is arriving

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        if self.request_deadline is None and (self.cycle is None or self.cycle.response_complete):
            self.request_deadline = self.loop.call_later(self.request_timeout, self.request_too_slow)
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
            self.cancel_request_deadline()  # the request has arrived whole (or the connection is done)

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_request_deadline()
        super().connection_lost(exc)

    def cancel_request_deadline(self) -> None:
        if self.request_deadline is not None:
            self.request_deadline.cancel()
            self.request_deadline = None

    def request_too_slow(self) -> None:
        self.request_deadline = None
        if self.transport.is_closing():
            return
        client = "%s:%d" % self.client if self.client else "a client"
        logger.warning("closing the connection from %s: request not received whole within %gs",
                       client, self.request_timeout)
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # no answer has started on this connection
            body = json.dumps({"error": f"request not received whole within {self.request_timeout:g} s"}).encode()
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        self.transport.close()


def log_config(access_log: str) -> dict[str, Any]:
    """uvicorn's logging set-up, with the access log as its text lines, JSON lines (our middleware's) or off."""
    from uvicorn.config import LOGGING_CONFIG

    config = json.loads(json.dumps(LOGGING_CONFIG))  # a deep copy
    config["formatters"]["json"] = {"()": "mnist_keras.serving.metrics.JsonLines"}
    config["handlers"]["json"] = {"formatter": "json", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"}
    config["loggers"]["mnist_keras"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config["loggers"]["mnist_keras.access"] = {"handlers": ["json"], "level": "INFO", "propagate": False}
    if access_log == "json":
        for name in ("uvicorn", "uvicorn.error", "mnist_keras"):
            config["loggers"][name]["handlers"] = ["json"]
    return config


def app_from_environment() -> Any:
    """The app for one worker process: the run, token and log format come from the environment."""
    from mnist_keras.serving.app import create_app

    return create_app(os.environ[RUN_VARIABLE], api_token=os.environ.get(TOKEN_VARIABLE) or None,
                      json_access_log=os.environ.get(ACCESS_LOG_VARIABLE) == "json")


def run(settings: ServerSettings) -> None:
    """Serve until SIGTERM or Ctrl-C, then finish what was accepted and return."""
    import uvicorn

    os.environ[RUN_VARIABLE] = str(settings.run_dir)
    os.environ[ACCESS_LOG_VARIABLE] = settings.access_log
    if settings.api_token:
        os.environ[TOKEN_VARIABLE] = settings.api_token
    own_metrics_dir = None
    if settings.workers > 1 and multiprocess_dir() is None:
        own_metrics_dir = tempfile.mkdtemp(prefix="mnist-keras-metrics-")
        os.environ[MULTIPROCESS_DIR_VARIABLE] = own_metrics_dir
    # uvicorn re-raises the signal that stopped it once it has shut down gracefully; a finished
    # shutdown is a success here, so that re-raise is ignored and the command returns 0.
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.run(
            "mnist_keras.serving.server:app_from_environment",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            http=functools.partial(DeadlineProtocol, request_timeout=settings.request_timeout),
            timeout_keep_alive=settings.idle_timeout,
            timeout_graceful_shutdown=settings.graceful_timeout,
            access_log=settings.access_log == "text",
            log_config=log_config(settings.access_log),
            log_level="info",
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if own_metrics_dir is not None:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)
