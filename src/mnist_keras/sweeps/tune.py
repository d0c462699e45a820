"""Sweeps on Ray Tune: every trial is a normal training run, checkpointed through Tune every epoch.

`run_sweep(plan)` starts Ray embedded on this machine (loopback only, no
dashboard, no usage reporting) or joins the cluster at `plan.address` (once
`sweeps.cluster` has checked that its head takes this machine's token), runs one
trial per point of the search space, and writes under `plan.out`:

- `tune/`: Ray Tune's own experiment directory (`Tuner.restore` and Ray's tools work on it);
- `trials/<trial_id>/`: each trial's run directory, exactly what `mnist-keras train` writes;
- `trials.csv`, `best/` (a copy of the finished trial with the lowest validation
  loss), `report.html`, and `sweep.json` (the plan, for `--resume`).

A trial reports after every epoch with that epoch's checkpoint, so a trial whose
worker or node dies is retried from its last epoch (`FailureConfig`), ASHA can
stop it early, and `--resume` after the driver died continues the unfinished
trials without redoing the finished ones.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mnist_keras.errors import ClusterError, UserError
from mnist_keras.rundir import read_json, replace_path, staging_path, write_json_atomic
from mnist_keras.sweeps.cluster import prepare_to_join
from mnist_keras.sweeps.space import Space, tune_space
from mnist_keras.training.checkpoint import Checkpointer, run_checkpoint_dir
from mnist_keras.training.state import TrainingState

TUNE_DIR = "tune"
TRIALS_DIR = "trials"
TRIALS_CSV = "trials.csv"
BEST_DIR = "best"
SWEEP_FILE = "sweep.json"
SCHEDULERS = ("fifo", "asha")
# Trials running at once on each machine, each on its share of the cores. Measured by
# `benchmarks/concurrency.py` (seed recipe, 3 epochs, x86_64 AMD EPYC with AVX2, 2 cores):
# two trials at once on one core each finished the pair in 71.2 s, one after another on
# both cores in 106.6 s (ratio 1.50: one trial leaves the second core half idle). So two
# per machine; not more, as each trial holds the data set and a compiled model (~1.4 GB).
DEFAULT_TRIALS_PER_NODE = 2
# Retries of a trial whose worker or node died, each from its last epoch checkpoint.
MAX_FAILURES = 3
# Epoch checkpoints Tune keeps per trial (the latest is the one a retry resumes from).
CHECKPOINTS_KEPT = 2
# ASHA: a trial runs at least this many epochs before it can be stopped; survivors per rung = 1/factor.
ASHA_GRACE_EPOCHS = 1
ASHA_REDUCTION_FACTOR = 3
METRIC, MODE = "val_loss", "min"
INSTALL_HINT = "Ray Tune is not installed; install it with: pip install 'mnist-keras[sweep]' (or 'ray[tune]==2.60.0')"
# Reported by every epoch of a trial (the rest of the history row is reported too).
EPOCH_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """Everything a sweep needs, resolved before Ray starts. Saved as sweep.json for --resume."""

    space: Space
    out: Path
    samples: int = 1
    max_concurrent: int | None = None
    scheduler: str = "fifo"
    address: str | None = None
    data: str | None = None
    # Train on the first `limit` training (and test) images only: for tests and smoke runs.
    limit: int | None = None
    export_onnx: bool = True
    recipe_name: str | None = None
    # The Keras backend the user asked for (--backend or $KERAS_BACKEND); None: each trial's model family decides.
    backend: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "space": self.space.to_record(),
            "samples": self.samples,
            "scheduler": self.scheduler,
            "data": self.data,
            "limit": self.limit,
            "export_onnx": self.export_onnx,
            "recipe_name": self.recipe_name,
            "backend": self.backend,
        }

    @classmethod
    def resumed(cls, out: Path, address: str | None = None, max_concurrent: int | None = None) -> SweepPlan:
        """The plan saved in `out`, to continue on this machine or the cluster at `address`."""
        record = read_json(out / SWEEP_FILE) if (out / SWEEP_FILE).is_file() else None
        if not isinstance(record, dict) or not (out / TUNE_DIR).is_dir():
            raise UserError(f"{out} holds no sweep to resume (no {SWEEP_FILE} or {TUNE_DIR}/)")
        return cls(
            space=Space.from_record(record["space"]), out=out, samples=record["samples"],
            max_concurrent=max_concurrent, scheduler=record["scheduler"], address=address, data=record["data"],
            limit=record["limit"], export_onnx=record["export_onnx"], recipe_name=record.get("recipe_name"),
            backend=record.get("backend"),
        )


@dataclasses.dataclass(frozen=True)
class TrialSettings:
    """What each trial process needs besides its searched values (plain data: it travels to workers)."""

    space: dict[str, Any]
    out: str
    data: str | None
    limit: int | None
    cpus: int
    backend: str | None


@dataclasses.dataclass(frozen=True)
class SweepResult:
    rows: list[dict[str, Any]]
    best: str | None
    out: Path


# ---------------------------------------------------------------- the trial (runs in a Ray worker)


def run_trial(params: dict[str, Any], settings: TrialSettings) -> None:
    """One trial: pin cores, choose the backend, then a normal `train_run` that reports every epoch to Tune."""
    from mnist_keras.backends import select_backend, use_threads
    from mnist_keras.sweeps.cores import pin_process

    space = Space.from_record(settings.space)
    config = space.config_for(params)
    pin_process(settings.cpus)
    use_threads(config.threads)  # before Keras or XLA size their thread pools
    from ray import tune

    if settings.backend is None:
        # Workers inherit the driver's environment, where the CLI chose a backend for itself.
        os.environ.pop("KERAS_BACKEND", None)
    select_backend(settings.backend, getattr(config, "model", "mlp"))
    from mnist_keras.data.mnist import load_mnist
    from mnist_keras.training.run import train_run  # loads Keras on the chosen backend

    run_dir = Path(settings.out) / TRIALS_DIR / tune.get_context().get_trial_id()
    restore_tune_checkpoint(tune.get_checkpoint(), run_dir)
    mnist = limited(load_mnist(settings.data), settings.limit)

    result = train_run(config, mnist, run_dir, verbose=0, checkpointer=TuneCheckpointer.for_run(run_dir, config),
                       export_onnx=False)
    tune.report({
        METRIC: result.get("best_val_loss", result.get("final_val_loss")),
        "best_val_loss": result.get("best_val_loss"),
        "test_accuracy": result["test_accuracy"],
        "epochs_trained": result["epochs_trained"],
        "train_seconds": result["train_seconds"],
        "finished": True,
    })


class TuneCheckpointer(Checkpointer):
    """A trial's epoch checkpoints: each one saved, then reported to Tune with that epoch's history row."""

    def save(self, state: TrainingState, model: Any, augmenter: Any = None) -> None:
        from ray import tune

        super().save(state, model, augmenter)
        row = state.history[-1]
        metrics = {key: row[key] for key in EPOCH_KEYS if key in row}
        metrics["best_val_loss"] = finite_or_none(state.best_val_loss)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(self.directory)))


def restore_tune_checkpoint(tune_checkpoint: Any, run_dir: Path) -> None:
    """Put the epoch checkpoint Tune kept (if any) where `train_run` resumes from."""
    if tune_checkpoint is None:
        return
    target = run_checkpoint_dir(run_dir)
    with tune_checkpoint.as_directory() as kept:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(kept, target)


def limited(mnist: Any, limit: int | None) -> Any:
    """The first `limit` training and test images (all of them when `limit` is None)."""
    if limit is None:
        return mnist
    return dataclasses.replace(
        mnist, x_train=mnist.x_train[:limit], y_train=mnist.y_train[:limit],
        x_test=mnist.x_test[:limit], y_test=mnist.y_test[:limit],
    )


def finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# ---------------------------------------------------------------- the driver


def import_ray(address: str | None = None) -> Any:
    """Ray, with usage reporting off; UserError saying how to install it when it is missing.

    With `address`, first checks that the cluster there can be joined with this machine's
    token (ClusterError otherwise) and turns on Ray's token mode when it asks for one.
    """
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # before Ray starts: it must never phone home
    if address:
        prepare_to_join(address)  # before `import ray`, which fixes Ray's token mode
    # Tune's own progress tables are replaced by one line per finished trial (progress_callback).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return ray


def start_ray(ray: Any, address: str | None) -> None:
    """Join the cluster at `address`, or start Ray embedded: this machine's cores, loopback only, no dashboard."""
    quiet = {"log_to_driver": False, "logging_level": "warning"}
    if address:
        host = address.rsplit(":", 1)[0]
        # A cluster on a loopback address (tests, one-machine set-ups) is joined from that address. Ray
        # rewrites 127.0.0.1 and localhost to the host's network address, so such a cluster's nodes
        # are started on another loopback address (e.g. ray start --node-ip-address=127.0.0.2).
        local = {"_node_ip_address": host} if host.startswith("127.") else {}
        try:
            ray.init(address=address, **quiet, **local)
        except (ConnectionError, ray.exceptions.AuthenticationError) as error:
            raise ClusterError(f"could not join the Ray cluster at {address}: {error}") from None
    else:
        # address="local" always starts a new instance (never someone else's cluster on this host).
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                 _node_ip_address="127.0.0.1", **quiet)


def trial_shape(ray: Any, max_concurrent: int | None) -> tuple[int, int]:
    """(trials at once, cores per trial) for the Ray instance we are connected to."""
    nodes = [node for node in ray.nodes() if node.get("Alive") and node["Resources"].get("CPU", 0) > 0]
    node_cpus = [int(node["Resources"]["CPU"]) for node in nodes] or [os.cpu_count() or 1]
    concurrent = max_concurrent or sum(min(DEFAULT_TRIALS_PER_NODE, cpus) for cpus in node_cpus)
    per_node = max(1, math.ceil(concurrent / len(node_cpus)))
    return concurrent, max(1, min(node_cpus) // per_node)


def progress_callback(progress: Callable[[str], None], searched: Sequence[str]) -> Any:
    """A Tune callback printing one line per finished, failed or retried trial."""
    from ray import tune

    class ProgressLines(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            done = sum(trial.status in ("TERMINATED", "ERROR") for trial in trials) + 1
            result = trial.last_result or {}
            if result.get("finished"):
                val_loss = result.get("best_val_loss")
                val_text = "no validation" if val_loss is None else f"val_loss {val_loss:.4f}"
                outcome = (f"{val_text}, test accuracy {result['test_accuracy']:.2%}, "
                           f"{result['epochs_trained']} epochs, {result['train_seconds']:.1f} s")
            else:
                outcome = f"stopped early after epoch {result.get('epoch', 0)}"
            # Tune creates trials lazily, so len(trials) is not yet the sweep's total: count finished ones only.
            progress(f"finished trial {done}: {trial.trial_id} "
                     f"({settings_text(trial.config, searched)}): {outcome}")

        def on_trial_error(self, iteration, trials, trial, **info):
            progress(f"trial {trial.trial_id} ({settings_text(trial.config, searched)}) failed for good")

        def on_trial_recover(self, iteration, trials, trial, **info):
            epoch = (trial.last_result or {}).get("epoch", 0)
            progress(f"trial {trial.trial_id} lost its worker; retrying from its checkpoint after epoch {epoch}")

    return ProgressLines()


def settings_text(config: dict[str, Any], searched: Sequence[str]) -> str:
    return ", ".join(f"{name}={format_value(config.get(name))}" for name in searched)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(item) for item in value) + "]"
    return str(value)


def check_out_dir(plan: SweepPlan, resume: bool) -> None:
    if not resume and (plan.out / SWEEP_FILE).exists():
        raise UserError(f"{plan.out} already holds a sweep; pass --resume to continue it or choose another --out")


def run_sweep(
    plan: SweepPlan,
    *,
    resume: bool = False,
    progress: Callable[[str], None] = print,
    callbacks: Sequence[Any] = (),
) -> SweepResult:
    """Run (or with `resume`, continue) the sweep `plan`; write trials.csv, best/ and report.html."""
    ray = import_ray(plan.address)
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    out = plan.out.resolve()
    check_out_dir(plan, resume)
    start_ray(ray, plan.address)  # a cluster that cannot be joined leaves nothing written
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            write_json_atomic(out / SWEEP_FILE, plan.to_record())
        concurrent, cpus = trial_shape(ray, plan.max_concurrent)
        settings = TrialSettings(plan.space.to_record(), str(out), plan.data, plan.limit, cpus, plan.backend)
        trainable = tune.with_resources(tune.with_parameters(run_trial, settings=settings), {"cpu": cpus})
        scheduler = (ASHAScheduler(metric=METRIC, mode=MODE, time_attr="training_iteration",
                                   grace_period=ASHA_GRACE_EPOCHS,
                                   reduction_factor=ASHA_REDUCTION_FACTOR, max_t=plan.space.base.epochs + 1)
                     if plan.scheduler == "asha" else FIFOScheduler())
        run_config = tune.RunConfig(
            name=TUNE_DIR,
            storage_path=str(out),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
            callbacks=[progress_callback(progress, plan.space.searched), *callbacks],
            verbose=0,
        )
        if resume:
            if not tune.Tuner.can_restore(str(out / TUNE_DIR)):
                raise UserError(f"{out / TUNE_DIR} is not a Ray Tune experiment that can be resumed")
            tuner = tune.Tuner.restore(str(out / TUNE_DIR), trainable, resume_unfinished=True,
                                       resume_errored=True, param_space=tune_space(plan.space))
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=tune_space(plan.space),
                tune_config=tune.TuneConfig(num_samples=plan.samples, max_concurrent_trials=concurrent,
                                            scheduler=scheduler),
                run_config=run_config,
            )
        grid = tuner.fit()
        return write_results(plan, out, grid)
    finally:
        ray.shutdown()


# ---------------------------------------------------------------- results


def write_results(plan: SweepPlan, out: Path, grid: Any) -> SweepResult:
    """trials.csv, best/ (copied, with model.onnx when the exporter is installed) and report.html."""
    from mnist_keras.reporting.sweep_report import write_sweep_report, write_trials_csv

    rows, curves = [], {}
    for result in grid:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or Path(result.path).name
        finished = bool(metrics.get("finished"))
        status = "completed" if finished else "error" if result.error else "stopped"
        rows.append({
            "trial_id": trial_id,
            **{name: result.config.get(name) for name in plan.space.searched},
            "status": status,
            "epochs_trained": metrics.get("epochs_trained", metrics.get("epoch")),
            "best_val_loss": metrics.get("best_val_loss"),
            "test_accuracy": metrics.get("test_accuracy"),
            "train_seconds": metrics.get("train_seconds"),
        })
        curves[trial_id] = epoch_rows(result)
    rows.sort(key=lambda row: row["trial_id"])
    finished_rows = [row for row in rows if row["status"] == "completed" and row["best_val_loss"] is not None]
    best = min(finished_rows, key=lambda row: row["best_val_loss"])["trial_id"] if finished_rows else None
    write_trials_csv(out / TRIALS_CSV, rows, plan.space.searched)
    if best is not None:
        copy_best(out / TRIALS_DIR / best, out / BEST_DIR, plan.export_onnx)
    write_sweep_report(out, rows, curves, plan.space, best)
    return SweepResult(rows, best, out)


def epoch_rows(result: Any) -> list[dict[str, Any]]:
    """Every epoch a trial reported, in order, one row per epoch (the last report of an epoch wins)."""
    frame = result.metrics_dataframe
    if frame is None or "epoch" not in frame:
        return []
    by_epoch: dict[int, dict[str, Any]] = {}
    for record in frame.to_dict("records"):
        epoch = record.get("epoch")
        if epoch is None or (isinstance(epoch, float) and math.isnan(epoch)):
            continue
        by_epoch[int(epoch)] = {key: record.get(key) for key in EPOCH_KEYS}
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def copy_best(trial_dir: Path, best_dir: Path, export_onnx: bool) -> None:
    """Publish a copy of the best trial's run directory as `best_dir`, atomically."""
    from mnist_keras.training.run import exporter_installed

    staging = staging_path(best_dir)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(trial_dir, staging)
    if export_onnx and exporter_installed():
        from mnist_keras.inference.export import export_run

        export_run(staging, "onnx")
    replace_path(staging, best_dir)
