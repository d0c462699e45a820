"""Small data and recipes the tests make (importable by child processes: no side effects, no Keras)."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np

from mnist_keras.config import Config
from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES
from mnist_keras.data.mnist import Mnist
from mnist_keras.training.checkpoint import Checkpointer, run_checkpoint_dir
from mnist_keras.training.state import TrainingState

# Small enough for a one-epoch train in a second or two.
TINY_RECIPE = Config(epochs=1, batch_size=32, hidden_units=(32, 16, 8))


def synthetic_mnist(train_count: int = 300, test_count: int = 100, seed: int = 0) -> Mnist:
    """Learnable fake digits: class k lights up row band k, plus noise. Unverified, for unit tests."""
    rng = np.random.default_rng(seed)

    def make(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(count) % NUM_CLASSES
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(count, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
        for index, label in enumerate(labels):
            images[index, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
        return images, labels.astype(np.uint8)

    x_train, y_train = make(train_count)
    x_test, y_test = make(test_count)
    return Mnist(x_train, y_train, x_test, y_test, source="synthetic")


class CallingCheckpointer(Checkpointer):
    """A run's checkpointer that calls `after_save(state)` once each epoch's checkpoint is committed."""

    def __init__(self, directory: Path, config: Config, after_save: Callable[[TrainingState], None]) -> None:
        super().__init__(directory, config)
        self.after_save = after_save

    def save(self, state: TrainingState, model, augmenter=None) -> None:
        super().save(state, model, augmenter)
        self.after_save(state)


def calling(after_save: Callable[[TrainingState], None], run_dir: Path, config: Config) -> CallingCheckpointer:
    """The checkpointer `train_run(config, ..., run_dir)` would use, calling `after_save` after every epoch."""
    return CallingCheckpointer(run_checkpoint_dir(run_dir), config, after_save)


# ---------------------------------------------------------------- a reader of printed digits

GLYPH_FONT_SIZE = 96
GLYPH_SHARPNESS = 40.0  # softmax scale on the correlation: an exact glyph reads at ~1.0
GLYPH_REFUSE_AT = 0.75  # correlation below which "not a digit" wins


def glyph(digit: int | str, size: int = GLYPH_FONT_SIZE) -> np.ndarray:
    """A character in Pillow's built-in font, as ink in [0, 1] (ink = 1), cropped to its box."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    canvas = Image.new("L", (2 * size, 2 * size), 0)
    ImageDraw.Draw(canvas).text((size // 2, size // 4), str(digit), fill=255, font=font)
    ink = np.asarray(canvas, dtype=np.float64) / 255
    rows, columns = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


class GlyphPredictor:
    """A stand-in model that reads the built-in font's digits: each 28×28 input is compared with the
    ten glyphs made into model inputs as a single digit is (`images.digit_input`); 11 outputs, the
    last "not a digit" when nothing matches well. For the reading tests: no training, exact answers."""

    name = "glyphs"

    def __init__(self) -> None:
        from mnist_keras.inference.images import digit_input

        self.templates = np.stack([self.centred(digit_input(glyph(digit)).ravel()) for digit in range(NUM_CLASSES)])

    @staticmethod
    def centred(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        rows = rows - rows.mean(axis=-1, keepdims=True)
        return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-9)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        correlation = self.centred(np.asarray(pixels).reshape(len(pixels), -1)) @ self.templates.T
        logits = GLYPH_SHARPNESS * np.concatenate([correlation, np.full((len(pixels), 1), GLYPH_REFUSE_AT)], axis=1)
        logits -= logits.max(axis=1, keepdims=True)
        outputs = np.exp(logits)
        return (outputs / outputs.sum(axis=1, keepdims=True)).astype(np.float32)


def write_text(lines: list[str], gap: float = 0.3, size: int = GLYPH_FONT_SIZE, dark_on_light: bool = True,
               baselines: list[float] | None = None) -> np.ndarray:
    """Lines of built-in-font characters as a grey image in [0, 1]: each character `gap` of its height
    from the next, lines a digit's height apart; `baselines` shifts each character of the first line
    up or down by that share of the height."""
    height = glyph(8, size).shape[0]
    rows = []
    for number, text in enumerate(lines):
        inks = [glyph(character, size) for character in text]
        shifts = [round((baselines[index] if number == 0 and baselines else 0.0) * height) for index in range(len(text))]
        band = height + 2 * max(abs(shift) for shift in shifts) + 2
        width = sum(ink.shape[1] for ink in inks) + round(gap * height) * (len(inks) - 1)
        row = np.zeros((band, width))
        left = 0
        for ink, shift in zip(inks, shifts):
            top = (band - height) // 2 + (height - ink.shape[0]) // 2 + shift
            row[top : top + ink.shape[0], left : left + ink.shape[1]] = np.maximum(
                row[top : top + ink.shape[0], left : left + ink.shape[1]], ink)
            left += ink.shape[1] + round(gap * height)
        rows.append(row)
    width = max(row.shape[1] for row in rows)
    margin = height // 2
    stacked = [np.pad(row, ((0, height // 2), (0, width - row.shape[1]))) for row in rows]
    ink = np.pad(np.concatenate(stacked), margin)
    return 1.0 - 0.9 * ink if dark_on_light else 0.05 + 0.9 * ink


def load_module(path: Path, name: str) -> ModuleType:
    """A script (a benchmark) loaded from its path as module `name`, registered so its dataclasses find it."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


@contextmanager
def serving_in_thread(config, timeout: float) -> Iterator[None]:
    """A uvicorn server for `config` in a thread of this process: started (or failed) within `timeout`
    seconds, stopped and joined on leaving."""
    import uvicorn

    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the in-process server did not start"
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
