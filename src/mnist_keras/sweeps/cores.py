"""Give one process (a sweep trial) its own share of this machine's cores, before Keras loads.

XLA ignores OMP_NUM_THREADS and sizes its thread pools from the cores it can
see, so concurrent trials that only limit thread counts still oversubscribe
the CPU. Each trial therefore claims cores: it takes an exclusive lock on one
file per core (the kernel drops the lock when the process dies, SIGKILL
included, so a killed trial never leaks its cores), restricts itself to those
cores with `sched_setaffinity`, and sets every library's thread count to
match. Ray does not say which cores a task owns, only how many, hence the
locks; they live in the node's temporary directory because cores are per node.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

LOCK_DIR = Path(tempfile.gettempdir()) / "mnist-keras-cores"
# Held open for the life of the process: closing a file drops its lock.
_held: list[int] = []


def available_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def claim_cores(count: int, lock_dir: Path = LOCK_DIR) -> list[int]:
    """Lock up to `count` cores this process may run on; return them (possibly fewer when all are taken)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    claimed: list[int] = []
    for core in available_cores():
        if len(claimed) == count:
            break
        descriptor = os.open(lock_dir / f"{core}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        _held.append(descriptor)
        claimed.append(core)
    return claimed


def thread_environment(threads: int) -> dict[str, str]:
    """Environment variables that size each numeric library's thread pools to `threads`."""
    value = str(threads)
    return {
        "OMP_NUM_THREADS": value,
        "MKL_NUM_THREADS": value,
        "OPENBLAS_NUM_THREADS": value,
        "TF_NUM_INTRAOP_THREADS": value,
        "TF_NUM_INTEROP_THREADS": "1",
        # XLA's CPU client (JAX) runs Eigen on its own pool unless told not to.
        "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                     f"intra_op_parallelism_threads={value}",
    }


def pin_process(count: int) -> list[int]:
    """Claim `count` cores, pin this process to them and set thread counts; call before Keras loads.

    Returns the cores pinned to; with no free core left, nothing is pinned (an empty list)
    but the thread counts are still set to `count`.
    """
    cores = claim_cores(count)
    if cores:
        os.sched_setaffinity(0, cores)
    settings = thread_environment(max(1, len(cores) or count))
    # Keep any XLA flags the user set; ours come first so theirs win.
    settings["XLA_FLAGS"] = " ".join(filter(None, (settings["XLA_FLAGS"], os.environ.get("XLA_FLAGS"))))
    os.environ.update(settings)
    return cores
