"""Named recipes: `mnist-keras train --recipe NAME` starts from one of these.

- "seed": the notebook's MLP, exactly (the default).
- "fast": the same network, trained in seconds.
- "cnn": the best accuracy we reach in at most 5 minutes of training on 2 CPU cores.
- "speedrun": 99% test accuracy in as little training time as we can.

A config file and flags then override any field.
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

# The best accuracy in at most 300 s of training on 2 CPU cores. The network is the
# speedrun's (a stride-2 first convolution instead of convolution + pool, which costs a
# third as much on TensorFlow's CPU kernels; no BatchNorm, which cost 2-3x the time there),
# trained for a fixed budget of epochs on augmented digits (shifted, rotated, zoomed and
# slanted in one resampling, strokes made bolder or thinner: which also prepares it for
# digits as people draw, scan and photograph them) under a one-cycle schedule, on all
# 60,000 training images (no validation split: its last weights are its best), with label
# smoothing and the weights averaged over about the last 1,000 steps. An 11th class learns
# what is not a digit from synthetic non-digits (mnist_keras.data.nondigits): pen-drawn
# capitals, lowercase and symbols, doodles, crossed-out digits and patterns. Partial digits
# are left out: some halves still look like a digit (a 7-like hook, a 2), and training them
# as "not a digit" cost real digits. Seed 1, `benchmarks/handwriting.py` (threshold 0.6):
# with partial digits, 4 of 10,000 MNIST test digits refused, optdigits files kept 97.44%,
# the real-digit sets pooled 99.05%, held-out non-digits refused 97.15%; without them, 3,
# 98.41%, 99.43% and 97.70% (MNIST test 99.61% both ways). benchmarks/results/open_set/.
# Measured with `mnist-keras seeds cnn --max-concurrent 1` on x86_64 AMD EPYC (AVX2,
# 2 cores), seeds 1-5 (benchmarks/results/seeds-cnn.md): 99.55% mean (99.46-99.62%),
# 176-215 s with oneDNN's kernels, optdigits files 97.02% mean (on TensorFlow's own
# kernels: 99.55%, 235-288 s, optdigits 97.25%). The steps there, each over seeds 1-5:
# - Keras's three random layers (shift, rotation, zoom), EMA 0.99: 99.48%, optdigits 97.09%;
# - one resampling instead (sharper digits) and EMA 0.999: 99.54%, but optdigits 96.43%;
# - plus slant (10 degrees) and strokes (0.5): 99.55%, optdigits 97.25%.
# Twenty epochs of the first did no better than 18 (seeds 1-3) and took up to 326 s.
CNN = dataclasses.replace(
    SEED,
    model="cnn",
    conv_filters=(24, 32),
    conv_kernels=(5, 3),
    conv_strides=(2, 1),
    conv_pooling=(False, True),
    conv_batch_norm=(False, False),
    conv_dropout=0.0,
    hidden_units=(256,),
    dropout_rates=(0.3,),
    batch_norm=(False,),
    epochs=18,
    batch_size=256,
    learning_rate=4e-3,
    schedule="one_cycle",
    warmup_epochs=1,
    early_stopping=False,
    validation_split=0.0,
    label_smoothing=0.1,
    weight_averaging=0.999,
    shift=0.1,
    rotation=10.0,
    zoom=0.1,
    shear=10.0,
    stroke=0.5,
    not_digit_class=True,
    not_digit_families=("capitals", "lowercase", "symbols", "doodles", "crossed_out", "patterns"),
)

# tuomaso/train_mnist_fast's recipe (one epoch at batch 256, Adam with short memories,
# one-cycle, no validation split) on a cheaper network: a stride-2 first convolution of 16
# filters instead of 24 filters + pool, 16 filters instead of 32 in the second, a dense layer
# of 128 instead of 256, label smoothing (+0.2-0.3 points) and a peak rate of 2.5e-2 instead
# of 1e-2. On TensorFlow with oneDNN's kernels (mnist_keras.backends), on x86_64 AMD EPYC
# (AVX2, 2 cores), `mnist-keras train --recipe speedrun` for seeds 1-5, one after another:
# this network at 2.5e-2 reached 99.03% mean (98.92-99.16%) in 3.95-4.11 s of training;
# at 2e-2 99.01%, at 3e-2 98.95%; the 16-24 network at 1.5e-2 (the recipe until this
# change) 99.06% in 4.2-5.9 s. Against the peer in one run (time_to_accuracy.py): 4.04x
# (4.7 s against 18.9 s; benchmarks/results/speedrun_vs_peer/), 4.38x when run again.
# The 16-32 network at 1e-2 reached 99.07% in 6.6-8.7 s. benchmarks/SPEEDRUN.md has the search.
SPEEDRUN = dataclasses.replace(
    SEED,
    model="cnn",
    conv_filters=(16, 16),
    conv_kernels=(5, 3),
    conv_strides=(2, 1),
    conv_pooling=(False, True),
    conv_batch_norm=(False, False),
    hidden_units=(128,),
    dropout_rates=(0.0,),
    batch_norm=(False,),
    epochs=1,
    batch_size=256,
    learning_rate=2.5e-2,
    beta_1=0.7,
    beta_2=0.9,
    schedule="one_cycle",
    warmup_epochs=0.2,
    early_stopping=False,
    validation_split=0.0,
    label_smoothing=0.1,
)

RECIPES = {"seed": SEED, "fast": FAST, "cnn": CNN, "speedrun": SPEEDRUN}


def get_recipe(name: str) -> Config:
    """The named recipe; ConfigError for an unknown name."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}") from None
