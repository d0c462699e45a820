"""Named recipes: "seed" (the notebook's, the default) and "fast" (the same network, trained in seconds).

`mnist-keras train --recipe NAME` starts from one of these; a config file and
flags then override its fields.
"""

from __future__ import annotations

import dataclasses

from mnist_keras.config import Config
from mnist_keras.errors import ConfigError

SEED = Config()

# The seed's network and loss, trained for a few epochs at a larger batch (fewer,
# better-filled matrix products per epoch) under a one-cycle learning rate, which
# reaches the seed's test accuracy without waiting for plateaus. Chosen by
# benchmarks/fast_recipe.py (seeds 1-5 on the real MNIST).
FAST = dataclasses.replace(
    SEED,
    epochs=12,
    batch_size=512,
    learning_rate=4e-3,
    schedule="one_cycle",
    warmup_epochs=1,
)

RECIPES = {"seed": SEED, "fast": FAST}


def get_recipe(name: str) -> Config:
    """The named recipe; ConfigError for an unknown name."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}") from None
