"""The command line as a user runs it: exit codes, one-line errors, nothing half-written."""

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import TINY_RECIPE

from mnist_keras.cli import main


def run_cli(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "mnist_keras.cli", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd,
    )


def test_bad_flag_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["train", "--no-such-flag"])
    assert caught.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_bad_recipe_value_is_one_line_and_exit_2(capsys, tmp_path):
    assert main(["train", "--epochs", "many", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == ["mnist-keras train: error: --epochs expects int, got 'many'"]
    assert not (tmp_path / "run").exists()


def test_corrupt_data_exits_2_and_leaves_no_run(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (data_dir / f"{name}.gz").write_bytes(b"\x1f\x8b definitely not gzip")
    result = run_cli("train", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--epochs", "1",
                     env={"MNIST_KERAS_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "corrupt or truncated gzip" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
    assert not any(path.name.startswith(".run") for path in tmp_path.iterdir())


def test_evaluate_missing_run_exits_2(tmp_path):
    result = run_cli("evaluate", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_existing_out_needs_overwrite(tiny_run, capsys):
    assert main(["train", "--out", str(tiny_run)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_train_with_config_file_and_flag_override(tmp_path, tiny_mnist, monkeypatch, capsys):
    import mnist_keras.data.mnist

    monkeypatch.setattr(mnist_keras.data.mnist, "load_mnist", lambda data=None: tiny_mnist)
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({**TINY_RECIPE.to_dict(), "epochs": 5}))
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(recipe), "--epochs", "1", "--seed", "3", "--out", str(run_dir),
                 "--no-onnx"]) == 0
    saved = json.loads((run_dir / "config.json").read_text())["recipe"]
    assert saved["epochs"] == 1 and saved["seed"] == 3 and saved["hidden_units"] == list(TINY_RECIPE.hidden_units)
    assert not (run_dir / "model.onnx").exists(), "--no-onnx skips the export"


@pytest.mark.parametrize(
    "tamper, named",
    [("model_bytes", "model.keras"), ("config_unknown_key", "learning_rte"), ("missing_history", "history.csv")],
)
def test_tampered_run_is_one_line_and_exit_2_and_untouched(tiny_run, tmp_path, tamper, named):
    import shutil

    run_dir = shutil.copytree(tiny_run, tmp_path / "run")
    if tamper == "model_bytes":
        (run_dir / "model.keras").write_bytes(b"\x00" * 64)
    elif tamper == "config_unknown_key":
        record = json.loads((run_dir / "config.json").read_text())
        record["recipe"]["learning_rte"] = 0.1
        (run_dir / "config.json").write_text(json.dumps(record))
    else:
        (run_dir / "history.csv").unlink()
    before = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    for command in (["evaluate", str(run_dir)], ["predict", str(run_dir), str(tmp_path / "missing.png")]):
        result = run_cli(*command, env={"MNIST_KERAS_CACHE": str(tmp_path / "cache"), "MNIST_KERAS_HUB": "0"})
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
        assert named in result.stderr
    after = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    assert after == before


# ---------------------------------------------------------------- serve: flags from the server's settings


def test_serve_flags_default_to_the_server_settings(capsys):
    from mnist_keras.cli import build_parser
    from mnist_keras.serving.settings import defaults

    settings = defaults()
    args = build_parser().parse_args(["serve", "RUN"])
    for name, value in settings.items():
        if name != "api_token":  # from $MNIST_KERAS_API_TOKEN when set
            assert getattr(args, name) == value, name
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the help at any space
    for name, metavar in (("host", "HOST"), ("port", "PORT"), ("workers", "N"), ("request_timeout", "SECONDS"),
                          ("idle_timeout", "SECONDS"), ("graceful_timeout", "SECONDS"), ("drain_period", "SECONDS"),
                          ("access_log", "{text,json,off}")):
        flag = "--" + name.replace("_", "-")
        help_line = re.search(re.escape(f"{flag} {metavar} ") + r"[^(]*\(default: ([^)]*)\)", shown)
        assert help_line is not None, flag
        assert help_line.group(1) == (f"{settings[name]:g}" if isinstance(settings[name], float) else
                                      str(settings[name])), flag


def test_server_settings_refuse_what_cannot_run():
    from pathlib import Path

    from mnist_keras.errors import SettingsError
    from mnist_keras.serving.settings import ServerSettings

    assert ServerSettings(Path("run")).drain_period < ServerSettings(Path("run")).graceful_timeout
    for bad in ({"workers": 0}, {"port": 70000}, {"idle_timeout": 0}, {"request_timeout": float("inf")},
                {"drain_period": -1}, {"drain_period": 30, "graceful_timeout": 30}, {"access_log": "xml"},
                {"event_loop": "trio"}):
        with pytest.raises(SettingsError):
            ServerSettings(Path("run"), **bad)


def test_the_event_loop_is_uvicorns_choice_unless_asked_and_uvloop_only_where_installed(monkeypatch):
    import importlib.util
    from pathlib import Path

    from mnist_keras.errors import SettingsError
    from mnist_keras.serving.server import uvicorn_config
    from mnist_keras.serving.service import Readiness
    from mnist_keras.serving.settings import ServerSettings

    assert uvicorn_config(ServerSettings(Path("run")), Readiness()).loop == "auto"
    assert uvicorn_config(ServerSettings(Path("run"), event_loop="asyncio"), Readiness()).loop == "asyncio"
    if importlib.util.find_spec("uvloop") is not None:
        assert uvicorn_config(ServerSettings(Path("run"), event_loop="uvloop"), Readiness()).loop == "uvloop"
    finds = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "uvloop" else finds(name, *rest))
    with pytest.raises(SettingsError, match="pip install uvloop"):
        ServerSettings(Path("run"), event_loop="uvloop")


def test_a_drain_period_longer_than_the_graceful_timeout_is_one_line_and_exit_2(tiny_run, capsys):
    assert main(["serve", str(tiny_run), "--drain-period", "5", "--graceful-timeout", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "drain_period (5 s)" in err and "graceful_timeout (2 s)" in err
