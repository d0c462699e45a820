"""The run report: every figure as `figures/*.png` and one self-contained `report.html`.

`build_report(run_dir, mnist)` reads a run directory (config.json, history.csv,
metrics.json and, unless test-set probabilities are handed in, model.keras),
draws every figure of `mnist_keras.reporting.plots`, and writes the PNGs and an HTML page
that embeds them as base64 data, so the page opens from disk, offline, with
nothing fetched. The headline numbers, the classification report and the
confusion matrix come from metrics.json, so the page always agrees with it.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import re
import string
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mnist_keras.data.mnist import Mnist
from mnist_keras.errors import RunDirectoryError
from mnist_keras.evaluation.metrics import predict_probabilities, read_history
from mnist_keras.reporting import plots
from mnist_keras.rundir import (
    CONFIG_FILE,
    FIGURES_DIR,
    METRICS_FILE,
    REPORT_FILE,
    check_run_dir,
    read_json,
    write_bytes_atomic,
    write_text_atomic,
)

# 110 dpi keeps digit grids and heatmap counts sharp in a browser at a modest file size.
FIGURE_DPI = 110


# ---------------------------------------------------------------- figures


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """One report figure: its file name, heading, caption and how to draw it."""

    name: str
    title: str
    # A fixed text, or one written from the recipe (what the run's schedule and rules did).
    caption: str | Callable[[Mapping[str, Any]], str]
    draw: Callable[[ReportData], Figure]

    def caption_for(self, recipe: Mapping[str, Any]) -> str:
        return self.caption(recipe) if callable(self.caption) else self.caption


def training_curves_caption(recipe: Mapping[str, Any]) -> str:
    if not recipe.get("early_stopping", True):
        return "Accuracy and loss per epoch; the recipe trains every epoch and keeps the last weights."
    return ("Accuracy and loss per epoch; the dashed line marks the epoch with the lowest validation loss, whose "
            "weights were restored at the end, the dotted line the epoch early stopping ended training.")


def learning_rate_caption(recipe: Mapping[str, Any]) -> str:
    if recipe.get("schedule", "constant") == "one_cycle":
        return ("The learning rate at the start of each epoch: the one-cycle schedule's linear warm-up, then its "
                "cosine decay to zero.")
    return ("The learning rate of each epoch: the recipe's rate, multiplied by reduce_lr_factor after "
            "reduce_lr_patience epochs without a better validation loss.")


class ReportData:
    """Everything the figures are drawn from: the data, the test-set probabilities and the run's records."""

    def __init__(
        self,
        mnist: Mnist,
        probabilities: np.ndarray,
        metrics: Mapping[str, Any],
        history: Sequence[Mapping[str, float]],
        recipe: Mapping[str, Any],
    ) -> None:
        self.mnist = mnist
        self.probabilities = probabilities
        self.metrics = metrics
        self.history = history
        self.recipe = recipe
        self.predicted = plots.predicted_labels(probabilities)
        self.best_epoch = plots.best_epoch(history)
        epochs_trained = len(history)
        # Fewer epochs than the recipe allowed means EarlyStopping ended the run.
        self.stopped_epoch = epochs_trained if epochs_trained < int(recipe.get("epochs", epochs_trained)) else None
        self.calibration = plots.calibration(mnist.y_test, probabilities)


def draw_mistakes(data: ReportData, indices: np.ndarray, with_confidence: bool) -> Figure:
    return plots.plot_misclassified(
        data.mnist.x_test[indices],
        data.mnist.y_test[indices],
        data.predicted[indices],
        confidences=data.probabilities[indices].max(axis=1) if with_confidence else None,
    )


def draw_random_predictions(data: ReportData) -> Figure:
    indices = plots.sample_indices(len(data.mnist.y_test), plots.PREDICTIONS_SHOWN, int(data.recipe.get("seed", 0)))
    return plots.plot_prediction_confidence(
        data.mnist.x_test[indices], data.mnist.y_test[indices], data.probabilities[indices]
    )


FIGURES = (
    FigureSpec(
        "class_distribution", "Class distribution", "Images per digit in the training and test sets.",
        lambda data: plots.plot_class_distributions({"train": data.mnist.y_train, "test": data.mnist.y_test}),
    ),
    FigureSpec(
        "sample_digits", "Sample training digits", "The first training images with their labels.",
        lambda data: plots.plot_digit_samples(
            data.mnist.x_train[: plots.SAMPLE_DIGITS_SHOWN], data.mnist.y_train[: plots.SAMPLE_DIGITS_SHOWN]
        ),
    ),
    FigureSpec(
        "training_curves", "Training curves", training_curves_caption,
        lambda data: plots.plot_training_curves(data.history, data.best_epoch, data.stopped_epoch),
    ),
    FigureSpec(
        "learning_rate", "Learning rate", learning_rate_caption,
        lambda data: plots.plot_learning_rate(data.history, data.best_epoch, data.stopped_epoch),
    ),
    FigureSpec(
        "confusion_matrix", "Confusion matrix", "Test images by true digit (rows) and predicted digit (columns).",
        lambda data: plots.plot_confusion_matrix(np.asarray(data.metrics["confusion_matrix"])),
    ),
    FigureSpec(
        "per_class_accuracy", "Per-class accuracy", "Share of each digit's test images classified correctly.",
        lambda data: plots.plot_per_class_accuracy(
            [row["accuracy"] for row in data.metrics["per_class"]], overall=data.metrics["test_accuracy"]
        ),
    ),
    FigureSpec(
        "misclassified", "Misclassified test digits", "The first misclassified test images, in test-set order.",
        lambda data: draw_mistakes(
            data,
            plots.misclassified_indices(data.mnist.y_test, data.probabilities, plots.MISCLASSIFIED_SHOWN),
            with_confidence=False,
        ),
    ),
    FigureSpec(
        "confident_mistakes", "Most confident mistakes",
        "The misclassified test images the model was surest of, with its confidence in the wrong digit.",
        lambda data: draw_mistakes(
            data,
            plots.most_confident_mistakes(data.mnist.y_test, data.probabilities, plots.CONFIDENT_MISTAKES_SHOWN),
            with_confidence=True,
        ),
    ),
    FigureSpec(
        "prediction_confidence", "Prediction confidence",
        "Random test digits with their softmax probabilities (predicted digit green if right, red if wrong).",
        draw_random_predictions,
    ),
    FigureSpec(
        "reliability_diagram", "Calibration",
        "Accuracy against confidence in equal-width confidence bins; bars below the diagonal mean over-confidence. "
        "ECE is the expected calibration error.",
        lambda data: plots.plot_reliability_diagram(data.mnist.y_test, data.probabilities),
    ),
)
FIGURE_NAMES = tuple(spec.name for spec in FIGURES)


def figure_png(figure: Figure, dpi: int = FIGURE_DPI) -> bytes:
    """The figure as PNG bytes, rendered with Agg whatever backend is active."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


# ---------------------------------------------------------------- tables


def classification_table(per_class: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """scikit-learn's classification report as rows: one per digit, then the macro and weighted averages."""
    rows = [
        {"class": str(row["digit"]), **{key: row[key] for key in ("precision", "recall", "f1", "support")}}
        for row in per_class
    ]
    support = np.array([row["support"] for row in per_class], dtype=float)
    for name, weights in (("macro avg", np.ones_like(support)), ("weighted avg", support)):
        averages = {
            key: float(np.average([row[key] for row in per_class], weights=weights))
            if weights.sum() > 0 else 0.0
            for key in ("precision", "recall", "f1")
        }
        rows.append({"class": name, **averages, "support": int(support.sum())})
    return rows


CLASSIFICATION_HEADER = ("class", "precision", "recall", "f1", "support")


def classification_cells(per_class: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """The classification report's rows as formatted strings (4 decimals, thousands separators)."""
    return [
        (row["class"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", f"{row['support']:,}")
        for row in classification_table(per_class)
    ]


def classification_text(per_class: Sequence[Mapping[str, Any]]) -> str:
    """The classification report as aligned plain text, for a terminal or a notebook."""
    rows = [CLASSIFICATION_HEADER, *classification_cells(per_class)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(CLASSIFICATION_HEADER))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows)


def summary_rows(metrics: Mapping[str, Any], ece: float, best_epoch: int | None) -> list[tuple[str, str]]:
    """The headline numbers, formatted as `mnist-keras evaluate` prints them."""
    total = sum(row["support"] for row in metrics["per_class"])
    best_val = metrics.get("best_val_accuracy")
    return [
        ("test accuracy", f"{metrics['test_accuracy']:.2%}"),
        *([("test accuracy, refused digits counted wrong",
            (f"{metrics['test_accuracy_with_refusals']:.2%} ({metrics['test_refused']} of {total:,} refused as "
             f"not a digit; threshold {metrics['not_digit_threshold']})"))]
          if metrics.get("test_refused") is not None else []),
        ("test loss", f"{metrics['test_loss']:.4f}"),
        ("misclassified", f"{metrics['misclassified']:,} / {total:,}"),
        ("epochs trained", str(metrics.get("epochs_trained"))),
        ("best epoch (lowest val_loss)", str(best_epoch)),
        ("best validation accuracy", "n/a" if best_val is None else f"{best_val:.2%}"),
        ("expected calibration error", f"{ece:.4f}"),
        ("parameters", f"{metrics['total_params']:,} ({metrics['trainable_params']:,} trainable)"),
        ("training time", f"{metrics.get('train_seconds', 0.0):.1f} s"),
    ]


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], css_class: str = "") -> str:
    """An HTML table with every cell escaped."""
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    class_attribute = f' class="{css_class}"' if css_class else ""
    return f"<table{class_attribute}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def key_value_table(rows: Sequence[tuple[str, Any]], css_class: str = "") -> str:
    body = "\n".join(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>" for key, value in rows)
    class_attribute = f' class="{css_class}"' if css_class else ""
    return f"<table{class_attribute}>\n<tbody>\n{body}\n</tbody>\n</table>"


def format_setting(value: Any) -> str:
    return ", ".join(str(item) for item in value) if isinstance(value, list) else str(value)


# ---------------------------------------------------------------- HTML

PAGE = string.Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; margin-top: 2.2rem; }
.subtitle { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.8rem 0; }
th, td { padding: 0.25rem 0.8rem; border-bottom: 1px solid #e4e4e4; text-align: left; }
td { font-variant-numeric: tabular-nums; }
table.numbers td, table.numbers th { text-align: right; }
thead th { border-bottom: 2px solid #999; }
figure { margin: 1.2rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.95rem; margin-top: 0.3rem; }
code { font-size: 0.9rem; }
nav a { margin-right: 0.8rem; }
</style>
</head>
<body>
<h1>$title</h1>
<p class="subtitle">Keras backend <code>$backend</code> &middot; data from <code>$source</code></p>
<nav>$navigation</nav>

<h2 id="summary">Summary</h2>
$summary

<h2 id="classification-report">Classification report (test set)</h2>
$classification

<h2 id="figures">Figures</h2>
$figures

<h2 id="recipe">Recipe</h2>
$recipe

<h2 id="data">Data checksums (MD5 of the original IDX files)</h2>
$data

<h2 id="environment">Library versions</h2>
$versions
</body>
</html>
""")


def figure_html(spec: FigureSpec, png: bytes, recipe: Mapping[str, Any]) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="{spec.name}">\n<h3>{html.escape(spec.title)}</h3>\n'
        f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(spec.title)}">\n'
        f"<figcaption>{html.escape(spec.caption_for(recipe))}</figcaption>\n</figure>"
    )


def render_html(
    record: Mapping[str, Any],
    metrics: Mapping[str, Any],
    pngs: Mapping[str, bytes],
    ece: float,
    best_epoch: int | None,
) -> str:
    """The whole report page: one string, every image inline, no external reference."""
    classification = html_table(CLASSIFICATION_HEADER, classification_cells(metrics["per_class"]), css_class="numbers")
    sections = [("summary", "Summary"), ("classification-report", "Classification report"),
                ("figures", "Figures"), ("recipe", "Recipe"), ("data", "Data"), ("environment", "Versions")]
    data = record.get("data", {})
    return PAGE.substitute(
        title="MNIST run report",
        backend=html.escape(str(record.get("backend", "unknown"))),
        source=html.escape(public_source(str(data.get("source", "unknown")))),
        navigation=" ".join(f'<a href="#{anchor}">{html.escape(label)}</a>' for anchor, label in sections),
        summary=key_value_table(summary_rows(metrics, ece, best_epoch), css_class="summary"),
        classification=classification,
        figures="\n".join(
            figure_html(spec, pngs[spec.name], record.get("recipe", {})) for spec in FIGURES if spec.name in pngs
        ),
        recipe=key_value_table([(name, format_setting(value)) for name, value in record.get("recipe", {}).items()]),
        data=key_value_table(sorted(data.get("md5", {}).items())),
        versions=key_value_table(sorted(record.get("versions", {}).items())),
    )


# ---------------------------------------------------------------- the report


# An absolute local path inside a data source's description (the cache, a user's directory).
LOCAL_PATH = re.compile(r"(?:[A-Za-z]:)?[/\\][^\s()]+")


def public_source(source: str) -> str:
    """The data source without local paths (only their last part): a report may be shared."""
    return LOCAL_PATH.sub(lambda match: Path(match.group(0)).name, source)


def build_report(run_dir: str | Path, mnist: Mnist, probabilities: np.ndarray | None = None) -> Path:
    """Write `figures/*.png` and `report.html` for the run in `run_dir`; return the report's path.

    `probabilities` are the model's test-set softmax outputs (N×10); when omitted
    the run's model is loaded and predicts them. Each file is written atomically.
    Raises RunDirectoryError if the run is incomplete or was evaluated on a test
    set of another size than `mnist`'s.
    """
    run_dir = check_run_dir(Path(run_dir))
    record = read_json(run_dir / CONFIG_FILE)
    metrics = read_json(run_dir / METRICS_FILE)
    evaluated = sum(row["support"] for row in metrics["per_class"])
    if evaluated != len(mnist.y_test):
        raise RunDirectoryError(
            f"{run_dir} was evaluated on {evaluated} test images but the data has {len(mnist.y_test)}; "
            "pass the --data the run was trained with"
        )
    if probabilities is None:
        from mnist_keras.model import load_run_model

        probabilities = predict_probabilities(load_run_model(run_dir), mnist.x_test)
    data = ReportData(mnist, np.asarray(probabilities), metrics, read_history(run_dir), record.get("recipe", {}))

    pngs = {spec.name: figure_png(spec.draw(data)) for spec in FIGURES}
    for name, png in pngs.items():
        write_bytes_atomic(run_dir / FIGURES_DIR / f"{name}.png", png)
    page = render_html(record, metrics, pngs, data.calibration.expected_calibration_error, data.best_epoch)
    write_text_atomic(run_dir / REPORT_FILE, page)
    return run_dir / REPORT_FILE
