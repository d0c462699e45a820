"""Speed-run candidates trained through mnist_keras's own loop: networks the recipe fields cannot yet describe.

    python benchmarks/speedrun_stems.py SPEC [--seeds 1 2 3] [--set FIELD=JSON ...]

SPEC names the layers between the 784 pixels and the 10-way softmax, joined by
"-" (each convolution and dense layer has a ReLU):
- `img`: reshape to 28×28×1;
- `s2dF`: space to depth, F×F pixel blocks become channels (28×28×1 to
  28/F × 28/F × F², built from Keras's Reshape and Permute layers only);
- `norm`: scale the pixels to MNIST's mean 0 and deviation 1;
- `cFkKsS[same][p|pa]`: Conv2D with F filters, a K×K kernel and stride S,
  `same` padding (default valid), then a 2×2 max-pool (`p`) or average-pool (`pa`);
- `dU`: Dense with U units (flattening first).

The recipe is `--recipe speedrun`'s (one epoch, batch 256, one-cycle Adam, label
smoothing) with `--set` overrides, e.g. `--set batch_size=512 learning_rate=0.02`.
Training runs through `mnist_keras.training.loop.fit` on TensorFlow, the loop the CLI uses
for convnets, so `train_s` is the same quantity as a run's `train_seconds`
(tracing included). One JSON line per seed. Time only on a quiet machine.
The speedrun recipe's own network is `img-c16k5s2-c24k3s1p-d128`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from mnist_keras.backends import select_backend  # noqa: E402

select_backend(family="cnn")  # TensorFlow with oneDNN, as the CLI runs convnets

import keras  # noqa: E402
from keras import layers  # noqa: E402

from mnist_keras import recipes
from mnist_keras.config import Config  # noqa: E402
from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES, NUM_PIXELS  # noqa: E402
from mnist_keras.data import mnist as data
from mnist_keras.data.mnist import preprocess_images  # noqa: E402
from mnist_keras.errors import ConfigError  # noqa: E402
from mnist_keras.model import compile_model  # noqa: E402
from mnist_keras.training import loop  # noqa: E402
from mnist_keras.training.train import seed_everything, training_arrays  # noqa: E402

MNIST_MEAN, MNIST_DEVIATION = 0.1307, 0.3081
CONVOLUTION = re.compile(r"c(\d+)k(\d+)s(\d+)(same)?(pa|p)?$")
EVALUATION_BATCH = 2048


def add_space_to_depth(model: keras.Sequential, block: int) -> None:
    side = IMAGE_SIDE // block
    model.add(layers.Reshape((side, block, side, block)))
    model.add(layers.Permute((1, 3, 2, 4)))
    model.add(layers.Reshape((side, side, block * block)))


def build(spec: str) -> keras.Sequential:
    """The network SPEC describes (see the module's docstring)."""
    model = keras.Sequential([keras.Input((NUM_PIXELS,))])

    def flatten_if_needed() -> None:
        if len(model.compute_output_shape((None, NUM_PIXELS))) > 2:
            model.add(layers.Flatten())

    for token in spec.split("-"):
        convolution = CONVOLUTION.match(token)
        if token == "img":
            model.add(layers.Reshape((IMAGE_SIDE, IMAGE_SIDE, 1)))
        elif token == "norm":
            model.add(layers.Rescaling(1 / MNIST_DEVIATION, offset=-MNIST_MEAN / MNIST_DEVIATION))
        elif token.startswith("s2d"):
            add_space_to_depth(model, int(token[3:]))
        elif convolution:
            filters, kernel, stride, same, pool = convolution.groups()
            model.add(layers.Conv2D(int(filters), int(kernel), int(stride), padding="same" if same else "valid",
                                    activation="relu"))
            if pool:
                model.add(layers.AveragePooling2D(2) if pool == "pa" else layers.MaxPooling2D(2))
        elif token.startswith("d") and token[1:].isdigit():
            flatten_if_needed()
            model.add(layers.Dense(int(token[1:]), activation="relu"))
        else:
            raise SystemExit(f"unknown layer {token!r} in {spec!r}")
    flatten_if_needed()
    model.add(layers.Dense(NUM_CLASSES, activation="softmax"))
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON", help="recipe fields to override")
    options = parser.parse_args(argv)
    try:
        overrides = {field: json.loads(value) for field, _, value in (item.partition("=") for item in options.set)}
        config = Config.from_dict(overrides, recipes.SPEEDRUN)
    except json.JSONDecodeError as error:
        parser.error(f"--set expects FIELD=JSON values, e.g. learning_rate=0.02: {error}")
    except ConfigError as error:
        parser.error(f"--set: {error}")
    mnist = data.load_mnist()
    test_images = preprocess_images(mnist.x_test)
    for seed in options.seeds:
        run_config = dataclasses.replace(config, seed=seed)
        seed_everything(seed)
        train, _ = training_arrays(run_config, mnist)
        steps = -(-len(train[0]) // run_config.batch_size)
        model = compile_model(build(options.spec), run_config, steps)
        loop.build_training_state(model, (train[0][: run_config.batch_size], train[1][: run_config.batch_size]))
        state = loop.fit(model, run_config, train, None)
        predictions = model.predict(test_images, batch_size=EVALUATION_BATCH, verbose=0)
        accuracy = float((predictions.argmax(axis=1) == mnist.y_test).mean())
        print(json.dumps({"spec": options.spec, "set": options.set, "seed": seed,
                          "train_seconds": round(state.train_seconds, 2), "test_accuracy": accuracy,
                          "parameters": model.count_params()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
