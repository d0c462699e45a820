"""The load script in a short bounded mode: 16 concurrent clients against a real server on loopback.

A functional check, not a timing one: every request is answered, every answer
is the one the model gives in-process for the same drawing, and the server's
memory does not grow while it serves the same requests over and over.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import load_module

CLIENTS = 16
SECONDS = 4
WARM_UP_SECONDS = 2
# Generous: a leak of even a kilobyte per request would show at thousands of requests,
# while allocator noise stays within a few megabytes.
MEMORY_GROWTH_LIMIT_MB = 50


@pytest.fixture(scope="module")
def load_script():
    return load_module(Path(__file__).resolve().parents[1] / "benchmarks" / "load.py", "load_benchmark")


@pytest.mark.slow
@pytest.mark.parametrize(("payload", "workers"), [("png", 1), ("mixed", 2)])
def test_sixteen_clients_get_every_answer_right_and_memory_stays_flat(load_script, tiny_run, tmp_path, capsys,
                                                                      payload, workers):
    output = tmp_path / "load.json"
    status = load_script.main([str(tiny_run), "--clients", str(CLIENTS), "--seconds", str(SECONDS),
                               "--warm-up", str(WARM_UP_SECONDS), "--payload", payload, "--workers", str(workers),
                               "--json", str(output)])
    results = json.loads(output.read_text())
    assert status == 0, results["first_errors"]
    assert results["errors"] == 0 and results["wrong_answers"] == 0
    assert results["requests"] > CLIENTS  # every client was answered more than once
    assert results["workers"] == workers
    assert results["p50_ms"] <= results["p99_ms"]
    assert results["memory_start_mb"] <= results["memory_peak_mb"]
    assert results["memory_growth_mb"] < MEMORY_GROWTH_LIMIT_MB, f"server memory grew {results['memory_growth_mb']} MB"
    printed = capsys.readouterr().out
    assert "requests/s" in printed and "server RSS" in printed


def test_a_wrong_answer_is_caught(load_script):
    # The check the load test relies on: an answer that differs from the model's is reported.
    expected = {"digit": 3, "probabilities": [0.1] * 10}
    payload = load_script.Payload(b"", "application/json", [], expected=[expected])
    right = {**expected, "confidence": 0.1, "is_digit": False, "image": [[0.0] * 28] * 28}
    assert load_script.problem_with(json.dumps(right).encode(), payload) is None
    for change in ({"digit": 4}, {"probabilities": [0.2] * 10}, {"image": [[0.0] * 28]}, {"extra": 1}):
        assert load_script.problem_with(json.dumps({**right, **change}).encode(), payload) is not None
    assert load_script.problem_with(b"<html>", payload) is not None
    batch = load_script.Payload(b"", "application/json", [], "/predict/batch", expected=[expected, expected])
    assert load_script.problem_with(json.dumps([right, right]).encode(), batch) is None
    for wrong in ([right], [right, {**right, "digit": 5}], right):
        assert load_script.problem_with(json.dumps(wrong).encode(), batch) is not None


def test_mixed_payloads_cover_every_route_and_body(load_script):
    payloads = load_script.make_payloads("mixed")
    kinds = {(payload.path, payload.content_type.split(";")[0]) for payload in payloads}
    assert kinds == {(path, kind) for path in ("/predict", "/predict/batch")
                     for kind in ("multipart/form-data", "application/json")}
    assert {len(payload.images) for payload in payloads} == {1, load_script.BATCH_SIZE}


def test_drawn_digits_are_distinct_and_readable(load_script):
    from mnist_keras.inference.images import preprocess_image_bytes

    images = [preprocess_image_bytes(load_script.drawn_digit_png(digit)) for digit in range(10)]
    assert len({image.tobytes() for image in images}) == 10
