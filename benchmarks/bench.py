"""`make bench`: training and inference speed of every path, side by side, on this machine.

    python benchmarks/bench.py [--quick] [--epochs N] [--out DIR]

Each measurement runs in its own Python process (so each has its own Keras
backend and its own peak memory) and reports one JSON line; this process
gathers them, computes ratios against the seed's code and against the
machine's matrix-product bound, and writes DIR/bench.json, DIR/bench.md (the
table) and DIR/bench.png. `--quick` runs every row on a slice of MNIST for two
epochs: a smoke test of the command and its JSON, not a measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness

BENCHMARKS = Path(__file__).resolve().parent
DEFAULT_OUT = harness.RESULTS_DIR
FULL_EPOCHS = 6  # seconds per epoch is the median of epochs 2..6: epoch 1 carries compilation
QUICK_EPOCHS = 2
QUICK_TRAIN_IMAGES = 3_000
QUICK_TEST_IMAGES = 1_000
FAST_RECIPE_SEEDS = (1, 2, 3, 4, 5)
GEMM_SIDE = 2048  # a square float32 product large enough to run at the BLAS's peak
GEMM_REPEATS = 20
THROUGHPUT_REPEATS = 7
SINGLE_IMAGE_CALLS = {"keras predict": 50, "keras call": 300, "keras predict_on_batch": 1000, "onnxruntime": 5000}
PERCENTILES = (50, 99)
# One worker's limit: a convnet epoch on JAX on a slow 2-core CPU takes minutes (over 200 s), and the
# cnn family rows train three epochs; a worker still running after this is stuck, not slow.
WORKER_TIMEOUT_SECONDS = 2 * 3600

# (row name, worker, KERAS_BACKEND or None): the training rows, in the table's order.
TRAINING_ROWS = (
    ("mnist-keras default (Keras+JAX, scanned epochs)", "default", "jax"),
    ("Keras+JAX model.fit", "keras_fit", "jax"),
    ("Keras+TensorFlow model.fit", "keras_fit", "tensorflow"),
    ("Keras+torch model.fit", "keras_fit", "torch"),
    ("seed's code as written (Keras+TensorFlow)", "seed_tf", "tensorflow"),
    ("plain PyTorch (eager)", "torch", None),
)
SEED_ROW = "seed's code as written (Keras+TensorFlow)"
# (family, KERAS_BACKEND): the package's own loop for each model family on each backend, for
# the table that decides each family's default backend (mnist_keras.backends.FAMILY_BACKENDS).
FAMILY_ROWS = tuple((family, backend) for family in ("mlp", "cnn") for backend in ("jax", "tensorflow", "torch"))
FAMILY_EPOCHS = 3  # seconds per epoch is the median of epochs 2..3: a convnet epoch on JAX takes ~30 s
DEFAULT_ROW = "mnist-keras default (Keras+JAX, scanned epochs)"


# ------------------------------------------------------------------ workers (child processes)


def load_data(quick: bool):
    """MNIST, or in quick mode a slice of it (the first images of each split)."""
    from mnist_keras.data.mnist import Mnist, load_mnist

    mnist = load_mnist()
    if not quick:
        return mnist
    return Mnist(mnist.x_train[:QUICK_TRAIN_IMAGES], mnist.y_train[:QUICK_TRAIN_IMAGES],
                 mnist.x_test[:QUICK_TEST_IMAGES], mnist.y_test[:QUICK_TEST_IMAGES], mnist.source)


def peak_memory_megabytes() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kilobytes


def family_recipe(family: str, epochs: int):
    """The recipe a family's speed is measured with: the seed MLP, or the cnn recipe's convnet."""
    from mnist_keras.config import Config
    from mnist_keras.recipes import CNN

    recipe = CNN if family == "cnn" else Config()
    # Every epoch is timed: no early stop, and the budget is `epochs`.
    return dataclasses.replace(recipe, epochs=epochs, early_stopping=False,
                               schedule="one_cycle" if family == "cnn" else recipe.schedule)


def worker_default(options: argparse.Namespace) -> dict[str, Any]:
    """The package's own training path, end to end (mnist_keras.training.run.train_run), into options.run.

    With --family, that family's recipe (see family_recipe); otherwise the seed recipe itself.
    """
    from mnist_keras.backends import select_backend
    from mnist_keras.config import Config

    select_backend(None, options.family)
    from mnist_keras.evaluation.metrics import read_history
    from mnist_keras.training.run import train_run

    config = family_recipe(options.family, options.epochs) if options.family else Config(epochs=options.epochs)
    # The seed recipe's run is the one the inference rows read, ONNX export included.
    metrics = train_run(config, load_data(options.quick), options.run, verbose=0,
                        export_onnx=not options.family)
    return {"epoch_seconds": [row["seconds"] for row in read_history(options.run)],
            "test_accuracy": metrics["test_accuracy"]}


def worker_keras_fit(options: argparse.Namespace) -> dict[str, Any]:
    """The same model and recipe through plain `model.fit` and Keras's callbacks, on KERAS_BACKEND."""
    import keras

    from mnist_keras.config import Config
    from mnist_keras.data.mnist import one_hot, preprocess_images
    from mnist_keras.model import build_model, compile_model
    from mnist_keras.training.train import seed_everything, split_validation

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    config = Config(epochs=options.epochs)
    mnist = load_data(options.quick)
    seed_everything(config.seed)
    (x_fit, y_fit), validation = split_validation(preprocess_images(mnist.x_train), one_hot(mnist.y_train),
                                                  config.validation_split)
    model = compile_model(build_model(config), config)
    timer = EpochTimer()
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.early_stopping_patience,
                                      restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=config.reduce_lr_factor,
                                          patience=config.reduce_lr_patience, min_lr=config.min_learning_rate),
        timer,
    ]
    model.fit(x_fit, y_fit, validation_data=validation, epochs=config.epochs, batch_size=config.batch_size,
              shuffle=True, callbacks=callbacks, verbose=0)
    return {"epoch_seconds": timer.seconds}


def worker_seed_tf(options: argparse.Namespace) -> dict[str, Any]:
    import seed_tf

    mnist = load_data(options.quick)
    return {"epoch_seconds": seed_tf.train(mnist.x_train, mnist.y_train, epochs=options.epochs)}


def worker_torch(options: argparse.Namespace) -> dict[str, Any]:
    import torch_mlp

    from mnist_keras.config import Config
    from mnist_keras.data.mnist import preprocess_images
    from mnist_keras.training.train import split_validation

    mnist = load_data(options.quick)
    (x_fit, y_fit), (x_val, y_val) = split_validation(preprocess_images(mnist.x_train), mnist.y_train,
                                                      Config().validation_split)
    return {"epoch_seconds": torch_mlp.train(x_fit, y_fit, x_val, y_val, epochs=options.epochs)}


def worker_gemm(options: argparse.Namespace) -> dict[str, Any]:
    """numpy's float32 matrix-product rate here: the hardware bound the table compares against."""
    import numpy as np

    rng = np.random.default_rng(0)
    left, right = (rng.random((GEMM_SIDE, GEMM_SIDE), dtype=np.float32) for _ in range(2))
    left @ right
    timings = []
    for _ in range(GEMM_REPEATS):
        started = time.perf_counter()
        left @ right
        timings.append(time.perf_counter() - started)
    return {"gflops": 2 * GEMM_SIDE**3 / min(timings) / 1e9}  # the best run: a bound, not a typical rate


def repeated_timings(predict, argument, repeats: int) -> list[float]:
    """Seconds per call of predict(argument), after one warm-up call."""
    predict(argument)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict(argument)
        timings.append(time.perf_counter() - started)
    return timings


def time_single_image(predict, image, calls: int) -> dict[str, float]:
    latencies = sorted(repeated_timings(predict, image, calls))
    return {f"single_p{percentile}_ms": 1e3 * latencies[min(len(latencies) - 1, int(len(latencies) * percentile / 100))]
            for percentile in PERCENTILES}


def time_test_set(predict, images) -> float:
    return statistics.median(repeated_timings(predict, images, THROUGHPUT_REPEATS))


def worker_inference(options: argparse.Namespace) -> dict[str, Any]:
    """Each way to get probabilities from the default run's model: the test set, and one image."""
    import numpy as np

    from mnist_keras.data.mnist import preprocess_images
    from mnist_keras.inference.predictors import KerasPredictor, load_predictor

    images = preprocess_images(load_data(options.quick).x_test)
    model = KerasPredictor(options.run).model
    fastest = load_predictor(options.run)
    paths = {
        "keras predict": lambda batch: model.predict(batch, batch_size=1024, verbose=0),
        "keras call": lambda batch: np.asarray(model(batch, training=False)),
        "keras predict_on_batch": lambda batch: model.predict_on_batch(batch),
        fastest.name: fastest.predict,
    }
    rows = []
    for name, predict in paths.items():
        seconds = time_test_set(predict, images)
        calls = SINGLE_IMAGE_CALLS[name] // (10 if options.quick else 1)
        rows.append({"name": name, "test_images": len(images), "test_set_seconds": seconds,
                     "images_per_second": len(images) / seconds, **time_single_image(predict, images[:1], calls)})
    return {"paths": rows}


def worker_fast_recipe(options: argparse.Namespace) -> dict[str, Any]:
    """The "fast" recipe on each seed: test accuracy and training seconds (compilation included)."""
    from mnist_keras.recipes import FAST

    mnist = load_data(options.quick)
    seeds = FAST_RECIPE_SEEDS[:1] if options.quick else FAST_RECIPE_SEEDS
    config = dataclasses.replace(FAST, epochs=QUICK_EPOCHS) if options.quick else FAST
    runs = [{"seed": seed, "test_accuracy": metrics["test_accuracy"], "train_seconds": metrics["train_seconds"],
             "epochs_trained": metrics["epochs_trained"]}
            for seed, metrics in harness.train_on_seeds(config, mnist, seeds)]
    return {"recipe": config.to_dict(), "runs": runs}


WORKERS = {
    "default": worker_default,
    "keras_fit": worker_keras_fit,
    "seed_tf": worker_seed_tf,
    "torch": worker_torch,
    "gemm": worker_gemm,
    "inference": worker_inference,
    "fast_recipe": worker_fast_recipe,
}


def run_worker(options: argparse.Namespace) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    result = WORKERS[options.worker](options)
    result["peak_memory_mb"] = peak_memory_megabytes()
    result["load_average"] = harness.load_average()
    harness.emit(result)


# ------------------------------------------------------------------ the parent: run, compare, report


def call_worker(worker: str, backend: str | None, options: argparse.Namespace, run: Path) -> dict[str, Any]:
    """Run one worker in a fresh process on `backend`; its last JSON line is its result."""
    epochs = getattr(options, "worker_epochs", None) or options.epochs
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", worker, "--epochs", str(epochs),
               "--run", str(run)] + (["--quick"] if options.quick else [])
    if getattr(options, "family", None):
        command += ["--family", options.family]
    return harness.run_json(command, f"benchmark worker {worker} ({backend})", timeout=WORKER_TIMEOUT_SECONDS,
                            env=harness.child_environment(backend))


def module_installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def forward_flops_per_image() -> int:
    """Multiply-adds ×2 of the seed network's matrix products for one image."""
    from mnist_keras.config import Config
    from mnist_keras.constants import NUM_CLASSES, NUM_PIXELS

    widths = (NUM_PIXELS, *Config().hidden_units, NUM_CLASSES)
    return sum(2 * inputs * outputs for inputs, outputs in zip(widths, widths[1:]))


def epoch_flops(train_images: int, validation_images: int) -> float:
    """One epoch's matrix products: forward + two backward products per training image, forward per validation."""
    forward = forward_flops_per_image()
    return 3 * forward * train_images + forward * validation_images


def summarise_training(name: str, backend: str | None, result: dict[str, Any], bound_seconds: float) -> dict[str, Any]:
    later_epochs = result["epoch_seconds"][1:] or result["epoch_seconds"]
    return {"name": name, "backend": backend, "epoch_seconds": result["epoch_seconds"],
            "seconds_per_epoch": statistics.median(later_epochs), "best_epoch_seconds": min(later_epochs),
            "peak_memory_mb": result["peak_memory_mb"], "times_bound": statistics.median(later_epochs) / bound_seconds,
            "load_average": result["load_average"]}


def measure_families(options: argparse.Namespace, run: Path) -> list[dict[str, Any]]:
    """s/epoch of the package's loop for each model family on each installed backend."""
    rows = []
    for family, backend in FAMILY_ROWS:
        if f"{family}/{backend}" in (options.skip or ()):
            rows.append({"family": family, "backend": backend, "skipped": "not measured (--skip)"})
            continue
        if not module_installed(backend):
            rows.append({"family": family, "backend": backend, "skipped": f"{backend} is not installed"})
            continue
        print(f"measuring: {family} on {backend}", file=sys.stderr, flush=True)
        family_options = argparse.Namespace(**{**vars(options), "family": family,
                                               "worker_epochs": QUICK_EPOCHS if options.quick else FAMILY_EPOCHS})
        result = call_worker("default", backend, family_options, run)
        later = result["epoch_seconds"][1:] or result["epoch_seconds"]
        rows.append({"family": family, "backend": backend, "epoch_seconds": result["epoch_seconds"],
                     "seconds_per_epoch": statistics.median(later), "load_average": result["load_average"]})
    for family in {row["family"] for row in rows}:
        measured = [row for row in rows if row["family"] == family and "seconds_per_epoch" in row]
        fastest = min(measured, key=lambda row: row["seconds_per_epoch"]) if measured else None
        for row in measured:
            row["fastest"] = row is fastest
    return rows


def benchmark(options: argparse.Namespace) -> dict[str, Any]:
    from mnist_keras.config import Config
    from mnist_keras.environment import library_versions, machine_description
    from mnist_keras.training.train import split_validation

    with tempfile.TemporaryDirectory() as directory:
        run = Path(directory) / "default-run"
        gemm = call_worker("gemm", None, options, run)
        mnist = load_data(options.quick)
        train_count = len(split_validation(mnist.x_train, mnist.y_train, Config().validation_split)[0][0])
        bound_seconds = epoch_flops(train_count, len(mnist.x_train) - train_count) / (gemm["gflops"] * 1e9)
        training, skipped = [], []
        for name, worker, backend in TRAINING_ROWS:
            needed = backend or worker
            if not module_installed(needed):
                skipped.append({"name": name, "reason": f"{needed} is not installed"})
                continue
            print(f"measuring: {name}", file=sys.stderr, flush=True)
            training.append(summarise_training(name, backend, call_worker(worker, backend, options, run), bound_seconds))
        families = measure_families(options, Path(directory) / "family-run")
        print("measuring: inference", file=sys.stderr, flush=True)
        inference = call_worker("inference", "jax", options, run)
        print("measuring: fast recipe", file=sys.stderr, flush=True)
        fast = call_worker("fast_recipe", "jax", options, run)

    seed_seconds = next(row["seconds_per_epoch"] for row in training if row["name"] == SEED_ROW) \
        if any(row["name"] == SEED_ROW for row in training) else None
    for row in training:
        row["speedup_vs_seed"] = seed_seconds / row["seconds_per_epoch"] if seed_seconds else None
    test_images = inference["paths"][0]["test_images"]
    inference_bound = forward_flops_per_image() * test_images / (gemm["gflops"] * 1e9)
    keras_predict_seconds = inference["paths"][0]["test_set_seconds"]
    for row in inference["paths"]:
        row["speedup_vs_keras_predict"] = keras_predict_seconds / row["test_set_seconds"]
        row["times_bound"] = row["test_set_seconds"] / inference_bound
    accuracies = [run["test_accuracy"] for run in fast["runs"]]
    seconds = [run["train_seconds"] for run in fast["runs"]]
    return {
        "machine": machine_description(),
        "versions": library_versions(),
        "mode": "quick" if options.quick else "full",
        "epochs": options.epochs,
        "train_images": train_count,
        "bound": {"gemm_gflops": gemm["gflops"], "epoch_gflop": epoch_flops(train_count, len(mnist.x_train) - train_count) / 1e9,
                  "epoch_seconds": bound_seconds, "test_set_seconds": inference_bound,
                  "images_per_second": test_images / inference_bound},
        "training": training,
        "skipped": skipped,
        "families": families,
        "inference": inference["paths"],
        "inference_peak_memory_mb": inference["peak_memory_mb"],
        "inference_load_average": inference["load_average"],
        "fast_recipe": {"recipe": fast["recipe"], "runs": fast["runs"], "mean_test_accuracy": statistics.mean(accuracies),
                        "load_average": fast["load_average"],
                        "median_train_seconds": statistics.median(seconds), "max_train_seconds": max(seconds),
                        "reaches_seed_accuracy": statistics.mean(accuracies) >= harness.SEED_TEST_ACCURACY},
    }


def markdown_table(results: dict[str, Any]) -> str:
    bound = results["bound"]
    lines = [
        f"Machine: {results['machine']}; {results['mode']} run, {results['epochs']} epochs, "
        f"{results['train_images']:,} training images per epoch, batch 128, validation included. "
        "load: the machine's 1-minute load average after the row (2.0 = both cores busy with other work).",
        "",
        "| training path (seed recipe) | s/epoch (median of 2..n) | best epoch | peak memory | "
        "speed-up vs seed's code | × bound | load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["training"]:
        speedup = f"{row['speedup_vs_seed']:.2f}×" if row["speedup_vs_seed"] else "n/a"
        lines.append(f"| {row['name']} | {row['seconds_per_epoch']:.2f} | {row['best_epoch_seconds']:.2f} | "
                     f"{row['peak_memory_mb'] / 1024:.2f} GB | {speedup} | {row['times_bound']:.2f} | "
                     f"{row['load_average']:.1f} |")
    lines.append(f"| bound: {bound['epoch_gflop']:.0f} GFLOP at numpy's {bound['gemm_gflops']:.0f} GFLOP/s | "
                 f"{bound['epoch_seconds']:.2f} | | | | 1.00 | |")
    for row in results["skipped"]:
        lines.append(f"| {row['name']} | skipped: {row['reason']} | | | | | |")
    lines += [
        "",
        f"| inference path | {results['inference'][0]['test_images']:,} test images | images/s | "
        "one image p50 | one image p99 | × bound |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["inference"]:
        lines.append(f"| {row['name']} | {row['test_set_seconds'] * 1e3:.1f} ms | {row['images_per_second']:,.0f} | "
                     f"{row['single_p50_ms']:.3f} ms | {row['single_p99_ms']:.3f} ms | {row['times_bound']:.2f} |")
    lines.append(f"| bound | {bound['test_set_seconds'] * 1e3:.1f} ms | {bound['images_per_second']:,.0f} | | | 1.00 |")
    lines += ["", family_table(results), ""]
    fast = results["fast_recipe"]
    per_seed = ", ".join(f"{run['test_accuracy']:.2%}" for run in fast["runs"])
    lines += [
        "",
        f"Fast recipe (`--recipe fast`: {fast['recipe']['epochs']} epochs, batch {fast['recipe']['batch_size']}, "
        f"one-cycle to {fast['recipe']['learning_rate']:g}): mean test accuracy {fast['mean_test_accuracy']:.2%} "
        f"over seeds {', '.join(str(run['seed']) for run in fast['runs'])} ({per_seed}); training time "
        f"median {fast['median_train_seconds']:.1f} s, at most {fast['max_train_seconds']:.1f} s "
        f"(compilation included: the first run compiles, later ones reuse the on-disk XLA cache; "
        f"the seed reached 98.43%).",
    ]
    return "\n".join(lines) + "\n"


def family_table(results: dict[str, Any]) -> str:
    """s/epoch by model family and backend: the package's loop, each family's recipe."""
    backends = sorted({row["backend"] for row in results["families"]}, key=["jax", "tensorflow", "torch"].index)
    lines = ["| model family (recipe) | " + " | ".join(f"Keras+{backend}" for backend in backends) + " |",
             "| --- |" + " ---: |" * len(backends)]
    for family, recipe in (("mlp", "seed"), ("cnn", "cnn")):
        cells = []
        for backend in backends:
            row = next((row for row in results["families"] if row["family"] == family and row["backend"] == backend),
                       None)
            if row is None or "seconds_per_epoch" not in row:
                cells.append("skipped" if row else "")
            else:
                cell = f"{row['seconds_per_epoch']:.2f} s"
                cells.append(f"**{cell}**" if row.get("fastest") else cell)
        lines.append(f"| {family} ({recipe} recipe) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (training_axis, inference_axis) = plt.subplots(1, 2, figsize=(13, 4.5))
    names = [row["name"] for row in results["training"]]
    training_axis.barh(names, [row["seconds_per_epoch"] for row in results["training"]], color="tab:blue")
    training_axis.axvline(results["bound"]["epoch_seconds"], color="black", linestyle="--", label="GEMM bound")
    training_axis.invert_yaxis()
    training_axis.set_xlabel("seconds per epoch (seed recipe; lower is better)")
    training_axis.legend()
    inference_axis.barh([row["name"] for row in results["inference"]],
                        [row["images_per_second"] for row in results["inference"]], color="tab:green")
    inference_axis.axvline(results["bound"]["images_per_second"], color="black", linestyle="--", label="GEMM bound")
    inference_axis.invert_yaxis()
    inference_axis.set_xscale("log")
    inference_axis.set_xlabel("test images per second (higher is better)")
    inference_axis.legend()
    figure.suptitle(results["machine"])
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a slice of MNIST, two epochs: checks the command")
    parser.add_argument("--epochs", type=int, help=f"epochs per training row (default {FULL_EPOCHS}, quick "
                                                   f"{QUICK_EPOCHS})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where bench.json, .md and .png go")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--family", choices=("mlp", "cnn"), help=argparse.SUPPRESS)
    parser.add_argument("--families-only", action="store_true",
                        help="only the s/epoch table by model family and backend (writes DIR/families.{json,md})")
    parser.add_argument("--skip", nargs="+", metavar="FAMILY/BACKEND", default=(),
                        choices=[f"{family}/{backend}" for family, backend in FAMILY_ROWS],
                        help="family rows not to measure (e.g. cnn/jax: minutes per epoch on a slow CPU)")
    options = parser.parse_args(argv)
    if options.epochs is None:
        options.epochs = QUICK_EPOCHS if options.quick else FULL_EPOCHS
    return options


def families_only(options: argparse.Namespace) -> int:
    """The model family × backend table alone: what mnist_keras.backends.FAMILY_BACKENDS is chosen from."""
    from mnist_keras.environment import library_versions, machine_description

    with tempfile.TemporaryDirectory() as directory:
        families = measure_families(options, Path(directory) / "run")
    results = {"machine": machine_description(), "versions": library_versions(),
               "mode": "quick" if options.quick else "full", "families": families}
    table = (f"Machine: {results['machine']}; {results['mode']} run, median s/epoch of epochs 2..n "
             f"(load: 1-minute load average after each row: "
             + ", ".join(f"{row['family']}/{row['backend']} {row['load_average']:.1f}" for row in families
                         if "load_average" in row) + ")\n\n" + family_table(results) + "\n")
    harness.write_results(options.out, "families", results, table)
    print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    options = parse_arguments(argv)
    if options.worker:
        run_worker(options)
        return 0
    if options.families_only:
        return families_only(options)
    results = benchmark(options)
    table = markdown_table(results)
    harness.write_results(options.out, "bench", results, table)
    plot(results, options.out / "bench.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
