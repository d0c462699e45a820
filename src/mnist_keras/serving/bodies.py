"""Reading request bodies by hand: JSON pixels or multipart uploads, within the service's limits.

Each helper takes a request (or an uploaded value) and its limit, and either
returns what was sent or raises `RequestProblem` with the 4xx status that
says why not: 413 for too large, 415 for a content type the route does not
read, 422 for anything malformed. Turning pixels or bytes into images is
mnist_keras.inference.images's job, not this module's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

# Multipart text fields we accept besides the files (none are used, a few are tolerated).
MAX_FORM_FIELDS = 16
# JSON bodies up to this size are parsed on the event loop: one image's pixels as JSON are 2-20 kB.
INLINE_JSON_BYTES = 64 * 1024


class RequestProblem(Exception):
    """A request the service refuses, with the status code that says why."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def parse_json(data: bytes) -> Any:
    """`json.loads(data)`, by orjson where it can (several times faster): the same value to every route.

    orjson refuses some JSON the standard library takes (NaN and Infinity,
    numbers beyond a double's range, UTF-16 and UTF-32 text, a UTF-8
    byte-order mark, lone surrogates); those bodies, and malformed ones, go
    to `json.loads`, whose value or error is then the answer. One difference
    is left, which no route sees: orjson reads an integer beyond 64 bits as
    the nearest double where `json.loads` keeps the integer, and every route
    reads numbers as doubles.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


async def read_json_body(request: Request, key: str, max_bytes: int) -> Any:
    """The value under `key` of a JSON object body; 413 over `max_bytes`, 422 for anything malformed."""
    data = await request.body()
    if len(data) > max_bytes:
        raise RequestProblem(413, f"JSON body is {len(data):,} bytes, over the limit of {max_bytes:,}")
    try:
        # A megabyte of JSON takes a noticeable moment: parsed off the event loop. One image's
        # pixels take ~0.05 ms, less than the hand-off to a thread.
        body = parse_json(data) if len(data) <= INLINE_JSON_BYTES else await run_in_threadpool(parse_json, data)
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


def multipart_problem(detail: str) -> RequestProblem:
    """413 when the multipart parser's limits were hit (too many parts, a part too large), else 422."""
    too_large = detail.startswith("Too many") or "exceeded maximum size" in detail
    return RequestProblem(413 if too_large else 422, f"multipart body refused: {detail}")


def unsupported(request: Request, file_field: str, json_field: str) -> RequestProblem:
    shown = media_type(request) or "none"
    return RequestProblem(
        415, f"unsupported content type {shown!r}: send multipart/form-data with field {file_field!r} "
        f"or application/json with key {json_field!r}"
    )


def check_batch_size(count: int, limit: int, field: str) -> None:
    if count == 0:
        raise RequestProblem(422, f"no images: send at least one in {field!r}")
    if count > limit:
        raise RequestProblem(413, f"{count} images in one batch, over the limit of {limit}")
