"""What a run ran on: the Keras backend and library versions, recorded in config.json."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

# Distributions whose versions decide a run's numbers.
TRACKED_DISTRIBUTIONS = ("mnist-keras", "keras", "jax", "jaxlib", "tensorflow", "torch", "numpy", "scikit-learn")


def backend_name() -> str:
    import keras  # here, not at import: reading the machine must not load Keras or fix its backend

    return keras.backend.backend()


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that matter, plus Python's."""
    versions = {"python": platform.python_version()}
    for distribution in TRACKED_DISTRIBUTIONS:
        try:
            versions[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


# The widest vector extension of the CPU decides how fast training runs; the first one found is named.
VECTOR_EXTENSIONS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("asimd", "NEON"))


def cpu_fields(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, str] | None:
    """The first processor's fields in /proc/cpuinfo, keys lower-cased; None where it is unreadable."""
    try:
        lines = cpuinfo.read_text(errors="replace").splitlines()
    except OSError:
        return None
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    return fields


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The CPU's feature flags (x86 "flags", Arm "Features"); None where /proc/cpuinfo is unreadable."""
    fields = cpu_fields(cpuinfo)
    if fields is None:
        return None
    return set((fields.get("flags") or fields.get("features") or "").split())


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's model name and widest vector extension (e.g. "AMD EPYC, AVX2"); None where unknown."""
    fields = cpu_fields(cpuinfo)
    if fields is None:
        return None
    name = fields.get("model name") or platform.processor() or None
    flags = cpu_flags(cpuinfo)
    extension = next((label for flag, label in VECTOR_EXTENSIONS if flag in flags), None)
    parts = [part for part in (name, extension) if part]
    return ", ".join(parts) or None


def machine_description() -> str:
    """A one-line description of the machine, for benchmark and results tables."""
    cpu = cpu_model()
    return (f"{platform.machine()}{f' ({cpu})' if cpu else ''}, {os.cpu_count()} CPU cores, "
            f"{platform.system()} {platform.release()}")
