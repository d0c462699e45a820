"""TensorFlow (the seed's backend) works too, and models cross between backends."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import TINY_RECIPE

from mnist_keras.backends import BACKEND_MODULES, FAMILY_BACKENDS
from mnist_keras.evaluation.metrics import read_history


def run_python(code: str, backend: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": backend, **env},
    )


CLI_WITH_TINY_DATA = """
import sys
sys.path.insert(0, {tests!r})
import mnist_keras.data.mnist
from fakes import synthetic_mnist
mnist_keras.data.mnist.load_mnist = lambda data=None: synthetic_mnist()
from mnist_keras.cli import main
sys.exit(main({argv!r}))
"""


def run_cli_on_tiny_data(argv: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess:
    """`mnist-keras ARGV` in a fresh process (Keras not yet loaded), reading synthetic data."""
    code = CLI_WITH_TINY_DATA.format(tests=os.path.dirname(__file__), argv=argv)
    env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, **environment})


def installed_backends() -> list:
    return [pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(module) is None,
                                                          reason=f"{module} is not installed"))
            for name, module in BACKEND_MODULES.items() if name != "numpy"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", installed_backends())
def test_backend_flag_trains_on_that_backend(tmp_path, backend):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({**TINY_RECIPE.to_dict(), "epochs": 2}))
    result = run_cli_on_tiny_data(["train", "--backend", backend, "--config", str(recipe), "--out",
                                   str(tmp_path / "run")], {})
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["backend"] == backend
    assert len(read_history(tmp_path / "run")) == 2


@pytest.mark.slow
@pytest.mark.parametrize("family, expected", list(FAMILY_BACKENDS.items()))
def test_each_model_family_trains_on_its_fastest_backend_by_default(tmp_path, family, expected):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({**TINY_RECIPE.to_dict(), "model": family, "conv_filters": [4],
                                  "conv_kernels": [3], "conv_strides": [1], "conv_pooling": [True],
                                  "conv_batch_norm": [False]}))
    run_dir = tmp_path / "run"
    result = run_cli_on_tiny_data(["train", "--config", str(recipe), "--out", str(run_dir)], {})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_dir / "config.json").read_text())["backend"] == expected
    # $KERAS_BACKEND still wins over the family's default.
    other = "jax" if expected == "tensorflow" else "tensorflow"
    result = run_cli_on_tiny_data(["train", "--config", str(recipe), "--out", str(run_dir), "--overwrite"],
                                  {"KERAS_BACKEND": other})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_dir / "config.json").read_text())["backend"] == other


@pytest.mark.parametrize("family, expected", list(FAMILY_BACKENDS.items()))
def test_the_cli_plans_each_family_on_its_fastest_backend_and_the_environment_wins(tmp_path, monkeypatch, family,
                                                                                   expected):
    """The fast sibling of the training tests above: the CLI's choice, without training in a child process."""
    from mnist_keras import cli
    from mnist_keras.backends import chosen_backend

    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({**TINY_RECIPE.to_dict(), "model": family, "conv_filters": [4],
                                  "conv_kernels": [3], "conv_strides": [1], "conv_pooling": [True],
                                  "conv_batch_norm": [False]}))
    plan = cli.plan_training(cli.build_parser().parse_args(["train", "--config", str(recipe)]))
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert chosen_backend(plan.backend, plan.config.model) == expected
    other = "jax" if expected == "tensorflow" else "tensorflow"
    monkeypatch.setenv("KERAS_BACKEND", other)
    assert chosen_backend(plan.backend, plan.config.model) == other
    flagged = cli.plan_training(cli.build_parser().parse_args(["train", "--config", str(recipe), "--backend", "numpy"]))
    assert chosen_backend(flagged.backend, flagged.config.model) == "numpy", "--backend wins over $KERAS_BACKEND"


def test_unknown_or_missing_backend_is_one_line(tmp_path):
    result = run_cli_on_tiny_data(["train", "--out", str(tmp_path / "run")], {"KERAS_BACKEND": "theano"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mnist-keras train: error: unknown Keras backend 'theano'; choose one of jax, tensorflow, torch, numpy"
    ]
    assert not (tmp_path / "run").exists()


def test_jax_model_predicts_the_same_under_tensorflow(tiny_run, tiny_mnist, tmp_path):
    from mnist_keras.evaluation.metrics import predict_probabilities
    from mnist_keras.model import load_run_model

    jax_probabilities = predict_probabilities(load_run_model(tiny_run), tiny_mnist.x_test)
    np.save(tmp_path / "images.npy", tiny_mnist.x_test)
    code = f"""
        import numpy as np
        from mnist_keras.evaluation.metrics import predict_probabilities
        from mnist_keras.model import load_run_model
        images = np.load({str(tmp_path / "images.npy")!r})
        np.save({str(tmp_path / "tf.npy")!r}, predict_probabilities(load_run_model({str(tiny_run)!r}), images))
    """
    result = run_python(code, "tensorflow")
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "tf.npy"), jax_probabilities, atol=1e-5)


@pytest.mark.parametrize("backend, asked, expected", [("tensorflow", None, "1"), ("tensorflow", "0", "0"),
                                                      ("jax", None, None)])
def test_tensorflow_gets_onednn_kernels_unless_told_otherwise(backend, asked, expected):
    code = """
        import os
        from mnist_keras.backends import select_backend
        select_backend({backend!r})
        print(os.environ.get("TF_ENABLE_ONEDNN_OPTS"))
    """.format(backend=backend)
    env = {key: value for key, value in os.environ.items() if key not in ("KERAS_BACKEND", "TF_ENABLE_ONEDNN_OPTS")}
    if asked is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = asked
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(expected)
