"""`mnist-keras export RUN --format web`: a static folder that reads digits in the browser, no server behind it.

The folder holds:

    index.html, page.js, prepare.js, page.css   the page (mnist_keras/web/)
    style.css, drawing.js                       the served drawing page's style, pad and answer panel, shared
    page.json                                   what the page reads at start: the model's file, input name
                                                and outputs, the decision's thresholds, the preparation's
                                                constants (from `decision` and `images`, so the JavaScript
                                                port has no numbers of its own), and which run answers
    model.onnx                                  the run's model; exported afresh into the folder when the run
                                                has no current one (the run itself is only read)
    ort/                                        ONNX Runtime Web's wasm-only build, at the version pinned in
                                                mnist_keras/web/package-lock.json

ONNX Runtime Web's files come from `--ort-dir` (an `onnxruntime-web` package
folder or its `dist/`), else the cache (~/.cache/mnist-keras/onnxruntime-web-<version>/),
else `npm pack onnxruntime-web@<version>` once into the cache, the tarball checked
against the lock file's integrity hash. Nothing is fetched when the page runs.
The folder is built under a temporary name beside `out` and renamed into
place, so a failure leaves nothing behind.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES, NUM_PIXELS
from mnist_keras.data.mnist import default_cache_dir
from mnist_keras.errors import UserError
from mnist_keras.inference import decision, images
from mnist_keras.inference.export import INPUT_NAME, export_run
from mnist_keras.rundir import (
    CONFIG_FILE,
    METRICS_FILE,
    ONNX_FILE,
    check_model_dir,
    check_run_dir,
    current_onnx_export,
    read_json,
    replace_path,
)

PACKAGE_DIR = Path(__file__).resolve().parents[1]
PAGE_DIR = PACKAGE_DIR / "web"
PAGE_FILES = ("index.html", "page.js", "prepare.js", "page.css")
# The served page's look, drawing pad and answer panel: one copy for both pages.
SHARED_DIR = PACKAGE_DIR / "serving" / "static"
SHARED_FILES = ("style.css", "drawing.js")
LOCK_FILE = PAGE_DIR / "package-lock.json"
SETTINGS_FILE = "page.json"
DEFAULT_DIR_NAME = "web"

ORT_PACKAGE = "onnxruntime-web"
# The wasm-only build: the module the page imports, the Emscripten loader it imports, and the
# SIMD WebAssembly binary (it runs single-threaded too, when the page is not cross-origin isolated).
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
ORT_DIR_NAME = "ort"
# Every dist file opens with this banner; it tells a folder's version without a package.json.
ORT_BANNER = re.compile(rb"ONNX Runtime Web v(\S+)")
ORT_BANNER_BYTES = 200
NPM_TIMEOUT_SECONDS = 900  # a 35 MB tarball on a slow link

# images.py's constants the JavaScript port of `mnist_style` reads, by their Python names.
PREPARATION_CONSTANTS = (
    "WORKING_SIDE", "DIGIT_BOX_SIDE", "CENTRE_OF_MASS_TARGET", "THICK_STROKE_WIDTH", "THICK_INK_CUT", "MNIST_BORDER_LEVEL", "MIN_INK_CONTRAST",
    "INK_THRESHOLD_FRACTION", "NOISE_SIGMAS", "MAD_TO_SIGMA", "DETECTION_BLUR_SIGMA", "MIN_COMPONENT_FRACTION",
    "STRAY_MARK_FRACTION", "STRAY_MARK_GAP", "DOT_FILL", "DOT_ASPECT", "DOT_SIDE_FRACTION",
    "BACKGROUND_WINDOW_FRACTION", "BACKGROUND_SIDE", "BACKGROUND_VARIATION", "POLARITY_PERCENTILE",
    "BACKGROUND_CHANGE_PERCENTILE", "BACKGROUND_MAX_CHANGE", "LINE_MIN_COVERAGE", "LINE_MAX_TILT_DEGREES",
    "LINE_TILT_STEP_DEGREES", "LINE_SEARCH_SIDE", "LINE_MIN_LENGTH_RATIO", "LINE_MAX_THICKNESS",
)
DECISION_CONSTANTS = ("NOT_DIGIT_THRESHOLD", "MIN_CONFIDENCE", "INK_LEVEL", "MAX_INK_COVERAGE")


class WebExportError(UserError):
    """The web export cannot be written: no ONNX Runtime Web files, a bad --out or --ort-dir."""


@dataclasses.dataclass(frozen=True)
class OrtWebPin:
    """The exact onnxruntime-web release the page ships, and the npm tarball's integrity (SRI sha512)."""

    version: str
    integrity: str

    @classmethod
    def from_lock(cls, path: Path = LOCK_FILE) -> OrtWebPin:
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))["packages"][f"node_modules/{ORT_PACKAGE}"]
            return cls(version=entry["version"], integrity=entry["integrity"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise WebExportError(f"{path} does not pin {ORT_PACKAGE} ({error}); reinstall mnist-keras") from None

    @property
    def spec(self) -> str:
        return f"{ORT_PACKAGE}@{self.version}"


def default_web_output(run_dir: str | Path) -> Path:
    """Where `mnist-keras export RUN --format web` writes without --out: RUN/web/."""
    return Path(run_dir) / DEFAULT_DIR_NAME


def ort_cache_dir(pin: OrtWebPin) -> Path:
    return default_cache_dir() / f"{ORT_PACKAGE}-{pin.version}"


# ---------------------------------------------------------------- ONNX Runtime Web's files


def ort_dist_version(directory: Path) -> str | None:
    """The version in the banner of `directory`'s ort.wasm.min.mjs, or None if it has no such banner."""
    try:
        with open(directory / ORT_FILES[0], "rb") as handle:
            found = ORT_BANNER.search(handle.read(ORT_BANNER_BYTES))
    except OSError:
        return None
    return found.group(1).decode("ascii", "replace") if found else None


def check_ort_dir(directory: str | Path, pin: OrtWebPin) -> Path:
    """The folder holding ORT_FILES at the pinned version: `directory` itself or its dist/; else WebExportError."""
    directory = Path(directory)
    if not directory.is_dir():
        raise WebExportError(f"--ort-dir {directory} is not a folder")
    for candidate in (directory, directory / "dist"):
        if all((candidate / name).is_file() for name in ORT_FILES):
            version = ort_dist_version(candidate)
            if version != pin.version:
                raise WebExportError(f"{candidate} holds {ORT_PACKAGE} {version or 'of unknown version'}, "
                                     f"not the pinned {pin.version}; npm pack {pin.spec} gives the right one")
            return candidate
    raise WebExportError(f"{directory} lacks {', '.join(ORT_FILES)} (give {ORT_PACKAGE} {pin.version}'s folder "
                         "or its dist/)")


def sri_sha512(path: Path) -> str:
    """A file's Subresource Integrity string (sha512-<base64>), as npm's lock files record a tarball."""
    digest = hashlib.sha512()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def fetch_ort_web(pin: OrtWebPin, cache: Path, npm: str | None = None) -> Path:
    """`npm pack` the pinned onnxruntime-web, check the tarball's integrity, and keep ORT_FILES in `cache`."""
    npm = npm or shutil.which("npm")
    if npm is None:
        raise WebExportError(f"npm not found: install Node.js (it brings npm) to fetch {pin.spec} once, or pass "
                             f"--ort-dir with its dist/ folder")
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache.parent, prefix=f".{cache.name}."))
    try:
        try:
            result = subprocess.run([npm, "pack", pin.spec, "--pack-destination", str(staging), "--silent"],
                                    capture_output=True, text=True, timeout=NPM_TIMEOUT_SECONDS, cwd=staging,
                                    check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise WebExportError(f"npm pack {pin.spec} did not run ({images.one_line(error)}); pass --ort-dir "
                                 "instead") from None
        tarballs = sorted(staging.glob("*.tgz"))
        if result.returncode != 0 or len(tarballs) != 1:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            raise WebExportError(f"npm pack {pin.spec} failed ({lines[-1].strip() if lines else 'no tarball'}); "
                                 "check that the npm registry is reachable, or pass --ort-dir")
        integrity = sri_sha512(tarballs[0])
        if integrity != pin.integrity:
            raise WebExportError(f"{tarballs[0].name} has integrity {integrity[:20]}..., not the lock file's "
                                 f"{pin.integrity[:20]}...; refusing it")
        files = staging / "files"
        files.mkdir()
        with tarfile.open(tarballs[0], "r:gz") as archive:
            for name in ORT_FILES:
                try:
                    member = archive.getmember(f"package/dist/{name}")
                except KeyError:
                    raise WebExportError(f"{tarballs[0].name} has no dist/{name}") from None
                with archive.extractfile(member) as source, open(files / name, "wb") as target:
                    shutil.copyfileobj(source, target)
        check_ort_dir(files, pin)
        replace_path(files, cache)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cache


def ort_web_files(pin: OrtWebPin, ort_dir: str | Path | None = None, npm: str | None = None) -> Path:
    """The folder of the pinned ORT_FILES: `ort_dir` if given, else the cache, filled by `npm pack` if empty."""
    if ort_dir is not None:
        return check_ort_dir(ort_dir, pin)
    cache = ort_cache_dir(pin)
    if ort_dist_version(cache) == pin.version and all((cache / name).is_file() for name in ORT_FILES):
        return cache
    return fetch_ort_web(pin, cache, npm)


# ---------------------------------------------------------------- the folder


def preparation_settings() -> dict[str, dict[str, float]]:
    """The constants prepare.js reads (page.json's "shape", "decision" and "preparation"), by their Python names."""
    return {
        "shape": {"IMAGE_SIDE": IMAGE_SIDE, "NUM_PIXELS": NUM_PIXELS, "NUM_CLASSES": NUM_CLASSES},
        "decision": {name: getattr(decision, name) for name in DECISION_CONSTANTS},
        "preparation": {name: getattr(images, name) for name in PREPARATION_CONSTANTS},
    }


def page_settings(run_dir: Path, model_path: Path, pin: OrtWebPin) -> dict[str, Any]:
    """page.json: everything the page needs to prepare, run and decide as `mnist-keras predict` does."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - ONNX Runtime raises its own types for a file that is no model
        raise WebExportError(f"{model_path.name} from {run_dir} is not a model ONNX Runtime loads "
                             f"({images.one_line(error)[:200]}); re-export it with --format onnx") from None
    [model_input], [model_output] = session.get_inputs(), session.get_outputs()
    outputs = model_output.shape[-1]
    if model_input.shape[-1] != NUM_PIXELS or outputs not in (NUM_CLASSES, NUM_CLASSES + 1):
        raise WebExportError(f"{model_path} maps {model_input.shape} to {model_output.shape}; the page needs "
                             f"N×{NUM_PIXELS} pixels to N×{NUM_CLASSES} or N×{NUM_CLASSES + 1}")
    record, metrics = read_json(run_dir / CONFIG_FILE), read_json(run_dir / METRICS_FILE)
    recipe = record.get("recipe", {})
    return {
        "onnxruntime_web": pin.version,
        "model": {"file": ONNX_FILE, "input": model_input.name or INPUT_NAME, "outputs": outputs},
        **preparation_settings(),
        "about": {"run": run_dir.resolve().name, "recipe": record.get("recipe_name"),
                  "model": recipe.get("model", "mlp"), "test_accuracy": metrics.get("test_accuracy"),
                  "handwriting_accuracy": metrics.get("handwriting_accuracy")},
    }


def check_output(out: Path) -> None:
    """Refuse an --out that is a file, or a non-empty folder that is not an earlier web export (it is replaced)."""
    if out.exists() and not out.is_dir():
        raise WebExportError(f"{out} is a file; a web export is a folder (give a new name with --out)")
    if out.is_dir() and any(out.iterdir()) and not (out / SETTINGS_FILE).is_file():
        raise WebExportError(f"{out} is a folder with other files in it; give a new or empty folder with --out")


def export_web(run_dir: str | Path, out: str | Path | None = None, ort_dir: str | Path | None = None,
               pin: OrtWebPin | None = None, npm: str | None = None) -> Path:
    """Write the run's static web page to `out` (default RUN/web/) and return it.

    Raises WebExportError (or the run's RunDirectoryError, the ONNX export's
    ExportError) with nothing written; an earlier web export at `out` is replaced whole.
    """
    run_dir = check_model_dir(Path(run_dir))
    if current_onnx_export(run_dir) is None:
        check_run_dir(run_dir)  # model.onnx is exported from the run's model.keras
    out = Path(out) if out is not None else default_web_output(run_dir)
    check_output(out)
    pin = pin or OrtWebPin.from_lock()
    ort_source = ort_web_files(pin, ort_dir, npm)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        folder = staging / out.name
        (folder / ORT_DIR_NAME).mkdir(parents=True)
        for name in PAGE_FILES:
            shutil.copyfile(PAGE_DIR / name, folder / name)
        for name in SHARED_FILES:
            shutil.copyfile(SHARED_DIR / name, folder / name)
        for name in ORT_FILES:
            shutil.copyfile(ort_source / name, folder / ORT_DIR_NAME / name)
        model_path = folder / ONNX_FILE
        current = current_onnx_export(run_dir)
        if current is not None:
            shutil.copyfile(current, model_path)
        else:
            export_run(run_dir, "onnx", model_path)
        settings = page_settings(run_dir, model_path, pin)
        (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        replace_path(folder, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
