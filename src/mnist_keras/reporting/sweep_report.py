"""A sweep's results: trials.csv and a self-contained report.html (figures inlined as base64 PNG)."""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from mnist_keras.reporting import plots
from mnist_keras.reporting.run_report import figure_png, html_table
from mnist_keras.rundir import write_text_atomic
from mnist_keras.sweeps.space import Space

REPORT_FILE = "report.html"
TRIAL_COLUMNS = ("status", "epochs_trained", "best_val_loss", "test_accuracy", "train_seconds")
# Size of one "test accuracy against a setting" panel, and of each learning-curve panel (inches).
SETTING_PANEL_INCHES = (4.0, 3.0)
CURVE_PANEL_INCHES = (5.5, 3.5)
SETTING_COLUMNS = 3

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
tr.best td { background: #e8f4e8; font-weight: 600; }
img { max-width: 100%; }
figcaption { color: #555; font-size: 0.9em; }
"""


def write_trials_csv(path: Path, rows: Sequence[Mapping[str, Any]], searched: Sequence[str]) -> None:
    """One row per trial: trial_id, every searched setting, status and the trial's numbers."""
    columns = ("trial_id", *searched, *TRIAL_COLUMNS)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: csv_value(row.get(key)) for key in columns})
    write_text_atomic(path, buffer.getvalue())


def csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return value


def numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def draw_accuracy_by_setting(rows: Sequence[Mapping[str, Any]], space: Space):
    """Test accuracy of each finished trial against each searched setting (log axis for loguniform)."""
    finished = [row for row in rows if numeric(row.get("test_accuracy"))]
    axes = plots.axes_grid(None, len(space.dimensions), SETTING_COLUMNS, SETTING_PANEL_INCHES)
    for ax, dimension in zip(axes, space.dimensions):
        values = [row[dimension.name] for row in finished]
        accuracies = [row["test_accuracy"] for row in finished]
        if all(numeric(value) for value in values) and values:
            ax.scatter(values, accuracies)
            if dimension.kind == "loguniform":
                ax.set_xscale("log")
        else:
            labels = sorted({str(value) for value in values})
            positions = [labels.index(str(value)) for value in values]
            ax.scatter(positions, accuracies)
            ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(dimension.name)
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    return plots.root_figure(axes[0])


def draw_learning_curves(curves: Mapping[str, Sequence[Mapping[str, Any]]], best: str | None):
    """Validation loss and accuracy per epoch, one line per trial (the best one thicker)."""
    loss_ax, accuracy_ax = plots.axes_grid(None, 2, 2, CURVE_PANEL_INCHES)
    for trial_id, epochs in sorted(curves.items()):
        width = 2.5 if trial_id == best else 1.0
        for ax, key in ((loss_ax, "val_loss"), (accuracy_ax, "val_accuracy")):
            points = [(row["epoch"], row[key]) for row in epochs if numeric(row.get(key))]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, linewidth=width, label=trial_id)
    for ax, label in ((loss_ax, "validation loss"), (accuracy_ax, "validation accuracy")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if curves:
        loss_ax.legend(fontsize="x-small")
    return plots.root_figure(loss_ax)


def inline_png(figure: Any, alt: str, caption: str) -> str:
    encoded = base64.b64encode(figure_png(figure)).decode("ascii")
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def trials_table(rows: Sequence[Mapping[str, Any]], searched: Sequence[str], best: str | None) -> str:
    header = ("trial", *searched, *TRIAL_COLUMNS)
    cells = [[display(row.get(key)) for key in ("trial_id", *searched, *TRIAL_COLUMNS)] for row in rows]
    table = html_table(header, cells)
    if best is not None:  # mark the best trial's row
        escaped = html.escape(best)
        table = table.replace(f"<tr><td>{escaped}</td>", f'<tr class="best"><td>{escaped}</td>', 1)
    return table


def display(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    return str(value)


def write_sweep_report(
    out: Path, rows: Sequence[Mapping[str, Any]], curves: Mapping[str, Sequence[Mapping[str, Any]]],
    space: Space, best: str | None,
) -> Path:
    """out/report.html: the trials table, test accuracy against each setting, every trial's learning curves."""
    best_line = (f"Best trial by validation loss (copied to best/): {best}." if best
                 else "No trial finished, so there is no best trial.")
    body = [
        "<h1>Sweep report</h1>",
        f"<p>{len(rows)} trials over {html.escape(', '.join(space.searched))}. {html.escape(best_line)} "
        "Test accuracy is shown, never used to choose.</p>",
        "<h2>Trials</h2>",
        trials_table(rows, space.searched, best),
        "<h2>Test accuracy against each searched setting</h2>",
        inline_png(draw_accuracy_by_setting(rows, space), "test accuracy against each setting",
                   "One point per finished trial."),
        "<h2>Learning curves</h2>",
        inline_png(draw_learning_curves(curves, best), "learning curves of every trial",
                   "Validation loss and accuracy after each epoch, every trial; the best trial's line is thicker."),
    ]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sweep report</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    path = out / REPORT_FILE
    write_text_atomic(path, page)
    return path
