"""Where one training step of `--recipe speedrun` goes, on TensorFlow: the whole step, then layer by layer.

    python benchmarks/speedrun_profile.py [--alternatives] [--specs SPEC ...]

Times (median of 60 calls, milliseconds, batch 256, `tf.function` without XLA,
the way mnist_keras's loop runs convnets) for the forward pass, forward and
backward, and Keras's whole `train_step`; then each layer's forward and
forward-and-backward. `--alternatives` also times the two convolutions written
as patches and a matrix product, and the max-pool as reshape and `reduce_max`,
against TensorFlow's own kernels. `--specs` also times the whole step of
other networks, named as `benchmarks/speedrun_stems.py` names them (e.g.
`img-c16k5s2-c32k3s1p-d128`). TensorFlow runs with oneDNN's kernels as the CLI
runs it (`TF_ENABLE_ONEDNN_OPTS=0` for its own). Time only on a quiet machine
(benchmarks/SPEEDRUN.md has the figures).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from mnist_keras.backends import select_backend  # noqa: E402

select_backend("tensorflow")  # with oneDNN, as the CLI runs convnets

import keras  # noqa: E402
import speedrun_stems  # noqa: E402
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


def profile_model(spec: str | None = None, by_layer: bool = True) -> None:
    """The recipe's network (or the one `spec` names): its whole step, then each layer's."""
    config = recipes.SPEEDRUN
    network = build_model(config) if spec is None else speedrun_stems.build(spec)
    model = compile_model(network, config, steps_per_epoch=-(-60_000 // BATCH))
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
    print(f"{spec or 'the recipe'}, whole step: forward {milliseconds(forward)} ms, forward and backward "
          f"{milliseconds(gradients)} ms, train_step {milliseconds(train_step)} ms", flush=True)
    if not by_layer:
        return
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
    first, second = recipes.SPEEDRUN.conv_filters
    features = tf.Variable(tf.random.uniform((BATCH, 12, 12, first)))
    before_pool = tf.Variable(tf.random.uniform((BATCH, 10, 10, second)))
    kernel_1 = tf.Variable(tf.random.normal((5, 5, 1, first)) * 0.1)
    kernel_2 = tf.Variable(tf.random.normal((3, 3, first, second)) * 0.1)

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
                           ("reshape + reduce_max", lambda x: tf.reduce_max(tf.reshape(x, (-1, 5, 2, 5, 2, second)),
                                                                            axis=(2, 4)))):
        print(f"pool, {form}: forward and backward {milliseconds(forward_and_backward(function, before_pool, []))} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alternatives", action="store_true", help="also time patches-and-GEMM forms")
    parser.add_argument("--specs", nargs="+", default=[], metavar="SPEC",
                        help="also time the whole step of these networks (speedrun_stems.py's names)")
    options = parser.parse_args(argv)
    profile_model()
    for spec in options.specs:
        profile_model(spec, by_layer=False)
    if options.alternatives:
        profile_alternatives()
    return 0


if __name__ == "__main__":
    sys.exit(main())
