"""Peer: keras-io's "Simple MNIST convnet" (examples/vision/mnist_convnet.py, fchollet), Keras on TensorFlow.

    python benchmarks/peers/keras_mnist_convnet.py [--seed S] [--epochs N] [--train-limit N] [--test-limit N]

As the example writes it: pixels / 255 with a channel axis, Conv2D 32@3×3 relu,
max-pool 2, Conv2D 64@3×3 relu, max-pool 2, flatten, dropout 0.5, dense 10
softmax; categorical cross-entropy, Adam (Keras defaults), batch 128, 15 epochs,
validation_split 0.1. Only the data source differs (the example downloads it).
Prints the JSON lines described in common.py.
"""

from __future__ import annotations

import common
import numpy as np

EXAMPLE_EPOCHS = 15


def main() -> None:
    options = common.parse_arguments(__doc__.splitlines()[0], EXAMPLE_EPOCHS)
    common.use_tensorflow_backend()
    import keras
    from keras import layers

    x_train, y_train, x_test, y_test = common.load_data(options)
    keras.utils.set_random_seed(options.seed)
    clock = common.TrainingClock()

    # ---- the example's code, from "Prepare the data" to model.fit
    num_classes = 10
    input_shape = (28, 28, 1)
    x_train = x_train.astype("float32") / 255
    x_test = x_test.astype("float32") / 255
    x_train = np.expand_dims(x_train, -1)
    x_test = np.expand_dims(x_test, -1)
    y_train = keras.utils.to_categorical(y_train, num_classes)

    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ]
    )
    batch_size = 128
    epochs = int(options.epochs)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    points = common.keras_test_callback(x_test, y_test, clock)  # the benchmark's only addition
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, validation_split=0.1, verbose=0,
              callbacks=[points])
    # ---- end of the example's training code
    points.finish()


if __name__ == "__main__":
    main()
