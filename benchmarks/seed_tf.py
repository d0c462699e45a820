"""The seed notebook's training code as written: Keras on TensorFlow, `model.fit` with validation_split.

Only the data source differs (the seed calls keras.datasets.mnist.load_data(),
which needs the internet; here the same arrays come from mnist_keras's verified
loader). Everything else is the seed's: its model, compile, callbacks and fit.
Run under KERAS_BACKEND=tensorflow.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np


def build_model():
    from tensorflow import keras
    from tensorflow.keras import layers

    model = keras.Sequential([
        layers.Input(shape=(784,)),
        layers.Dense(512, activation="relu"),
        layers.BatchNormalization(),
        layers.Dropout(0.3),
        layers.Dense(256, activation="relu"),
        layers.BatchNormalization(),
        layers.Dropout(0.3),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(10, activation="softmax"),
    ])
    return model


def train(x_train: np.ndarray, y_train: np.ndarray, epochs: int = 30, extra_callbacks: Sequence = ()) -> list[float]:
    """The seed's training cell; returns each epoch's wall time (validation included).

    `extra_callbacks` (the benchmarks' observers, after the seed's own) see every epoch.
    """
    from tensorflow import keras

    X_train = x_train.reshape(-1, 784).astype("float32") / 255.0
    y_train_cat = keras.utils.to_categorical(y_train, 10)

    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="categorical_crossentropy",
                  metrics=["accuracy"])

    epoch_seconds: list[float] = []

    class EpochTimer(keras.callbacks.Callback):  # the benchmark's only addition
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self.started)

    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3, min_lr=1e-6),
        EpochTimer(),
        *extra_callbacks,
    ]
    model.fit(X_train, y_train_cat, validation_split=0.1, epochs=epochs, batch_size=128, callbacks=callbacks,
              verbose=0)
    return epoch_seconds
