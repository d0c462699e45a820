"""The seed notebook: its 13 sections, its committed outputs, and a top-to-bottom run on the real data."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "mnist_classifier.ipynb"
SECTIONS = (
    "Imports",
    "Load and explore the data",
    "Preprocess",
    "Build the model",
    "Compile and train",
    "Training curves",
    "Evaluate on the test set",
    "Confusion matrix",
    "Classification report",
    "Per-class accuracy",
    "Misclassified examples",
    "Prediction confidence",
    "Summary",
)
# Sections whose cells must show at least this many figures.
FIGURES_PER_SECTION = {2: 2, 6: 2, 8: 1, 10: 1, 11: 2, 12: 2}
# Training a network (rather than calling the package to do it) would show up as one of these.
TRAINING_CALLS = (".fit(", ".compile(", ".train_on_batch(", "GradientTape", "optimizers.")
QUICK_EPOCHS = 1
QUICK_SAMPLES = 3000


def read_notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


def sections(notebook: nbformat.NotebookNode) -> dict[int, list[nbformat.NotebookNode]]:
    """Code cells grouped under their `## N. Title` heading."""
    grouped: dict[int, list] = {}
    current = None
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            match = re.match(r"##\s+(\d+)\.", cell.source)
            if match:
                current = int(match.group(1))
                grouped[current] = []
        elif current is not None:
            grouped[current].append(cell)
    return grouped


def section_titles(notebook: nbformat.NotebookNode) -> list[str]:
    return [
        match.group(1)
        for cell in notebook.cells
        if cell.cell_type == "markdown"
        for match in [re.match(r"##\s+\d+\.\s+(.+)", cell.source.splitlines()[0])]
        if match
    ]


def parameters_cell(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "the notebook needs exactly one cell tagged `parameters`"
    return tagged[0]


def images_in(cells: list[nbformat.NotebookNode]) -> int:
    return sum("image/png" in output.get("data", {}) for cell in cells for output in cell.get("outputs", []))


def test_notebook_has_the_seed_sections_in_order():
    assert section_titles(read_notebook()) == list(SECTIONS)


def test_notebook_has_a_parameters_cell_with_the_seed_defaults():
    source = parameters_cell(read_notebook()).source
    assert re.search(r"^EPOCHS = 30\b", source, re.MULTILINE)
    assert re.search(r"^SAMPLE_LIMIT = None\b", source, re.MULTILINE)
    assert re.search(r"^SEED = \d+", source, re.MULTILINE)


def test_notebook_uses_the_package_and_defines_no_training_logic():
    code = "\n".join(cell.source for cell in read_notebook().cells if cell.cell_type == "code")
    assert "from mnist_keras" in code and "train_run(config, mnist" in code
    for call in TRAINING_CALLS:
        assert call not in code, f"the notebook calls {call} itself; training belongs in mnist_keras.training.run"
    assert not re.search(r"^\s*(def|class)\s", code, re.MULTILINE), "the notebook defines functions of its own"


def test_committed_notebook_carries_the_outputs_of_a_full_run():
    notebook = read_notebook()
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code_cells), "re-run `make notebook`"
    assert not any(output.output_type == "error" for cell in code_cells for output in cell.outputs)
    grouped = sections(notebook)
    for section, count in FIGURES_PER_SECTION.items():
        assert images_in(grouped[section]) >= count, f"section {section} shows fewer than {count} figures"
    printed = "".join(
        output.get("text", "") for cell in grouped[13] for output in cell.outputs if output.output_type == "stream"
    )
    # A full run: the whole training set's validation split, and all 10,000 test images.
    assert re.search(r"test accuracy\s+9\d\.\d\d%", printed)
    assert "misclassified" in printed and "/ 10000" in printed


@pytest.mark.real_data
def test_notebook_runs_top_to_bottom_with_quick_parameters(real_mnist, tmp_path):
    from nbclient import NotebookClient

    notebook = read_notebook()
    run_dir = tmp_path / "run"
    # Papermill-style: replace the parameters cell; the committed notebook is never written.
    parameters_cell(notebook).source = (
        f"EPOCHS = {QUICK_EPOCHS}\nSEED = 1\nSAMPLE_LIMIT = {QUICK_SAMPLES}\nRUN_DIR = {str(run_dir)!r}\n"
    )
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    grouped = sections(notebook)
    for section, count in FIGURES_PER_SECTION.items():
        assert images_in(grouped[section]) >= count, f"section {section} shows fewer than {count} figures"
    printed = "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
        if output.output_type == "stream"
    )
    assert f"training images ({QUICK_SAMPLES}, 28, 28)" in printed
    assert f"{QUICK_EPOCHS} epoch(s) trained" in printed
    assert (run_dir / "report.html").is_file()
