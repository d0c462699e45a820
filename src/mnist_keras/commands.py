"""What each `mnist-keras` command does, once `mnist_keras.cli` has chosen the Keras backend.

`cli.main` parses the flags, calls `backends.select_backend` (from the flag, the
environment, the recipe's model family or the run being read), and only then
imports this module. Each handler imports what its command needs, so `predict`,
`read`, `serve` and `evaluate` run on the lean install (ONNX Runtime, no Keras)
and the commands that train or draw load Keras. Each handler takes the parsed
flags and returns the exit code; user errors are raised as UserError.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mnist_keras.data.mnist import class_counts, default_cache_dir, load_mnist
from mnist_keras.errors import UserError
from mnist_keras.inference.predictors import load_predictor
from mnist_keras.inference.reading import predict_image_files, read_image_files
from mnist_keras.rundir import FIGURES_DIR, REPORT_FILE
from mnist_keras.serving.settings import ServerSettings

EXIT_OK, EXIT_USAGE = 0, 2


def run_data(args: argparse.Namespace) -> int:
    mnist = load_mnist(args.data)
    print(f"source      {mnist.source}")
    print(f"cache       {default_cache_dir()}")
    print(f"train       images {mnist.x_train.shape} {mnist.x_train.dtype}, labels {mnist.y_train.shape}")
    print(f"test        images {mnist.x_test.shape} {mnist.x_test.dtype}, labels {mnist.y_test.shape}")
    print(f"train/class {class_counts(mnist.y_train).tolist()}")
    print(f"test/class  {class_counts(mnist.y_test).tolist()}")
    print("verified    MD5 of all four IDX files match the canonical MNIST")
    return EXIT_OK


def run_train(args: argparse.Namespace) -> int:
    from mnist_keras.evaluation.metrics import format_summary
    from mnist_keras.training.run import train_run

    plan = args.plan  # the recipe and run directory cli.main resolved when choosing the backend
    mnist = load_mnist(args.data)
    metrics = train_run(plan.config, mnist, plan.run_dir, recipe_name=plan.recipe_name,
                        export_onnx=args.export_onnx)
    print(format_summary(metrics))
    print(f"run written to {plan.run_dir}")
    print(f"report at {plan.run_dir / REPORT_FILE}")
    return EXIT_OK


def run_evaluate(args: argparse.Namespace) -> int:
    from mnist_keras.evaluation.metrics import evaluate_run, evaluation_predictor, format_summary

    predictor = evaluation_predictor(args.run)  # a bad run is reported before any data is fetched
    metrics = evaluate_run(args.run, load_mnist(args.data), predictor)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_summary(metrics))
    return EXIT_OK


def run_predict(args: argparse.Namespace) -> int:
    return print_records("predict", predict_image_files(load_predictor(args.run), args.images, top_k=args.top_k))


def run_read(args: argparse.Namespace) -> int:
    return print_records("read", read_image_files(load_predictor(args.run), args.images))


def print_records(command: str, records: list[dict]) -> int:
    """One JSON line per image on stdout, each error again on stderr; exit 2 if any image failed."""
    for record in records:
        print(json.dumps(record), flush=True)
    failed = [record for record in records if "error" in record]
    for record in failed:
        print(f"mnist-keras {command}: error: {record['error']}", file=sys.stderr)
    return EXIT_USAGE if failed else EXIT_OK


def run_serve(args: argparse.Namespace) -> int:
    from mnist_keras.serving import server  # the web stack loads only for this command

    settings = ServerSettings(
        run_dir=Path(args.run), host=args.host, port=args.port, workers=args.workers,
        request_timeout=args.request_timeout, idle_timeout=args.idle_timeout,
        graceful_timeout=args.graceful_timeout, drain_period=args.drain_period, access_log=args.access_log,
        event_loop=args.event_loop, api_token=args.api_token,
    )
    load_predictor(args.run)  # a run that cannot answer fails here, in one line, before any worker starts
    server.run(settings)
    return EXIT_OK


def run_report(args: argparse.Namespace) -> int:
    from mnist_keras.reporting.run_report import build_report

    report_path = build_report(args.run, load_mnist(args.data))
    print(f"report written to {report_path} (figures in {report_path.parent / FIGURES_DIR})")
    return EXIT_OK


def run_export(args: argparse.Namespace) -> int:
    from mnist_keras.inference.export import export_run
    from mnist_keras.inference.web_export import export_web

    if args.format == "web":
        written = export_web(args.run, args.out, ort_dir=args.ort_dir)
        print(f"web export written to {written}; serve it from any static file server, e.g. "
              f"python -m http.server --directory {written}")
        return EXIT_OK
    written = export_run(args.run, args.format, args.out)
    print(f"{args.format} export written to {written}")
    return EXIT_OK


def run_sweep(args: argparse.Namespace) -> int:
    from mnist_keras.sweeps.tune import BEST_DIR, TRIALS_CSV
    from mnist_keras.sweeps.tune import run_sweep as sweep

    result = sweep(args.sweep_plan, resume=args.resume, progress=lambda line: print(line, flush=True))
    print(f"trials: {result.out / TRIALS_CSV}")
    print(f"best trial (lowest validation loss): {result.best} → {result.out / BEST_DIR}" if result.best
          else "no trial finished")
    print(f"report: {result.out / REPORT_FILE}")
    return EXIT_OK


def run_seeds(args: argparse.Namespace) -> int:
    from mnist_keras import environment
    from mnist_keras.backends import default_backend
    from mnist_keras.sweeps import studies
    from mnist_keras.sweeps.tune import run_sweep as sweep

    plan = args.sweep_plan
    result = sweep(plan, resume=args.resume, progress=lambda line: print(line, flush=True))
    backend = plan.backend or default_backend(plan.space.base.model)
    summary = studies.summarise(result, plan.space.base, plan.recipe_name or args.recipe,
                                environment.machine_description(), backend)
    print(studies.write_summary(result.out, summary), end="")
    print(f"written to {result.out / studies.SEEDS_JSON} and {result.out / studies.SEEDS_MD}")
    return EXIT_OK


HANDLERS = {
    "data": run_data,
    "train": run_train,
    "evaluate": run_evaluate,
    "predict": run_predict,
    "read": run_read,
    "serve": run_serve,
    "report": run_report,
    "export": run_export,
    "sweep": run_sweep,
    "seeds": run_seeds,
}


def run(args: argparse.Namespace) -> int:
    if args.command not in HANDLERS:
        raise UserError(f"unknown command {args.command!r}")
    return HANDLERS[args.command](args)
