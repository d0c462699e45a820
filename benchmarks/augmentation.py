"""Seconds per epoch of augmentation: the recipe's RandomAffine against Keras's three random layers; RandomStroke.

    python benchmarks/augmentation.py [--recipe cnn] [--repeats 5] [--backend tensorflow]

Both arms shift, rotate and zoom by the recipe's amounts: one draws the three per
image and resamples once (`mnist_keras.model.RandomAffine`, what the training
step runs), the other chains RandomTranslation, RandomRotation and RandomZoom,
which resample three times. RandomStroke (bolder or thinner strokes) is timed
alone, when the recipe has it. Each arm augments one epoch of batches (60,000
images at the recipe's batch size) inside a compiled function, as the training
step does; prints the median seconds over the repeats and the ratio, with the
machine. Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

TRAINING_IMAGES = 60_000
DEGREES_PER_TURN = 360  # RandomRotation takes a fraction of a full turn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="cnn", help="named recipe whose augmentation is timed (default cnn)")
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed per arm (default 5)")
    parser.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax"],
                        help="Keras backend (default tensorflow, the convnet's)")
    args = parser.parse_args()

    from mnist_keras.backends import select_backend

    select_backend(args.backend)

    import keras
    from keras import layers

    from mnist_keras.constants import IMAGE_SIDE
    from mnist_keras.environment import machine_description
    from mnist_keras.model import AUGMENTATION_FILL, RandomAffine, RandomStroke
    from mnist_keras.recipes import get_recipe

    recipe = get_recipe(args.recipe)
    if not recipe.augmented:
        raise SystemExit(f"recipe {args.recipe!r} has no augmentation")
    arms = {
        "RandomAffine (one resampling)": RandomAffine(recipe.shift, recipe.rotation, recipe.zoom, seed=1),
        "Keras's three random layers": keras.Sequential([
            keras.Input((IMAGE_SIDE, IMAGE_SIDE, 1)),
            layers.RandomTranslation(recipe.shift, recipe.shift, seed=1, **AUGMENTATION_FILL),
            layers.RandomRotation(recipe.rotation / DEGREES_PER_TURN, seed=1, **AUGMENTATION_FILL),
            layers.RandomZoom(recipe.zoom, seed=1, **AUGMENTATION_FILL),
        ]),
    }
    if recipe.stroke:
        arms["RandomStroke"] = RandomStroke(recipe.stroke, seed=1)
    batch = np.random.default_rng(0).random((recipe.batch_size, IMAGE_SIDE, IMAGE_SIDE, 1), dtype=np.float32)
    batches = -(-TRAINING_IMAGES // recipe.batch_size)
    print(f"{machine_description()}; Keras {keras.__version__} on {keras.backend.backend()}")
    print(f"{args.recipe} recipe: shift {recipe.shift}, rotation {recipe.rotation} degrees, zoom {recipe.zoom}, "
          f"shear {recipe.shear} degrees, stroke {recipe.stroke}; "
          f"{batches} batches of {recipe.batch_size} per epoch, median of {args.repeats} epochs")
    medians = {}
    for name, augmenter in arms.items():
        augment = compiled(augmenter, args.backend)
        keras.ops.convert_to_numpy(augment(batch))  # compiles
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(batches):
                result = augment(batch)
            keras.ops.convert_to_numpy(result)
            seconds.append(time.perf_counter() - start)
        medians[name] = statistics.median(seconds)
        print(f"  {name:<32}{medians[name]:6.2f} s/epoch  (min {min(seconds):.2f}, max {max(seconds):.2f})")
    one, three = list(medians.values())[:2]
    print(f"  three layers / one layer: {three / one:.2f}x")


def compiled(augmenter, backend: str):
    """The augmenter in training mode, compiled as the training step compiles it."""
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda images: augmenter(images, training=True), jit_compile=False)
    import jax

    state = [variable.value for variable in augmenter.non_trainable_variables]

    @jax.jit
    def step(state, images):
        return augmenter.stateless_call([], state, images, training=True)

    def augment(images):
        nonlocal state
        images, state = step(state, images)
        return images

    return augment


if __name__ == "__main__":
    main()
