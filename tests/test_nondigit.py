"""Synthetic non-digits (families, pen strokes) and the is_digit decision, on images the tests make."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES
from mnist_keras.data import nondigits as nondigit
from mnist_keras.data import strokes
from mnist_keras.data.nondigits import synthetic_negatives
from mnist_keras.inference.decision import is_digit


@pytest.fixture(autouse=True)
def no_cache(monkeypatch):
    monkeypatch.setenv(nondigit.CACHE_SWITCH, "0")


def fake_digits(count: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Training-digit stand-ins: a thick ring or bar per label, uint8 28×28, so the tests load no MNIST."""
    rows, columns = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE]
    ring = (np.abs(np.hypot(rows - 14, columns - 14) - 7) < 2).astype(np.uint8) * 255
    bar = ((np.abs(columns - 14) < 2) & (np.abs(rows - 14) < 9)).astype(np.uint8) * 255
    labels = np.arange(count) % NUM_CLASSES
    return np.stack([bar if label == 1 else ring for label in labels]), labels


def test_negatives_have_the_model_input_form_and_are_deterministic():
    digits, labels = fake_digits()
    images = synthetic_negatives(60, seed=3, digits=digits, labels=labels)
    assert images.shape == (60, IMAGE_SIDE, IMAGE_SIDE) and images.dtype == np.uint8
    assert (images.reshape(60, -1).max(axis=1) > 0).all()  # every image has ink
    assert np.array_equal(images[:10], synthetic_negatives(10, seed=3, digits=digits, labels=labels))  # a prefix
    assert not np.array_equal(images, synthetic_negatives(60, seed=4, digits=digits, labels=labels))


def test_families_draw_only_their_own_kinds():
    digits, labels = fake_digits()
    images, families = nondigit.draw_negatives(80, 2, ("capitals", "crossed_out"), digits, labels)
    assert set(families) == {"capitals", "crossed_out"}
    alone, _ = nondigit.draw_negatives(20, 2, ("doodles",))
    assert not any(np.array_equal(one, two) for one in alone for two in images)
    assert nondigit.family_kinds(("doodles",))[0] == list(nondigit.FAMILIES["doodles"])


def test_family_names_match_the_recipe_field():
    from mnist_keras.constants import NOT_DIGIT_FAMILIES

    assert tuple(nondigit.FAMILIES) == NOT_DIGIT_FAMILIES == nondigit.ALL_FAMILIES
    assert set(nondigit.FAMILY_WEIGHTS) == set(nondigit.FAMILIES)
    for kinds in nondigit.FAMILIES.values():
        assert all(kind in nondigit.GENERATORS or kind in nondigit.DIGIT_GENERATORS for kind in kinds)


def test_families_made_from_digits_need_digits_and_unknown_families_are_refused():
    with pytest.raises(ValueError, match="training digits"):
        synthetic_negatives(5, seed=0, families=("partial_digits",))
    with pytest.raises(ValueError, match="unknown"):
        synthetic_negatives(5, seed=0, families=("horses",))
    assert synthetic_negatives(5, seed=0, families=("capitals", "patterns")).shape == (5, IMAGE_SIDE, IMAGE_SIDE)


def test_every_kind_draws_something():
    rng = np.random.default_rng(0)
    digits, labels = fake_digits()
    for kind in [*nondigit.GENERATORS, *nondigit.DIGIT_GENERATORS]:
        drawing = (nondigit.DIGIT_GENERATORS[kind](digits, labels, rng) if kind in nondigit.DIGIT_GENERATORS
                   else nondigit.GENERATORS[kind](rng))
        image = nondigit.as_model_input(drawing, kind, rng)
        assert image.shape == (IMAGE_SIDE, IMAGE_SIDE), kind
        assert 0 <= image.min() and image.max() <= 1 and image.max() > 0.1, kind


def test_every_doodle_draws_strokes_in_the_unit_box():
    rng = np.random.default_rng(1)
    for name, shape in strokes.DOODLES.items():
        drawn = strokes.hand_drawn(shape(rng), rng)
        points = np.concatenate(drawn)
        assert points.min() >= -1e-9 and points.max() <= 1 + 1e-9, name
        assert np.isclose(np.ptp(points, axis=0).max(), 1.0), name


def test_glyph_lists_leave_out_digit_look_alikes():
    for look_alike in "0123456789OoDIlZzSsbGTBqg|":
        assert look_alike in strokes.EXCLUDED
    for characters in (nondigit.GLYPHS, strokes.CAPITALS, strokes.LOWERCASE, strokes.SYMBOLS):
        assert not set(characters) & strokes.EXCLUDED, characters


def test_pen_letters_never_draw_an_excluded_character(monkeypatch):
    drawn = []
    original = strokes.hershey_strokes
    monkeypatch.setattr(strokes, "hershey_strokes", lambda text, font: drawn.append(text) or original(text, font))
    rng = np.random.default_rng(5)
    for _ in range(60):
        for generator in (strokes.pen_capital, strokes.pen_lowercase, strokes.pen_symbol):
            generator(rng)
    assert drawn and not set(drawn) & strokes.EXCLUDED


def test_partial_digits_skip_digits_whose_parts_are_digits():
    digits, labels = fake_digits()
    ring = digits[labels == 0][0] / 255
    rng = np.random.default_rng(0)
    for _ in range(10):
        part = strokes.partial_digit(digits, labels, rng)
        # Only rings are usable (the bars are 1s): what is kept is a share of a ring's ink.
        share = part.sum() / strokes.enlarged(digits[0]).sum()
        assert strokes.KEPT_INK[0] - 0.05 <= share <= strokes.KEPT_INK[1] + 0.05
        assert part.max() <= 1.0 and ring.max() == 1.0


def test_crossed_out_digits_keep_the_digit_and_add_a_strike():
    digits, labels = fake_digits()
    rng = np.random.default_rng(0)
    crossed = strokes.crossed_out(digits, labels, rng)
    assert crossed.shape == (strokes.CANVAS, strokes.CANVAS) and 0 <= crossed.min() and crossed.max() <= 1
    assert (crossed > 0.5).sum() > (strokes.enlarged(digits[0]) > 0.5).sum()


def test_cache_returns_the_same_images(monkeypatch, tmp_path):
    monkeypatch.setenv(nondigit.CACHE_SWITCH, "1")
    monkeypatch.setenv("MNIST_KERAS_CACHE", str(tmp_path))
    digits, labels = fake_digits()
    first = synthetic_negatives(5, seed=1, digits=digits, labels=labels)
    assert list(tmp_path.rglob("*.npy"))
    assert np.array_equal(first, synthetic_negatives(5, seed=1, digits=digits, labels=labels))
    assert nondigit.cache_path(5, 1, nondigit.ALL_FAMILIES, digits, labels) != nondigit.cache_path(
        5, 1, nondigit.ALL_FAMILIES, digits[::-1], labels[::-1])


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
