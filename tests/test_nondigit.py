"""Synthetic non-digits and the is_digit decision, on images the tests make."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES
from mnist_keras.data import nondigits as nondigit
from mnist_keras.data.nondigits import synthetic_negatives
from mnist_keras.inference.decision import is_digit


@pytest.fixture(autouse=True)
def no_cache(monkeypatch):
    monkeypatch.setenv(nondigit.CACHE_SWITCH, "0")


def test_negatives_have_the_model_input_form_and_are_deterministic():
    images = synthetic_negatives(60, seed=3)
    assert images.shape == (60, IMAGE_SIDE, IMAGE_SIDE) and images.dtype == np.uint8
    assert (images.reshape(60, -1).max(axis=1) > 0).all()  # every image has ink
    assert np.array_equal(images[:10], synthetic_negatives(10, seed=3))  # a prefix of a larger set
    assert not np.array_equal(images, synthetic_negatives(60, seed=4))


def test_every_kind_draws_something():
    rng = np.random.default_rng(0)
    for kind, generator in nondigit.GENERATORS.items():
        image = nondigit.as_model_input(generator(rng), kind, rng)
        assert image.shape == (IMAGE_SIDE, IMAGE_SIDE), kind
        assert 0 <= image.min() and image.max() <= 1 and image.max() > 0.1, kind


def test_glyph_list_leaves_out_digit_look_alikes():
    for look_alike in "0123456789OoDIlZzSsbGTBqg|":
        assert look_alike not in nondigit.GLYPHS


def test_cache_returns_the_same_images(monkeypatch, tmp_path):
    monkeypatch.setenv(nondigit.CACHE_SWITCH, "1")
    monkeypatch.setenv("MNIST_KERAS_CACHE", str(tmp_path))
    first = synthetic_negatives(5, seed=1)
    assert list(tmp_path.rglob("*.npy"))
    assert np.array_equal(first, synthetic_negatives(5, seed=1))


def one_hot_row(digit: int, confidence: float, outputs: int) -> np.ndarray:
    row = np.full(outputs, (1 - confidence) / (outputs - 1))
    row[digit] = confidence
    return row


def a_stroke() -> np.ndarray:
    image = np.zeros((IMAGE_SIDE, IMAGE_SIDE))
    image[4:24, 13:16] = 1.0
    return image


def test_is_digit_with_an_extra_class():
    stroke = a_stroke()
    assert is_digit(stroke, one_hot_row(1, 0.95, NUM_CLASSES + 1))
    assert not is_digit(stroke, one_hot_row(NUM_CLASSES, 0.9, NUM_CLASSES + 1))


def test_is_digit_with_ten_outputs_uses_the_confidence():
    stroke = a_stroke()
    assert is_digit(stroke, one_hot_row(1, 0.99, NUM_CLASSES))
    assert not is_digit(stroke, one_hot_row(1, 0.3, NUM_CLASSES))


def test_flat_grey_is_not_a_digit_whatever_the_model_says():
    grey = np.full((IMAGE_SIDE, IMAGE_SIDE), 0.5)
    assert not is_digit(grey, one_hot_row(8, 0.986, NUM_CLASSES))
    assert not is_digit(grey, one_hot_row(8, 0.986, NUM_CLASSES + 1))


def test_is_digit_refuses_a_wrong_output_size():
    with pytest.raises(ValueError):
        is_digit(a_stroke(), np.ones(3) / 3)
