"""The package's layout: a flat core, one sub-package per job, no import cycles, old names still import."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import mnist_keras

PACKAGE_DIR = Path(mnist_keras.__file__).parent
MAX_TOP_MODULES = 12
SUB_PACKAGES = {"data", "training", "inference", "evaluation", "reporting", "serving", "sweeps"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports anywhere (module level or inside functions)."""
    name, found = module_name(path), set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target not in (name, "mnist_keras"):
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE_DIR.rglob("*.py")}
    return {name: imported_modules(path, set(paths)) for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_another_that_imports_it_back():
    assert cycles(import_graph()) == []


def test_a_flat_core_and_one_sub_package_per_job():
    top = sorted(path.name for path in PACKAGE_DIR.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top
    packages = {path.parent.name for path in PACKAGE_DIR.glob("*/__init__.py")}
    assert packages == SUB_PACKAGES


def test_old_module_names_still_import_as_their_new_modules():
    for old, new in mnist_keras.MOVED_MODULES.items():
        with pytest.warns(DeprecationWarning, match=f"mnist_keras.{old} moved to mnist_keras.{new}"):
            moved = importlib.import_module(f"mnist_keras.{old}")
        assert moved is importlib.import_module(f"mnist_keras.{new}")


def test_old_names_on_modules_that_became_packages_still_resolve():
    from mnist_keras.data.mnist import load_mnist
    from mnist_keras.inference.predictors import load_predictor

    with pytest.warns(DeprecationWarning, match="mnist_keras.data.mnist.load_mnist"):
        from mnist_keras.data import load_mnist as old_load_mnist
    with pytest.warns(DeprecationWarning, match="mnist_keras.inference.predictors.load_predictor"):
        from mnist_keras.inference import load_predictor as old_load_predictor
    assert (old_load_mnist, old_load_predictor) == (load_mnist, load_predictor)
    with pytest.raises(ImportError):
        from mnist_keras.data import no_such_name  # noqa: F401


def test_reading_a_checkpoint_record_or_the_decision_loads_no_keras():
    """The CLI reads checkpoints before it chooses a backend; ONNX workers decide with NumPy alone."""
    code = ("import sys; import mnist_keras.training.checkpoint, mnist_keras.inference.decision, mnist_keras.cli; "
            "print(sorted(name for name in ('keras', 'tensorflow', 'jax', 'sklearn') if name in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
