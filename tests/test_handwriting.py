"""The handwriting sets that measure the image path: optdigits files, users' faint digits, photos, non-digits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from mnist_keras.constants import IMAGE_SIDE, PIXEL_MAX
from mnist_keras.evaluation import handwriting
from mnist_keras.inference.images import mnist_style, preprocess_image_file


def synthetic_digit() -> np.ndarray:
    """An MNIST-form "0": a ring 20 pixels tall, uint8, light on black."""
    rows, columns = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE]
    radius = np.hypot((rows - 14) / 10, (columns - 14) / 7)
    return np.rint(np.clip(1 - np.abs(radius - 0.85) * 6, 0, 1) * PIXEL_MAX).astype(np.uint8)


def correlation(first: np.ndarray, second: np.ndarray) -> float:
    first, second = (ndimage.gaussian_filter(np.asarray(image, dtype=np.float64), 1.0).ravel()
                     for image in (first, second))
    return float(np.corrcoef(first, second)[0, 1])


def test_optdigits_files_in_both_polarities(tmp_path):
    paths, labels = handwriting.write_optdigits(tmp_path)
    images, _ = handwriting.load_optdigits()
    assert len(paths) == 2 * len(images) == len(labels)
    dark = np.asarray(Image.open(paths[0]))
    light = np.asarray(Image.open(paths[len(images)]))
    assert dark.shape == (handwriting.OPTDIGITS_SIDE,) * 2
    np.testing.assert_allclose(dark.astype(int) + light.astype(int), PIXEL_MAX, atol=1)  # the same digit, inverted
    # Both read as the same model input.
    np.testing.assert_allclose(preprocess_image_file(paths[0]), preprocess_image_file(paths[len(images)]),
                               atol=0.02)


def test_faint_user_digits_are_faint_thin_and_off_centre():
    digit = synthetic_digit()
    faint = handwriting.faint_user_digits(np.stack([digit] * 8), seed=1)
    assert faint.shape == (8, IMAGE_SIDE, IMAGE_SIDE) and faint.dtype == np.uint8
    assert faint.max() <= round(handwriting.FAINT_PEAK * PIXEL_MAX)
    assert ((faint > 0).sum(axis=(1, 2)) < (digit > 0).sum()).all()  # thinner and smaller than MNIST's
    centres = np.array([ndimage.center_of_mass(image.astype(float)) for image in faint])
    assert np.abs(centres - 14).max() > 1  # not all MNIST-centred
    # Preprocessing makes them MNIST-like again.
    assert all(correlation(mnist_style(image / PIXEL_MAX), digit) > 0.7 for image in faint)


@pytest.mark.parametrize("condition", handwriting.PHOTO_CONDITIONS)
def test_photos_read_as_the_digit(tmp_path, condition):
    digit = synthetic_digit()
    paths, conditions = handwriting.write_photos(np.stack([digit] * 6), tmp_path, seed=2, conditions=[condition])
    assert conditions == [condition] * 6
    for path in paths:
        image = np.asarray(Image.open(path))
        assert image.ndim == (3 if condition == "coloured paper" else 2)
        assert min(image.shape[:2]) >= handwriting.PHOTO_SIDES[0]
    # Most photos read as the digit; a shadow's edge is sometimes kept as ink (92-97% of
    # shadowed MNIST digits are read correctly, see benchmarks/handwriting.py).
    correlations = [correlation(preprocess_image_file(path), digit) for path in paths]
    assert np.median(correlations) > 0.8, (condition, correlations)


def test_photos_are_deterministic(tmp_path):
    digits = np.stack([synthetic_digit()] * 5)
    first, _ = handwriting.write_photos(digits, tmp_path / "a", seed=3)
    second, _ = handwriting.write_photos(digits, tmp_path / "b", seed=3)
    for one, two in zip(first, second):
        assert one.read_bytes() == two.read_bytes()


def test_heldout_negatives_cover_every_kind_and_read_like_predict(tmp_path):
    negatives = handwriting.heldout_negatives(len(handwriting.HELDOUT_KINDS) * 2, seed=0)
    assert [negative.kind for negative in negatives[: len(handwriting.HELDOUT_KINDS)]] == \
        list(handwriting.HELDOUT_KINDS)
    inputs, readable = handwriting.negative_inputs(negatives, tmp_path)
    assert inputs.shape == (len(negatives), IMAGE_SIDE, IMAGE_SIDE)
    assert 0 <= inputs.min() and inputs.max() <= 1
    assert readable.mean() > 0.8  # almost all reach the model; a blank one counts as refused
    again = handwriting.heldout_negatives(len(negatives), seed=0)
    assert all(np.array_equal(one.image, two.image) for one, two in zip(negatives, again))


def test_heldout_negatives_share_no_fonts_with_the_training_generator():
    from mnist_keras.data import nondigits as nondigit

    assert not set(handwriting.HELDOUT_FONTS) & set(nondigit.TRAINING_FONTS)


def test_is_digit_rates_count_unreadable_inputs_as_refused():
    inputs = np.zeros((2, IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    inputs[:, 10:18, 12:16] = 1.0
    outputs = np.tile(np.eye(11)[3], (2, 1))  # a confident 3, no "not a digit"
    rates = handwriting.is_digit_rates(inputs, outputs, readable=np.array([True, False]))
    assert rates.tolist() == [True, False]
