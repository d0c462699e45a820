"""`export --format web`: the folder it writes, the pinned ONNX Runtime Web, refusals, and prepare.js against Python.

The page's port of the preparation (mnist_keras/web/prepare.js) runs under Node
on images made here and must give the 28×28 input `images.mnist_style` gives;
tests/test_web_page.py checks the whole page in Chromium. Nothing here reaches
the npm registry: ONNX Runtime Web's files are stand-ins with its banner, and
`npm pack` is a stand-in script.
"""

from __future__ import annotations

import base64
import fnmatch
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_keras import cli
from mnist_keras.inference.decision import NOT_DIGIT_THRESHOLD
from mnist_keras.inference.export import TOLERANCE, onnx_probabilities
from mnist_keras.inference.images import ImageError, grayscale_array, mnist_style
from mnist_keras.inference.predictors import prediction_record
from mnist_keras.inference.web_export import (
    LOCK_FILE,
    ORT_FILES,
    PAGE_DIR,
    PAGE_FILES,
    SHARED_FILES,
    OrtWebPin,
    WebExportError,
    export_web,
    ort_web_files,
    preparation_settings,
    sri_sha512,
)
from mnist_keras.model import load_run_model

NODE = shutil.which("node")
HARNESS = Path(__file__).parent / "prepare_node.mjs"
EXPECTED_FILES = sorted([*PAGE_FILES, *SHARED_FILES, "page.json", "model.onnx", *(f"ort/{name}" for name in ORT_FILES)])
# prepare.js computes what Python computes in float64 and rounds where Python rounds to float32;
# the sums are taken in another order, so the last float32 bit may differ.
PORT_TOLERANCE = 1e-6


def fake_ort_files(directory: Path, version: str) -> Path:
    """Stand-ins for ONNX Runtime Web's dist files: its banner, naming `version`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ORT_FILES:
        (directory / name).write_bytes(f"/*!\n * ONNX Runtime Web v{version}\n */\n// {name}\n".encode())
    return directory


@pytest.fixture
def pin() -> OrtWebPin:
    return OrtWebPin.from_lock()


@pytest.fixture
def ort_dir(tmp_path_factory, pin) -> Path:
    return fake_ort_files(tmp_path_factory.mktemp("onnxruntime-web") / "dist", pin.version)


def files_under(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def export_cli(*arguments: str) -> int:
    return cli.main(["export", *arguments])


# ---------------------------------------------------------------- the pin


def test_the_lock_file_pins_one_exact_onnxruntime_web(pin):
    declared = json.loads((PAGE_DIR / "package.json").read_text())["dependencies"]["onnxruntime-web"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", declared), f"package.json must pin an exact version, not {declared!r}"
    assert pin.version == declared
    assert pin.integrity.startswith("sha512-")
    assert json.loads(LOCK_FILE.read_text())["packages"][""]["dependencies"]["onnxruntime-web"] == declared


def test_the_page_and_the_pin_ship_in_the_package():
    package_data = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]
    shipped = [f"web/{name}" for name in (*PAGE_FILES, "package.json", LOCK_FILE.name)]
    assert all(any(fnmatch.fnmatch(name, pattern) for pattern in package_data["mnist_keras"]) for name in shipped)
    assert all(any(fnmatch.fnmatch(f"static/{name}", pattern) for pattern in package_data["mnist_keras.serving"])
               for name in SHARED_FILES)


# ---------------------------------------------------------------- the folder


def test_web_export_writes_the_page_the_runs_model_and_the_pinned_runtime(tiny_run, ort_dir, pin, tmp_path, capsys):
    out = tmp_path / "site"
    run_files = files_under(tiny_run)
    assert export_cli(str(tiny_run), "--format", "web", "--out", str(out), "--ort-dir", str(ort_dir)) == 0
    assert f"web export written to {out}" in capsys.readouterr().out
    assert files_under(out) == EXPECTED_FILES
    assert (out / "model.onnx").read_bytes() == (tiny_run / "model.onnx").read_bytes()
    for name in ORT_FILES:
        assert (out / "ort" / name).read_bytes() == (ort_dir / name).read_bytes()
    settings = json.loads((out / "page.json").read_text())
    assert settings["onnxruntime_web"] == pin.version
    assert settings["model"] == {"file": "model.onnx", "input": "pixels", "outputs": 10}
    assert settings["decision"]["NOT_DIGIT_THRESHOLD"] == NOT_DIGIT_THRESHOLD
    assert {key: settings[key] for key in ("shape", "decision", "preparation")} == preparation_settings()
    assert settings["about"]["run"] == tiny_run.name
    # Nothing comes from anywhere but the folder: no absolute URLs in the page.
    for name in (*PAGE_FILES, *SHARED_FILES):
        assert not re.search(r"https?://|//cdn", (out / name).read_text()), name
    assert sorted(path.name for path in tmp_path.iterdir()) == ["site"]  # no staging folder left
    assert files_under(tiny_run) == run_files  # the run is only read

    # Exporting again replaces the earlier export whole.
    (out / "stale.txt").write_text("from before")
    assert export_cli(str(tiny_run), "--format", "web", "--out", str(out), "--ort-dir", str(ort_dir.parent)) == 0
    assert files_under(out) == EXPECTED_FILES


def test_web_export_exports_the_model_into_the_folder_when_the_run_has_none(tiny_run, ort_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "model.onnx").unlink()
    out = export_web(run, tmp_path / "site", ort_dir=ort_dir)
    assert files_under(out) == EXPECTED_FILES
    assert not (run / "model.onnx").exists()  # the run stays as it was
    pixels = np.random.default_rng(1).random((16, 784), dtype=np.float32)
    expected = np.asarray(load_run_model(run).predict_on_batch(pixels))
    np.testing.assert_allclose(onnx_probabilities(out / "model.onnx", pixels), expected, rtol=0, atol=TOLERANCE)


def bad_arguments(ort_dir: Path, tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """Each case: the flags after RUN, and what the one line of error must say."""
    old = fake_ort_files(tmp_path / "old-ort", "1.0.0")
    partial = tmp_path / "partial-ort"
    shutil.copytree(ort_dir, partial)
    (partial / ORT_FILES[-1]).unlink()
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "documents").mkdir()
    (tmp_path / "documents" / "notes.txt").write_text("keep me")
    web = ["--format", "web"]
    return {
        "--ort-dir without web": (["--format", "onnx", "--ort-dir", str(ort_dir)], "--ort-dir is for --format web"),
        "missing --ort-dir": ([*web, "--ort-dir", str(tmp_path / "nowhere")], "is not a folder"),
        "old version": ([*web, "--ort-dir", str(old)], "not the pinned"),
        "files missing": ([*web, "--ort-dir", str(partial)], "lacks"),
        "--out is a file": ([*web, "--out", str(tmp_path / "a-file"), "--ort-dir", str(ort_dir)], "is a file"),
        "--out holds other files": ([*web, "--out", str(tmp_path / "documents"), "--ort-dir", str(ort_dir)],
                                    "other files in it"),
        "no such run": (["--format", "web", "--ort-dir", str(ort_dir)], "does not exist"),
    }


@pytest.mark.parametrize("case", ["--ort-dir without web", "missing --ort-dir", "old version", "files missing",
                                  "--out is a file", "--out holds other files", "no such run"])
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(case, tiny_run, ort_dir, tmp_path, capsys):
    arguments, message = bad_arguments(ort_dir, tmp_path)[case]
    before = files_under(tmp_path)
    run = str(tmp_path / "no-run") if case == "no such run" else str(tiny_run)
    assert export_cli(run, *arguments) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("mnist-keras export: error: "), error
    assert message in error
    assert files_under(tmp_path) == before
    assert not (tiny_run / "web").exists()
    assert (tmp_path / "documents" / "notes.txt").read_text() == "keep me"


def test_a_failure_midway_leaves_the_earlier_export_and_no_staging(tiny_run, ort_dir, tmp_path, capsys):
    out = tmp_path / "site"
    export_web(tiny_run, out, ort_dir=ort_dir)
    before = {name: (out / name).read_bytes() for name in files_under(out)}
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / "model.onnx").write_bytes(b"not an ONNX model")
    os.utime(broken / "model.onnx", (time.time() + 5, time.time() + 5))  # newer than model.keras: current
    assert export_cli(str(broken), "--format", "web", "--out", str(out), "--ort-dir", str(ort_dir)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not a model ONNX Runtime loads" in error, error
    assert {name: (out / name).read_bytes() for name in files_under(out)} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken", "site"]


# ---------------------------------------------------------------- fetching with npm


def npm_tarball(path: Path, version: str) -> Path:
    """An npm tarball laid out as onnxruntime-web's: package/dist/<files>, stand-ins with the banner."""
    with tarfile.open(path, "w:gz") as archive:
        for name in ("package.json", *(f"dist/{name}" for name in ORT_FILES)):
            data = f"/*!\n * ONNX Runtime Web v{version}\n */\n".encode()
            member = tarfile.TarInfo(f"package/{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return path


def fake_npm(tmp_path: Path, tarball: Path | None, calls: Path) -> str:
    """A stand-in `npm` that logs its arguments and, for `pack`, copies `tarball` or fails as offline npm does."""
    script = tmp_path / "npm"
    script.write_text(f"""#!{sys.executable}
import shutil, sys
with open({str(calls)!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
tarball = {str(tarball) if tarball else None!r}
if tarball is None:
    print("npm error code ENOTFOUND", file=sys.stderr)
    print("npm error network request to https://registry.npmjs.org/onnxruntime-web failed", file=sys.stderr)
    sys.exit(1)
destination = sys.argv[sys.argv.index("--pack-destination") + 1]
shutil.copy(tarball, destination)
""")
    script.chmod(0o755)
    return str(script)


def test_npm_pack_fills_the_cache_once_and_checks_the_integrity(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_KERAS_CACHE", str(tmp_path / "cache"))
    tarball = npm_tarball(tmp_path / "onnxruntime-web-9.8.7.tgz", "9.8.7")
    calls = tmp_path / "calls.txt"
    npm = fake_npm(tmp_path, tarball, calls)

    with pytest.raises(WebExportError, match="not the lock file's"):
        ort_web_files(OrtWebPin("9.8.7", "sha512-" + "A" * 86 + "=="), npm=npm)
    assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == []  # nothing kept from a bad tarball

    pin = OrtWebPin("9.8.7", sri_sha512(tarball))
    found = ort_web_files(pin, npm=npm)
    assert found == tmp_path / "cache" / "onnxruntime-web-9.8.7"
    assert sorted(path.name for path in found.iterdir()) == sorted(ORT_FILES)
    assert ort_web_files(pin, npm=npm) == found  # from the cache: npm is not asked again
    calls_made = calls.read_text().splitlines()
    assert len(calls_made) == 2  # the refused tarball, then the good one
    assert all(call.startswith("pack onnxruntime-web@9.8.7 --pack-destination ") for call in calls_made)


def test_npm_offline_or_missing_is_one_line_saying_what_to_do(tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MNIST_KERAS_CACHE", str(tmp_path / "cache"))
    offline = fake_npm(tmp_path, None, tmp_path / "calls.txt")
    with pytest.raises(WebExportError, match="npm registry is reachable, or pass --ort-dir") as raised:
        ort_web_files(OrtWebPin("9.8.7", "sha512-x"), npm=offline)
    assert "\n" not in str(raised.value) and "ENOTFOUND" not in str(raised.value)

    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert export_cli(str(tiny_run), "--format", "web", "--out", str(tmp_path / "site")) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "npm not found" in error and "--ort-dir" in error, error
    assert not (tmp_path / "site").exists()


# ---------------------------------------------------------------- prepare.js against Python


def drawn(size=(280, 280), strokes=(((140, 45), (140, 235)),), width=22, ink=0, paper=255) -> np.ndarray:
    image = Image.new("L", size, paper)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        draw.line(stroke, fill=ink, width=width, joint="curve")
    return np.asarray(image, dtype=np.float64) / 255


def grey_cases() -> dict[str, np.ndarray]:
    """Grey images that take every branch of mnist_style: polarity, uneven light, 28×28, ruling, specks, thick
    soft strokes, blank."""
    from mnist_keras.evaluation.handwriting import load_optdigits, optdigit_png

    rng = np.random.default_rng(0)
    seven = drawn(strokes=[((75, 55), (205, 55), (115, 235))])
    four = drawn(strokes=[((95, 45), (70, 160), (210, 160)), ((175, 70), (175, 240))], ink=255, paper=0)
    shadowed = drawn(size=(400, 300), strokes=[((150, 60), (250, 60), (180, 250))], width=14)
    shadowed = np.clip(shadowed * np.linspace(0.45, 1.0, 400)[None, :] + rng.normal(0, 0.02, shadowed.shape), 0, 1)
    small = np.zeros((28, 28))
    small[3:12, 15:18], small[3:5, 10:18] = 0.6, 0.5
    exact_box = np.zeros((28, 28))
    exact_box[4:24, 12:16] = 0.9
    ruled = drawn(size=(300, 300), strokes=[((120, 60), (160, 40), (160, 240))], width=12)
    for row in (30, 90, 150, 210, 270):
        ruled[row : row + 2, :] = np.minimum(ruled[row : row + 2, :], 0.55)
    dotted = drawn()
    dotted[20:30, 240:250], dotted[200:203, 30:33] = 0, 0.3
    large = drawn(size=(1300, 1100), strokes=[((650, 200), (650, 900))], width=90)
    thumbnails, _ = load_optdigits()
    enlarged = np.asarray(optdigit_png(thumbnails[1], "dark-on-light"), dtype=np.float64) / 255  # thick: thinned
    return {"enlarged thumbnail": enlarged, "seven": seven, "light on dark": four, "shadowed": shadowed, "small 28x28": small,
            "28x28 in the box": exact_box, "ruled": ruled, "dot and speck": dotted, "large": large,
            "blank": np.full((100, 100), 0.7), "noise": rng.random((60, 80))}


def run_prepare_js(request: dict) -> dict:
    if NODE is None:
        pytest.fail("node not found: install Node.js (the web export needs it for npm too)")
    request = {"prepare": str(PAGE_DIR / "prepare.js"), "settings": preparation_settings()} | request
    result = subprocess.run([NODE, str(HARNESS)], input=json.dumps(request), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_prepare_js_gives_mnist_styles_input_on_every_branch():
    cases = grey_cases()
    answers = run_prepare_js({"greys": [{"rows": grey.shape[0], "columns": grey.shape[1], "data": grey.ravel().tolist()}
                                        for grey in cases.values()]})["inputs"]
    for (name, grey), answer in zip(cases.items(), answers):
        try:
            expected = mnist_style(grey).ravel()
        except ImageError as error:
            assert answer == {"error": str(error)}, name
            continue
        assert not isinstance(answer, dict), f"{name}: {answer}"
        np.testing.assert_allclose(np.asarray(answer), expected, rtol=0, atol=PORT_TOLERANCE, err_msg=name)


def test_prepare_js_makes_grey_as_pillow_does():
    rng = np.random.default_rng(2)
    strokes = Image.new("RGBA", (700, 500), (0, 0, 0, 0))  # a transparent canvas export, anti-aliased
    ImageDraw.Draw(strokes).line([(100, 60), (600, 440)], fill=(20, 40, 200, 255), width=30)
    images = [
        Image.fromarray(rng.integers(0, 256, (37, 53, 4), dtype=np.uint8), "RGBA"),  # transparency flattened
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), "RGB"),
        # Over WORKING_SIDE: reduced by 2 and by 3 (partial boxes at the edges), alpha premultiplied as Pillow does.
        Image.fromarray(rng.integers(0, 256, (1031, 1027, 3), dtype=np.uint8), "RGB"),
        strokes.resize((2050, 1463)),
        Image.fromarray(np.zeros((5, 5, 4), dtype=np.uint8), "RGBA"),  # entirely transparent
    ]
    answers = run_prepare_js({"rgba": [{"width": image.width, "height": image.height,
                                        "base64": base64.b64encode(image.convert("RGBA").tobytes()).decode()}
                                       for image in images]})["greys"]
    for image, answer in zip(images[:-1], answers):
        np.testing.assert_allclose(np.asarray(answer), grayscale_array(image).ravel(), rtol=0, atol=1e-12)
    assert answers[-1] == {"error": "no ink found: the image is entirely transparent"}


def test_prepare_js_decides_as_prediction_record():
    rng = np.random.default_rng(3)
    records = []
    for outputs_count in (10, 11):
        for _ in range(20):
            outputs = rng.dirichlet(np.full(outputs_count, 0.3)).astype(np.float32)
            image = (rng.random(784) < rng.uniform(0.05, 0.7)).astype(np.float32)
            records.append((outputs, image))
    answers = run_prepare_js({"records": [{"outputs": outputs.tolist(), "input": image.tolist()}
                                          for outputs, image in records]})["records"]
    assert {answer["is_digit"] for answer in answers} == {True, False}
    for (outputs, image), answer in zip(records, answers):
        expected = prediction_record(outputs, image)
        assert (answer["digit"], answer["is_digit"]) == (expected["digit"], expected["is_digit"])
        np.testing.assert_allclose(answer["probabilities"], expected["probabilities"], rtol=0, atol=1e-6)
