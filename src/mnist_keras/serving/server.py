"""Running the service: uvicorn with bounded slow clients, a shutdown that loses nothing, N workers, metrics.

`run(settings)` serves `settings.run_dir` (mnist_keras.serving.settings) under
uvicorn. What an operator can rely on:
- **Slow and idle clients are cut off.** A connection must start a request
  within `idle_timeout` (uvicorn's keep-alive timeout, which uvicorn itself
  only arms after a first response), and a request's headers and body must
  all arrive within `request_timeout` of its first byte, or the client gets
  408 and the connection is closed (`DeadlineProtocol`, uvicorn's httptools
  HTTP/1.1 protocol with that one clock and a bound on the headers added;
  uvicorn has no such setting).
- **Fast on one core.** httptools parses HTTP and uvloop runs the event loop
  (where it installs): with them uvicorn spends a fraction of the CPU per
  request that h11 and asyncio's own loop take (profiled with py-spy at 31c6469:
  the README's "What a JSON /predict costs").
- **SIGTERM loses nothing.** The process drains (`DrainingServer`): `/healthz`
  answers 503 and every answer says `Connection: close`, while it goes on
  accepting and serving for `drain_period`. Then it stops new connections
  from joining the listen backlog, answers every connection already in it,
  and only then closes the listening socket (`close_listeners`): closing a
  socket resets the connections queued on it, which is what uvicorn's own
  shutdown does. Every request on a connection it accepted is answered,
  within `graceful_timeout` of the signal, and the command exits 0. Ctrl-C
  does the same without the drain period; a second Ctrl-C stops at once.
- **Workers.** `workers` > 1 runs N processes sharing one listening socket,
  each loading its own predictor and draining as above (`Workers`; uvicorn's
  supervisor would run its own server class in them, whose shutdown resets
  the backlog). A worker that dies is replaced; one stopped alone (SIGTERM to
  its pid) drains and leaves the socket to the others. The metrics are
  summed over them in prometheus-client's multiprocess mode.
- **Access logs** as uvicorn's text lines, JSON lines, or none.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import logging
import multiprocessing
import os
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.config import LOGGING_CONFIG, STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mnist_keras.serving.app import create_app
from mnist_keras.serving.metrics import MULTIPROCESS_DIR_VARIABLE, multiprocess_dir
from mnist_keras.serving.service import Readiness
from mnist_keras.serving.settings import DEFAULT_REQUEST_TIMEOUT, ServerSettings

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
POLL_SECONDS = 0.05  # how often a shutdown step looks again: well under any timeout it waits for
# A handshake whose SYN arrived before the door closed completes one round trip later, into the
# backlog; half a second covers any round trip short of a satellite link's.
HANDSHAKE_SECONDS = 0.5
# Linux's SO_ATTACH_FILTER (the asm-generic value, which the socket module does not name) and a
# classic BPF program for it: drop TCP segments with SYN set and ACK clear, keep everything else.
# On a listening socket that refuses new handshakes (the client's SYN goes unanswered until the
# socket closes, then is refused) while handshakes under way still complete.
SO_ATTACH_FILTER = 26
TCP_FLAGS_OFFSET = 13  # of the flags byte in the TCP header, where a TCP socket filter's offsets start
TCP_SYN, TCP_ACK = 0x02, 0x10
# <linux/filter.h>: BPF_LD|BPF_B|BPF_ABS, BPF_ALU|BPF_AND|BPF_K, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K.
BPF_LOAD_BYTE, BPF_AND, BPF_JUMP_IF_EQUAL, BPF_RETURN = 0x30, 0x54, 0x15, 0x06
BPF_DROP, BPF_KEEP = 0, 0xFFFFFFFF  # a socket filter returns how many bytes of the packet to keep
REFUSE_NEW_HANDSHAKES = (
    (BPF_LOAD_BYTE, 0, 0, TCP_FLAGS_OFFSET),
    (BPF_AND, 0, 0, TCP_SYN | TCP_ACK),
    (BPF_JUMP_IF_EQUAL, 0, 1, TCP_SYN),  # SYN alone: the next instruction, else skip one
    (BPF_RETURN, 0, 0, BPF_DROP),
    (BPF_RETURN, 0, 0, BPF_KEEP),
)
# Request line and headers: h11's bound (the HTTP/1.1 implementation the service used before httptools).
MAX_HEADER_BYTES = 16 * 1024
HEADER_FRAMING_BYTES = 4  # ": " and CRLF round each header's name and value
SUPERVISE_SECONDS = 0.5  # how often the supervisor looks for dead workers
WORKER_EXIT_SECONDS = 10.0  # beyond graceful_timeout, for a worker to log and exit before it is killed

logger = logging.getLogger("mnist_keras.serving.server")


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP/1.1 protocol, plus: a request must arrive whole within `request_timeout`,
    with headers of at most `max_header_bytes`.

    The clock starts at a request's first byte and stops when its body has
    arrived; a client still sending when it runs out gets 408 and the
    connection is closed. New connections must start a request within
    uvicorn's keep-alive timeout, as idle kept-alive ones already must.
    Headers over the limit get 431 and the connection is closed (httptools
    itself sets no limit: it would hold whatever a client sends for as long
    as the deadline allows).
    """

    def __init__(self, *args: Any, request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                 max_header_bytes: int = MAX_HEADER_BYTES, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout
        self.max_header_bytes = max_header_bytes
        self.request_deadline: Any = None  # an asyncio.TimerHandle while a request is arriving
        self.header_bytes = 0  # of the request whose headers are arriving

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        if self.request_deadline is None and (self.cycle is None or self.cycle.response_complete):
            self.request_deadline = self.loop.call_later(self.request_timeout, self.request_too_slow)
        super().data_received(data)
        if self.header_bytes > self.max_header_bytes and not self.transport.is_closing():
            self.refuse(431, "Request Header Fields Too Large",
                        f"request headers are over the limit of {self.max_header_bytes:,} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.header_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self.header_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self.header_bytes += len(name) + len(value) + HEADER_FRAMING_BYTES

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.cancel_request_deadline()  # the request has arrived whole

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_request_deadline()
        super().connection_lost(exc)

    def cancel_request_deadline(self) -> None:
        if self.request_deadline is not None:
            self.request_deadline.cancel()
            self.request_deadline = None

    def answer_started(self) -> bool:
        """Whether an answer to the request now arriving has begun (the app may answer before the body is in)."""
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete and cycle.response_started

    def request_too_slow(self) -> None:
        self.request_deadline = None
        if self.transport.is_closing():
            return
        client = "%s:%d" % self.client if self.client else "a client"
        logger.warning("closing the connection from %s: request not received whole within %gs",
                       client, self.request_timeout)
        self.refuse(408, "Request Timeout", f"request not received whole within {self.request_timeout:g} s")

    def refuse(self, status: int, reason: str, error: str) -> None:
        """Answer `status` with JSON {"error": ...} unless an answer has begun, and close the connection."""
        if not self.answer_started():
            body = json.dumps({"error": error}).encode()
            self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nconnection: close\r\n"
                                 b"content-length: %d\r\n\r\n%s" % (status, reason.encode(), len(body), body))
        self.transport.close()


# ---------------------------------------------------------------- closing the door without a reset


def refuse_new_handshakes(listener: Any) -> bool:
    """Stop new connections from joining `listener`'s backlog (Linux); False where the system cannot.

    Connections already in the backlog, and handshakes under way, are untouched.
    """
    if not sys.platform.startswith("linux"):
        return False
    program = b"".join(struct.pack("HBBI", *instruction) for instruction in REFUSE_NEW_HANDSHAKES)
    buffer = ctypes.create_string_buffer(program)
    # struct sock_fprog: the number of instructions, then a pointer to them.
    fprog = struct.pack("HP", len(REFUSE_NEW_HANDSHAKES), ctypes.addressof(buffer))
    try:
        listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError as error:
        logger.warning("cannot refuse new connections before closing the port (%s)", error)
        return False
    return True


def has_queued_connections(listener: Any) -> bool:
    """Whether connections wait in `listener`'s backlog (a listening socket is readable while any do)."""
    readable, _, _ = select.select([listener], [], [], 0)
    return bool(readable)


async def close_listeners(servers: list[asyncio.AbstractServer], deadline: float, last_out: bool = True) -> None:
    """Close the servers' listening sockets without resetting a connection the kernel accepted for them.

    `last_out`: no other process listens on these sockets, so closing them
    resets what is queued. Then new handshakes are refused first; the servers
    go on accepting until the handshakes under way have landed and the
    backlog is empty (or `deadline`, in the event loop's time, has passed);
    and the sockets close. Where new handshakes cannot be refused, the
    backlog never stays empty under load, so it is taken in for one handshake
    time more, and a connection made in the last instant may be reset.
    Otherwise this process's handles close at once: the socket stays open,
    and its backlog is the other processes' to take in.
    """
    loop = asyncio.get_running_loop()
    if not last_out:
        for server in servers:
            server.close()
        return
    listeners = [listener for server in servers for listener in (server.sockets or ())]
    door_closed = all([refuse_new_handshakes(listener) for listener in listeners])
    await asyncio.sleep(max(0.0, min(HANDSHAKE_SECONDS, deadline - loop.time())))
    if not door_closed:
        deadline = min(deadline, loop.time() + HANDSHAKE_SECONDS)
    while loop.time() < deadline and any(has_queued_connections(listener) for listener in listeners):
        await asyncio.sleep(POLL_SECONDS)  # the event loop accepts them meanwhile
    # Each connection accepted gets its transport on the loop's next turn; a server closed before
    # then would refuse it (asyncio's Server), so the close waits one turn.
    await asyncio.sleep(0)
    for server in servers:
        server.close()


# ---------------------------------------------------------------- one serving process


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with a shutdown that drains (see the module docstring) instead of closing at once."""

    def __init__(self, config: uvicorn.Config, readiness: Readiness, drain_period: float,
                 service_stopping: Any = None) -> None:
        super().__init__(config)
        self.readiness = readiness
        self.drain_period = drain_period
        # A worker's: the supervisor's multiprocessing.Event, set before it stops every worker.
        self.service_stopping = service_stopping
        self.stopped_by: int | None = None  # the first stop signal

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.stopped_by is None:
            self.stopped_by = sig
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout_graceful_shutdown
        self.readiness.drain()
        if self.stopped_by == signal.SIGTERM:
            logger.info("draining: /healthz answers 503; still accepting for %gs", self.drain_period)
            await self.wait_until(min(deadline, loop.time() + self.drain_period))
        logger.info("no longer accepting connections; answering those accepted")
        await close_listeners(self.servers, loop.time() if self.force_exit else deadline, self.last_out())
        for listener in sockets or []:
            listener.close()  # this process's handle on the supervisor's socket
        state = self.server_state
        # Every connection closes itself: after its next answer (they all say Connection: close
        # now), or when it has been idle for the keep-alive timeout.
        await self.wait_until(deadline, done=lambda: not state.connections and not state.tasks)
        if state.tasks and not self.force_exit:
            logger.error("cancelling %d request(s) still running after the graceful timeout", len(state.tasks))
        for task in list(state.tasks):
            task.cancel(msg="the graceful timeout has passed")
        for connection in list(state.connections):
            connection.shutdown()
        if not self.force_exit:
            await self.lifespan.shutdown()

    def last_out(self) -> bool:
        """Whether no other process will listen on this one's sockets once it has stopped.

        A single server owns its socket. A worker shares the supervisor's, and
        is the last out when the whole service stops: the supervisor says so
        before it sends SIGTERM, and Ctrl-C reaches every process at once. A
        worker stopped alone leaves the socket to the others.
        """
        if self.service_stopping is None:
            return True
        return self.stopped_by == signal.SIGINT or self.service_stopping.is_set()

    async def wait_until(self, deadline: float, done: Callable[[], bool] = lambda: False) -> None:
        """Until the deadline (in the event loop's time), `done()`, or a second Ctrl-C."""
        loop = asyncio.get_running_loop()
        while not done() and not self.force_exit and loop.time() < deadline:
            await asyncio.sleep(POLL_SECONDS)


def log_config(access_log: str) -> dict[str, Any]:
    """uvicorn's logging set-up, with the access log as its text lines, JSON lines (our middleware's) or off."""
    config = json.loads(json.dumps(LOGGING_CONFIG))  # a deep copy
    config["formatters"]["json"] = {"()": "mnist_keras.serving.metrics.JsonLines"}
    config["formatters"]["access"]["()"] = "mnist_keras.serving.metrics.AccessText"  # the same lines, cheaper
    config["handlers"]["json"] = {"formatter": "json", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"}
    config["loggers"]["mnist_keras"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config["loggers"]["mnist_keras.access"] = {"handlers": ["json"], "level": "INFO", "propagate": False}
    if access_log == "json":
        for name in ("uvicorn", "uvicorn.error", "mnist_keras"):
            config["loggers"][name]["handlers"] = ["json"]
    return config


def build_app(settings: ServerSettings, readiness: Readiness) -> FastAPI:
    """The app one serving process runs, draining with `readiness`."""
    return create_app(settings.run_dir, api_token=settings.api_token,
                      json_access_log=settings.access_log == "json", readiness=readiness)


def uvicorn_config(settings: ServerSettings, readiness: Readiness) -> uvicorn.Config:
    """uvicorn's configuration for `settings`; the app is built when the server starts (and logs)."""
    return uvicorn.Config(
        functools.partial(build_app, settings, readiness),
        factory=True,
        host=settings.host,
        port=settings.port,
        http=functools.partial(DeadlineProtocol, request_timeout=settings.request_timeout),
        loop=settings.event_loop,  # uvloop where it installs, unless asked (serving.settings.DEFAULT_EVENT_LOOP)
        timeout_keep_alive=settings.idle_timeout,
        timeout_graceful_shutdown=settings.graceful_timeout,
        access_log=settings.access_log == "text",
        log_config=log_config(settings.access_log),
        log_level="info",
    )


def serve(settings: ServerSettings, sockets: list[socket.socket] | None = None, service_stopping: Any = None) -> None:
    """Serve in this process until a stop signal, then drain: on a socket of its own, or as a worker on
    the supervisor's `sockets`, with its `service_stopping` event."""
    readiness = Readiness()
    server = DrainingServer(uvicorn_config(settings, readiness), readiness, settings.drain_period, service_stopping)
    server.run(sockets=sockets)


# ---------------------------------------------------------------- several workers


def serve_worker(settings: ServerSettings, listener: socket.socket, service_stopping: Any) -> None:
    """A worker process: serve on the supervisor's listening socket until a stop signal."""
    # Ctrl-C reaches every process of the terminal, and uvicorn raises it again once it has drained.
    with contextlib.suppress(KeyboardInterrupt):
        serve(settings, [listener], service_stopping)


class Workers:
    """`settings.workers` processes serving one listening socket; each drains on a stop signal."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")  # a fresh interpreter each: no state forked
        self.processes: list[multiprocessing.process.BaseProcess] = []
        self.stop = threading.Event()
        self.service_stopping = self.context.Event()  # tells the workers that they all stop

    def run(self) -> None:
        """Start the workers, replace any that dies, and on SIGTERM or Ctrl-C stop them all and wait."""
        listener = uvicorn_config(self.settings, Readiness()).bind_socket()  # the workers build the app
        previous = {sig: signal.signal(sig, self.stop_requested) for sig in STOP_SIGNALS}
        try:
            logger.info("started the supervisor [%d] of %d workers", os.getpid(), self.settings.workers)
            self.processes = [self.start(listener) for _ in range(self.settings.workers)]
            while not self.stop.wait(SUPERVISE_SECONDS):
                self.replace_dead(listener)
        finally:
            self.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            listener.close()

    def stop_requested(self, sig: int, frame: Any) -> None:
        self.stop.set()

    def start(self, listener: socket.socket) -> multiprocessing.process.BaseProcess:
        process = self.context.Process(target=serve_worker, args=(self.settings, listener, self.service_stopping))
        process.start()
        return process

    def replace_dead(self, listener: socket.socket) -> None:
        for index, process in enumerate(self.processes):
            if process.is_alive():
                continue
            if process.exitcode == STARTUP_FAILURE:  # the same would happen again: give up
                self.stop.set()
                raise RuntimeError(f"worker [{process.pid}] could not start; see its log above")
            logger.warning("worker [%d] died (exit code %s); starting another", process.pid, process.exitcode)
            self.processes[index] = self.start(listener)

    def stop_all(self) -> None:
        """SIGTERM to each worker (each drains as a single server does), then wait; kill what outlives that."""
        self.service_stopping.set()
        for process in self.processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            process.join(self.settings.graceful_timeout + WORKER_EXIT_SECONDS)
            if process.is_alive():
                logger.error("worker [%d] did not stop within the graceful timeout; killing it", process.pid)
                process.kill()
                process.join()


# ---------------------------------------------------------------- the command


@contextlib.contextmanager
def stop_signals_ignored_after_shutdown() -> Iterator[None]:
    """uvicorn raises the signal that stopped it again once it has shut down gracefully; a finished
    shutdown is a success here, so that second delivery is ignored and the command returns 0."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(settings: ServerSettings) -> None:
    """Serve until SIGTERM or Ctrl-C, then drain and answer everything accepted, and return."""
    own_metrics_dir = None
    if settings.workers > 1 and multiprocess_dir() is None:
        own_metrics_dir = tempfile.mkdtemp(prefix="mnist-keras-metrics-")
        os.environ[MULTIPROCESS_DIR_VARIABLE] = own_metrics_dir  # read by each worker as it starts
    try:
        with stop_signals_ignored_after_shutdown():
            if settings.workers == 1:
                serve(settings)
            else:
                Workers(settings).run()
    finally:
        if own_metrics_dir is not None:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)
