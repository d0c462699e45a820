"""Training: a recipe and the data in, a trained model and its final training state out.

`train` prepares the arrays (the validation split, the recipe's "not a digit"
examples), builds and compiles the recipe's network, and runs the loop
(`mnist_keras.training.loop.fit`) with the checkpointer it is given, which
resumes and checkpoints every epoch. It writes nothing but checkpoints:
`mnist_keras.training.run` turns its result into a run directory.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np

from mnist_keras.config import Config
from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES
from mnist_keras.data.mnist import Mnist, one_hot, preprocess_images
from mnist_keras.model import build_augmenter, build_model, compile_model
from mnist_keras.training import loop
from mnist_keras.training.checkpoint import Checkpointer
from mnist_keras.training.state import HISTORY_COLUMNS, TrainingState

Arrays = tuple[np.ndarray, np.ndarray]
# The label of the extra "not a digit" class, after the ten digits.
NOT_DIGIT_LABEL = NUM_CLASSES
# Seeds for the synthetic non-digits of the training and validation parts, offset from the
# recipe's seed so the two parts never share an image.
NOT_DIGIT_SEED_OFFSETS = (1_000_003, 2_000_003)

__all__ = ["HISTORY_COLUMNS", "Trained", "seed_everything", "split_validation", "train", "training_arrays"]


@dataclasses.dataclass
class Trained:
    """A trained model (best or averaged weights in place) and the state training ended in."""

    model: keras.Model
    state: TrainingState


def seed_everything(seed: int) -> None:
    """Same seed, same machine, same backend ⇒ same numbers."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def split_validation(x: np.ndarray, y: np.ndarray, validation_split: float) -> tuple[Arrays, Arrays]:
    """The last `validation_split` of the data is validation, exactly as Keras's validation_split."""
    split_at = math.ceil(len(x) * (1.0 - validation_split))
    return (x[:split_at], y[:split_at]), (x[split_at:], y[split_at:])


def with_not_digits(images: np.ndarray, labels: np.ndarray, fraction: float, seed: int,
                    families: tuple[str, ...] | None = None) -> Arrays:
    """Digits plus synthetic non-digits (label NOT_DIGIT_LABEL) making up `fraction` of the result.

    The non-digits come from `families` (default: all); those made from digits
    (partial and crossed-out) are made from `images`, the training digits.
    """
    from mnist_keras.data.nondigits import ALL_FAMILIES, synthetic_negatives

    count = round(len(images) * fraction / (1.0 - fraction))
    digits = images.reshape(len(images), IMAGE_SIDE, IMAGE_SIDE)
    negatives = synthetic_negatives(count, seed, families or ALL_FAMILIES, digits=digits, labels=labels)
    negatives = negatives.reshape(count, *images.shape[1:])
    return (np.concatenate([images, negatives]),
            np.concatenate([labels, np.full(count, NOT_DIGIT_LABEL, dtype=labels.dtype)]))


def targets(labels: np.ndarray, config: Config) -> np.ndarray:
    """One-hot targets; with outlier exposure, non-digits' targets are uniform over the ten digits."""
    if not config.outlier_exposure:
        return one_hot(labels, config.num_outputs)
    negative = labels == NOT_DIGIT_LABEL
    rows = one_hot(np.where(negative, 0, labels), NUM_CLASSES)
    rows[negative] = 1.0 / NUM_CLASSES
    return rows


def training_arrays(config: Config, mnist: Mnist) -> tuple[Arrays, Arrays | None]:
    """The recipe's training and validation arrays: float32 pixels N×784 and one-hot labels.

    With `not_digit_class` or `outlier_exposure`, each part gets its own
    synthetic non-digits from the recipe's families, appended after the digits
    (the loop shuffles every epoch).
    """
    (x_fit, y_fit), (x_val, y_val) = split_validation(mnist.x_train, mnist.y_train, config.validation_split)
    parts = [(x_fit, y_fit), (x_val, y_val)]
    if config.not_digit_class or config.outlier_exposure:
        parts = [with_not_digits(x, y, config.not_digit_fraction, config.seed + offset, config.not_digit_families)
                 if len(x) else (x, y) for (x, y), offset in zip(parts, NOT_DIGIT_SEED_OFFSETS)]
    arrays = [(preprocess_images(x), targets(y, config)) for x, y in parts]
    return arrays[0], arrays[1] if len(arrays[1][0]) else None


def train(
    config: Config,
    mnist: Mnist,
    checkpointer: Checkpointer | None = None,
    verbose: int | None = None,
) -> Trained:
    """Train `config` on `mnist`; return the model and its final state.

    With a `checkpointer`, training resumes from its latest checkpoint of this
    recipe (if any) and commits one after every epoch.
    """
    seed_everything(config.seed)
    train_data, validation = training_arrays(config, mnist)
    steps_per_epoch = math.ceil(len(train_data[0]) / config.batch_size)
    model = compile_model(build_model(config), config, steps_per_epoch)
    verbosity = loop.default_verbosity() if verbose is None else verbose
    state = loop.fit(model, config, train_data, validation, checkpointer=checkpointer, verbose=verbosity,
                     augmenter=build_augmenter(config))
    return Trained(model, state)
