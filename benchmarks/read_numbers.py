"""Reading numbers: whole-number and digit accuracy of `mnist-keras read`, and its time per image.

    python benchmarks/read_numbers.py RUN [--count 400] [--seed 0] [--timing 50] [--json FILE]

Numbers are composed from MNIST *test* digits (which no run trained on) by
`mnist_keras.evaluation.numbers.draw_numbers`: 2-8 digits a line, one or two
lines, each digit scaled and set on an uneven baseline, the writer's slant,
gaps from close to wide, dark on light and light on dark, noise, blur, PNG and
JPEG. Two sets: every pair of neighbours apart ("separate"), and the same with
one pair whose strokes overlap ("touching"). Each image is read from its bytes
by `mnist_keras.inference.reading.read_image_bytes`, exactly as `mnist-keras
read` reads a file.

- whole number: the text read is the text written (every digit right, in
  order, on the right lines, nothing extra, nothing missing);
- digit accuracy: 1 - (edit distance between the digits read and written) /
  (digits written), over the set;
- a single digit: MNIST test digits as photos (a shadow, lined paper, a stray
  dot, ...), where `read` must find exactly `predict`'s digit, with the same
  probabilities, or no digit where `predict` refuses (stray marks are listed
  as marks that are not digits);
- several digits: of the optdigits files and 1,000 MNIST test digits as photos (one digit each), how
  many `read` finds several digits in (which `predict` then refuses as "several digits"), and how
  many `predict` reads right (its digit, accepted);
- time: a 6-digit line (about 260x60 pixels, PNG), median over `--timing`
  reads, on one core (this process pinned to CPU 0, ONNX Runtime on one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import harness
import numpy as np


def edit_distance(first: str, second: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions."""
    previous = list(range(len(second) + 1))
    for i, a in enumerate(first, 1):
        current = [i]
        for j, b in enumerate(second, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1]


def score(numbers, predictor, mark_reader=...) -> dict:
    """Whole-number and digit accuracy of reading `numbers` (with `mark_reader`: by default the shipped
    one; None: cuts only), and the texts that came out wrong."""
    from mnist_keras.inference.reading import read_image_bytes

    right, errors, digits, wrong = 0, 0, 0, []
    for number in numbers:
        text = read_image_bytes(number.data, predictor, mark_reader=mark_reader)["text"]
        right += text == number.text
        written, read = number.text.replace("\n", ""), text.replace("\n", "")
        errors += edit_distance(written, read)
        digits += len(written)
        if text != number.text and len(wrong) < 10:
            wrong.append({"written": number.text, "read": text})
    return {"numbers": len(numbers), "whole_number_accuracy": right / len(numbers),
            "digit_accuracy": 1 - errors / digits, "examples_wrong": wrong}


def single_digits_agree(predictor, digits: np.ndarray, count: int, seed: int, mark_reader=...) -> dict:
    """Single MNIST test digits photographed on paper: does `read` give `predict`'s digit and decision?"""
    import tempfile

    from mnist_keras.evaluation.handwriting import write_photos
    from mnist_keras.inference.images import decode_grey_file
    from mnist_keras.inference.reading import predict_grey, read_grey

    agree = same_digit = 0
    with tempfile.TemporaryDirectory() as folder:
        paths, _ = write_photos(digits[:count], folder, seed=seed)
        for path in paths:
            gray, size = decode_grey_file(path)
            predicted = predict_grey(gray, predictor, mark_reader=mark_reader)
            digits_read = [mark for line in read_grey(gray, predictor, size, mark_reader)["lines"] for mark in line
                           if mark["is_digit"]]
            if predicted["is_digit"]:
                agree += [mark["probabilities"] for mark in digits_read] == [predicted["probabilities"]]
                same_digit += [mark["digit"] for mark in digits_read] == [predicted["digit"]]
            else:
                agree += not digits_read
                same_digit += not digits_read
    # Where the probabilities differ, read set a stray mark or a ruled line apart that predict's input kept.
    return {"images": len(paths), "read_agrees_with_predict": agree / len(paths),
            "read_gives_predicts_digit": same_digit / len(paths)}


def several_digit_refusals(predictor, digits: np.ndarray, digit_labels: np.ndarray, photos: int, seed: int,
                           mark_reader=...) -> dict:
    """How many single real digits `read` finds several digits in (so `predict` refuses them as "several
    digits"), and how many `predict` reads right: the optdigits files and MNIST test digits as photos."""
    import tempfile

    from mnist_keras.evaluation.handwriting import write_optdigits, write_photos
    from mnist_keras.inference.images import decode_grey_file
    from mnist_keras.inference.reading import SEVERAL_DIGITS_REASON, predict_grey

    found = {}
    with tempfile.TemporaryDirectory() as folder:
        optdigits, optdigit_labels = write_optdigits(Path(folder) / "optdigits")
        photo_paths, _ = write_photos(digits[:photos], Path(folder) / "photos", seed=seed)
        photo_labels = digit_labels[:photos]
        for name, paths, labels in (("optdigits_files", optdigits, optdigit_labels),
                                    ("photos", photo_paths, photo_labels)):
            answers = [predict_grey(decode_grey_file(path)[0], predictor, mark_reader=mark_reader) for path in paths]
            found[name] = {
                "images": len(paths),
                "read_as_several": int(sum(answer.get("reason") == SEVERAL_DIGITS_REASON for answer in answers)),
                "predict_right": int(sum(bool(answer["is_digit"] and answer["digit"] == label)
                                     for answer, label in zip(answers, labels))),
            }
    return found


def time_six_digits(predictor_path: Path, digits: np.ndarray, labels: np.ndarray, reads: int, seed: int) -> dict:
    """Median time to read a 6-digit line from its PNG bytes, pinned to one core."""
    from mnist_keras.evaluation.numbers import draw_numbers
    from mnist_keras.inference.predictors import OnnxPredictor
    from mnist_keras.inference.reading import read_image_bytes

    predictor = OnnxPredictor(predictor_path)  # one single-threaded session
    numbers = draw_numbers(digits, labels, reads, seed=seed, lengths=(6, 6), two_line_share=0.0,
                           heights=(40, 40), formats=("png",))
    read_image_bytes(numbers[0].data, predictor)  # warm-up: sessions and caches
    seconds = []
    for number in numbers:
        start = time.perf_counter()
        read_image_bytes(number.data, predictor)
        seconds.append(time.perf_counter() - start)
    return {"reads": reads, "median_ms": 1000 * statistics.median(seconds),
            "p90_ms": 1000 * float(np.percentile(seconds, 90))}


# The child's own peak: VmHWM, which starts afresh at exec (ru_maxrss carries over the parent's size at fork).
PHOTO_CHILD = """
import json, resource, sys
from pathlib import Path
from mnist_keras.inference.predictors import load_predictor
from mnist_keras.inference.reading import read_image_files

def peak_kb():
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

predictor = load_predictor(sys.argv[1])
before = peak_kb()
[record] = read_image_files(predictor, [sys.argv[2]])
after = peak_kb()
print(json.dumps({"text": record.get("text"), "before_kb": before, "after_kb": after}))
"""


def photo_peak_memory(run: Path, digit: np.ndarray, label: int) -> dict:
    """Peak memory of reading an 8000x6000 JPEG (what a 48 MP phone saves) of one MNIST test digit, in a
    fresh process: its peak once the model is loaded, and after the read."""
    import subprocess
    import tempfile

    from PIL import Image

    paper = Image.new("L", (8000, 6000), 225)
    ink = Image.fromarray(np.asarray(digit, dtype=np.uint8)).resize((2400, 2400), Image.Resampling.BILINEAR)
    paper.paste(Image.new("L", ink.size, 30), (2800, 1800), ink)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "photo.jpg"
        paper.save(path, "JPEG", quality=90)
        size = path.stat().st_size
        del paper
        child = subprocess.run([sys.executable, "-c", PHOTO_CHILD, str(run), str(path)],
                               capture_output=True, text=True, check=True, env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    return {"jpeg_bytes": size, "read_as": figures["text"], "written": str(label),
            "peak_mb_model_loaded": figures["before_kb"] / 1024, "peak_mb_after_read": figures["after_kb"] / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", metavar="RUN", help="run directory (a --recipe cnn run reads best)")
    parser.add_argument("--count", type=int, default=400, help="numbers per set (default 400)")
    parser.add_argument("--seed", type=int, default=0, help="seed for composing (default 0)")
    parser.add_argument("--timing", type=int, default=50, help="6-digit reads to time (default 50)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--no-mark-reader", dest="mark_reader", action="store_false",
                        help="touching digits by the cuts alone, without the shipped mark reader")
    args = parser.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, for every figure
    from mnist_keras.data.mnist import load_mnist
    from mnist_keras.evaluation.numbers import draw_numbers
    from mnist_keras.inference.marks import reader_card, shipped_mark_reader
    from mnist_keras.inference.predictors import load_predictor
    from mnist_keras.rundir import current_onnx_export

    mark_reader = shipped_mark_reader() if args.mark_reader else None
    run = Path(args.run)
    predictor = load_predictor(run)
    mnist = load_mnist()
    digits, labels = mnist.x_test, mnist.y_test
    separate = draw_numbers(digits, labels, args.count, seed=args.seed)
    touching = draw_numbers(digits, labels, args.count, seed=args.seed + 1, touching=True)
    result = {
        "machine": harness.machine_line(),
        "run": str(run),
        "predictor": getattr(predictor, "name", type(predictor).__name__),
        "mark_reader": reader_card() if args.mark_reader else None,
        "separate": score(separate, predictor, mark_reader),
        "touching": score(touching, predictor, mark_reader),
        "single_digit": single_digits_agree(predictor, digits, min(args.count, 500), args.seed, mark_reader),
    }
    result["several_digits"] = several_digit_refusals(predictor, digits, labels, 1000, args.seed, mark_reader)
    result["photo_48mp"] = photo_peak_memory(run, digits[0], int(labels[0]))
    onnx_path = current_onnx_export(run)
    if onnx_path is not None and args.timing:
        result["six_digits_one_core"] = time_six_digits(onnx_path, digits, labels, args.timing, args.seed + 2)
    print(json.dumps(result, indent=2))
    rows = [("separate digits", result["separate"]), ("a touching pair", result["touching"])]
    print("\n| numbers | whole number | digits |\n| --- | --- | --- |")
    for name, figures in rows:
        print(f"| {name} ({figures['numbers']}) | {100 * figures['whole_number_accuracy']:.1f}% "
              f"| {100 * figures['digit_accuracy']:.2f}% |")
    single = result["single_digit"]
    print(f"\none digit ({single['images']} photos): read gives predict's digit {single['read_gives_predicts_digit']:.1%}, "
          f"its very probabilities {single['read_agrees_with_predict']:.1%}")
    for name, figures in result["several_digits"].items():
        print(f"single digits read as several ({name}): {figures['read_as_several']} of {figures['images']}; "
              f"predict reads {figures['predict_right']} right ({figures['predict_right'] / figures['images']:.2%})")
    if "six_digits_one_core" in result:
        print(f"\n6-digit line, one core: median {result['six_digits_one_core']['median_ms']:.1f} ms")
    photo = result["photo_48mp"]
    print(f"8000x6000 JPEG ({photo['jpeg_bytes']:,} bytes) of a {photo['written']}: read {photo['read_as']!r}; "
          f"peak memory {photo['peak_mb_model_loaded']:.0f} MB with the model loaded, "
          f"{photo['peak_mb_after_read']:.0f} MB after the read")
    print(f"machine: {result['machine']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
