"""The house rules a newcomer relies on: the project's modules import one way (no cycle, function-level imports
included) and none is over 500 lines."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tracker", "app")
ENTRY_POINTS = ("main.py",)
MAX_LINES = 500


def project_modules(root: Path, packages=PACKAGES, entry_points=ENTRY_POINTS) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file in ``packages`` and the ``entry_points`` scripts."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for script in entry_points:
        modules[Path(script).stem] = root / script
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its text (top level, functions, branches)."""
    return {name: _imports(name, path, modules) - {name} for name, path in modules.items()}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(_nearest_module(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, name, is_package=path.name == "__init__.py")
            # ``from package import name``: the submodule when ``name`` is one, else the package itself.
            found.update(_nearest_module(f"{base}.{alias.name}", modules) for alias in node.names)
    found.discard(None)
    return found


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    package = importer if is_package else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _nearest_module(dotted: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``dotted`` that is a project module (None outside the project)."""
    while dotted and dotted not in modules:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        return list(reversed(err.args[1]))  # graphlib lists it against the import direction
    return None


def test_no_import_cycle():
    graph = import_graph(project_modules(ROOT))
    assert "tracker.resolve" in graph["tracker.build"]  # the walker sees the project's own imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_walker_finds_a_cycle_through_a_function_level_import(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def later():\n    from pkg.high import thing\n    return thing\n")
    (package / "high.py").write_text("from . import low\n\nthing = low\n")
    (tmp_path / "main.py").write_text("import pkg.high\n")
    graph = import_graph(project_modules(tmp_path, packages=("pkg",)))
    assert graph["main"] == {"pkg.high"}
    assert find_cycle(graph) in (["pkg.low", "pkg.high", "pkg.low"], ["pkg.high", "pkg.low", "pkg.high"])


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_over_500_lines(package):
    lengths = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in (ROOT / package).rglob("*.py")}
    too_long = {str(path.relative_to(ROOT)): n for path, n in lengths.items() if n > MAX_LINES}
    assert not too_long, f"split these by responsibility (at most {MAX_LINES} lines each): {too_long}"
