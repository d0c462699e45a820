"""Joining a Ray cluster at HOST:PORT: a wrong address or token is one line, within a bounded time.

Since Ray 2.59 a cluster started with `ray start --head` on a machine that has
a token (`ray get-auth-token --generate`) checks that token on every call, and
a driver joins only when it sends the same one. A driver without it, or with
another, is refused by the head; `ray.init` then retries for about 20 seconds,
printing a warning every second, and ends with a bare "Failed to connect".

So before Ray is imported, `prepare_to_join(address)` asks the head once
itself, with a timeout of JOIN_TIMEOUT_S: nothing listening, a token missing
or a token refused each raise a ClusterError that says what to do. When the
head takes this machine's token and `RAY_AUTH_MODE` is unset, it sets
`RAY_AUTH_MODE=token`, which Ray reads when it is imported: without it a
driver joining an explicit address never sends its token.

The token is read where Ray reads it (`RAY_AUTH_TOKEN`, then the file named by
`RAY_AUTH_TOKEN_PATH`, then `~/.ray/auth_token`), sent only to the head, and
never printed, logged or written anywhere: messages name its source, not it.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from pathlib import Path

from mnist_keras.errors import ClusterError

# Seconds to reach the head and hear its answer, each (TCP, then one call): a live head
# on a LAN answers in milliseconds, a dropped packet or firewall would otherwise hang.
JOIN_TIMEOUT_S = 10.0
AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"
TOKEN_VARIABLE = "RAY_AUTH_TOKEN"
TOKEN_PATH_VARIABLE = "RAY_AUTH_TOKEN_PATH"
# Where `ray get-auth-token --generate` writes the token (Ray's default, under the home directory).
DEFAULT_TOKEN_FILE = Path(".ray") / "auth_token"
# The first call every Ray client makes to the head (Ray's GCS), and the one a missing
# or different token is refused on: an empty request, answered with the cluster's id.
CLUSTER_ID_METHOD = "/ray.rpc.NodeInfoGcsService/GetClusterId"
TOKEN_HINT = ("set RAY_AUTH_TOKEN to the token `ray get-auth-token` prints on the head node "
              "(or copy its ~/.ray/auth_token to this machine)")


@dataclasses.dataclass(frozen=True)
class Token:
    """An authentication token and where it came from; its text never appears in repr or messages."""

    value: str = dataclasses.field(repr=False)
    source: str


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of a HOST:PORT address; ClusterError when it is not one."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"--address {address!r} is not HOST:PORT (the head's address and its --port, "
                           "e.g. 10.0.0.5:6379)")
    return host.strip("[]"), int(port)


def find_token() -> Token | None:
    """This machine's Ray token, looked up as Ray looks it up; None when there is none."""
    if os.environ.get(TOKEN_VARIABLE, "").strip():
        return Token(os.environ[TOKEN_VARIABLE].strip(), TOKEN_VARIABLE)
    if os.environ.get(TOKEN_PATH_VARIABLE):
        path = Path(os.environ[TOKEN_PATH_VARIABLE])
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ClusterError(f"{TOKEN_PATH_VARIABLE} names {path}, which cannot be read "
                               f"({error.strerror or error})") from None
        if not value:
            raise ClusterError(f"{TOKEN_PATH_VARIABLE} names {path}, which is empty")
        return Token(value, str(path))
    path = Path.home() / DEFAULT_TOKEN_FILE
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Token(value, str(path)) if value else None


def check_listening(address: str, timeout: float = JOIN_TIMEOUT_S) -> None:
    """ClusterError unless something accepts a TCP connection at `address` within `timeout`."""
    host, port = split_address(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        reason = f"no answer within {timeout:g} s" if isinstance(error, TimeoutError) else error.strerror or error
        raise ClusterError(f"nothing listens at {address} ({reason}): start the head there "
                           f"with `ray start --head --port={port}`, or pass the address it printed") from None


def head_answer(address: str, token: Token | None, timeout: float = JOIN_TIMEOUT_S) -> str:
    """How the head at `address` answers one call sent with `token`: "ok", "refused" or "unknown".

    "unknown" when gRPC is not installed or the head's answer means neither (an older or
    newer Ray, or not Ray at all): `ray.init` then decides.
    """
    try:
        import grpc
    except ImportError:
        return "unknown"
    metadata = [("authorization", f"Bearer {token.value}")] if token else None
    channel = grpc.insecure_channel(address)
    try:
        channel.unary_unary(CLUSTER_ID_METHOD)(b"", metadata=metadata, timeout=timeout)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.UNAUTHENTICATED:
            return "refused"
        if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise ClusterError(f"{address} accepted a connection but did not answer as a Ray head within "
                               f"{timeout:g} s: pass the head's --port (6379 unless it was given another)") from None
        return "unknown"
    finally:
        channel.close()
    return "ok"


def prepare_to_join(address: str, timeout: float = JOIN_TIMEOUT_S) -> None:
    """Check that the head at `address` can be joined with this machine's token, before Ray is imported.

    Raises ClusterError saying what to do when nothing listens there, when the
    head asks for a token this machine lacks, or refuses the one it has. When
    the head takes the token, turns on Ray's token mode for this process
    (`RAY_AUTH_MODE=token`) unless the environment already chose a mode.
    """
    if "://" in address:  # a Ray Client address (ray://...): Ray's client checks it
        return
    check_listening(address, timeout)
    if head_answer(address, None, timeout) != "refused":
        return  # the head asks for no token (or answers in a way only ray.init can judge)
    token = find_token()
    if token is None:
        raise ClusterError(f"the Ray cluster at {address} asks for a token and this machine has none: {TOKEN_HINT}")
    if head_answer(address, token, timeout) == "refused":
        raise ClusterError(f"the Ray cluster at {address} refused the token from {token.source}: {TOKEN_HINT}")
    mode = os.environ.get(AUTH_MODE_VARIABLE)
    if mode is None:
        if "ray" in sys.modules:
            # Ray reads the mode once, when it is imported; this process imported it first.
            raise ClusterError(f"the Ray cluster at {address} asks for a token: set {AUTH_MODE_VARIABLE}=token "
                               "in the environment before Ray is imported")
        os.environ[AUTH_MODE_VARIABLE] = "token"
    elif mode.lower() != "token":
        raise ClusterError(f"the Ray cluster at {address} asks for a token but {AUTH_MODE_VARIABLE}={mode} here "
                           "turns Ray's token off: unset it or set it to token")
