"""Which Keras backend runs: decided here, once, before Keras is imported.

Keras fixes its backend when it is first imported, so every entry point (the
CLI's commands, the notebook, the sweep's trials, the benchmarks) calls
`select_backend` before anything imports Keras. The default depends on the
model family, because the fastest engine on a CPU does (measured by
`make bench`, table "s/epoch by backend and family" in the README):

- the MLP trains fastest on JAX, where each epoch is one compiled `lax.scan`
  (1.3 s/epoch against 3.8-4.5 s on TensorFlow, 2 cores);
- the convnet trains fastest on TensorFlow with oneDNN convolutions and no
  XLA (5.3 s/epoch against 25-33 s on JAX, 2 cores). TensorFlow enables
  oneDNN by itself only on CPUs with AVX-512 VNNI, bf16 or AMX, so
  `select_backend` asks for it everywhere else too.

An explicit choice (`--backend`, or `KERAS_BACKEND` in the environment) always
wins over the family's default.

`use_threads` sizes the engines' thread pools the same way, before they start:
to the recipe's `threads`, not to the cores at hand, so that a run gives the
same digits on any number of cores (see Config.threads).
"""

from __future__ import annotations

import importlib.util
import os
import sys

from mnist_keras.errors import UserError

KNOWN_BACKENDS = ("jax", "tensorflow", "torch", "numpy")
# The Python module each backend needs installed.
BACKEND_MODULES = {"jax": "jax", "tensorflow": "tensorflow", "torch": "torch", "numpy": "numpy"}
# The fastest backend measured on CPU for each model family (see the module docstring).
FAMILY_BACKENDS = {"mlp": "jax", "cnn": "tensorflow"}
DEFAULT_BACKEND = FAMILY_BACKENDS["mlp"]


# What the lean install (`pip install mnist-keras`) leaves out: Keras and its engines, export, reports.
TRAIN_EXTRA = "train"
TRAIN_EXTRA_INSTALL = f"pip install 'mnist-keras[{TRAIN_EXTRA}]'"


class MissingExtra(UserError):
    """A command needs a part of the package this install left out."""


def keras_installed() -> bool:
    """Whether this install has Keras (the training extra), without importing it."""
    return importlib.util.find_spec("keras") is not None


def require_training_extra() -> None:
    """Raise MissingExtra, with the install line, unless Keras is installed."""
    if not keras_installed():
        raise MissingExtra("this command needs the training extra (Keras, TensorFlow, JAX), which this install "
                           f"lacks: {TRAIN_EXTRA_INSTALL}")


def requested_backend() -> str | None:
    """The backend the user asked for through the environment, if any."""
    return os.environ.get("KERAS_BACKEND") or None


def default_backend(family: str | None) -> str:
    """The fastest backend measured for `family` (the MLP's for an unknown or missing family)."""
    return FAMILY_BACKENDS.get(family or "mlp", DEFAULT_BACKEND)


def chosen_backend(name: str | None = None, family: str | None = None) -> str:
    """`name` (from --backend) if given, else $KERAS_BACKEND, else the model family's default."""
    return name or requested_backend() or default_backend(family)


def keras_loaded_backend() -> str | None:
    """The backend Keras was imported with, or None if Keras is not imported yet."""
    keras = sys.modules.get("keras")
    if keras is None or not hasattr(keras, "backend"):
        return None
    return keras.backend.backend()


def select_backend(name: str | None = None, family: str | None = None) -> str:
    """Choose the Keras backend before Keras is imported, and return it.

    `name` (from --backend) wins, then $KERAS_BACKEND, then the model family's
    default. Raises UserError for an unknown or uninstalled backend, or when
    Keras is already loaded with another one.
    """
    chosen = chosen_backend(name, family)
    if chosen not in KNOWN_BACKENDS:
        raise UserError(f"unknown Keras backend {chosen!r}; choose one of {', '.join(KNOWN_BACKENDS)}")
    if importlib.util.find_spec(BACKEND_MODULES[chosen]) is None:
        raise UserError(f"Keras backend {chosen!r} is not installed; pip install {BACKEND_MODULES[chosen]}")
    loaded = keras_loaded_backend()
    if loaded is not None and loaded != chosen:
        raise UserError(
            f"Keras is already loaded with backend {loaded!r}, so {chosen!r} cannot be used in this process"
        )
    os.environ["KERAS_BACKEND"] = chosen
    if chosen == "tensorflow":
        # TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI, bf16 or
        # AMX. On an AVX2-only CPU they still run a speedrun step in 16.5 ms against 27.9 ms with
        # TensorFlow's own kernels (benchmarks/SPEEDRUN.md). An explicit TF_ENABLE_ONEDNN_OPTS wins.
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    # Keras imports TensorFlow when it is installed; keep its C++ start-up chatter
    # (no CUDA found, oneDNN notices) off the user's terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return chosen


def cores_available() -> int:
    """The CPU cores this process may run on (its affinity: what taskset, a container or a scheduler gave it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def thread_environment(threads: int) -> dict[str, str]:
    """Environment variables that size every engine's intra-op thread pool to `threads`.

    TensorFlow reads TF_NUM_INTRAOP_THREADS (its oneDNN kernels run on that pool) and
    XLA's CPU client, under JAX, reads PJRT_NPROC; both are read when the engine starts,
    and both otherwise take the cores the process may run on.
    """
    value = str(threads)
    return {
        "TF_NUM_INTRAOP_THREADS": value,
        "PJRT_NPROC": value,
        "OMP_NUM_THREADS": value,
        "MKL_NUM_THREADS": value,
        "OPENBLAS_NUM_THREADS": value,
    }


def thread_count(threads: int) -> int:
    """A recipe's `threads` as a count of threads: 0 is the cores available."""
    return threads or cores_available()


def use_threads(threads: int) -> int:
    """Size the engines' thread pools to `threads` (0: the cores available) and return the count.

    Call before the engine runs its first operation: TensorFlow and XLA size their
    pools once, when they start.
    """
    count = thread_count(threads)
    os.environ.update(thread_environment(count))
    return count
