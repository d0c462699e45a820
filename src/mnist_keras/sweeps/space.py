"""A sweep's search space: the space file, checked completely before any trial starts.

    [recipe]                                   # fixed settings, as in --config
    epochs = 6
    [search]                                   # one entry per recipe field, exactly one kind each
    learning_rate = { loguniform = [3e-4, 3e-3] }
    batch_size = { choice = [128, 256] }
    seed = { grid = [1, 2, 3] }

Kinds: `grid` and `choice` (a non-empty list of values), `uniform` and
`loguniform` (a [low, high] range of numbers, low < high, low > 0 for
loguniform), `randint` ([low, high) integers). Every value a search can
produce at its extremes is built into a recipe, so a value the recipe refuses
is reported here, not by a failed trial. This module does not import Ray.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any

from mnist_keras.config import Config, field_types
from mnist_keras.errors import ConfigError

LIST_KINDS = ("grid", "choice")
RANGE_KINDS = ("uniform", "loguniform", "randint")
KINDS = LIST_KINDS + RANGE_KINDS
TABLES = ("recipe", "search")


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched recipe field: how it is searched and with which values or bounds."""

    name: str
    kind: str
    values: tuple[Any, ...]  # the list for grid/choice, (low, high) for the ranges

    @property
    def extremes(self) -> tuple[Any, ...]:
        """Every value the search can produce for a list kind; the reachable ends of a range."""
        if self.kind == "randint":
            return (self.values[0], self.values[1] - 1)  # randint's upper bound is exclusive
        return self.values

    @property
    def categorical(self) -> bool:
        return self.kind in LIST_KINDS


@dataclasses.dataclass(frozen=True)
class Space:
    """A base recipe (the named recipe with the file's [recipe] settings) and the searched fields."""

    base: Config
    dimensions: tuple[Dimension, ...]

    @property
    def searched(self) -> tuple[str, ...]:
        return tuple(dimension.name for dimension in self.dimensions)

    def config_for(self, values: dict[str, Any]) -> Config:
        """The recipe of one trial: the base recipe with the trial's searched values."""
        return Config.from_dict(values, base=self.base)

    def to_record(self) -> dict[str, Any]:
        """Plain values (JSON), enough to rebuild this space with `Space.from_record`."""
        return {
            "recipe": self.base.to_dict(),
            "search": {dimension.name: {dimension.kind: list(dimension.values)} for dimension in self.dimensions},
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Space:
        return parse_space(record, Config.from_dict(record["recipe"]), "saved sweep")


def load_space(path: str | Path, base: Config | None = None) -> Space:
    """Read and check a space file; ConfigError (one line) for anything a trial would trip on."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read space file {path}: {error.strerror or error}") from None
    try:
        values = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"space file {path} is not valid TOML: {error}") from None
    return parse_space(values, base or Config(), f"space file {path}")


def parse_space(values: dict[str, Any], base: Config, origin: str) -> Space:
    unknown = sorted(set(values) - set(TABLES))
    if unknown:
        raise ConfigError(f"{origin}: unknown table(s) {', '.join(unknown)}; a space file has [recipe] and [search]")
    fixed = values.get("recipe", {})
    search = values.get("search", {})
    if not isinstance(fixed, dict) or not isinstance(search, dict):
        raise ConfigError(f"{origin}: [recipe] and [search] must be tables")
    try:
        base = Config.from_dict(fixed, base=base)
    except ConfigError as error:
        raise ConfigError(f"{origin}: [recipe]: {error}") from None
    if not search:
        raise ConfigError(f"{origin}: [search] names no recipe field to search")
    dimensions = tuple(parse_dimension(name, spec, base, origin) for name, spec in search.items())
    return Space(base, dimensions)


def parse_dimension(name: str, spec: Any, base: Config, origin: str) -> Dimension:
    where = f"{origin}: search.{name}"
    types = field_types()
    if name not in types:
        raise ConfigError(f"{where}: unknown recipe setting; known settings are {', '.join(sorted(types))}")
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"{where}: expected a table with exactly one of {', '.join(KINDS)}, "
                          f"e.g. {{ choice = [1, 2] }}")
    (kind, values), = spec.items()
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: {kind} needs a non-empty list")
    if kind in RANGE_KINDS:
        check_range(where, kind, values, types[name])
    dimension = Dimension(name, kind, tuple(values))
    for value in dimension.extremes:
        try:
            Config.from_dict({name: value}, base=base)
        except ConfigError as error:
            raise ConfigError(f"{where}: value {value!r} is refused: {error}") from None
    return dimension


def check_range(where: str, kind: str, values: list[Any], annotation: Any) -> None:
    if len(values) != 2 or not all(isinstance(value, (int, float)) and not isinstance(value, bool)
                                   for value in values):
        raise ConfigError(f"{where}: {kind} needs [low, high], two numbers; got {values!r}")
    low, high = values
    if kind == "randint":
        if annotation is not int or not all(isinstance(value, int) for value in values):
            raise ConfigError(f"{where}: randint is for whole-number settings with whole-number bounds")
    elif annotation is not float:
        allowed = "randint, grid or choice" if annotation is int else "grid or choice"
        raise ConfigError(f"{where}: {kind} draws real numbers; this setting takes {type_name(annotation)}, "
                          f"use {allowed}")
    if not low < high:
        raise ConfigError(f"{where}: {kind} needs low < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: loguniform needs a positive low bound, got {low}")


def type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is tuple:
        return f"a list of {typing.get_args(annotation)[0].__name__}"
    return annotation.__name__


def tune_space(space: Space) -> dict[str, Any]:
    """Ray Tune's param_space for the searched fields (imports Ray)."""
    from ray import tune

    makers = {
        "grid": lambda values: tune.grid_search(list(values)),
        "choice": lambda values: tune.choice(list(values)),
        "uniform": lambda values: tune.uniform(*values),
        "loguniform": lambda values: tune.loguniform(*values),
        "randint": lambda values: tune.randint(*values),
    }
    return {dimension.name: makers[dimension.kind](dimension.values) for dimension in space.dimensions}
