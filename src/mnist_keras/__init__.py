"""mnist-keras: a fast, dependable MNIST classifier built on Keras 3.

The Keras backend is chosen by `mnist_keras.backends.select_backend`, which
every entry point calls before Keras is imported.
"""

__version__ = "0.1.0"
