"""Plot functions on small synthetic inputs: what they draw, and that they never display anything."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES
from mnist_keras.reporting import plots

# Ten examples whose predictions are known by construction: indices 2, 5 and 7 are wrong,
# with top probabilities 0.6, 0.9 and 0.8.
LABELS = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
WRONG = {2: (3, 0.6), 5: (6, 0.9), 7: (1, 0.8)}
HISTORY = [
    {"epoch": 1, "loss": 0.5, "accuracy": 0.85, "val_loss": 0.30, "val_accuracy": 0.90, "learning_rate": 1e-3},
    {"epoch": 2, "loss": 0.3, "accuracy": 0.90, "val_loss": 0.20, "val_accuracy": 0.93, "learning_rate": 1e-3},
    {"epoch": 3, "loss": 0.2, "accuracy": 0.93, "val_loss": 0.25, "val_accuracy": 0.92, "learning_rate": 5e-4},
    {"epoch": 4, "loss": 0.1, "accuracy": 0.95, "val_loss": 0.20, "val_accuracy": 0.94, "learning_rate": 5e-4},
]


def make_probabilities() -> np.ndarray:
    probabilities = np.zeros((len(LABELS), NUM_CLASSES))
    for index, label in enumerate(LABELS):
        predicted, confidence = WRONG.get(index, (label, 0.7))
        probabilities[index] = (1 - confidence) / (NUM_CLASSES - 1)
        probabilities[index, predicted] = confidence
    return probabilities


def make_images(count: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(count, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)


@pytest.fixture(autouse=True)
def no_display(monkeypatch):
    """Fail on any attempt to show a figure, and on figures left in pyplot's registry."""

    def refuse(*args, **kwargs):
        raise AssertionError("a plot function tried to display a figure")

    monkeypatch.setattr(plt, "show", refuse)
    plt.close("all")
    yield
    assert plt.get_fignums() == [], "a plot function created a pyplot figure"


def bar_heights(ax) -> list[float]:
    return [patch.get_height() for container in ax.containers if isinstance(container, BarContainer)
            for patch in container]


def visible_axes(figure: Figure) -> list:
    return [ax for ax in figure.axes if ax.get_visible()]


# ---------------------------------------------------------------- figure data


def test_misclassified_indices_are_the_wrong_predictions_in_order():
    probabilities = make_probabilities()
    assert plots.misclassified_indices(LABELS, probabilities).tolist() == [2, 5, 7]
    assert plots.misclassified_indices(LABELS, probabilities, limit=2).tolist() == [2, 5]


def test_most_confident_mistakes_sort_by_confidence():
    assert plots.most_confident_mistakes(LABELS, make_probabilities(), limit=2).tolist() == [5, 7]


def test_sample_indices_are_distinct_sorted_and_reproducible():
    first = plots.sample_indices(100, 8, seed=3)
    assert len(set(first.tolist())) == 8 and np.all(np.diff(first) > 0) and first.max() < 100
    assert np.array_equal(first, plots.sample_indices(100, 8, seed=3))
    assert len(plots.sample_indices(5, 8, seed=3)) == 5


def test_best_epoch_is_the_first_lowest_validation_loss():
    assert plots.best_epoch(HISTORY) == 2
    assert plots.best_epoch([{"epoch": 1, "loss": 0.4}]) is None


def test_calibration_bins_and_expected_calibration_error():
    bins = plots.calibration(LABELS, make_probabilities(), bin_count=10)
    # Confidence 0.6 (1 wrong), 0.7 (7 right), 0.8 (1 wrong), 0.9 (1 wrong) fall in bins 5, 6, 7 and 8.
    assert bins.counts.tolist() == [0, 0, 0, 0, 0, 1, 7, 1, 1, 0]
    assert bins.accuracy[6] == 1.0 and bins.accuracy[5] == 0.0
    assert np.isnan(bins.accuracy[0])
    # ECE by hand: (1·0.6 + 7·|1 − 0.7| + 1·0.8 + 1·0.9) / 10.
    assert bins.expected_calibration_error == pytest.approx((0.6 + 7 * 0.3 + 0.8 + 0.9) / 10)


def test_perfectly_calibrated_predictions_have_zero_error():
    probabilities = np.full((4, NUM_CLASSES), 0.0)
    probabilities[:, 0] = 1.0
    assert plots.calibration(np.zeros(4, dtype=int), probabilities).expected_calibration_error == 0.0


# ---------------------------------------------------------------- figures


def test_class_distributions_one_chart_per_split_ten_bars_each():
    figure = plots.plot_class_distributions({"train": LABELS, "test": np.array([1, 1, 2])})
    assert isinstance(figure, Figure)
    train_ax, test_ax = figure.axes
    assert bar_heights(train_ax) == [1] * NUM_CLASSES
    assert bar_heights(test_ax) == [0, 2, 1, 0, 0, 0, 0, 0, 0, 0]
    assert [int(tick) for tick in train_ax.get_xticks()] == list(range(NUM_CLASSES))
    assert train_ax.get_xlabel() and train_ax.get_ylabel()


def test_digit_samples_one_axes_per_digit_titled_with_label():
    labels = np.arange(12) % NUM_CLASSES
    figure = plots.plot_digit_samples(make_images(12), labels, columns=5)
    shown = visible_axes(figure)
    assert len(shown) == 12
    assert all(ax.images for ax in shown)
    assert [ax.get_title() for ax in shown] == [f"label {label}" for label in labels]


def test_training_curves_draw_both_splits_and_mark_best_and_stop():
    figure = plots.plot_training_curves(HISTORY, best=2, stopped=4)
    accuracy_ax, loss_ax = figure.axes
    # training, validation, best-epoch line, stop line
    assert len(loss_ax.lines) == 4
    assert loss_ax.lines[1].get_ydata().tolist() == [row["val_loss"] for row in HISTORY]
    assert [line.get_xdata()[0] for line in loss_ax.lines[2:]] == [2, 4]
    assert accuracy_ax.get_xlabel() == "epoch" and accuracy_ax.get_ylabel()


def test_learning_rate_curve_on_log_scale():
    figure = plots.plot_learning_rate(HISTORY, best=2)
    (ax,) = figure.axes
    assert ax.get_yscale() == "log"
    assert ax.lines[0].get_ydata().tolist() == [row["learning_rate"] for row in HISTORY]


def test_confusion_matrix_has_a_hundred_annotated_cells_rows_true():
    matrix = np.arange(NUM_CLASSES * NUM_CLASSES).reshape(NUM_CLASSES, NUM_CLASSES)
    figure = plots.plot_confusion_matrix(matrix)
    ax = figure.axes[0]
    assert ax.collections[0].get_array().size == NUM_CLASSES * NUM_CLASSES
    annotations = [text.get_text() for text in ax.texts]
    # seaborn annotates row by row: the cell (row 1, column 2) holds matrix[1, 2].
    assert annotations == [str(value) for value in matrix.ravel()]
    assert ax.get_ylabel() == "true digit" and ax.get_xlabel() == "predicted digit"
    assert [label.get_text() for label in ax.get_xticklabels()] == [str(digit) for digit in range(NUM_CLASSES)]


def test_confusion_matrix_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match="10×10"):
        plots.plot_confusion_matrix(np.zeros((3, 3), dtype=int))


def test_per_class_accuracy_ten_bars_in_percent():
    accuracies = np.linspace(0.9, 0.99, NUM_CLASSES)
    (ax,) = plots.plot_per_class_accuracy(accuracies, overall=0.95).axes
    assert bar_heights(ax) == pytest.approx((accuracies * 100).tolist())
    assert ax.get_ylim()[0] <= 90


def test_misclassified_grid_titles_true_and_predicted():
    probabilities = make_probabilities()
    wrong = plots.misclassified_indices(LABELS, probabilities)
    images = make_images(len(LABELS))
    figure = plots.plot_misclassified(images[wrong], LABELS[wrong], probabilities[wrong].argmax(axis=1),
                                      confidences=probabilities[wrong].max(axis=1))
    titles = [ax.get_title() for ax in visible_axes(figure)]
    assert titles == ["true 2\npred 3 (60%)", "true 5\npred 6 (90%)", "true 7\npred 1 (80%)"]


def test_misclassified_grid_of_twenty_uses_twenty_axes():
    figure = plots.plot_misclassified(make_images(20), np.zeros(20, int), np.ones(20, int))
    assert len(visible_axes(figure)) == 20


def test_misclassified_with_no_mistakes_still_returns_a_figure():
    figure = plots.plot_misclassified(make_images(0), np.array([]), np.array([]))
    assert isinstance(figure, Figure)


def test_prediction_confidence_pairs_each_digit_with_ten_bars():
    probabilities = make_probabilities()[:3]
    figure = plots.plot_prediction_confidence(make_images(3), LABELS[:3], probabilities, columns=2)
    shown = visible_axes(figure)
    assert len(shown) == 6
    for index in range(3):
        image_ax, bars_ax = shown[2 * index], shown[2 * index + 1]
        assert image_ax.images
        assert bar_heights(bars_ax) == pytest.approx(probabilities[index].tolist())
    # the third digit is wrong (predicted 3): its predicted bar is red
    wrong_bar = shown[5].containers[0][3]
    assert matplotlib.colors.to_hex(wrong_bar.get_facecolor()) == matplotlib.colors.to_hex(plots.WRONG_COLOR)


def test_reliability_diagram_reports_the_ece_and_one_bar_per_filled_bin():
    figure = plots.plot_reliability_diagram(LABELS, make_probabilities())
    (ax,) = figure.axes
    expected = plots.calibration(LABELS, make_probabilities()).expected_calibration_error
    assert f"{expected:.4f}" in ax.get_title()
    accuracy_bars = ax.containers[0]
    assert len(accuracy_bars) == 4


def test_plots_draw_on_given_axes():
    figure = Figure()
    ax = figure.subplots()
    assert plots.plot_confusion_matrix(np.eye(NUM_CLASSES, dtype=int), ax=ax) is figure
    grid_figure = Figure()
    axes = grid_figure.subplots(1, 2)
    assert plots.plot_training_curves(HISTORY, axes=axes) is grid_figure


def test_too_few_axes_is_a_clear_error():
    axes = Figure().subplots(1, 2)
    with pytest.raises(ValueError, match="needs 3 axes"):
        plots.plot_digit_samples(make_images(3), [0, 1, 2], axes=axes)
