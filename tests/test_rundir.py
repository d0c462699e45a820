"""Run directories that are incomplete, tampered with or not ours are refused with one clear line."""

import dataclasses
import json
import shutil

import pytest
from conftest import TINY_RECIPE

from mnist_keras import rundir
from mnist_keras.errors import RunDirectoryError
from mnist_keras.model import build_model, compile_model, load_run_model


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    return shutil.copytree(tiny_run, tmp_path / "run")


def test_a_good_run_loads(run_copy):
    model = load_run_model(run_copy)
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("missing", rundir.REQUIRED_FILES)
def test_missing_file_is_named(run_copy, missing):
    (run_copy / missing).unlink()
    with pytest.raises(RunDirectoryError, match=f"missing {missing}"):
        rundir.check_run_dir(run_copy)


def test_model_that_is_not_a_keras_file(run_copy):
    (run_copy / rundir.MODEL_FILE).write_bytes(b"not a zip archive at all")
    with pytest.raises(RunDirectoryError, match="not a loadable Keras model"):
        load_run_model(run_copy)


def test_truncated_model_file(run_copy):
    path = run_copy / rundir.MODEL_FILE
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(RunDirectoryError, match="not a loadable Keras model"):
        load_run_model(run_copy)


def test_model_of_another_architecture(run_copy):
    other = compile_model(build_model(dataclasses.replace(TINY_RECIPE, hidden_units=(40, 16, 8))), TINY_RECIPE)
    other.save(run_copy / rundir.MODEL_FILE)
    with pytest.raises(RunDirectoryError, match="does not match the recipe"):
        load_run_model(run_copy)


def test_model_with_code_is_refused_by_safe_mode(run_copy):
    import keras

    inputs = keras.Input(shape=(784,))
    outputs = keras.layers.Lambda(lambda x: x[:, :10])(inputs)
    keras.Model(inputs, outputs).save(run_copy / rundir.MODEL_FILE)
    with pytest.raises(RunDirectoryError, match="not a loadable Keras model"):
        load_run_model(run_copy)


@pytest.mark.parametrize(
    "content, message",
    [("{not json", "not valid JSON"), ("[1, 2]", "no 'recipe' table"), ('{"recipe": {"epochs": "x"}}', "must be an integer")],
)
def test_bad_config_json(run_copy, content, message):
    (run_copy / rundir.CONFIG_FILE).write_text(content)
    with pytest.raises(RunDirectoryError, match=message):
        load_run_model(run_copy)


def test_publish_replaces_atomically(tmp_path):
    staging, final = tmp_path / ".run.partial", tmp_path / "run"
    final.mkdir()
    (final / "old").write_text("old")
    staging.mkdir()
    (staging / "new").write_text("new")
    rundir.publish(staging, final)
    assert [path.name for path in final.iterdir()] == ["new"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]


def test_atomic_json_write_leaves_no_temporary_files(tmp_path):
    rundir.write_json_atomic(tmp_path / "metrics.json", {"a": 1})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"a": 1}
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]
    # Readable like any file the user creates, not tempfile's private 0600.
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == rundir.umask_file_mode()
