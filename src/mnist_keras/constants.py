"""Shapes of MNIST, named once so no module writes 28, 784 or 10 inline."""

IMAGE_SIDE = 28
NUM_PIXELS = IMAGE_SIDE * IMAGE_SIDE  # 784
NUM_CLASSES = 10
NUM_TRAIN = 60_000
NUM_TEST = 10_000
PIXEL_MAX = 255
# The families of synthetic non-digits (mnist_keras.data.nondigits.FAMILIES), named here so a
# recipe can choose them without importing the generator.
NOT_DIGIT_FAMILIES = ("capitals", "lowercase", "symbols", "doodles", "partial_digits", "crossed_out", "patterns")
