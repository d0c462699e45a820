"""What every route shares: the predictor, what it is, the limits, the decode pool, the metrics, the readiness.

`Service` is built once per app by `mnist_keras.serving.app.create_app` and
reached by the route handlers through a FastAPI dependency. `load_source`
turns a run directory (or any object with `.predict`) into a predictor, and
`describe_source` says which run answers (for `/about` and the metrics).
`ServiceLimits` bounds what one request may ask; `DecodePool` decodes images
on a few threads of its own; `Readiness` says whether this process still
takes new work (the server drains it on SIGTERM).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mnist_keras.constants import NUM_PIXELS
from mnist_keras.inference.decision import NOT_DIGIT_THRESHOLD
from mnist_keras.inference.images import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    ImageError,
    decode_grey,
    image_as_lists,
    mnist_style,
    pixels_to_grey,
)
from mnist_keras.inference.predictors import load_predictor, predict_images
from mnist_keras.inference.reading import read_grey, several_digits
from mnist_keras.rundir import CONFIG_FILE, METRICS_FILE
from mnist_keras.serving.metrics import ServiceMetrics

# A batch of the largest images plus multipart framing; JSON pixels are far smaller.
MAX_BATCH_IMAGES = 64
MAX_REQUEST_BYTES = 4 * MAX_IMAGE_BYTES
# JSON text allowed per pixel value: "0.12345678901234568, " is 21 characters. Parsed JSON
# takes ~10 times its size in Python objects (32 MB of numbers: 2 s and 320 MB), so JSON
# bodies get their own limit, room for a full batch and no more.
JSON_BYTES_PER_NUMBER = 32
# Images decoded at once, each on one of this many dedicated threads. A small file can
# decode to ~100 MB of pixels (a 4096x4096 PNG of a few kilobytes), so the number in
# flight bounds the service's working memory, and keeping decoding on few threads keeps
# the allocator from holding freed pixel memory in an arena per thread of the general
# pool. Decoding is CPU-bound: more at once than there are cores gains nothing.
MAX_CONCURRENT_DECODES = min(8, max(2, os.cpu_count() or 2))
# A prediction record's fields before the image, in the order mnist_keras.serving.schemas.Prediction lists them.
ANSWER_FIELDS = ("digit", "confidence", "probabilities", "is_digit")


@dataclasses.dataclass(frozen=True)
class ServiceLimits:
    """How much one request may ask of the service."""

    max_image_bytes: int = MAX_IMAGE_BYTES
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_batch_images: int = MAX_BATCH_IMAGES
    max_concurrent_decodes: int = MAX_CONCURRENT_DECODES

    @property
    def max_json_bytes(self) -> int:
        """JSON bodies: room for a full batch of pixel arrays, and no more."""
        return self.max_batch_images * NUM_PIXELS * JSON_BYTES_PER_NUMBER


class DecodePool:
    """Image decoding on a few dedicated threads (see MAX_CONCURRENT_DECODES), off the event loop."""

    def __init__(self, workers: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mnist-keras-decode")

    async def run(self, function: Callable[[], Any]) -> Any:
        """`function()` on a decoding thread; the event loop keeps serving meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class Readiness:
    """Whether this process takes new work: yes from its start until the server begins to shut down.

    The server calls `drain()` on SIGTERM. From then on `/healthz` answers
    503 and every answer closes its connection, while every request that
    still arrives is served as before (see mnist_keras.serving.server).
    """

    def __init__(self) -> None:
        self.draining = False

    def drain(self) -> None:
        self.draining = True


class Service:
    """What the routes share: the predictor, what it is, the limits, the decode pool, the metrics, the readiness."""

    def __init__(self, predictor: Any, about: dict[str, Any], limits: ServiceLimits, metrics: ServiceMetrics,
                 readiness: Readiness) -> None:
        self.predictor = predictor
        self.about = about
        self.limits = limits
        self.metrics = metrics
        self.readiness = readiness
        metrics.describe_model(about)
        self.decoders = DecodePool(limits.max_concurrent_decodes)
        # Model calls are serialised: not every backend's predict is safe to run concurrently,
        # while decoding and preprocessing (the larger share of the work) still run in parallel.
        self.predict_lock = threading.Lock()

    def grey_from_bytes(self, data: bytes) -> tuple[np.ndarray, tuple[int, int]]:
        """An upload → its grey image and the image's own (width, height), within the limits."""
        return decode_grey(data, max_bytes=self.limits.max_image_bytes, max_pixels=self.limits.max_image_pixels)

    def grey_from_pixels(self, values: Any) -> np.ndarray:
        return pixels_to_grey(values, max_pixels=self.limits.max_image_pixels)

    def uploads_to_answer(self, uploads: Iterable[bytes]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each upload as (its grey image, the 28×28 model input); an ImageError names the batch item."""
        found = []
        for index, data in enumerate(uploads):
            gray = with_index(index, lambda data: self.grey_from_bytes(data)[0], data)
            found.append((gray, with_index(index, mnist_style, gray)))
        return found

    def answer(self, images: list[np.ndarray], greys: list[np.ndarray | None] | None = None) -> list[dict[str, Any]]:
        """A record per image, with the 28×28 image the model read. An image that came as a file
        (its grey image in `greys`) in which `read` finds several digits is refused, as by `predict`."""
        with self.predict_lock:
            records = predict_images(self.predictor, images)
        return self.finish(records, images, greys)

    def answer_if_free(self, images: list[np.ndarray]) -> list[dict[str, Any]] | None:
        """`answer(images)` if no other thread is using the model now; else None, and nothing done.

        For the event loop, which must not wait for a batch on another thread.
        """
        if not self.predict_lock.acquire(blocking=False):
            return None
        try:
            records = predict_images(self.predictor, images)
        finally:
            self.predict_lock.release()
        return self.finish(records, images)

    def finish(self, records: list[dict[str, Any]], images: list[np.ndarray],
               greys: list[np.ndarray | None] | None = None) -> list[dict[str, Any]]:
        """The model's records as the service answers them: counted, the image added, in `Prediction`'s order."""
        for index, gray in enumerate(greys or []):
            if gray is not None:
                records[index] |= several_digits(gray, self.locked)
        self.metrics.count_readings(record["is_digit"] for record in records)
        return [answer_record(record, image) for record, image in zip(records, images)]

    def read(self, gray: np.ndarray, size: tuple[int, int] | None = None) -> dict[str, Any]:
        """Every digit in a grey image, in reading order (what `mnist-keras read` prints for a file)."""
        reading = read_grey(gray, self.locked, size)
        self.metrics.count_readings(mark["is_digit"] for line in reading["lines"] for mark in line)
        return reading

    @property
    def locked(self) -> LockedPredictor:
        return LockedPredictor(self.predictor, self.predict_lock)


class LockedPredictor:
    """A predictor whose calls take the service's model lock: reading calls the model several
    times per image, and its segmentation between the calls runs in parallel with other requests."""

    def __init__(self, predictor: Any, lock: threading.Lock) -> None:
        self.predictor, self.lock = predictor, lock

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        with self.lock:
            return self.predictor.predict(pixels)


def answer_record(record: dict[str, Any], image: np.ndarray) -> dict[str, Any]:
    """A prediction record and its 28×28 image, keyed in the order of `Prediction`'s fields (the answer's JSON
    is encoded straight from it), `reason` last and only when there is one."""
    answer = {field: record[field] for field in ANSWER_FIELDS}
    answer["image"] = image_as_lists(image)
    if "reason" in record:
        answer["reason"] = record["reason"]
    return answer


def with_index(index: int, function: Callable[[Any], np.ndarray], value: Any) -> np.ndarray:
    """Call `function(value)`; an ImageError names the batch item it came from."""
    try:
        return function(value)
    except ImageError as error:
        raise type(error)(f"item {index}: {error}") from None


def load_source(source: Any) -> Any:
    """A predictor: `source` itself if it has `.predict`, else the run directory it names."""
    if hasattr(source, "predict"):
        return source
    return load_predictor(source)


def describe_source(source: Any, predictor: Any) -> dict[str, Any]:
    """Which run answers: its name, recipe, model family, accuracies on MNIST and real handwriting, and the
    "not a digit" decision: the threshold in force and what it costs on MNIST test (from metrics.json)."""
    about: dict[str, Any] = {"run": None, "recipe": None, "model": None, "predictor": predictor_name(predictor),
                             "test_accuracy": None, "handwriting_accuracy": None,
                             "not_digit_threshold": NOT_DIGIT_THRESHOLD, "test_refused": None,
                             "test_accuracy_with_refusals": None}
    if hasattr(source, "predict"):
        return about
    run_dir = Path(source)
    record = read_json_or_empty(run_dir / CONFIG_FILE)
    metrics = read_json_or_empty(run_dir / METRICS_FILE)
    recipe = record.get("recipe") if isinstance(record.get("recipe"), dict) else {}
    about.update(run=run_dir.resolve().name, recipe=record.get("recipe_name"), model=recipe.get("model", "mlp"),
                 test_accuracy=metrics.get("test_accuracy"), handwriting_accuracy=metrics.get("handwriting_accuracy"),
                 test_refused=metrics.get("test_refused"),
                 test_accuracy_with_refusals=metrics.get("test_accuracy_with_refusals"))
    return about


def read_json_or_empty(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or {} when it is missing or not one (what /about shows is informative only)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def predictor_name(predictor: Any) -> str:
    return str(getattr(predictor, "name", type(predictor).__name__))
