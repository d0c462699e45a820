"""TensorFlow (the seed's backend) works too, and models cross between backends."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from conftest import TINY_RECIPE


def run_python(code: str, backend: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": backend, **env},
    )


def test_train_under_tensorflow_backend(tmp_path):
    code = f"""
        import json, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from conftest import synthetic_mnist, TINY_RECIPE
        from mnist_keras.train import train
        metrics = train(TINY_RECIPE, synthetic_mnist(), {str(tmp_path / "run")!r}, verbose=0)
        print(json.dumps(metrics["test_accuracy"]))
    """
    result = run_python(code, "tensorflow")
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["backend"] == "tensorflow"
    assert "tensorflow" in config["versions"]


def test_jax_model_predicts_the_same_under_tensorflow(tiny_run, tiny_mnist, tmp_path):
    from mnist_keras.evaluate import predict_probabilities
    from mnist_keras.model import load_run_model

    jax_probabilities = predict_probabilities(load_run_model(tiny_run), tiny_mnist.x_test)
    np.save(tmp_path / "images.npy", tiny_mnist.x_test)
    code = f"""
        import numpy as np
        from mnist_keras.evaluate import predict_probabilities
        from mnist_keras.model import load_run_model
        images = np.load({str(tmp_path / "images.npy")!r})
        np.save({str(tmp_path / "tf.npy")!r}, predict_probabilities(load_run_model({str(tiny_run)!r}), images))
    """
    result = run_python(code, "tensorflow")
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "tf.npy"), jax_probabilities, atol=1e-5)
