"""The mark reader (`inference.marks`), its training data (`training.marks`) and how `read` uses it.

Unit tests use small arrays and Pillow's font (`fakes`); a stand-in reader
answers what a test tells it, so these check how `read` acts on its answer,
not a model. The shipped reader itself is checked on MNIST test digits in the
real-data lane.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from fakes import GlyphPredictor, synthetic_mnist, write_text

from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES
from mnist_keras.evaluation.numbers import place_line
from mnist_keras.inference import marks
from mnist_keras.inference.marks import (
    BLANK,
    CLASSES,
    FRAME_COLUMNS,
    FRAMES,
    READER_WIDTH,
    MarkReading,
    Placement,
    decode,
    reader_input,
)
from mnist_keras.inference.reading import read_grey
from mnist_keras.training import marks as training_marks


def one_hot_frames(pattern: str, sure: float = 1.0) -> np.ndarray:
    """Frame probabilities spelling `pattern` ("." blank, a digit its class), each frame `sure` of its class."""
    frames = np.full((len(pattern), CLASSES), (1 - sure) / (CLASSES - 1))
    for index, character in enumerate(pattern):
        frames[index, BLANK if character == "." else int(character) + 1] = sure
    return frames


# ---------------------------------------------------------------- the reader's input and answer


def test_reader_input_keeps_the_aspect_and_says_where_the_columns_went():
    ink = np.zeros((60, 100))
    ink[10:50, 20:50] = 1.0  # 40 tall, 30 wide, from column 20
    field, placement = reader_input(ink)
    assert field.shape == (IMAGE_SIDE, READER_WIDTH)
    inked = np.flatnonzero(field.any(axis=0))
    assert len(inked) == 21  # 30 × 28 / 40
    assert placement.to_input(20) == pytest.approx(inked[0], abs=1)
    assert placement.to_ink(placement.to_input(35.0)) == pytest.approx(35.0)


def test_a_mark_wider_than_three_digits_is_squeezed_to_fit():
    field, placement = reader_input(np.ones((10, 400)))
    assert field.shape == (IMAGE_SIDE, READER_WIDTH) and field.all()
    assert placement.scale == pytest.approx(READER_WIDTH / 400)


def test_decode_reads_runs_left_to_right_and_a_blank_parts_equal_neighbours():
    pattern = ".." + "77" + "." + "7" + "33" + ".." + "1"
    reading = decode(one_hot_frames(pattern.ljust(FRAMES, ".")))
    assert reading.digits == (7, 7, 3, 1)
    assert reading.confidence == pytest.approx(1.0)
    assert [len(p) for p in reading.probabilities] == [NUM_CLASSES] * 4
    assert all(p.sum() == pytest.approx(1.0) for p in reading.probabilities)
    first, last = reading.spans[0], reading.spans[-1]
    assert first == (2 * FRAME_COLUMNS, 4 * FRAME_COLUMNS)
    assert first[1] <= reading.spans[1][0] and last[0] == 10 * FRAME_COLUMNS


def test_decode_confidence_is_each_digits_surest_frame_and_the_clearest_gap_between():
    frames = one_hot_frames("..55..33..", 0.99)
    frames[3] = one_hot_frames("5", 0.7)[0]  # a digit's edge may hesitate: its surest frame counts
    assert decode(frames).confidence == pytest.approx(0.99 * 0.99 * 0.99)
    frames[4:6] = one_hot_frames("..", 0.6)  # where the two meet, no frame is clearly blank
    frames[4:6, 6] = 0.4 - 0.4 / (CLASSES - 1)
    assert decode(frames).digits == (5, 3)
    assert decode(frames).confidence == pytest.approx(0.99 * 0.6 * 0.99)
    assert decode(one_hot_frames("..5..", 0.6)).confidence == pytest.approx(0.6)
    assert decode(one_hot_frames(".....")).digits == ()


def test_decode_spans_are_in_the_inks_columns():
    placement = Placement(first=10, scale=0.5, offset=4)
    [span] = decode(one_hot_frames(".3..."), placement).spans
    assert span == (placement.to_ink(FRAME_COLUMNS), placement.to_ink(2 * FRAME_COLUMNS))


# ---------------------------------------------------------------- its training marks


def test_frame_labels_mark_each_digits_middle_in_order():
    digits = np.zeros((2, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    digits[:, 4:24, 10:18] = 255  # two upright bars
    rng = np.random.default_rng(0)
    placed = place_line(list(digits), rng, 40.0, 0.0, [0], overlap=(0.05, 0.05))
    ink = np.zeros((60, 120))
    for top, left, shaped in placed:
        ink[top + 4 : top + 4 + shaped.shape[0], left + 4 : left + 4 + shaped.shape[1]] += shaped
    _, placement = reader_input(np.clip(ink, 0, 1))
    labels = training_marks.frame_labels(placed, [4, 4], placement)
    runs = [int(value) - 1 for index, value in enumerate(labels)
            if value != BLANK and (index == 0 or labels[index - 1] != value)]
    assert runs == [4, 4], "two 4s, a blank frame between them"
    assert decode(np.eye(CLASSES)[labels]).digits == (4, 4)


def test_written_marks_are_the_same_for_any_number_of_workers(monkeypatch):
    mnist = synthetic_mnist(train_count=50, test_count=10)
    monkeypatch.setattr(training_marks, "CHUNK", 8)
    one = training_marks.written_marks(mnist.x_train, mnist.y_train, 20, seed=3, workers=1)
    two = training_marks.written_marks(mnist.x_train, mnist.y_train, 20, seed=3, workers=2)
    for first, second in zip(one, two):
        np.testing.assert_array_equal(first, second)
    fields, frames, written = one
    assert fields.shape == (20, IMAGE_SIDE, READER_WIDTH) and frames.shape == (20, FRAMES)
    counts = (written >= 0).sum(axis=1)
    assert set(counts) <= {1, 2, 3} and len(set(counts)) > 1
    for labels, row in zip(frames, written):
        assert decode(np.eye(CLASSES)[labels]).digits == tuple(int(digit) for digit in row if digit >= 0)


# ---------------------------------------------------------------- how read uses it


class StandInReader:
    """Answers every mark with `digits`, at `confidence`, each over an equal share of the ink's columns."""

    def __init__(self, digits: tuple[int, ...], confidence: float) -> None:
        self.digits, self.confidence, self.asked = digits, confidence, 0

    def read(self, inks):
        self.asked += len(inks)
        answers = []
        for ink in inks:
            columns = np.flatnonzero(np.asarray(ink).any(axis=0))
            edges = np.linspace(columns[0], columns[-1] + 1, len(self.digits) + 1)
            answers.append(MarkReading(
                self.digits, tuple(np.eye(NUM_CLASSES)[digit] for digit in self.digits),
                tuple(itertools.pairwise(edges)), self.confidence))
        return answers


@pytest.fixture(scope="module")
def glyphs() -> GlyphPredictor:
    return GlyphPredictor()


@pytest.fixture(scope="module")
def touching_pair() -> np.ndarray:
    return write_text(["42"], gap=-0.08)  # the glyphs' strokes overlap: one blob


def test_a_sure_reader_reads_a_touching_pair_and_boxes_each_digit(glyphs, touching_pair):
    reader = StandInReader((4, 2), confidence=0.99)
    reading = read_grey(touching_pair, glyphs, mark_reader=reader)
    assert reader.asked == 1
    assert reading["text"] == "42"
    first, second = reading["lines"][0]
    assert first["box"][0] < second["box"][0] and first["box"][2] <= second["box"][2]
    assert first["probabilities"][4] == 1.0 and first["is_digit"] and second["is_digit"]


def test_a_reader_sure_of_one_digit_keeps_the_mark_whole(glyphs, touching_pair):
    reading = read_grey(touching_pair, glyphs, mark_reader=StandInReader((7,), confidence=0.99))
    assert len(reading["lines"][0]) == 1


def test_an_unsure_reader_leaves_the_mark_to_the_cuts(glyphs, touching_pair):
    unsure = read_grey(touching_pair, glyphs, mark_reader=StandInReader((9, 9), confidence=0.5))
    assert unsure == read_grey(touching_pair, glyphs, mark_reader=None)


def test_a_sure_reader_never_names_what_the_model_refuses(glyphs):
    """The reader knows only digits: a wide mark that is not digits stays refused, whatever it says."""
    scribble = np.ones((200, 400))
    scribble[50:150, 60:340] = 0.1  # a wide filled block: no digit covers half its box with ink
    assert read_grey(scribble, glyphs, mark_reader=None)["text"] == ""
    reader = StandInReader((1, 1), confidence=0.99)
    reading = read_grey(scribble, glyphs, mark_reader=reader)
    assert reader.asked >= 1 and reading["text"] == ""
    assert reading["lines"] and not any(mark["is_digit"] for line in reading["lines"] for mark in line)


def test_separate_digits_the_model_is_sure_of_never_ask_the_reader(glyphs):
    reader = StandInReader((1, 1), confidence=0.99)
    assert read_grey(write_text(["2026"]), glyphs, mark_reader=reader)["text"] == "2026"
    assert reader.asked == 0


def test_read_uses_the_shipped_reader_by_default(glyphs, touching_pair, monkeypatch):
    reader = StandInReader((4, 2), confidence=0.99)
    monkeypatch.setattr("mnist_keras.inference.reading.shipped_mark_reader", lambda: reader)
    assert read_grey(touching_pair, glyphs)["text"] == "42" and reader.asked == 1


def test_the_package_ships_a_mark_reader():
    reader = marks.shipped_mark_reader()
    assert reader is not None, f"no {marks.READER_MODEL} in {marks.READER_DIR}: make mark-reader"
    frames = reader.frames(np.zeros((2, IMAGE_SIDE, READER_WIDTH), dtype=np.float32))
    assert frames.shape == (2, FRAMES, CLASSES)
    np.testing.assert_allclose(frames.sum(axis=-1), 1.0, atol=1e-5)
    assert decode(frames[0]).digits == (), "an empty field holds no digit"
    assert marks.reader_card()["marks_of_2"] > 0.85


# ---------------------------------------------------------------- the shipped reader on MNIST test digits


@pytest.mark.real_data
def test_the_shipped_reader_reads_touching_mnist_test_digits(real_mnist):
    """Marks of one to three touching or close MNIST *test* digits (which it never trained on)."""
    fields, _, written = training_marks.written_marks(real_mnist.x_test, real_mnist.y_test, 400, seed=11)
    frames = marks.shipped_mark_reader().frames(fields.astype(np.float32) / 255)
    measured = training_marks.mark_accuracy(frames, written)
    print(measured)
    # The shipped reader measured 97.7% / 89.7% / 81.1% on its own test marks (reader.json).
    assert measured["marks_of_1"] >= 0.95 and measured["marks_of_2"] >= 0.85 and measured["marks_of_3"] >= 0.7


@pytest.mark.real_data
def test_the_shipped_models_read_numbers_with_a_touching_pair(real_mnist):
    from mnist_keras.evaluation.numbers import draw_numbers
    from mnist_keras.inference.predictors import load_predictor
    from mnist_keras.inference.reading import read_image_bytes
    from mnist_keras.inference.shipped import shipped_model_dir

    predictor = load_predictor(shipped_model_dir())
    numbers = draw_numbers(real_mnist.x_test, real_mnist.y_test, 60, seed=7, touching=True)
    with_reader = np.mean([read_image_bytes(number.data, predictor)["text"] == number.text for number in numbers])
    cuts_only = np.mean([read_image_bytes(number.data, predictor, mark_reader=None)["text"] == number.text
                         for number in numbers])
    print(f"whole numbers right: {with_reader:.1%} with the mark reader, {cuts_only:.1%} by the cuts alone")
    assert with_reader >= 0.7 and with_reader > cuts_only


@pytest.mark.real_data
@pytest.mark.slow
def test_the_training_command_writes_a_reader_that_loads(tmp_path):
    """`python -m mnist_keras.training.marks` (what `make mark-reader` runs), tiny: the ONNX file it writes
    has passed its own check against Keras, loads in ONNX Runtime, and its card says what it measured."""
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "reader"
    environment = os.environ | {"KERAS_BACKEND": "tensorflow"}
    result = subprocess.run([sys.executable, "-m", "mnist_keras.training.marks", str(out), "--samples", "256",
                             "--epochs", "1", "--test-samples", "64"], capture_output=True, text=True,
                            env=environment, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    card = json.loads((out / marks.READER_CARD).read_text())
    assert card["samples"] == 256 and card["test_samples"] == 64 and 0 <= card["marks"] <= 1
    frames = marks.MarkReader(out / marks.READER_MODEL).frames(np.zeros((1, IMAGE_SIDE, READER_WIDTH)))
    assert frames.shape == (1, FRAMES, CLASSES)
    assert sorted(path.name for path in out.iterdir()) == sorted([marks.READER_MODEL, marks.READER_CARD])
