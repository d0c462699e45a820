# `mnist_keras.inference` was one module before the sub-package layout; its names still resolve here.


def __getattr__(name: str):
    from mnist_keras import moved_attribute

    return moved_attribute("inference", name)
