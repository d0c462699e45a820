"""Give one process (a sweep trial) its own share of this machine's cores, before Keras loads.

Trials that share cores slow each other down, so each trial claims cores: it
takes an exclusive lock on one file per core (the kernel drops the lock when
the process dies, SIGKILL included, so a killed trial never leaks its cores)
and restricts itself to those cores with `sched_setaffinity`. Ray does not say
which cores a task owns, only how many, hence the locks; they live in the
node's temporary directory because cores are per node. How many threads the
trial's engine runs is the recipe's (`backends.use_threads`), not the cores it
got, so a trial gives the digits the same seed gives trained alone.
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


def pin_process(count: int) -> list[int]:
    """Claim `count` cores and pin this process to them; call before Keras loads.

    Returns the cores pinned to; with no free core left, nothing is pinned (an empty list).
    """
    cores = claim_cores(count)
    if cores:
        os.sched_setaffinity(0, cores)
    return cores
