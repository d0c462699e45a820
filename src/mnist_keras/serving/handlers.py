"""The route handlers: one async function per route of ours in the table (mnist_keras.serving.routes).

Each handler gets the app's `Service` through the `current_service`
dependency (so a test can stand in another with `app.dependency_overrides`),
reads its body with mnist_keras.serving.bodies, and returns a record; errors
are raised (`RequestProblem`, `ImageError`) and turned into JSON 4xx answers
by the app's error handlers. Every image goes through mnist_keras.inference.images,
the same path as the `predict` command.
The prediction handlers take `(request, service)` and nothing else, so that
the app's prediction lane (mnist_keras.serving.app.PredictionLane) can call
them straight with the Service.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from mnist_keras.inference.images import pixels_to_image
from mnist_keras.serving.bodies import (
    RequestProblem,
    check_batch_size,
    media_type,
    read_form,
    read_json_body,
    unsupported,
    upload_bytes,
)
from mnist_keras.serving.service import Service, predictor_name, with_index

STATIC_DIR = Path(__file__).parent / "static"
SHUTTING_DOWN = "the service is shutting down: it finishes the requests it has; send new ones elsewhere"


async def current_service(request: Request) -> Service:
    """The app's Service, for the handlers (a FastAPI dependency; async, so FastAPI calls it on the event loop,
    not on its thread pool)."""
    return request.app.state.service


CurrentService = Annotated[Service, Depends(current_service)]


async def drawing_page() -> HTMLResponse:
    return HTMLResponse((STATIC_DIR / "index.html").read_text(encoding="utf-8"))


async def healthz(service: CurrentService) -> dict[str, str]:
    """Liveness: the model is loaded and the service answers. Readiness: 503 once it is shutting down."""
    if service.readiness.draining:
        raise RequestProblem(503, SHUTTING_DOWN)
    return {"status": "ok", "predictor": predictor_name(service.predictor)}


async def about(service: CurrentService) -> dict[str, Any]:
    """Which run answers: run name, recipe, model family, predictor, MNIST and real-handwriting accuracy."""
    return service.about


async def metrics(service: CurrentService) -> Response:
    """Prometheus text format: requests, latency, images by outcome, the model (summed over workers)."""
    payload, content_type = service.metrics.exposition()
    return Response(payload, media_type=content_type)


async def predict(request: Request, service: CurrentService) -> Response:
    """Read one digit: an image upload in field `file`, or JSON `{"pixels": [...]}`."""
    kind = media_type(request)
    if kind == "multipart/form-data":
        data = await one_upload(request, service)
        [(gray, image)] = await service.decoders.run(functools.partial(service.uploads_to_answer, [data]))
        return json_answer((await run_in_threadpool(service.answer, [image], [gray]))[0])
    if kind == "application/json":
        image = pixels_to_image(await read_json_body(request, "pixels", service.limits.max_json_bytes))
        return json_answer((await answer_soon(service, [image]))[0])
    raise unsupported(request, "file", "pixels")


async def predict_batch(request: Request, service: CurrentService) -> Response:
    """Read several digits: image uploads in field `files`, or JSON `{"images": [pixels, ...]}`."""
    limits = service.limits
    kind = media_type(request)
    if kind == "multipart/form-data":
        async with read_form(request, max_files=limits.max_batch_images + 1) as form:
            values = form.getlist("files")
            check_batch_size(len(values), limits.max_batch_images, "files")
            uploads = [await upload_bytes(value, f"files[{index}]", limits.max_image_bytes)
                       for index, value in enumerate(values)]
        decoded = await service.decoders.run(functools.partial(service.uploads_to_answer, uploads))
        greys, images = [gray for gray, _ in decoded], [image for _, image in decoded]
        return json_answer(await run_in_threadpool(service.answer, images, greys))
    if kind == "application/json":
        items = await read_json_body(request, "images", limits.max_json_bytes)
        if not isinstance(items, list):
            raise RequestProblem(422, "'images' must be a list of pixel arrays")
        check_batch_size(len(items), limits.max_batch_images, "images")
        images = [with_index(index, pixels_to_image, item) for index, item in enumerate(items)]
        return json_answer(await run_in_threadpool(service.answer, images))
    raise unsupported(request, "files", "images")


async def answer_soon(service: Service, images: list[np.ndarray]) -> list[dict[str, Any]]:
    """`service.answer(images)` for a single image: on the event loop while the model is free (its ~0.1 ms
    costs less than the hand-off to a thread and back), else on the thread pool, to wait there."""
    answers = service.answer_if_free(images)
    return answers if answers is not None else await run_in_threadpool(service.answer, images)


def json_answer(content: Any) -> Response:
    """Records of ours (plain dicts, lists, numbers and strings, keyed as the response model) as a JSON answer.

    Encoded once by orjson, not checked again against the route's response
    model, which only documents them: FastAPI's check and encoding of the
    784 numbers of an answer's image took longer than reading the digit.
    """
    return Response(orjson.dumps(content), media_type="application/json")


async def read(request: Request, service: CurrentService) -> dict[str, Any]:
    """Read every digit, in reading order: an image upload in field `file`, or JSON `{"pixels": [[...], ...]}`
    of any size. The same answer as `mnist-keras read` for a file."""
    kind = media_type(request)
    if kind == "multipart/form-data":
        data = await one_upload(request, service)
        gray, size = await service.decoders.run(functools.partial(service.grey_from_bytes, data))
    elif kind == "application/json":
        values = await read_json_body(request, "pixels", service.limits.max_json_bytes)
        gray, size = await run_in_threadpool(service.grey_from_pixels, values), None
    else:
        raise unsupported(request, "file", "pixels")
    return await service.decoders.run(functools.partial(service.read, gray, size))


async def one_upload(request: Request, service: Service) -> bytes:
    """The bytes of the one image upload in field `file`."""
    async with read_form(request, max_files=1) as form:
        if "file" not in form:
            raise RequestProblem(422, "multipart body has no field 'file'")
        return await upload_bytes(form["file"], "file", service.limits.max_image_bytes)
