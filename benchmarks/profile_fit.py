"""Where an epoch of the seed recipe goes under Keras+JAX: the profile behind mnist_keras.training.loop.JaxEngine.

    KERAS_BACKEND=jax python benchmarks/profile_fit.py

Prints (1) one epoch of `model.fit` under cProfile, top functions by own time;
(2) the same epoch's pieces timed apart: Keras's jitted train step alone on
batches already on the device, the host-side batching, and the scanned epoch.
Findings are kept in benchmarks/PROFILE.md.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time

from mnist_keras.backends import select_backend

select_backend("jax")

import jax
import numpy as np

from mnist_keras.config import Config
from mnist_keras.data.mnist import load_mnist, one_hot, preprocess_images
from mnist_keras.model import build_model, compile_model
from mnist_keras.training import loop
from mnist_keras.training.train import seed_everything, split_validation

TOP_FUNCTIONS = 15


def fresh_model(config: Config, x_fit: np.ndarray, y_fit: np.ndarray):
    seed_everything(config.seed)
    model = compile_model(build_model(config), config)
    loop.build_training_state(model, (x_fit[: config.batch_size], y_fit[: config.batch_size]))
    return model


def main() -> None:
    config = Config()
    mnist = load_mnist()
    (x_fit, y_fit), (x_val, y_val) = split_validation(preprocess_images(mnist.x_train), one_hot(mnist.y_train),
                                                      config.validation_split)
    steps = -(-len(x_fit) // config.batch_size)

    model = fresh_model(config, x_fit, y_fit)
    fit_arguments = dict(validation_data=(x_val, y_val), batch_size=config.batch_size, shuffle=True, verbose=0)
    model.fit(x_fit, y_fit, epochs=1, **fit_arguments)  # compile outside the profile
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    model.fit(x_fit, y_fit, epochs=1, **fit_arguments)
    profiler.disable()
    fit_seconds = time.perf_counter() - started
    report = io.StringIO()
    pstats.Stats(profiler, stream=report).sort_stats("tottime").print_stats(TOP_FUNCTIONS)
    print(f"model.fit, one epoch with validation: {fit_seconds:.3f} s ({steps} steps)")
    print(report.getvalue())

    trainer = loop.JaxEngine(model, (x_fit, y_fit), (x_val, y_val), config.batch_size)
    batches = [(jax.device_put(x_fit[start:start + config.batch_size]), jax.device_put(y_fit[start:start + config.batch_size]))
               for start in range(0, len(x_fit), config.batch_size)]
    step = jax.jit(model.train_step, donate_argnums=0)  # as Keras's fit jits it
    state = jax.tree.map(jax.numpy.copy, trainer.model_state())  # donated below: keep the model's own buffers
    _, state = step(state, batches[0])
    jax.block_until_ready(state)
    started = time.perf_counter()
    for batch in batches:
        _, state = step(state, batch)
    jax.block_until_ready(state)
    print(f"jitted train_step alone, batches already on the device: {time.perf_counter() - started:.3f} s")

    order = loop.epoch_order(len(x_fit), config.seed, 0)
    started = time.perf_counter()
    for start in range(0, len(x_fit), config.batch_size):
        indices = np.sort(order[start:start + config.batch_size])
        jax.block_until_ready(jax.device_put((x_fit[indices], y_fit[indices])))
    print(f"host-side batching alone (numpy gather + device_put per step): {time.perf_counter() - started:.3f} s")

    trainer.train_epoch(order)  # compile
    started = time.perf_counter()
    trainer.train_epoch(order)
    trainer.validate()
    print(f"scanned epoch (mnist_keras.training.loop.JaxEngine) with validation: {time.perf_counter() - started:.3f} s")


if __name__ == "__main__":
    main()
