"""mnist-keras: a fast, dependable MNIST classifier built on Keras 3.

The Keras backend is chosen by `mnist_keras.backends.select_backend`, which
every entry point calls before Keras is imported.

The package is a flat core (config, recipes, errors, the backend choice, the
model, the run directory, the CLI) and one sub-package per job: `data`,
`training`, `inference`, `evaluation`, `reporting`, `serving`, `sweeps`. The
modules that sat at the top before that layout (`mnist_keras.loop`,
`mnist_keras.serve`, ...) still import, as their new modules, with a
DeprecationWarning naming the new place (`MOVED_MODULES`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

__version__ = "0.1.0"

# Old module → its module in the sub-package layout.
MOVED_MODULES = {
    "nondigit": "data.nondigits",
    "handwriting": "evaluation.handwriting",
    "redraw": "evaluation.redraw",
    "evaluate": "evaluation.metrics",
    "images": "inference.images",
    "export": "inference.export",
    "state": "training.state",
    "loop": "training.loop",
    "checkpoint": "training.checkpoint",
    "train": "training.train",
    "pipeline": "training.run",
    "plots": "reporting.plots",
    "report": "reporting.run_report",
    "sweep_report": "reporting.sweep_report",
    "serve": "serving.app",
    "server": "serving.server",
    "metrics": "serving.metrics",
    "sweep": "sweeps.tune",
    "space": "sweeps.space",
    "studies": "sweeps.studies",
    "cores": "sweeps.cores",
}
# Old modules whose name is now a sub-package: their names are found in these modules
# (`from mnist_keras.data import load_mnist` still works; see the sub-packages' __init__).
MOVED_PACKAGE_MODULES = {"data": "data.mnist", "inference": "inference.predictors"}


def moved_attribute(package: str, name: str):
    """`name` looked up on the sub-package `package` that was a module: taken from the module it moved to."""
    target = f"{__name__}.{MOVED_PACKAGE_MODULES[package]}"
    module = importlib.import_module(target)
    if name.startswith("__") or not hasattr(module, name):
        raise AttributeError(f"module '{__name__}.{package}' has no attribute '{name}'")
    warnings.warn(f"{__name__}.{package}.{name} moved to {target}.{name}", DeprecationWarning, stacklevel=3)
    return getattr(module, name)


class MovedModuleLoader(importlib.abc.Loader):
    """Loads an old module name as the module it moved to (the same object, so state is shared)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {self.target}", DeprecationWarning, stacklevel=2)
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:
        pass  # already executed under its new name


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, MovedModuleLoader(f"{__name__}.{MOVED_MODULES[name]}"))


if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.append(MovedModuleFinder())
