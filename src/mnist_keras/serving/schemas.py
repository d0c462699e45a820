"""What the service's answers and request bodies look like, for clients and for the OpenAPI docs.

The pydantic models of the answers (`Prediction`, `ErrorBody`), the error
responses each reading route documents, and the request-body schemas of the
bodies the service reads by hand (a multipart upload or JSON pixels on one
route, which FastAPI cannot describe from a signature). These are
descriptions only: what is enforced is enforced by `mnist_keras.serving.bodies`
and `mnist_keras.inference.images`.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, Field

from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES, NUM_PIXELS
from mnist_keras.inference.images import MIN_INK_CONTRAST

Probability = Annotated[float, Field(ge=0, le=1)]


class DigitAnswer(BaseModel):
    """What the model said of one input: shared by a prediction and each mark of a reading."""

    digit: int = Field(ge=0, le=NUM_CLASSES - 1, description="the most likely digit, 0-9")
    confidence: Probability = Field(description="its probability")
    probabilities: list[Probability] = Field(
        min_length=NUM_CLASSES, max_length=NUM_CLASSES, description=f"the {NUM_CLASSES} probabilities, for digits 0-9"
    )


class Prediction(DigitAnswer):
    is_digit: bool = Field(description="false when the input does not look like one handwritten digit "
                                       "(letters, scribbles, noise, patterns, flat grey)")
    image: list[Annotated[list[Probability], Field(min_length=IMAGE_SIDE, max_length=IMAGE_SIDE)]] = Field(
        min_length=IMAGE_SIDE, max_length=IMAGE_SIDE,
        description=f"the {IMAGE_SIDE}x{IMAGE_SIDE} image the model read (ink = 1), after MNIST-style preprocessing",
    )
    reason: str | None = Field(default=None, description="why is_digit is false, when it is for a reason other "
                                                         "than the model's: \"several digits: use read\" (POST /read "
                                                         "reads them); absent otherwise")


class ReadMark(DigitAnswer):
    is_digit: bool = Field(description="false for a mark that is not a digit (a dash, a letter, a scribble): "
                                       "it is left out of text")
    box: list[int] = Field(min_length=4, max_length=4,
                           description="where the mark is, [x0, y0, x1, y1] in the image's own pixels "
                                       "(x1 and y1 one past it)")


class Reading(BaseModel):
    text: str = Field(description="the digits in reading order: one line per written line, top to bottom, "
                                  "each left to right, joined by newlines; empty for a blank image")
    lines: list[list[ReadMark]] = Field(description="every mark found, line by line, left to right, "
                                                    "digits and non-digits")


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong with the request, in one line")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "the body, the JSON, an image, or the batch is too large"},
    415: {"model": ErrorBody, "description": "not an image, or a content type other than multipart or JSON"},
    422: {"model": ErrorBody, "description": "blank image, corrupt image, wrong pixel shape or values, "
                                             "bad JSON or multipart"},
}
NOT_READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "shutting down: still answering, but send new work elsewhere"},
}

# The request bodies are read by hand (either content type on one route), so their
# schemas are written out here, as exactly as JSON Schema can say what is accepted:
# pixels in [0, 1], 28x28 nested or 784 flat, with some ink (one value at least
# MIN_INK_CONTRAST); only "is a readable image" is beyond a schema.
PIXEL_VALUE_SCHEMA = {"type": "number", "minimum": 0, "maximum": 1}
INK_SCHEMA = {"type": "number", "minimum": MIN_INK_CONTRAST, "maximum": 1}
PIXELS_SCHEMA = {
    "description": f"{IMAGE_SIDE}x{IMAGE_SIDE} nested or {NUM_PIXELS} flat numbers in [0, 1], ink = 1, "
                   f"at least one of them {MIN_INK_CONTRAST} or more",
    "oneOf": [
        {"type": "array", "items": PIXEL_VALUE_SCHEMA, "minItems": NUM_PIXELS, "maxItems": NUM_PIXELS,
         "contains": INK_SCHEMA},
        {"type": "array", "minItems": IMAGE_SIDE, "maxItems": IMAGE_SIDE,
         "items": {"type": "array", "items": PIXEL_VALUE_SCHEMA, "minItems": IMAGE_SIDE, "maxItems": IMAGE_SIDE},
         "contains": {"type": "array", "contains": INK_SCHEMA}},
    ],
}


# /read takes pixels of any size: rows of numbers, as many as the pixel limit allows.
ANY_PIXELS_SCHEMA = {
    "description": "rows of numbers in [0, 1], ink = 1, every row as long (any height and width)",
    "type": "array", "minItems": 1, "items": {"type": "array", "items": PIXEL_VALUE_SCHEMA, "minItems": 1},
}


def example_pixels() -> list[list[float]]:
    """A "1" as MNIST would show it: for the docs' "try it out" and schemathesis's examples."""
    pixels = np.zeros((IMAGE_SIDE, IMAGE_SIDE))
    pixels[4:24, 13:15] = 1.0
    return pixels.tolist()


def request_body_doc(file_field: str, json_field: str, many: bool, max_items: int,
                     pixels_schema: dict[str, Any] = PIXELS_SCHEMA) -> dict[str, Any]:
    """OpenAPI text for a body read by hand (multipart image(s) or JSON pixels)."""
    file_schema: dict[str, Any] = {"type": "string", "format": "binary", "description": "an image file (PNG, JPEG, ...)"}
    if many:
        # The batch limit is stated in words, not as maxItems: a schema tool would otherwise
        # build batches of dozens of 784-number arrays at the edge of the limit, which takes
        # minutes to generate and checks nothing the 413 tests do not.
        limit = f"1 to {max_items}; more get 413"
        file_schema = {"type": "array", "items": file_schema, "minItems": 1, "description": limit}
        pixels_schema = {"type": "array", "items": PIXELS_SCHEMA, "minItems": 1, "description": limit}
    example = [example_pixels()] if many else example_pixels()
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": [file_field], "properties": {file_field: file_schema}}
                },
                "application/json": {
                    "schema": {"type": "object", "required": [json_field], "properties": {json_field: pixels_schema}},
                    "example": {json_field: example},
                },
            },
        }
    }
