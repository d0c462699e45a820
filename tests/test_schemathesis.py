"""The service's OpenAPI schema, exercised by schemathesis against the app running under uvicorn on loopback.

Schemathesis reads /openapi.json and sends each operation requests it
generates from the schema, both valid ones and deliberately invalid ones
(wrong types, missing fields, unexpected methods and content types). Every
answer must be a documented status with a body matching its documented
schema; no request may produce a 500. A fixed number of derandomised
examples per operation keeps the run bounded in CI.
"""

from __future__ import annotations

import socket

import pytest
import schemathesis
import uvicorn
from fakes import serving_in_thread
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from mnist_keras.serving.app import create_app

EXAMPLES_PER_OPERATION = 60
STARTUP_TIMEOUT_SECONDS = 60
# A schema cannot say which bytes are a readable image, or which pixels hold ink,
# so a request that fits the schema may still rightly be refused: too large (413),
# not an image (415), or blank or corrupt (422). Anything else is a failure.
ACCEPTED_STATUSES = ["200", "413", "415", "422"]
# What a request outside the schema must get: a wrong method (405), too many items (413),
# a wrong content type (415), or anything else malformed (422).
REJECTED_STATUSES = ["405", "413", "415", "422"]
SCHEMATHESIS_CONFIG = {
    "generation": {"max-examples": EXAMPLES_PER_OPERATION, "deterministic": True},
    "checks": {
        "positive_data_acceptance": {"expected-statuses": ACCEPTED_STATUSES},
        "negative_data_rejection": {"expected-statuses": REJECTED_STATUSES},
    },
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def running_service(tiny_run):
    """The app under uvicorn on a free loopback port, in a background thread, for the module."""
    port = free_port()
    config = uvicorn.Config(create_app(tiny_run), host="127.0.0.1", port=port, log_level="warning")
    with serving_in_thread(config, STARTUP_TIMEOUT_SECONDS):
        yield f"http://127.0.0.1:{port}"


class SchemaOnly:
    """Stands in for a model while the app writes its OpenAPI document, which does not depend on the model."""

    name = "schema-only"

    def predict(self, batch):
        raise AssertionError("the schema-only app is never called")


# Schemathesis needs the schema when pytest collects the tests, before any fixture
# exists (its fixture-based loader does not work with pytest 9), so the document
# comes from the app itself; the requests then go to the real, running service.
schema = schemathesis.openapi.from_dict(
    create_app(SchemaOnly()).openapi(), config=SchemathesisConfig.from_dict(SCHEMATHESIS_CONFIG)
)


def test_the_schema_is_what_the_service_publishes(running_service):
    import json
    import urllib.request

    with urllib.request.urlopen(f"{running_service}/openapi.json") as response:
        assert json.loads(response.read()) == schema.raw_schema


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_follows_its_schema(case, running_service):
    case.call_and_validate(base_url=running_service)
