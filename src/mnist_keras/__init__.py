"""mnist-keras: a fast, dependable MNIST classifier built on Keras 3."""

import os
import sys

__version__ = "0.1.0"

DEFAULT_BACKEND = "jax"

# Keras fixes its backend at import time. JAX is our default because it trains
# the seed recipe about twice as fast as TensorFlow on a small CPU machine with
# the same accuracy; KERAS_BACKEND (or --backend) still wins when set.
if "keras" not in sys.modules:
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)
# Keras imports TensorFlow when it is installed; keep its C++ start-up chatter
# (no CUDA found, oneDNN notices) off the user's terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
