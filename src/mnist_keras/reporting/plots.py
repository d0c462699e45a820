"""Every figure of the seed notebook and of the run report, as a function of data.

Each plot function takes arrays or plain records (never a model or a file path),
draws on the Axes it is given or on a new Figure of its own, and returns the
Figure. New figures are plain `matplotlib.figure.Figure`s, not pyplot figures:
nothing is ever shown, nothing accumulates in pyplot's global list, and the
same call serves the notebook (which displays the returned Figure), the
headless report (which saves it) and the tests.

The numbers behind the figures (which digits were misclassified, the
calibration bins and the expected calibration error, the best epoch) are plain
functions too, so tests can check them without drawing anything.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, MaxNLocator, NullLocator

from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES

DIGITS = np.arange(NUM_CLASSES)
# How many digits the grids show: the seed's 20 misclassified examples, and a
# handful of random test digits with their probability bars.
MISCLASSIFIED_SHOWN = 20
CONFIDENT_MISTAKES_SHOWN = 20
PREDICTIONS_SHOWN = 8
SAMPLE_DIGITS_SHOWN = 20
GRID_COLUMNS = 10
PREDICTION_COLUMNS = 2  # (digit, probability bars) pairs per row
CALIBRATION_BINS = 10  # equal-width confidence bins, as in Guo et al. (2017)
# Inches per grid cell and per chart: large enough to read digits and labels at 100 dpi.
DIGIT_CELL_INCHES = 1.25
CHART_SIZE_INCHES = (7.0, 4.5)
WIDE_CHART_SIZE_INCHES = (13.0, 4.5)
CONFUSION_SIZE_INCHES = (8.5, 7.0)
CORRECT_COLOR = "tab:green"
WRONG_COLOR = "tab:red"
NEUTRAL_COLOR = "tab:blue"
TRAIN_COLOR = "tab:blue"
VALIDATION_COLOR = "tab:orange"
BEST_EPOCH_COLOR = "tab:green"
STOP_EPOCH_COLOR = "tab:gray"


# ---------------------------------------------------------------- figure data


def predicted_labels(probabilities: np.ndarray) -> np.ndarray:
    """The most probable digit of each row of an N×10 probability matrix."""
    return np.asarray(probabilities).argmax(axis=1)


def misclassified_indices(labels: np.ndarray, probabilities: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Indices of the wrongly predicted examples, in data order (the first `limit` of them)."""
    wrong = np.flatnonzero(predicted_labels(probabilities) != np.asarray(labels))
    return wrong if limit is None else wrong[:limit]


def most_confident_mistakes(labels: np.ndarray, probabilities: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the `limit` mistakes the model was surest of, most confident first."""
    wrong = misclassified_indices(labels, probabilities)
    confidence = np.asarray(probabilities)[wrong].max(axis=1)
    # A stable sort keeps data order among equal confidences, so the choice is reproducible.
    return wrong[np.argsort(-confidence, kind="stable")][:limit]


def sample_indices(total: int, count: int, seed: int) -> np.ndarray:
    """`count` distinct indices below `total`, drawn reproducibly from `seed`, in ascending order."""
    return np.sort(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False))


def best_epoch(history: Sequence[Mapping[str, float]]) -> int | None:
    """The epoch (1-based) with the lowest validation loss: the weights EarlyStopping restores.

    Keras keeps the first of equal minima, and so does this. None without validation loss.
    """
    epochs = [(row["val_loss"], int(row["epoch"])) for row in history if "val_loss" in row]
    if not epochs:
        return None
    lowest = min(loss for loss, _ in epochs)
    return next(epoch for loss, epoch in epochs if loss == lowest)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Reliability of the model's confidence, over equal-width confidence bins.

    `confidence[i]` and `accuracy[i]` are the mean top probability and the
    fraction correct of the examples whose top probability falls in bin i
    (NaN where the bin is empty); `counts[i]` is how many there are.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray

    @property
    def expected_calibration_error(self) -> float:
        """Σ over bins of (share of examples) × |accuracy − confidence|; 0 is perfectly calibrated."""
        filled = self.counts > 0
        weights = self.counts[filled] / self.counts.sum()
        return float(np.sum(weights * np.abs(self.accuracy[filled] - self.confidence[filled])))


def calibration(labels: np.ndarray, probabilities: np.ndarray, bin_count: int = CALIBRATION_BINS) -> Calibration:
    """Bin the examples by top-class probability and compare confidence with accuracy in each bin."""
    probabilities = np.asarray(probabilities)
    if len(probabilities) == 0:
        raise ValueError("calibration needs at least one example")
    confidence = probabilities.max(axis=1)
    correct = predicted_labels(probabilities) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bin_count + 1)
    # Bins are (low, high]; a confidence of exactly 0 cannot occur for a softmax output.
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bin_count - 1)
    counts = np.bincount(bins, minlength=bin_count)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, weights=confidence, minlength=bin_count) / counts
        accuracy = np.bincount(bins, weights=correct, minlength=bin_count) / counts
    return Calibration(edges=edges, confidence=mean_confidence, accuracy=accuracy, counts=counts)


# ---------------------------------------------------------------- helpers


def new_figure(size_inches: tuple[float, float]) -> Figure:
    """A Figure outside pyplot (never shown, never kept alive by a global registry)."""
    return Figure(figsize=size_inches, layout="constrained")


def root_figure(ax: Axes) -> Figure:
    """The top-level Figure an Axes belongs to (also when it sits in a SubFigure)."""
    return ax.get_figure(root=True)


def single_axes(ax: Axes | None, size_inches: tuple[float, float]) -> Axes:
    return ax if ax is not None else new_figure(size_inches).subplots()


def axes_grid(
    axes: Sequence[Axes] | np.ndarray | None, count: int, columns: int, cell_inches: tuple[float, float], **kwargs
) -> list[Axes]:
    """`count` Axes: the caller's (checked), or a new rows×columns grid with the spare cells hidden."""
    if axes is not None:
        axes = list(np.ravel(axes))
        if len(axes) < count:
            raise ValueError(f"this figure needs {count} axes, got {len(axes)}")
        return axes[:count]
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    figure = new_figure((cell_inches[0] * columns, cell_inches[1] * rows))
    grid = list(figure.subplots(rows, columns, squeeze=False, **kwargs).ravel())
    for spare in grid[count:]:
        spare.set_visible(False)
    return grid[:count]


def as_images(images: np.ndarray) -> np.ndarray:
    """N×28×28 views of N×28×28 or N×784 images (uint8 or float)."""
    return np.asarray(images).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)


def show_digit(ax: Axes, image: np.ndarray, title: str, color: str = "black") -> None:
    ax.imshow(image, cmap="gray", interpolation="nearest")
    ax.set_title(title, fontsize="medium", color=color)
    ax.set_xticks([])
    ax.set_yticks([])


def digit_axis(ax: Axes, axis: str = "x") -> None:
    """Ticks at the ten digits, in order."""
    if axis == "x":
        ax.set_xticks(DIGITS)
    else:
        ax.set_yticks(DIGITS)


# ---------------------------------------------------------------- section 2: the data


def plot_class_distributions(
    labels_by_split: Mapping[str, np.ndarray], axes: Sequence[Axes] | None = None
) -> Figure:
    """One bar chart per split (e.g. train and test): how many images of each digit, counts on the bars."""
    charts = axes_grid(axes, len(labels_by_split), len(labels_by_split), (CHART_SIZE_INCHES[0] * 0.9, 4.0))
    for ax, (split, labels) in zip(charts, labels_by_split.items()):
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=NUM_CLASSES)
        bars = ax.bar(DIGITS, counts, color=NEUTRAL_COLOR)
        ax.bar_label(bars, fontsize="small")
        digit_axis(ax)
        ax.set_xlabel("digit")
        ax.set_ylabel("images")
        ax.set_title(f"{split}: {len(labels):,} images")
        ax.margins(y=0.12)
    return root_figure(charts[0])


def plot_digit_samples(
    images: np.ndarray, labels: np.ndarray, columns: int = GRID_COLUMNS, axes: Sequence[Axes] | None = None
) -> Figure:
    """A grid of digits, each titled with its label."""
    images = as_images(images)
    cells = axes_grid(axes, len(images), columns, (DIGIT_CELL_INCHES, DIGIT_CELL_INCHES + 0.2))
    for ax, image, label in zip(cells, images, labels):
        show_digit(ax, image, f"label {int(label)}")
    return root_figure(cells[0])


# ---------------------------------------------------------------- section 6: training


def history_column(history: Sequence[Mapping[str, float]], key: str) -> tuple[list[int], list[float]]:
    rows = [row for row in history if key in row]
    return [int(row["epoch"]) for row in rows], [float(row[key]) for row in rows]


def mark_epochs(ax: Axes, best: int | None, stopped: int | None) -> None:
    """Vertical lines at the best and the early-stopping epochs; whole-number epoch ticks."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if best is not None:
        ax.axvline(best, color=BEST_EPOCH_COLOR, linestyle="--", label=f"best epoch {best} (weights kept)")
    if stopped is not None:
        ax.axvline(stopped, color=STOP_EPOCH_COLOR, linestyle=":", label=f"early stop after epoch {stopped}")


def plot_training_curves(
    history: Sequence[Mapping[str, float]],
    best: int | None = None,
    stopped: int | None = None,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """Accuracy and loss per epoch, training and validation, with the best and early-stopping epochs marked.

    `history` is rows with `epoch`, `accuracy`, `val_accuracy`, `loss`, `val_loss` (history.csv).
    """
    accuracy_ax, loss_ax = axes_grid(axes, 2, 2, (WIDE_CHART_SIZE_INCHES[0] / 2, WIDE_CHART_SIZE_INCHES[1]))
    for ax, metric, name in ((accuracy_ax, "accuracy", "accuracy"), (loss_ax, "loss", "cross-entropy loss")):
        ax.plot(*history_column(history, metric), marker="o", markersize=3, color=TRAIN_COLOR, label="training")
        ax.plot(
            *history_column(history, f"val_{metric}"), marker="o", markersize=3, color=VALIDATION_COLOR,
            label="validation",
        )
        mark_epochs(ax, best, stopped)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{name} per epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return root_figure(accuracy_ax)


def plot_learning_rate(
    history: Sequence[Mapping[str, float]], best: int | None = None, stopped: int | None = None, ax: Axes | None = None
) -> Figure:
    """The learning rate used in each epoch (log scale): where ReduceLROnPlateau halved it."""
    ax = single_axes(ax, CHART_SIZE_INCHES)
    epochs, rates = history_column(history, "learning_rate")
    ax.step(epochs, rates, where="mid", marker="o", markersize=3, color=NEUTRAL_COLOR, label="learning rate")
    mark_epochs(ax, best, stopped)
    ax.set_yscale("log")
    # Tick exactly the rates used (1e-3, 5e-4, ...): easier to read than decades on a log axis.
    distinct = sorted(set(rates))
    ax.yaxis.set_major_locator(FixedLocator(distinct))
    ax.yaxis.set_major_formatter(FixedFormatter([f"{rate:.3g}" for rate in distinct]))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title("learning rate per epoch")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return root_figure(ax)


# ---------------------------------------------------------------- sections 8 and 10: per class


def plot_confusion_matrix(matrix: np.ndarray, ax: Axes | None = None) -> Figure:
    """Heatmap of the 10×10 confusion matrix, rows = true digit, columns = predicted, counts in every cell."""
    matrix = np.asarray(matrix)
    if matrix.shape != (NUM_CLASSES, NUM_CLASSES):
        raise ValueError(f"a confusion matrix is {NUM_CLASSES}×{NUM_CLASSES}, got {matrix.shape}")
    ax = single_axes(ax, CONFUSION_SIZE_INCHES)
    sns.heatmap(
        matrix, annot=True, fmt="d", cmap="Blues", square=True, cbar_kws={"label": "test images"},
        xticklabels=DIGITS, yticklabels=DIGITS, ax=ax, annot_kws={"fontsize": "small"},
    )
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.tick_params(axis="y", rotation=0)
    ax.set_title("confusion matrix (rows true, columns predicted)")
    return root_figure(ax)


def plot_per_class_accuracy(
    accuracies: Sequence[float], overall: float | None = None, ax: Axes | None = None
) -> Figure:
    """Bar chart of each digit's accuracy (recall), values on the bars, the overall accuracy dashed."""
    accuracies = np.asarray(accuracies, dtype=float)
    if accuracies.shape != (NUM_CLASSES,):
        raise ValueError(f"need one accuracy per digit ({NUM_CLASSES}), got {accuracies.shape}")
    ax = single_axes(ax, CHART_SIZE_INCHES)
    bars = ax.bar(DIGITS, accuracies * 100, color=NEUTRAL_COLOR)
    ax.bar_label(bars, fmt="%.1f", fontsize="small")
    if overall is not None:
        ax.axhline(overall * 100, color=WRONG_COLOR, linestyle="--", label=f"overall {overall:.2%}")
        ax.legend(fontsize="small", loc="lower right")
    # Zoom in on the range the bars occupy: differences of a fraction of a percent matter here.
    lowest = float(min(np.min(accuracies), overall if overall is not None else 1.0)) * 100
    ax.set_ylim(max(0.0, lowest - max(2.0, (100 - lowest) * 0.5)), 100.5)
    digit_axis(ax)
    ax.set_xlabel("digit")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("test accuracy per digit")
    return root_figure(ax)


# ---------------------------------------------------------------- sections 11 and 12: examples


def plot_misclassified(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    confidences: np.ndarray | None = None,
    columns: int = GRID_COLUMNS,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """A grid of (misclassified) digits titled `true t → pred p`, with the model's confidence when given."""
    images = as_images(images)
    if len(images) == 0:
        figure = new_figure((CHART_SIZE_INCHES[0], 1.0)) if axes is None else root_figure(np.ravel(axes)[0])
        figure.text(0.5, 0.5, "no misclassified examples", ha="center", va="center")
        return figure
    cells = axes_grid(axes, len(images), columns, (DIGIT_CELL_INCHES, DIGIT_CELL_INCHES + 0.35))
    for index, (ax, image) in enumerate(zip(cells, images)):
        title = f"true {int(labels[index])}\npred {int(predicted[index])}"
        if confidences is not None:
            title += f" ({confidences[index]:.0%})"
        show_digit(ax, image, title, color=WRONG_COLOR if labels[index] != predicted[index] else "black")
    return root_figure(cells[0])


def plot_prediction_confidence(
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    columns: int = PREDICTION_COLUMNS,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """Each digit beside a bar chart of its softmax probabilities; the predicted bar green if right, red if wrong.

    Uses two Axes per digit (image, bars); `axes`, if given, holds them in that order.
    """
    images = as_images(images)
    probabilities = np.asarray(probabilities)
    if axes is not None:
        cells = axes_grid(axes, 2 * len(images), 2 * columns, (1.0, 1.0))
    else:
        columns = max(1, min(columns, len(images)))
        rows = math.ceil(len(images) / columns)
        figure = new_figure((4.5 * columns, 2.0 * rows))
        # Each digit gets a narrow image cell and a wider cell for its ten bars.
        grid = figure.subplots(rows, 2 * columns, squeeze=False, width_ratios=[1, 2] * columns)
        cells = list(grid.ravel())
        for spare in cells[2 * len(images):]:
            spare.set_visible(False)
    for index, image in enumerate(images):
        image_ax, bars_ax = cells[2 * index], cells[2 * index + 1]
        predicted = int(probabilities[index].argmax())
        correct = predicted == int(labels[index])
        show_digit(image_ax, image, f"true {int(labels[index])}")
        colors = [NEUTRAL_COLOR] * NUM_CLASSES
        colors[predicted] = CORRECT_COLOR if correct else WRONG_COLOR
        bars_ax.bar(DIGITS, probabilities[index], color=colors)
        bars_ax.set_ylim(0, 1.05)
        digit_axis(bars_ax)
        bars_ax.tick_params(labelsize="small")
        bars_ax.set_xlabel("digit", fontsize="small")
        bars_ax.set_ylabel("probability", fontsize="small")
        bars_ax.set_title(f"pred {predicted} ({probabilities[index, predicted]:.1%})", fontsize="medium",
                          color="black" if correct else WRONG_COLOR)
    return root_figure(cells[0])


# ---------------------------------------------------------------- calibration


def plot_reliability_diagram(
    labels: np.ndarray, probabilities: np.ndarray, bin_count: int = CALIBRATION_BINS, ax: Axes | None = None
) -> Figure:
    """Accuracy against confidence per confidence bin, the diagonal of perfect calibration, and the ECE.

    Bars below the diagonal mean over-confidence; each bar is labelled with how many examples it holds.
    """
    bins = calibration(labels, probabilities, bin_count)
    ax = single_axes(ax, CHART_SIZE_INCHES)
    width = bins.edges[1] - bins.edges[0]
    filled = bins.counts > 0
    centres = bins.edges[:-1] + width / 2
    ax.bar(centres[filled], bins.accuracy[filled], width=width * 0.9, color=NEUTRAL_COLOR, edgecolor="black",
           label="accuracy in bin")
    # Hatched outlines, not filled bars, so a gap above or below the accuracy bar stays readable.
    ax.bar(centres[filled], bins.confidence[filled] - bins.accuracy[filled], bottom=bins.accuracy[filled],
           width=width * 0.9, fill=False, hatch="//", edgecolor=WRONG_COLOR, label="gap to mean confidence")
    for centre, top, count in zip(
        centres[filled], np.maximum(bins.accuracy, bins.confidence)[filled], bins.counts[filled]
    ):
        ax.text(centre, top + 0.01, f"n={count:,}", ha="center", va="bottom", fontsize="x-small")
    ax.plot([0, 1], [0, 1], linestyle="--", color="black", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("confidence (top softmax probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability diagram: ECE {bins.expected_calibration_error:.4f}")
    ax.legend(fontsize="small", loc="upper left")
    return root_figure(ax)
