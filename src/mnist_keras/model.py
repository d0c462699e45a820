"""The seed's network: 784 → 512 → 256 → 128 → 10, with BatchNorm and Dropout."""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from mnist_keras.config import Config
from mnist_keras.constants import NUM_CLASSES, NUM_PIXELS
from mnist_keras.errors import RunDirectoryError
from mnist_keras.rundir import MODEL_FILE, read_run_config

MODEL_NAME = "mnist_mlp"


def build_model(config: Config = Config()) -> keras.Model:
    """Build (uncompiled) the seed MLP. With the default Config: 570,506 parameters, 568,970 trainable."""
    model = keras.Sequential(name=MODEL_NAME)
    model.add(keras.Input(shape=(NUM_PIXELS,), name="pixels"))
    for index, (units, dropout_rate, batch_norm) in enumerate(
        zip(config.hidden_units, config.dropout_rates, config.batch_norm), start=1
    ):
        model.add(layers.Dense(units, activation="relu", name=f"dense_{index}"))
        if batch_norm:
            model.add(layers.BatchNormalization(name=f"batch_norm_{index}"))
        if dropout_rate > 0:
            model.add(layers.Dropout(dropout_rate, name=f"dropout_{index}"))
    model.add(layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities"))
    return model


def compile_model(model: keras.Model, config: Config, steps_per_epoch: int | None = None) -> keras.Model:
    """Compile with the seed's optimiser and loss (Adam, categorical cross-entropy, accuracy).

    A recipe with a learning-rate schedule needs `steps_per_epoch` to place it in time.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate(config, steps_per_epoch)),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def learning_rate(config: Config, steps_per_epoch: int | None) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The recipe's learning rate: a number (the seed's), or a per-step one-cycle schedule."""
    if config.schedule == "constant":
        return config.learning_rate
    if steps_per_epoch is None:
        raise ValueError(f"the {config.schedule!r} schedule needs steps_per_epoch")
    warmup_steps = config.warmup_epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,  # the warm-up starts from zero...
        warmup_target=config.learning_rate,  # ...climbs linearly to the recipe's rate...
        warmup_steps=warmup_steps,
        decay_steps=config.epochs * steps_per_epoch - warmup_steps,  # ...then decays to zero at the last step
    )


def count_parameters(model: keras.Model) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    trainable = sum(int(keras.ops.size(weight)) for weight in model.trainable_weights)
    return int(model.count_params()), trainable


def load_run_model(run_dir: str | Path) -> keras.Model:
    """Load a run's model.keras in Keras's safe mode; refuse files that are not the run's MLP.

    The architecture must match the recipe in the run's config.json: same layer
    types in the same order and the same weight shapes.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    path = run_dir / MODEL_FILE
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types for a bad archive; all mean "not loadable"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RunDirectoryError(f"{path} is not a loadable Keras model ({reason})") from None
    if architecture(model) != architecture(build_model(config)):
        raise RunDirectoryError(
            f"{path} does not match the recipe in {run_dir / 'config.json'} "
            "(different layers or weight shapes); was it replaced?"
        )
    return model


def architecture(model: keras.Model) -> list[tuple[str, tuple]]:
    """Layer types and weight shapes, in order: what must match for a model to be 'ours'."""
    if not isinstance(model, keras.Model):
        return []
    return [
        (type(layer).__name__, tuple(tuple(weight.shape) for weight in layer.weights))
        for layer in model.layers
    ]
