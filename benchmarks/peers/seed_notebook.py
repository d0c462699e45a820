"""Peer: the seed notebook's own training code (benchmarks/seed_tf.py), Keras on TensorFlow.

    python benchmarks/peers/seed_notebook.py [--seed S] [--epochs N] [--train-limit N] [--test-limit N]

The seed's MLP, Adam 1e-3, batch 128, up to 30 epochs, validation_split 0.1,
EarlyStopping(patience 5, restore best) and ReduceLROnPlateau: exactly its cell,
fed from the verified arrays. Prints the JSON lines described in common.py.
"""

from __future__ import annotations

import common  # also puts benchmarks/ on sys.path, where seed_tf is
import numpy as np

SEED_EPOCHS = 30


def main() -> None:
    options = common.parse_arguments(__doc__.splitlines()[0], SEED_EPOCHS)
    common.use_tensorflow_backend()
    import keras
    import seed_tf

    x_train, y_train, x_test, y_test = common.load_data(options)
    # The seed evaluates on the test images prepared the way its training cell prepares its own.
    test_images = x_test.reshape(len(x_test), -1).astype(np.float32) / 255.0
    keras.utils.set_random_seed(options.seed)
    clock = common.TrainingClock()
    points = common.keras_test_callback(test_images, y_test, clock)
    seed_tf.train(x_train, y_train, epochs=int(options.epochs), extra_callbacks=[points])
    points.finish()


if __name__ == "__main__":
    main()
