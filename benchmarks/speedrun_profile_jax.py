"""The speedrun's network on JAX: one step's forward and backward, with XLA's convolutions or as patches and GEMMs.

    python benchmarks/speedrun_profile_jax.py

Plain JAX (no Keras), batch 256, the recipe's layers until stop 18: conv 16@5×5
stride 2, conv 32@3×3, 2×2 max-pool, dense 128, dense 10 (the recipe now has 24
filters in its second convolution). Prints the median milliseconds
of 40 jitted calls of the forward pass and of the gradient, first with
`lax.conv_general_dilated`, then with each convolution written as strided
slices and a matrix product. Compare with `benchmarks/speedrun_profile.py`
(TensorFlow) in the same quiet minute.
"""

from __future__ import annotations

import statistics
import sys
import time

import jax
import jax.numpy as jnp

BATCH = 256
CALLS = 40


def milliseconds(function, *arguments) -> float:
    jax.block_until_ready(function(*arguments))
    jax.block_until_ready(function(*arguments))
    timings = []
    for _ in range(CALLS):
        started = time.perf_counter()
        jax.block_until_ready(function(*arguments))
        timings.append(time.perf_counter() - started)
    return round(1000 * statistics.median(timings), 2)


def xla_convolution(inputs, kernel, stride):
    return jax.lax.conv_general_dilated(inputs, kernel, (stride, stride), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def slices_convolution(inputs, kernel, stride):
    size, _, channels_in, channels_out = kernel.shape
    out_height = (inputs.shape[1] - size) // stride + 1
    out_width = (inputs.shape[2] - size) // stride + 1
    rows, columns_span = stride * (out_height - 1) + 1, stride * (out_width - 1) + 1
    columns = [inputs[:, i : i + rows : stride, j : j + columns_span : stride, :]
               for i in range(size) for j in range(size)]
    patches = jnp.concatenate(columns, axis=-1).reshape(-1, size * size * channels_in)
    return (patches @ kernel.reshape(-1, channels_out)).reshape(-1, out_height, out_width, channels_out)


def max_pool(inputs):
    batch, height, width, channels = inputs.shape
    return inputs.reshape(batch, height // 2, 2, width // 2, 2, channels).max(axis=(2, 4))


def network(parameters, images, convolution):
    hidden = jax.nn.relu(convolution(images, parameters["kernel_1"], 2) + parameters["bias_1"])
    hidden = max_pool(jax.nn.relu(convolution(hidden, parameters["kernel_2"], 1) + parameters["bias_2"]))
    hidden = jax.nn.relu(hidden.reshape(hidden.shape[0], -1) @ parameters["dense_1"] + parameters["bias_3"])
    return jax.nn.log_softmax(hidden @ parameters["dense_2"] + parameters["bias_4"])


def main() -> int:
    key = jax.random.PRNGKey(0)
    images = jax.random.uniform(key, (BATCH, 28, 28, 1))
    labels = jax.nn.one_hot(jax.random.randint(key, (BATCH,), 0, 10), 10)
    parameters = {"kernel_1": jax.random.normal(key, (5, 5, 1, 16)) * 0.1, "bias_1": jnp.zeros(16),
                  "kernel_2": jax.random.normal(key, (3, 3, 16, 32)) * 0.1, "bias_2": jnp.zeros(32),
                  "dense_1": jax.random.normal(key, (800, 128)) * 0.03, "bias_3": jnp.zeros(128),
                  "dense_2": jax.random.normal(key, (128, 10)) * 0.1, "bias_4": jnp.zeros(10)}
    for name, convolution in (("XLA convolutions", xla_convolution), ("strided slices + GEMM", slices_convolution)):
        def loss(parameters, images, labels, convolution=convolution):
            return -(network(parameters, images, convolution) * labels).sum(axis=-1).mean()

        forward = jax.jit(lambda parameters, images, convolution=convolution: network(parameters, images, convolution))
        gradient = jax.jit(jax.grad(loss))
        print(f"{name}: forward {milliseconds(forward, parameters, images)} ms, "
              f"forward and backward {milliseconds(gradient, parameters, images, labels)} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
