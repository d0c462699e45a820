"""How the server runs: `ServerSettings`, its defaults, and the checks on them, in one place.

`mnist-keras serve` takes its flags' defaults from here (`defaults()`), and
`mnist_keras.serving.server.run(settings)` runs what they say. This module
imports nothing from the web stack or Keras, so the command line can read it
before it chooses a backend.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path
from typing import Any

from mnist_keras.backends import cores_available
from mnist_keras.errors import SettingsError

TOKEN_VARIABLE = "MNIST_KERAS_API_TOKEN"  # the token's default comes from here when --api-token is not given
ACCESS_LOG_FORMATS = ("text", "json", "off")
EVENT_LOOPS = ("auto", "asyncio", "uvloop")
MAX_PORT = 65535

DEFAULT_HOST = "127.0.0.1"  # loopback: exposing the service is a choice, made behind a proxy
DEFAULT_PORT = 8000


# One process per core: one event loop keeps one core busy (the model and the image work run on it).
# Each worker holds its own model (~0.9 GB with the training libraries, a fraction of it with ONNX Runtime alone).
DEFAULT_WORKERS = cores_available()
DEFAULT_REQUEST_TIMEOUT = 10.0  # seconds for a whole request (headers and body) once it has started
DEFAULT_IDLE_TIMEOUT = 5.0  # seconds a connection may stay silent before (or between) requests
DEFAULT_GRACEFUL_TIMEOUT = 30.0  # seconds from SIGTERM to exit: drain, then finish every accepted request
# Seconds after SIGTERM of still accepting while /healthz answers 503: a balancer that checks every
# second sees it before the port closes. Raise it to your balancer's check interval.
DEFAULT_DRAIN_PERIOD = 1.0
DEFAULT_ACCESS_LOG = "text"
# "auto" is uvicorn's choice: uvloop where it is installed (not on Windows), else asyncio's own loop.
# `python benchmarks/serve_load.py [--keep-alive] [--loop asyncio]` (x86_64 AMD EPYC, AVX2, 2 cores;
# benchmarks/results/serve_load*.md, and the same runs repeated while measuring):
# - the default two workers: uvloop 1,500 requests/s (p99 28 ms) with a connection per request (ab)
#   and 1,807 (p99 35 ms) with connections kept open (wrk); asyncio 1,428-1,462 (p99 53 ms) and
#   661-685 (p99 64-68 ms; probably one worker accepting most of the kept-alive connections, not checked);
# - one worker, kept-alive connections: a saturated uvloop takes in new requests before it writes
#   the answers it has, and some wait many rounds (uvloop issues 123 and 631): 989-1,182 requests/s
#   but p99 198-268 ms, where asyncio gives 911-1,336 with p99 35-47 ms. With a connection per
#   request, uvloop 773-978 (p99 43-65 ms), asyncio 783-1,005 (p99 76-115 ms).
# So several workers run best on uvloop; one worker per container behind a pooling proxy on asyncio.
DEFAULT_EVENT_LOOP = "auto"


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """Everything `mnist-keras serve` can be told; checked when made (a bad value is a SettingsError)."""

    run_dir: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = DEFAULT_WORKERS
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT
    drain_period: float = DEFAULT_DRAIN_PERIOD
    access_log: str = DEFAULT_ACCESS_LOG
    event_loop: str = DEFAULT_EVENT_LOOP
    api_token: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= MAX_PORT:
            raise SettingsError(f"port must be between 0 and {MAX_PORT}, got {self.port}")
        if self.workers < 1:
            raise SettingsError(f"workers must be 1 or more, got {self.workers}")
        for name in ("request_timeout", "idle_timeout", "graceful_timeout"):
            value = getattr(self, name)
            if not 0 < value < math.inf:
                raise SettingsError(f"{name} must be a positive number of seconds, got {value}")
        if not 0 <= self.drain_period < self.graceful_timeout:
            raise SettingsError(f"drain_period ({self.drain_period:g} s) must be at least 0 and shorter than "
                                f"graceful_timeout ({self.graceful_timeout:g} s), which it is part of")
        if self.access_log not in ACCESS_LOG_FORMATS:
            raise SettingsError(f"access_log must be one of {', '.join(ACCESS_LOG_FORMATS)}, got {self.access_log!r}")
        if self.event_loop not in EVENT_LOOPS:
            raise SettingsError(f"event_loop must be one of {', '.join(EVENT_LOOPS)}, got {self.event_loop!r}")
        if self.event_loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise SettingsError("the uvloop event loop is not installed: pip install uvloop (not on Windows)")


def defaults() -> dict[str, Any]:
    """Each setting's default, by field name: what `mnist-keras serve --help` shows."""
    return {field.name: field.default for field in dataclasses.fields(ServerSettings)
            if field.default is not dataclasses.MISSING}
