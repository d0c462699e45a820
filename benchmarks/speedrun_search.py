"""Scratch search for the `speedrun` recipe: small convnets trained for about one epoch, in plain Keras+TensorFlow.

    KERAS_BACKEND=tensorflow python benchmarks/speedrun_search.py [--candidates NAME ...] [--seeds 1 2 3]

Each candidate is trained with `model.fit` (jit_compile=False, the same train step
our loop compiles with tf.function) on the full training set, no validation split,
then scored on the test set. Prints one JSON line per (candidate, seed): training
seconds (tracing included), test accuracy and the network's training FLOPs per
epoch. Timings here are noisy when other work shares the CPU: compare candidates
by FLOPs and by relative time within one invocation; accuracy is what counts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

IMAGE_SIDE = 28
NUM_CLASSES = 10
ONE_CYCLE_START_DIVISOR = 25.0  # PyTorch OneCycleLR defaults: start at peak/25 ...
ONE_CYCLE_FINAL_DIVISOR = 1e4  # ... and end at start/1e4
EVALUATION_BATCH = 2000


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One speed-run recipe: a two-conv network and how it is trained."""

    filters: tuple[int, int] = (24, 32)
    kernels: tuple[int, int] = (5, 3)
    strides: tuple[int, int] = (1, 1)
    pools: tuple[bool, bool] = (True, True)  # a 2×2 max-pool after each conv
    dense_units: int = 256  # 0: no hidden dense layer
    batch_norm: bool = False
    batch_norm_momentum: float = 0.9  # Keras's 0.99 lags far behind weights that move this fast in one epoch
    batch_size: int = 256
    learning_rate: float = 1e-2  # the one-cycle peak
    # "torch": PyTorch's OneCycleLR (cosine up from peak/25, cosine down), warm-up 0.3 of the steps.
    # "warmup_cosine": mnist_keras's one_cycle (linear up from 0, cosine down to 0).
    schedule: str = "torch"
    warmup_fraction: float = 0.3  # of all steps
    beta_1: float = 0.7
    beta_2: float = 0.9
    epochs: float = 1.0  # fractions train on the first part of one shuffled pass
    label_smoothing: float = 0.0
    padding: str = "valid"


# The peer's network first, then smaller ones (FLOPs mostly in the second conv: its
# input channels times its output channels times its kernel area).
CANDIDATES = {
    "peer": Candidate(),
    "peer-bn": Candidate(batch_norm=True),
    "16-32-128": Candidate(filters=(16, 32), dense_units=128),
    "16-32-256": Candidate(filters=(16, 32)),
    "16-32-128-bn": Candidate(filters=(16, 32), dense_units=128, batch_norm=True),
    "16-32-128-bn99": Candidate(filters=(16, 32), dense_units=128, batch_norm=True, batch_norm_momentum=0.99),
    "16-32-128-ls": Candidate(filters=(16, 32), dense_units=128, label_smoothing=0.1),
    "16-32-128-lr2": Candidate(filters=(16, 32), dense_units=128, learning_rate=2e-2),
    "16-32-128-b128": Candidate(filters=(16, 32), dense_units=128, batch_size=128),
    "16-32-128-b512": Candidate(filters=(16, 32), dense_units=128, batch_size=512, learning_rate=2e-2),
    "16-32-128-3x3": Candidate(filters=(16, 32), kernels=(3, 3), dense_units=128),
    "12-24-128": Candidate(filters=(12, 24), dense_units=128),
    "12-24-256": Candidate(filters=(12, 24)),
    "12-24-128-bn": Candidate(filters=(12, 24), dense_units=128, batch_norm=True),
    "12-24-128-ls": Candidate(filters=(12, 24), dense_units=128, label_smoothing=0.1),
    "8-16-128": Candidate(filters=(8, 16), dense_units=128),
    "8-16-128-bn": Candidate(filters=(8, 16), dense_units=128, batch_norm=True),
    "8-16-128-2ep": Candidate(filters=(8, 16), dense_units=128, epochs=2.0),
    "12-24-128-1.5ep": Candidate(filters=(12, 24), dense_units=128, epochs=1.5),
    # A stride-2 first conv instead of conv + pool: the same 12×12 output, but TensorFlow's CPU
    # convolution of a one-channel 28×28 input at stride 1 costs several times the rest of the network.
    "peer-s2": Candidate(strides=(2, 1), pools=(False, True)),
    "peer-s2-ls": Candidate(strides=(2, 1), pools=(False, True), label_smoothing=0.1),
    "peer-k6s2": Candidate(kernels=(6, 3), strides=(2, 1), pools=(False, True)),
    "16-32-128-s2": Candidate(filters=(16, 32), dense_units=128, strides=(2, 1), pools=(False, True)),
    "16-32-128-s2-ls": Candidate(filters=(16, 32), dense_units=128, strides=(2, 1), pools=(False, True),
                                 label_smoothing=0.1),
    "24-32-256-s2s2": Candidate(strides=(2, 2), pools=(False, False)),
    "32-64-256-s2s2": Candidate(filters=(32, 64), strides=(2, 2), pools=(False, False)),
    "32-64-256-s2s2-ls": Candidate(filters=(32, 64), strides=(2, 2), pools=(False, False), label_smoothing=0.1),
    "24-32-256-s2s2-ls": Candidate(strides=(2, 2), pools=(False, False), label_smoothing=0.1),
    "24-32-256-s2s2-ls-1.5ep": Candidate(strides=(2, 2), pools=(False, False), label_smoothing=0.1, epochs=1.5),
    "24-32-256-s2s2-ls-0.5ep": Candidate(strides=(2, 2), pools=(False, False), label_smoothing=0.1, epochs=0.5),
    # The same with mnist_keras's one_cycle (linear warm-up over 0.2 of the steps from 0, cosine to 0).
    "peer-s2-ls-wc": Candidate(strides=(2, 1), pools=(False, True), label_smoothing=0.1, schedule="warmup_cosine",
                               warmup_fraction=0.2),
    "16-32-128-s2-ls-wc": Candidate(filters=(16, 32), dense_units=128, strides=(2, 1), pools=(False, True),
                                    label_smoothing=0.1, schedule="warmup_cosine", warmup_fraction=0.2),
    "24-32-256-s2s2-ls-wc": Candidate(strides=(2, 2), pools=(False, False), label_smoothing=0.1,
                                      schedule="warmup_cosine", warmup_fraction=0.2),
    "16-32-128-s2s2-ls-wc": Candidate(filters=(16, 32), dense_units=128, strides=(2, 2), pools=(False, False),
                                      label_smoothing=0.1, schedule="warmup_cosine", warmup_fraction=0.2),
    "16-32-128-s2-ls-0.5ep": Candidate(filters=(16, 32), dense_units=128, strides=(2, 1), pools=(False, True),
                                       label_smoothing=0.1, epochs=0.5),
}


def conv_output_side(side: int, kernel: int, stride: int, padding: str) -> int:
    return math.ceil(side / stride) if padding == "same" else (side - kernel) // stride + 1


def forward_multiply_adds(candidate: Candidate) -> int:
    """Multiply-adds of one image's forward pass through the convolutions and dense layers."""
    side, channels, total = IMAGE_SIDE, 1, 0
    for filters, kernel, stride, pool in zip(candidate.filters, candidate.kernels, candidate.strides, candidate.pools):
        side = conv_output_side(side, kernel, stride, candidate.padding)
        total += side * side * filters * channels * kernel**2
        side, channels = (side // 2 if pool else side), filters
    flat = side * side * channels
    widths = (flat, candidate.dense_units, NUM_CLASSES) if candidate.dense_units else (flat, NUM_CLASSES)
    return total + sum(inputs * outputs for inputs, outputs in zip(widths, widths[1:]))


def epoch_tflop(candidate: Candidate, images: int) -> float:
    """Forward plus backward (about twice the forward) over `images`."""
    return 3 * 2 * forward_multiply_adds(candidate) * images / 1e12


def build(candidate: Candidate):
    import keras
    from keras import layers

    def conv_block(filters: int, kernel: int, strides: int, pool: bool) -> list:
        # Pool before the activation (as the peer does): the ReLU then runs on a quarter of the values.
        block = [layers.Conv2D(filters, kernel, strides=strides, padding=candidate.padding,
                               use_bias=not candidate.batch_norm)]
        if candidate.batch_norm:
            block.append(layers.BatchNormalization(momentum=candidate.batch_norm_momentum))
        return block + ([layers.MaxPooling2D(2)] if pool else []) + [layers.ReLU()]

    head = [layers.Dense(candidate.dense_units, activation="relu")] if candidate.dense_units else []
    return keras.Sequential([
        keras.Input(shape=(IMAGE_SIDE * IMAGE_SIDE,)),
        layers.Reshape((IMAGE_SIDE, IMAGE_SIDE, 1)),
        *conv_block(candidate.filters[0], candidate.kernels[0], candidate.strides[0], candidate.pools[0]),
        *conv_block(candidate.filters[1], candidate.kernels[1], candidate.strides[1], candidate.pools[1]),
        layers.Flatten(),
        *head,
        layers.Dense(NUM_CLASSES, activation="softmax"),
    ])


def one_cycle(peak: float, total_steps: int, warmup_fraction: float):
    """PyTorch's OneCycleLR (cosine up from peak/25, cosine down to peak/25e4) as a Keras schedule."""
    import keras

    class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            ops = keras.ops
            step = ops.cast(step, "float32")
            start, end = peak / ONE_CYCLE_START_DIVISOR, peak / ONE_CYCLE_START_DIVISOR / ONE_CYCLE_FINAL_DIVISOR
            warmup = max(1.0, warmup_fraction * total_steps - 1)
            rising = ops.minimum(step / warmup, 1.0)
            falling = ops.clip((step - warmup) / max(1.0, total_steps - 1 - warmup), 0.0, 1.0)
            up = peak + (start - peak) * (1 + ops.cos(math.pi * rising)) / 2
            down = end + (peak - end) * (1 + ops.cos(math.pi * falling)) / 2
            return ops.where(step < warmup, up, down)

        def get_config(self):
            return {}

    return OneCycle()


def train_and_score(candidate: Candidate, seed: int, x_train, y_train, x_test, y_test) -> dict:
    import keras

    keras.utils.set_random_seed(seed)
    # Whole or fractional epochs: one long pass over fresh shuffles of the training set, cut at `images`.
    rng = np.random.default_rng(seed)
    count = int(round(candidate.epochs * len(x_train)))
    order = np.concatenate([rng.permutation(len(x_train)) for _ in range(math.ceil(candidate.epochs))])[:count]
    total_steps = math.ceil(count / candidate.batch_size)
    model = build(candidate)
    if candidate.schedule == "torch":
        schedule = one_cycle(candidate.learning_rate, total_steps, candidate.warmup_fraction)
    else:
        warmup_steps = int(round(candidate.warmup_fraction * total_steps))
        schedule = keras.optimizers.schedules.CosineDecay(0.0, total_steps - warmup_steps,
                                                          warmup_target=candidate.learning_rate,
                                                          warmup_steps=warmup_steps)
    optimizer = keras.optimizers.Adam(schedule,
                                      beta_1=candidate.beta_1, beta_2=candidate.beta_2)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=candidate.label_smoothing),
                  jit_compile=False)
    images, labels = x_train[order], keras.utils.to_categorical(y_train[order], NUM_CLASSES)
    started, cpu_started = time.perf_counter(), time.process_time()
    model.fit(images, labels, batch_size=candidate.batch_size, epochs=1, shuffle=False, verbose=0)
    train_seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    started = time.perf_counter()
    predictions = np.argmax(model.predict(x_test, batch_size=EVALUATION_BATCH, verbose=0), axis=1)
    evaluate_seconds = time.perf_counter() - started
    # CPU seconds (all threads) suffer less than wall time from other work on a shared machine.
    return {"train_seconds": round(train_seconds, 3), "cpu_seconds": round(cpu_seconds, 3), "evaluate_seconds": round(evaluate_seconds, 3),
            "test_accuracy": float(np.mean(predictions == y_test)), "parameters": model.count_params()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", choices=sorted(CANDIDATES), default=list(CANDIDATES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--threads", type=int, help="TensorFlow intra-op threads (default: TensorFlow's)")
    options = parser.parse_args(argv)

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    import tensorflow as tf

    from mnist_keras.data.mnist import load_mnist, preprocess_images

    if options.threads:
        tf.config.threading.set_intra_op_parallelism_threads(options.threads)
    mnist = load_mnist()
    x_train, x_test = preprocess_images(mnist.x_train), preprocess_images(mnist.x_test)
    for seed in options.seeds:
        for name in options.candidates:
            candidate = CANDIDATES[name]
            result = train_and_score(candidate, seed, x_train, mnist.y_train, x_test, mnist.y_test)
            print(json.dumps({"candidate": name, "seed": seed,
                              "epoch_tflop": round(epoch_tflop(candidate, len(x_train)), 3), **result,
                              "load_average": round(os.getloadavg()[0], 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
