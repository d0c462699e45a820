"""The seed recipe on the real MNIST (marked: needs the verified data, still runs in CI)."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest

from mnist_keras.config import Config
from mnist_keras.training.run import train_run

pytestmark = pytest.mark.real_data


def test_one_epoch_of_the_seed_recipe_reaches_95_percent(real_mnist, tmp_path):
    metrics = train_run(dataclasses.replace(Config(), epochs=1), real_mnist, tmp_path / "run", verbose=0)
    assert metrics["test_accuracy"] >= 0.95
    assert metrics["epochs_trained"] == 1
    assert (metrics["total_params"], metrics["trainable_params"]) == (570_506, 568_970)


def test_model_loads_in_plain_keras_with_the_recorded_accuracy(real_run, real_mnist, tmp_path):
    """No mnist_keras import: the model file stands on its own."""
    import numpy as np

    np.savez(tmp_path / "test.npz", x=real_mnist.x_test, y=real_mnist.y_test)
    code = f"""
        import sys, numpy as np, keras
        test = np.load({str(tmp_path / "test.npz")!r})
        model = keras.saving.load_model({str(real_run / "model.keras")!r})
        pixels = (test["x"].astype("float32") / 255).reshape(len(test["x"]), -1)
        predicted = model.predict(pixels, verbose=0).argmax(axis=1)
        assert "mnist_keras" not in sys.modules
        print((predicted == test["y"]).mean())
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env={**os.environ, "KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-2000:]
    recorded = json.loads((real_run / "metrics.json").read_text())["test_accuracy"]
    assert float(result.stdout.strip().splitlines()[-1]) == pytest.approx(recorded, abs=1e-9)
