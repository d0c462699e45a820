"""The service's parts on their own: limits, the decode pool, body parsing."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from starlette.datastructures import UploadFile
from starlette.requests import Request

from mnist_keras.constants import NUM_PIXELS
from mnist_keras.serving.app import (
    JSON_BYTES_PER_NUMBER,
    DecodePool,
    RequestProblem,
    ServiceLimits,
    read_json_body,
    unsupported,
    upload_bytes,
)


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
