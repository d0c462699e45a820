"""The second notebook (beyond the seed): its sections, its committed outputs, and a quick top-to-bottom run."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import nbformat
import pytest
from test_notebook import TRAINING_CALLS, images_in, parameters_cell, section_titles, sections

import mnist_keras

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "beyond_the_seed.ipynb"
SECTIONS = (
    "Imports",
    "The data",
    "Two recipes",
    "Train both",
    "The seed MLP against the convnet: parameters, time per epoch, accuracy",
    "What augmentation does",
    "Real handwriting",
    "Misread real digits",
    "Calibration",
    '"Not a digit"',
    "Numbers",
    "Summary",
)
# Sections whose cells must show at least this many figures: the comparison; augmented digits and each
# transformation alone; accuracy per set and the files beside the model's inputs; a grid of misread digits
# per network; the reliability curves; the non-digits and the trade-off curve; the numbers read, boxed.
FIGURES_PER_SECTION = {5: 1, 6: 2, 7: 2, 8: 2, 9: 1, 10: 2, 11: 1}
# The recipes' own numbers of epochs, and every training image.
PARAMETER_DEFAULTS = (r"^MLP_EPOCHS = None\b", r"^CNN_EPOCHS = None\b", r"^SAMPLE_LIMIT = None\b", r"^SEED = \d+",
                      r"^REAL_LIMIT = \d+", r"^RUN_ROOT = ")
# The convnet recipe's promise: at least 99% on MNIST's test set.
CONVNET_MIN_TEST_ACCURACY = 99.0
QUICK_EPOCHS = 1
QUICK_SAMPLES = 2000
QUICK_REAL = 300
QUICK_TIMEOUT_SECONDS = 600  # per cell


def read_notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


def printed_text(cells: list[nbformat.NotebookNode]) -> str:
    return "".join(output.get("text", "") for cell in cells for output in cell.get("outputs", [])
                   if output.output_type == "stream")


def summary_accuracies(notebook: nbformat.NotebookNode) -> tuple[float, float]:
    """The MNIST test accuracy (%) of the seed MLP and of the convnet, as the summary prints them."""
    match = re.search(r"^test accuracy\s+(\d+\.\d+)%\s+(\d+\.\d+)%$", printed_text(sections(notebook)[12]),
                      re.MULTILINE)
    assert match, "the summary prints no test accuracy row"
    return float(match.group(1)), float(match.group(2))


def test_notebook_has_its_sections_in_order():
    assert section_titles(read_notebook()) == list(SECTIONS)


def test_notebook_has_a_parameters_cell_with_full_run_defaults():
    source = parameters_cell(read_notebook()).source
    for pattern in PARAMETER_DEFAULTS:
        assert re.search(pattern, source, re.MULTILINE), f"the parameters cell lacks {pattern}"


def test_notebook_uses_the_package_and_defines_no_training_logic():
    code = "\n".join(cell.source for cell in read_notebook().cells if cell.cell_type == "code")
    assert "from mnist_keras" in code and "train_run(recipe, mnist" in code
    for call in TRAINING_CALLS:
        assert call not in code, f"the notebook calls {call} itself; training belongs in mnist_keras.training.run"
    assert not re.search(r"^\s*(def|class)\s", code, re.MULTILINE), "the notebook defines functions of its own"
    # Keras fixes its backend on import: the convnet's must be chosen before anything loads Keras.
    assert code.index('select_backend(family="cnn")') < code.index("import keras")
    assert code.index('select_backend(family="cnn")') < min(
        match.start() for match in re.finditer(r"^from mnist_keras\.(?!backends)", code, re.MULTILINE))


# Made to pass by `make notebook-beyond` (a full run of both recipes), then committing the notebook.
def test_committed_notebook_carries_the_outputs_of_a_full_run():
    notebook = read_notebook()
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code_cells), "re-run `make notebook-beyond`"
    assert not any(output.output_type == "error" for cell in code_cells for output in cell.outputs)
    grouped = sections(notebook)
    for section, count in FIGURES_PER_SECTION.items():
        assert images_in(grouped[section]) >= count, f"section {section} shows fewer than {count} figures"
    printed = printed_text(code_cells)
    # A full run: the convnet's backend, every training image, and the recipes' own epochs.
    assert "Keras on the tensorflow backend" in printed
    assert "training images (60000, 28, 28)" in printed
    assert re.search(r"^MLP_EPOCHS = None\b", parameters_cell(notebook).source, re.MULTILINE)
    assert re.search(r"^CNN_EPOCHS = None\b", parameters_cell(notebook).source, re.MULTILINE)
    assert "agrees with decision.is_digit on every image: False" not in printed
    _, convnet_accuracy = summary_accuracies(notebook)
    assert convnet_accuracy >= CONVNET_MIN_TEST_ACCURACY


@pytest.mark.real_data
def test_notebook_runs_top_to_bottom_with_quick_parameters(real_mnist, tmp_path):
    from nbclient import NotebookClient

    committed = hashlib.sha256(NOTEBOOK.read_bytes()).hexdigest()
    notebook = read_notebook()
    run_root = tmp_path / "runs"
    # Papermill-style: replace the parameters cell; the committed notebook is never written.
    parameters_cell(notebook).source = (
        f"SEED = 1\nMLP_EPOCHS = {QUICK_EPOCHS}\nCNN_EPOCHS = {QUICK_EPOCHS}\nSAMPLE_LIMIT = {QUICK_SAMPLES}\n"
        f"REAL_LIMIT = {QUICK_REAL}\nRUN_ROOT = {str(run_root)!r}\n"
    )
    # The test process has chosen its own backend (conftest); the kernel must choose the notebook's.
    kernel_env = {name: value for name, value in os.environ.items() if name != "KERAS_BACKEND"}
    # The kernel imports the package under test, wherever it was imported from here.
    kernel_env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(mnist_keras.__file__).resolve().parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])])
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=QUICK_TIMEOUT_SECONDS,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=kernel_env)  # raises CellExecutionError on the first failing cell

    grouped = sections(notebook)
    for section, count in FIGURES_PER_SECTION.items():
        assert images_in(grouped[section]) >= count, f"section {section} shows fewer than {count} figures"
    printed = printed_text(notebook.cells)
    assert "Keras on the tensorflow backend" in printed
    assert f"training images ({QUICK_SAMPLES}, 28, 28)" in printed
    assert "seed MLP: 1 epoch(s) trained" in printed and "convnet: 1 epoch(s) trained" in printed
    assert printed.count("agrees with decision.is_digit on every image: True") == 2
    mlp_accuracy, convnet_accuracy = summary_accuracies(notebook)
    assert 0 < mlp_accuracy <= 100 and 0 < convnet_accuracy <= 100
    for run in ("mlp", "cnn"):
        assert (run_root / run / "report.html").is_file()
    assert hashlib.sha256(NOTEBOOK.read_bytes()).hexdigest() == committed
