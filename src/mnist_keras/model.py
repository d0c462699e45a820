"""The networks: the seed's MLP (784 → 512 → 256 → 128 → 10) and a convnet, built from the recipe."""

from __future__ import annotations

import math
from pathlib import Path

import keras
from keras import layers

from mnist_keras.config import Config
from mnist_keras.constants import IMAGE_SIDE, NUM_PIXELS
from mnist_keras.errors import RunDirectoryError
from mnist_keras.rundir import MODEL_FILE, read_run_config

MODEL_NAMES = {"mlp": "mnist_mlp", "cnn": "mnist_cnn"}
# Pixels outside the image after a shift, rotation or zoom are background (MNIST's black).
AUGMENTATION_FILL = {"fill_mode": "constant", "fill_value": 0.0}
POOL_SIZE = 2
# The recipe fields that RandomAffine draws from, in the order augmentation_layers shows them.
AFFINE_AUGMENTATIONS = ("shift", "rotation", "zoom", "shear")


def build_model(config: Config = Config()) -> keras.Model:
    """Build (uncompiled) the recipe's network: the seed MLP or a convnet.

    Every model takes float32 N×784 pixels in [0, 1] and returns N×`config.num_outputs`
    softmax probabilities. With the default Config (the seed's MLP): 570,506
    parameters, 568,970 trainable. Augmentation is not part of the model (see
    `build_augmenter`): what is saved and exported computes only the prediction.
    """
    model = keras.Sequential(name=MODEL_NAMES[config.model])
    model.add(keras.Input(shape=(NUM_PIXELS,), name="pixels"))
    if config.model == "cnn":
        model.add(layers.Reshape((IMAGE_SIDE, IMAGE_SIDE, 1), name="image"))
        add_convolution_blocks(model, config)
        model.add(layers.Flatten(name="flatten"))
    add_dense_head(model, config)
    model.add(layers.Dense(config.num_outputs, activation="softmax", name="probabilities"))
    return model


def build_augmenter(config: Config) -> keras.Sequential | None:
    """The recipe's augmentation as one random layer, N×784 in and out; None if it has none.

    The training loop applies it to each batch inside its compiled step. It is
    kept out of the model because random layers augment whenever they are called
    without `training=False`, which is how exporters trace a model.
    """
    if not config.augmented:
        return None
    augmenter = keras.Sequential(name="augmentation")
    augmenter.add(keras.Input(shape=(NUM_PIXELS,), name="pixels"))
    augmenter.add(layers.Reshape((IMAGE_SIDE, IMAGE_SIDE, 1), name="image"))
    if any(getattr(config, name) for name in AFFINE_AUGMENTATIONS):
        augmenter.add(RandomAffine(config.shift, config.rotation, config.zoom, config.shear, name="random_affine"))
    if config.stroke:
        augmenter.add(RandomStroke(config.stroke, name="random_stroke"))
    augmenter.add(layers.Reshape((NUM_PIXELS,), name="flat"))
    return augmenter


def augmentation_layers(config: Config) -> list[layers.Layer]:
    """The recipe's shift, rotation, zoom, shear and stroke each alone, in that order: to show what each does."""
    alone = [RandomAffine(**{name: getattr(config, name)}, name=f"random_{name}")
             for name in AFFINE_AUGMENTATIONS if getattr(config, name)]
    return alone + ([RandomStroke(config.stroke, name="random_stroke")] if config.stroke else [])


class RandomImageLayer(layers.Layer):
    """A weightless layer that draws from its own seed generator and is the identity unless training."""

    def __init__(self, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True  # no weights that depend on the input's shape: ready for stateless_call as made

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="mnist_keras")
class RandomAffine(RandomImageLayer):
    """Random shift, rotation, zoom and shear of N×H×W×C images, drawn per image, in one resampling.

    Each image is slanted by up to `shear` degrees (its columns lean, as in italic
    handwriting), turned by up to `rotation` degrees and scaled by 1 ± `zoom` about
    its centre, then moved by up to `shift` of its side along each axis; pixels from
    outside the image are background. Keras's RandomTranslation, RandomRotation and
    RandomZoom chain three bilinear resamplings, which blur the strokes a little more
    each time and take 2.2x as long on TensorFlow (benchmarks/augmentation.py).
    Identity unless called with `training=True`.
    """

    def __init__(self, shift: float = 0.0, rotation: float = 0.0, zoom: float = 0.0, shear: float = 0.0,
                 seed: int | None = None, **kwargs) -> None:
        super().__init__(seed, **kwargs)
        self.shift, self.rotation, self.zoom, self.shear = shift, rotation, zoom, shear

    def call(self, images, training: bool = False):
        if not training:
            return images
        height, width = images.shape[1], images.shape[2]
        ops = keras.ops
        draws = keras.random.uniform((ops.shape(images)[0], 5), -1.0, 1.0, seed=self.seed_generator)
        angle = draws[:, 0] * math.radians(self.rotation)
        scale = 1.0 + draws[:, 1] * self.zoom
        shift_x, shift_y = draws[:, 2] * (self.shift * width), draws[:, 3] * (self.shift * height)
        lean = ops.tan(draws[:, 4] * math.radians(self.shear))
        # affine_transform maps each output pixel (x, y) to the input pixel it reads:
        # scale · rotation · shear about the centre, then back by the shift, so the
        # image moves forward by it.
        cosine, sine = ops.cos(angle) * scale, ops.sin(angle) * scale
        a0, a1, b0, b1 = cosine, cosine * lean - sine, sine, sine * lean + cosine
        centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
        offset_x = centre_x - a0 * centre_x - a1 * centre_y - shift_x
        offset_y = centre_y - b0 * centre_x - b1 * centre_y - shift_y
        no_perspective = ops.zeros_like(cosine)
        transforms = ops.stack([a0, a1, offset_x, b0, b1, offset_y, no_perspective, no_perspective], axis=1)
        return ops.image.affine_transform(images, transforms, interpolation="bilinear", **AUGMENTATION_FILL)

    def get_config(self) -> dict:
        return {**super().get_config(), "shift": self.shift, "rotation": self.rotation, "zoom": self.zoom,
                "shear": self.shear}


@keras.saving.register_keras_serializable(package="mnist_keras")
class RandomStroke(RandomImageLayer):
    """Strokes made bolder or thinner by a random amount per image, as pens and scans differ.

    Each N×H×W×C image is blended with its 3×3 dilation (a stroke one pixel wider on
    each side) or its 3×3 erosion (one pixel narrower), by a weight drawn from
    [-`stroke`, `stroke`]: positive thickens, negative thins. Identity unless
    called with `training=True`.
    """

    def __init__(self, stroke: float = 0.0, seed: int | None = None, **kwargs) -> None:
        super().__init__(seed, **kwargs)
        self.stroke = stroke

    def call(self, images, training: bool = False):
        if not training:
            return images
        ops = keras.ops
        weight = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), -self.stroke, self.stroke,
                                      seed=self.seed_generator)
        # One 3×3 maximum serves both ways: over the negated image it is the erosion, negated.
        sign = ops.where(weight < 0, -1.0, 1.0)
        bolder_or_thinner = sign * neighbourhood_max(sign * images)
        return images + ops.abs(weight) * (bolder_or_thinner - images)

    def get_config(self) -> dict:
        return {**super().get_config(), "stroke": self.stroke}


def neighbourhood_max(images):
    """Each pixel's largest value over its 3×3 neighbourhood, with 0 beyond the image's edge.

    Made of shifted slices: TensorFlow's CPU max_pool at stride 1 on one channel
    took 8x as long as the whole affine resampling.
    """
    ops = keras.ops
    padded = ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    height, width = images.shape[1], images.shape[2]
    rows = ops.maximum(ops.maximum(padded[:, 0:height], padded[:, 1 : height + 1]), padded[:, 2 : height + 2])
    return ops.maximum(ops.maximum(rows[:, :, 0:width], rows[:, :, 1 : width + 1]), rows[:, :, 2 : width + 2])


def add_convolution_blocks(model: keras.Sequential, config: Config) -> None:
    blocks = zip(config.conv_filters, config.conv_kernels, config.conv_strides, config.conv_pooling,
                 config.conv_batch_norm)
    for index, (filters, kernel, stride, pooling, batch_norm) in enumerate(blocks, start=1):
        # A convolution followed by BatchNorm needs no bias: BatchNorm's offset replaces it.
        model.add(layers.Conv2D(filters, kernel, strides=stride, use_bias=not batch_norm,
                                activation=None if batch_norm else "relu", name=f"conv_{index}"))
        if batch_norm:
            model.add(layers.BatchNormalization(name=f"conv_batch_norm_{index}"))
            model.add(layers.Activation("relu", name=f"conv_relu_{index}"))
        if pooling:
            model.add(layers.MaxPooling2D(POOL_SIZE, name=f"pool_{index}"))
    if config.conv_dropout > 0:
        model.add(layers.Dropout(config.conv_dropout, name="conv_dropout"))


def add_dense_head(model: keras.Sequential, config: Config) -> None:
    """The seed's hidden layers: Dense(relu), then BatchNorm and Dropout where the recipe says."""
    for index, (units, dropout_rate, batch_norm) in enumerate(
        zip(config.hidden_units, config.dropout_rates, config.batch_norm), start=1
    ):
        model.add(layers.Dense(units, activation="relu", name=f"dense_{index}"))
        if batch_norm:
            model.add(layers.BatchNormalization(name=f"batch_norm_{index}"))
        if dropout_rate > 0:
            model.add(layers.Dropout(dropout_rate, name=f"dropout_{index}"))


def compile_model(model: keras.Model, config: Config, steps_per_epoch: int | None = None) -> keras.Model:
    """Compile with the recipe's optimiser and loss (the seed's: Adam, categorical cross-entropy, accuracy).

    A recipe with a learning-rate schedule needs `steps_per_epoch` to place it in time.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate=learning_rate(config, steps_per_epoch),
            beta_1=config.beta_1,
            beta_2=config.beta_2,
            use_ema=config.weight_averaging > 0,  # average the weights over steps...
            ema_momentum=config.weight_averaging or 0.99,  # ...with this momentum (unused when off)
        ),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        if config.label_smoothing else "categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def learning_rate(config: Config, steps_per_epoch: int | None) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The recipe's learning rate: a number (the seed's), or a per-step one-cycle schedule."""
    if config.schedule == "constant":
        return config.learning_rate
    if steps_per_epoch is None:
        raise ValueError(f"the {config.schedule!r} schedule needs steps_per_epoch")
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
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
    """Load a run's model.keras in Keras's safe mode; refuse files that are not the run's network.

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
