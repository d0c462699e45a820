"""The service's raw ASGI middlewares: each one check, made before the app sees a request.

- `BodyLimit` refuses a body over its limit with 413, counting what arrives
  (not only what the client declares).
- `BearerToken` refuses every route the table guards (mnist_keras.serving.routes)
  without `Authorization: Bearer <token>`, with 401.
- `CloseWhileDraining` marks every answer `Connection: close` once the process
  drains for shutdown, so that no client sends another request on a
  connection about to close.
Refusals are JSON `{"error": "..."}`, as everywhere in the service.
"""

from __future__ import annotations

import hmac

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnist_keras.serving.routes import is_open_path
from mnist_keras.serving.service import Readiness

CLOSE_HEADER = (b"connection", b"close")


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
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self.too_large()(scope, receive, send)
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
                await self.too_large()(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    def too_large(self) -> JSONResponse:
        return JSONResponse({"error": f"request body is over the limit of {self.max_bytes:,} bytes"}, status_code=413)


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


class CloseWhileDraining:
    """ASGI middleware: once `readiness` drains, every answer says `Connection: close`.

    A kept-alive client then opens a new connection for its next request,
    instead of sending it on one the server is about to close (where it
    would be lost).
    """

    def __init__(self, app: ASGIApp, readiness: Readiness) -> None:
        self.app = app
        self.readiness = readiness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.readiness.draining:
                headers = list(message.get("headers", []))
                if CLOSE_HEADER not in headers:
                    message = {**message, "headers": [*headers, CLOSE_HEADER]}
            await send(message)

        await self.app(scope, receive, send_closing)
