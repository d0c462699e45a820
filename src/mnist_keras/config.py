"""The recipe: every number of the seed notebook, in one frozen dataclass.

The defaults are exactly the seed's (a 784-512-256-128-10 MLP, Adam at 1e-3,
batch 128, at most 30 epochs, the last 10% of training data for validation,
early stopping and learning-rate halving on `val_loss`). Variants are made with
`dataclasses.replace` or from a TOML/JSON file; the CLI exposes one flag per
field.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from pathlib import Path
from typing import Any

from mnist_keras.constants import NOT_DIGIT_FAMILIES, NUM_CLASSES
from mnist_keras.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Config:
    """One training recipe. Field defaults reproduce the seed notebook."""

    seed: int = 1
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    validation_split: float = 0.1
    hidden_units: tuple[int, ...] = (512, 256, 128)
    dropout_rates: tuple[float, ...] = (0.3, 0.3, 0.2)
    # The seed puts BatchNormalization after the first two hidden layers only.
    batch_norm: tuple[bool, ...] = (True, True, False)
    early_stopping_patience: int = 5
    reduce_lr_factor: float = 0.5
    reduce_lr_patience: int = 3
    min_learning_rate: float = 1e-6
    # "constant": the seed's Adam rate, halved on plateaus. "one_cycle": a linear warm-up
    # to `learning_rate` over `warmup_epochs` (a fraction of an epoch is allowed), then a
    # cosine decay to zero by the last step.
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    # Whether val_loss decides when to stop (and which epoch's weights to keep). Scheduled
    # recipes that train a fixed budget, or skip validation, turn it off.
    early_stopping: bool = True

    # The model family: "mlp" (the seed's network) or "cnn" (a convnet). A convnet is its
    # convolution blocks followed by the same dense head as the MLP (hidden_units,
    # dropout_rates, batch_norm), so the head's fields serve both families.
    model: str = "mlp"
    # One entry per convolution block: filters, kernel side, stride, whether a 2x2 max-pool follows,
    # and whether BatchNorm follows the convolution.
    conv_filters: tuple[int, ...] = (32, 64)
    conv_kernels: tuple[int, ...] = (3, 3)
    # A stride-2 first convolution gives the 12x12 map a convolution and pool would, at a
    # fraction of the cost: TensorFlow's CPU kernels are slow on the one-channel input.
    conv_strides: tuple[int, ...] = (1, 1)
    conv_pooling: tuple[bool, ...] = (True, True)
    conv_batch_norm: tuple[bool, ...] = (False, False)
    # Dropout after the convolution blocks, before the dense head.
    conv_dropout: float = 0.0

    # Adam's moment decay rates (Keras's defaults); fast one-epoch recipes use lower ones.
    beta_1: float = 0.9
    beta_2: float = 0.999
    # Targets of (1 - s) for the true class and s / classes elsewhere; 0 is plain one-hot.
    label_smoothing: float = 0.0
    # Exponential moving average of the weights (Adam's use_ema) with this momentum; 0 is off.
    weight_averaging: float = 0.0

    # Augmentation, applied inside the compiled training step only (never at inference):
    # random shifts up to this fraction of the image side, rotations up to this many
    # degrees, zoom in or out by up to this fraction, slant (shear) by up to this many
    # degrees, and blend strokes toward one pixel bolder or thinner by up to this
    # fraction. All zero in the seed recipe.
    shift: float = 0.0
    rotation: float = 0.0
    zoom: float = 0.0
    shear: float = 0.0
    stroke: float = 0.0

    # An 11th output, "not a digit", trained on synthetic non-digit images
    # (mnist_keras.data.nondigits) that make up this fraction of the training set.
    not_digit_class: bool = False
    not_digit_fraction: float = 0.1
    # Which families of non-digits to draw (benchmarks/open_set.py holds some out).
    not_digit_families: tuple[str, ...] = NOT_DIGIT_FAMILIES
    # Outlier exposure instead of the 11th output: the same non-digits, trained towards
    # the uniform distribution over the ten digits (Hendrycks et al., ICLR 2019), so a
    # non-digit gets a flat answer and the decision reads the digits' probabilities alone.
    outlier_exposure: bool = False

    # Intra-op threads of the engine's kernels (TensorFlow's oneDNN, XLA's Eigen). How they split a
    # sum depends on how many there are, not on the cores under them: two threads give the same
    # digits on two cores or pinned to one (measured for both families), where a run that takes
    # the cores it finds does not. 0 takes the cores this process may run on, faster on a larger
    # machine, but its digits then depend on the core count. config.json records the count used.
    threads: int = 2

    def __post_init__(self) -> None:
        validate(self)

    @property
    def num_outputs(self) -> int:
        """The model's outputs: the ten digits, plus "not a digit" when the recipe trains that class."""
        return NUM_CLASSES + 1 if self.not_digit_class else NUM_CLASSES

    @property
    def augmented(self) -> bool:
        return any((self.shift, self.rotation, self.zoom, self.shear, self.stroke))

    def to_dict(self) -> dict[str, Any]:
        return {
            field.name: list(value) if isinstance(value, tuple) else value
            for field in dataclasses.fields(self)
            for value in [getattr(self, field.name)]
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: Config | None = None) -> Config:
        """Build a Config from plain values, rejecting unknown keys and wrong types.

        Keys not given keep `base`'s values (default: the seed's).
        """
        if not isinstance(values, dict):
            raise ConfigError(f"a recipe must be a table of settings, got {type(values).__name__}")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown recipe setting(s): {', '.join(unknown)}; known settings are {', '.join(sorted(known))}"
            )
        hints = field_types()
        given = {name: coerce(name, value, hints[name]) for name, value in values.items()}
        return dataclasses.replace(base, **given) if base is not None else cls(**given)


def field_types() -> dict[str, Any]:
    """Map each Config field name to its resolved type annotation."""
    return typing.get_type_hints(Config)


def coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check `value` against a field's type; lists become tuples. Raises ConfigError."""
    if typing.get_origin(annotation) is tuple:
        item_type = typing.get_args(annotation)[0]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"setting {name!r} must be a list of {item_type.__name__}, got {value!r}")
        return tuple(coerce(name, item, item_type) for item in value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"setting {name!r} must be true or false, got {value!r}")
    if annotation is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"setting {name!r} must be an integer, got {value!r}")
    if not isinstance(value, annotation):
        raise ConfigError(f"setting {name!r} must be {annotation.__name__}, got {value!r}")
    return value


SCHEDULES = ("constant", "one_cycle")
MODEL_FAMILIES = ("mlp", "cnn")
# Largest augmentation settings that still leave a digit readable (a shift of half the
# image moves it out of the frame; a half-turn turns 6 into 9; a 45-degree slant lays a 1
# on its side; a stroke blends at most all the way to one pixel bolder or thinner).
MAX_SHIFT, MAX_ROTATION_DEGREES, MAX_ZOOM, MAX_SHEAR_DEGREES, MAX_STROKE = 0.5, 90.0, 0.5, 45.0, 1.0


def validate(config: Config) -> None:
    """Reject recipes that cannot train, with a message naming the setting."""
    positive_ints = ("epochs", "batch_size")
    for name in positive_ints:
        if getattr(config, name) < 1:
            raise ConfigError(f"setting {name!r} must be at least 1, got {getattr(config, name)}")
    if config.threads < 0:
        raise ConfigError(f"setting 'threads' must be at least 0 (0: the cores available), got {config.threads}")
    if config.seed < 0:
        raise ConfigError(f"setting 'seed' must be non-negative, got {config.seed}")
    if not config.learning_rate > 0:
        raise ConfigError(f"setting 'learning_rate' must be positive, got {config.learning_rate}")
    if not 0 <= config.validation_split < 1:
        raise ConfigError(f"setting 'validation_split' must be at least 0 and below 1, got {config.validation_split}")
    if config.validation_split == 0 and (config.early_stopping or config.schedule == "constant"):
        raise ConfigError(
            "setting 'validation_split' 0 (no validation) needs early_stopping = false and a schedule other "
            "than 'constant' (both decide from val_loss)"
        )
    if not config.hidden_units or any(units < 1 for units in config.hidden_units):
        raise ConfigError(f"setting 'hidden_units' must be positive widths, got {list(config.hidden_units)}")
    for name in ("dropout_rates", "batch_norm"):
        if len(getattr(config, name)) != len(config.hidden_units):
            raise ConfigError(
                f"setting {name!r} needs one value per hidden layer ({len(config.hidden_units)}), "
                f"got {list(getattr(config, name))}"
            )
    if any(not 0 <= rate < 1 for rate in config.dropout_rates):
        raise ConfigError(f"setting 'dropout_rates' must be in [0, 1), got {list(config.dropout_rates)}")
    if not 0 < config.reduce_lr_factor < 1:
        raise ConfigError(f"setting 'reduce_lr_factor' must be between 0 and 1, got {config.reduce_lr_factor}")
    for name in ("early_stopping_patience", "reduce_lr_patience"):
        if getattr(config, name) < 0:
            raise ConfigError(f"setting {name!r} must be non-negative, got {getattr(config, name)}")
    if not 0 <= config.min_learning_rate <= config.learning_rate:
        raise ConfigError(
            f"setting 'min_learning_rate' must be between 0 and learning_rate, got {config.min_learning_rate}"
        )
    if config.schedule not in SCHEDULES:
        raise ConfigError(f"setting 'schedule' must be one of {', '.join(SCHEDULES)}, got {config.schedule!r}")
    validate_convnet(config)
    validate_training_extras(config)
    if not 0 <= config.warmup_epochs < config.epochs:
        raise ConfigError(
            f"setting 'warmup_epochs' must be at least 0 and below epochs ({config.epochs}), got {config.warmup_epochs}"
        )


def validate_convnet(config: Config) -> None:
    if config.model not in MODEL_FAMILIES:
        raise ConfigError(f"setting 'model' must be one of {', '.join(MODEL_FAMILIES)}, got {config.model!r}")
    blocks = len(config.conv_filters)
    if any(value < 1 for value in config.conv_filters + config.conv_kernels):
        raise ConfigError(
            f"settings 'conv_filters' and 'conv_kernels' must be positive, got {list(config.conv_filters)} and "
            f"{list(config.conv_kernels)}"
        )
    if any(stride < 1 for stride in config.conv_strides):
        raise ConfigError(f"setting 'conv_strides' must be positive, got {list(config.conv_strides)}")
    for name in ("conv_kernels", "conv_strides", "conv_pooling", "conv_batch_norm"):
        if len(getattr(config, name)) != blocks:
            raise ConfigError(
                f"setting {name!r} needs one value per convolution block ({blocks}), got {list(getattr(config, name))}"
            )
    if config.model == "cnn" and blocks == 0:
        raise ConfigError("a 'cnn' recipe needs at least one convolution block (conv_filters)")
    if not 0 <= config.conv_dropout < 1:
        raise ConfigError(f"setting 'conv_dropout' must be in [0, 1), got {config.conv_dropout}")


def validate_training_extras(config: Config) -> None:
    for name in ("beta_1", "beta_2"):
        if not 0 <= getattr(config, name) < 1:
            raise ConfigError(f"setting {name!r} must be in [0, 1), got {getattr(config, name)}")
    if not 0 <= config.label_smoothing < 1:
        raise ConfigError(f"setting 'label_smoothing' must be in [0, 1), got {config.label_smoothing}")
    if not 0 <= config.weight_averaging < 1:
        raise ConfigError(f"setting 'weight_averaging' must be in [0, 1) (0 is off), got {config.weight_averaging}")
    for name, limit in (("shift", MAX_SHIFT), ("rotation", MAX_ROTATION_DEGREES), ("zoom", MAX_ZOOM),
                        ("shear", MAX_SHEAR_DEGREES), ("stroke", MAX_STROKE)):
        if not 0 <= getattr(config, name) <= limit:
            raise ConfigError(f"setting {name!r} must be between 0 and {limit}, got {getattr(config, name)}")
    if config.not_digit_class and config.outlier_exposure:
        raise ConfigError("settings 'not_digit_class' and 'outlier_exposure' are two ways to learn non-digits: "
                          "choose one")
    unknown = sorted(set(config.not_digit_families) - set(NOT_DIGIT_FAMILIES))
    if unknown or not config.not_digit_families:
        raise ConfigError(f"setting 'not_digit_families' must name some of {', '.join(NOT_DIGIT_FAMILIES)}, "
                          f"got {list(config.not_digit_families)}")
    if not 0 < config.not_digit_fraction < 1:
        raise ConfigError(f"setting 'not_digit_fraction' must be between 0 and 1, got {config.not_digit_fraction}")


def load_config(path: str | Path, base: Config | None = None) -> Config:
    """Read a recipe from a .toml or .json file. Missing keys keep `base`'s values (default: the seed's).

    A run directory's `config.json` is accepted too: its `recipe` table is used.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from None
    try:
        if path.suffix.lower() == ".toml":
            values = tomllib.loads(text)
        else:
            values = json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {error}") from None
    if isinstance(values, dict) and isinstance(values.get("recipe"), dict):
        values = values["recipe"]
    return Config.from_dict(values, base)


def parse_override(name: str, text: str) -> Any:
    """Parse one command-line value for field `name` ("512,256,128", "true,false", "0.001")."""
    annotation = field_types()[name]
    if typing.get_origin(annotation) is tuple:
        item_type = typing.get_args(annotation)[0]
        return tuple(parse_scalar(name, item.strip(), item_type) for item in text.split(",") if item.strip())
    return parse_scalar(name, text, annotation)


def parse_scalar(name: str, text: str, annotation: Any) -> Any:
    if annotation is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--{name.replace('_', '-')} expects true or false, got {text!r}")
    try:
        return annotation(text)
    except ValueError:
        raise ConfigError(f"--{name.replace('_', '-')} expects {annotation.__name__}, got {text!r}") from None
