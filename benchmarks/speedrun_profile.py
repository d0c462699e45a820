"""Where one training step of `--recipe speedrun` goes, on TensorFlow: the whole step, then layer by layer.

    python benchmarks/speedrun_profile.py [--alternatives]

Times (median of 60 calls, milliseconds, batch 256, `tf.function` without XLA,
the way mnist_keras's loop runs convnets) for the forward pass, forward and
backward, and Keras's whole `train_step`; then each layer's forward and
forward-and-backward. `--alternatives` also times the two convolutions written
as patches and a matrix product, and the max-pool as reshape and `reduce_max`,
against TensorFlow's own kernels. Time only on a quiet machine
(benchmarks/SPEEDRUN.md has the figures).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from mnist_keras import recipes  # noqa: E402
from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES, NUM_PIXELS  # noqa: E402
from mnist_keras.model import build_model, compile_model  # noqa: E402

BATCH = recipes.SPEEDRUN.batch_size
CALLS = 60


def milliseconds(function) -> float:
    """Median wall milliseconds of one call, after two warm-up calls."""
    function()
    function()
    timings = []
    for _ in range(CALLS):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return round(1000 * statistics.median(timings), 2)


def forward_and_backward(function, inputs: tf.Variable, weights: list) -> tf.types.experimental.GenericFunction:
    """A compiled call of `function(inputs)` and the gradients of its sum of squares."""
    @tf.function
    def step():
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(function(inputs) ** 2)
        return tape.gradient(total, [inputs, *weights])
    return step


def profile_model() -> None:
    config = recipes.SPEEDRUN
    model = compile_model(build_model(config), config, steps_per_epoch=-(-60_000 // BATCH))
    pixels = tf.random.uniform((BATCH, NUM_PIXELS))
    labels = tf.one_hot(tf.random.uniform((BATCH,), 0, NUM_CLASSES, tf.int32), NUM_CLASSES)
    model(pixels)
    model.optimizer.build(model.trainable_variables)

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            loss = keras.losses.categorical_crossentropy(labels, model(pixels, training=True))
        return tape.gradient(loss, model.trainable_variables)

    forward = tf.function(lambda: model(pixels, training=True))
    train_step = tf.function(lambda: model.train_step((pixels, labels)))
    print(f"whole step: forward {milliseconds(forward)} ms, forward and backward {milliseconds(gradients)} ms, "
          f"train_step {milliseconds(train_step)} ms")
    activations = tf.reshape(pixels, (BATCH, IMAGE_SIDE, IMAGE_SIDE, 1))
    for layer in model.layers[1:]:
        inputs = tf.Variable(activations)
        alone = tf.function(lambda layer=layer, inputs=inputs: layer(inputs))
        both = forward_and_backward(layer, inputs, layer.trainable_variables)
        print(f"{layer.name} {tuple(activations.shape)}: forward {milliseconds(alone)} ms, "
              f"forward and backward {milliseconds(both)} ms")
        activations = layer(activations)


def profile_alternatives() -> None:
    """The recipe's two convolutions and its pool, as TensorFlow kernels and as patches and GEMMs."""
    image = tf.Variable(tf.random.uniform((BATCH, IMAGE_SIDE, IMAGE_SIDE, 1)))
    features = tf.Variable(tf.random.uniform((BATCH, 12, 12, 16)))
    before_pool = tf.Variable(tf.random.uniform((BATCH, 10, 10, 32)))
    kernel_1 = tf.Variable(tf.random.normal((5, 5, 1, 16)) * 0.1)
    kernel_2 = tf.Variable(tf.random.normal((3, 3, 16, 32)) * 0.1)

    def patches_product(inputs, kernel, stride):
        size = kernel.shape[0]
        patches = tf.image.extract_patches(inputs, [1, size, size, 1], [1, stride, stride, 1], [1, 1, 1, 1], "VALID")
        return tf.einsum("nhwk,kc->nhwc", patches, tf.reshape(kernel, (-1, kernel.shape[-1])))

    def slices_product(inputs, kernel, stride):
        size, out = kernel.shape[0], (inputs.shape[1] - kernel.shape[0]) // stride + 1
        span = stride * (out - 1) + 1
        columns = [inputs[:, i : i + span : stride, j : j + span : stride, :] for i in range(size) for j in range(size)]
        return tf.einsum("nhwk,kc->nhwc", tf.concat(columns, axis=-1), tf.reshape(kernel, (-1, kernel.shape[-1])))

    cases = [
        ("conv 1", image, kernel_1, 2), ("conv 2", features, kernel_2, 1),
    ]
    for name, inputs, kernel, stride in cases:
        for form, function in (("TensorFlow kernel", lambda x, k=kernel, s=stride: tf.nn.conv2d(x, k, s, "VALID")),
                               ("extract_patches + GEMM", lambda x, k=kernel, s=stride: patches_product(x, k, s)),
                               ("strided slices + GEMM", lambda x, k=kernel, s=stride: slices_product(x, k, s))):
            print(f"{name}, {form}: forward and backward "
                  f"{milliseconds(forward_and_backward(function, inputs, [kernel]))} ms")
    for form, function in (("TensorFlow max_pool2d", lambda x: tf.nn.max_pool2d(x, 2, 2, "VALID")),
                           ("reshape + reduce_max", lambda x: tf.reduce_max(tf.reshape(x, (-1, 5, 2, 5, 2, 32)),
                                                                            axis=(2, 4)))):
        print(f"pool, {form}: forward and backward {milliseconds(forward_and_backward(function, before_pool, []))} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alternatives", action="store_true", help="also time patches-and-GEMM forms")
    options = parser.parse_args(argv)
    profile_model()
    if options.alternatives:
        profile_alternatives()
    return 0


if __name__ == "__main__":
    sys.exit(main())
