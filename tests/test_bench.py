"""`make bench` in its quick mode: every row runs and the JSON carries every field the README table needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"
TRAINING_FIELDS = {"name", "backend", "epoch_seconds", "seconds_per_epoch", "best_epoch_seconds", "peak_memory_mb",
                   "speedup_vs_seed", "times_bound", "load_average"}
INFERENCE_FIELDS = {"name", "test_images", "test_set_seconds", "images_per_second", "single_p50_ms", "single_p99_ms",
                    "speedup_vs_keras_predict", "times_bound"}


@pytest.mark.real_data
@pytest.mark.slow
def test_quick_benchmark_writes_every_field(tmp_path, real_mnist):
    # Two of the family rows are skipped to keep the suite short (each is a fresh process); --skip is what
    # a user with a slow CPU passes too, and the skipped rows must still be in the table.
    completed = subprocess.run([sys.executable, str(BENCH), "--quick", "--out", str(tmp_path),
                                "--skip", "cnn/jax", "mlp/tensorflow"], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    results = json.loads((tmp_path / "bench.json").read_text())

    assert results["mode"] == "quick" and results["machine"] and results["versions"]["keras"]
    assert set(results["bound"]) == {"gemm_gflops", "epoch_gflop", "epoch_seconds", "test_set_seconds",
                                     "images_per_second"}
    assert all(value > 0 for value in results["bound"].values())

    rows = {row["name"]: row for row in results["training"]}
    assert "mnist-keras default (Keras+JAX, scanned epochs)" in rows
    assert "seed's code as written (Keras+TensorFlow)" in rows
    assert "Keras+JAX model.fit" in rows and "Keras+TensorFlow model.fit" in rows
    measured_or_skipped = set(rows) | {row["name"] for row in results["skipped"]}
    assert {"plain PyTorch (eager)", "Keras+torch model.fit"} <= measured_or_skipped
    for row in results["training"]:
        assert set(row) == TRAINING_FIELDS
        assert len(row["epoch_seconds"]) == results["epochs"]
        assert row["seconds_per_epoch"] > 0 and row["peak_memory_mb"] > 0 and row["speedup_vs_seed"] > 0
    assert rows["seed's code as written (Keras+TensorFlow)"]["speedup_vs_seed"] == pytest.approx(1.0)

    families = {(row["family"], row["backend"]): row for row in results["families"]}
    assert set(families) == {(family, backend) for family in ("mlp", "cnn") for backend in ("jax", "tensorflow", "torch")}
    assert "skipped" in families[("cnn", "jax")] and "skipped" in families[("mlp", "tensorflow")]
    for family in ("mlp", "cnn"):
        measured = [row for key, row in families.items() if key[0] == family and "seconds_per_epoch" in row]
        assert measured and sum(row["fastest"] for row in measured) == 1
        assert all(row["seconds_per_epoch"] > 0 for row in measured)

    paths = {row["name"]: row for row in results["inference"]}
    assert {"keras predict", "keras call", "keras predict_on_batch", "onnxruntime"} <= set(paths)
    for row in results["inference"]:
        assert set(row) == INFERENCE_FIELDS
        assert row["single_p50_ms"] <= row["single_p99_ms"]

    fast = results["fast_recipe"]
    assert fast["runs"] and {"seed", "test_accuracy", "train_seconds", "epochs_trained"} <= set(fast["runs"][0])
    assert 0 <= fast["mean_test_accuracy"] <= 1 and isinstance(fast["reaches_seed_accuracy"], bool)

    table = (tmp_path / "bench.md").read_text()
    assert results["machine"] in table and "onnxruntime" in table and "cnn (cnn recipe)" in table
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert table in completed.stdout
