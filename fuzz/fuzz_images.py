"""Coverage-guided fuzzing of the image decoder with atheris (libFuzzer), for long local runs.

    pip install atheris==3.0.0
    python fuzz/fuzz_images.py CORPUS_DIR -max_total_time=600 [other libFuzzer flags]

The property is the one `tests/test_fuzz_images.py` checks on a fixed budget in
CI: any bytes give a 28×28 float32 image in [0, 1] or raise `ImageError`; any
other exception, a hang or a crash is reported by libFuzzer with the input
that caused it (saved as crash-*). An empty CORPUS_DIR is first filled with the
tests' small valid files in 17 formats and modes, so mutation starts from real images.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

with atheris.instrument_imports(include=["PIL", "mnist_keras"]):
    from test_fuzz_images import SEED_FILES, outcome


def test_one_input(data: bytes) -> None:
    outcome(data)


def fill_corpus(arguments: list[str]) -> None:
    """Write the seed files into the corpus directory (the first non-flag argument) if it is empty."""
    directories = [Path(argument) for argument in arguments[1:] if not argument.startswith("-")]
    if directories and (not directories[0].exists() or not any(directories[0].iterdir())):
        directories[0].mkdir(parents=True, exist_ok=True)
        for name, data in SEED_FILES.items():
            (directories[0] / name.replace(";", "-")).write_bytes(data)


def main() -> None:
    warnings.simplefilter("ignore")  # Pillow warns about the corrupt metadata it reads
    fill_corpus(sys.argv)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
