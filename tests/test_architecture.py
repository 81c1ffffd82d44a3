"""The package rule: what reads a run directory never loads torch (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ganterm"
FORBIDDEN = ("torch", "torchvision", "ganterm.training")
# modules that must never import torch, at any depth; the cli package only at its top level (its commands may)
TOP_LEVEL_TORCH_FREE = [
    "listing",
    "progress",
    "launch",
    "config",
    "health",
    "errors",
    "notify",
    "serve",
    "lookout",
    "logline",
    "eval_table",
    "tee",
    "urls",
    "scale",
    "detached",
    "waiting",
    "families",
]
TORCH_FREE = sorted(
    [path for package in ("run", "dashboard", "export", "sources") for path in (PACKAGE / package).glob("*.py")]
    + [PACKAGE / f"{name}.py" for name in TOP_LEVEL_TORCH_FREE]
)


def imported_modules(tree: ast.AST, top_level_only: bool) -> list[tuple[int, str]]:
    nodes = tree.body if top_level_only else list(ast.walk(tree))  # type: ignore[attr-defined]
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def forbidden_imports(path: Path, top_level_only: bool = False) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
        for line, module in imported_modules(tree, top_level_only)
        if any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN)
    ]


@pytest.mark.parametrize("path", TORCH_FREE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_viewer_side_modules_import_neither_torch_nor_training(path: Path):
    """Every import in these modules, function-local ones included."""
    assert forbidden_imports(path) == []


@pytest.mark.parametrize("path", sorted((PACKAGE / "cli").glob("*.py")), ids=lambda path: path.name)
def test_cli_top_level_imports_neither_torch_nor_training(path: Path):
    """`ganterm --help` and the viewers start without torch: only commands that need it import it."""
    assert forbidden_imports(path, top_level_only=True) == []


def test_the_rule_catches_a_function_local_torch_import(tmp_path: Path):
    """The checker itself: a lazily imported torch in a viewer module is found."""
    module = tmp_path / "viewer.py"
    module.write_text("def draw():\n    import torch\n    from ganterm.training.loop import fit\n")
    tree = ast.parse(module.read_text())
    assert [name for _, name in imported_modules(tree, top_level_only=False)] == [
        "torch",
        "ganterm.training.loop",
        "ganterm.training.loop.fit",
    ]


def test_opening_the_viewer_side_loads_no_torch():
    """What the process of `ganterm watch` imports, checked in a fresh interpreter."""
    code = (
        "import sys\n"
        "import ganterm.cli, ganterm.launch, ganterm.listing, ganterm.progress, ganterm.dashboard.app\n"
        "import ganterm.scale, ganterm.detached, ganterm.waiting\n"
        "import ganterm.notify, ganterm.serve, ganterm.lookout\n"
        "import ganterm.run.control, ganterm.run.checkpoints, ganterm.run.rewind, ganterm.run.lock\n"
        "import ganterm.export.table, ganterm.export.tensorboard, ganterm.sources\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith('ganterm.training')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path) -> dict[str, set[str]]:
    """Each ganterm module and the ganterm modules it imports anywhere, function-local imports included."""
    paths = {module_name(path, package): path for path in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        graph[name] = set()
        for _, imported in imported_modules(ast.parse(path.read_text(encoding="utf-8")), top_level_only=False):
            while imported and imported not in paths:  # `from ganterm.run.layout import RunDir` -> ganterm.run.layout
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                graph[name].add(imported)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan): each holds at least one cycle."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = lowest[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                lowest[module] = min(lowest[module], lowest[imported])
            elif imported in stack:
                lowest[module] = min(lowest[module], index[imported])
        if lowest[module] == index[module]:
            group = stack[stack.index(module) :]
            del stack[stack.index(module) :]
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def test_no_module_imports_itself_through_others():
    """A cycle, even through a function-local import, loads half the package into a process that needs a leaf.

    (The classifier's child once loaded 29 modules, the worker among them, for a 4-line log function.)
    """
    assert import_cycles(import_graph(PACKAGE)) == []


def test_the_cycle_check_finds_a_cycle_through_a_function_local_import(tmp_path: Path):
    """The checker itself, on a package whose leaf imports its importer inside a function."""
    package = tmp_path / "ganterm"
    (package / "training").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "training" / "__init__.py").write_text("")
    (package / "training" / "worker.py").write_text("from ganterm.training.classifier import train\n")
    (package / "training" / "classifier.py").write_text("def train():\n    from ganterm.training.worker import log\n")
    (package / "logline.py").write_text("import os\n")
    assert import_cycles(import_graph(package)) == [["ganterm.training.classifier", "ganterm.training.worker"]]


def test_the_classifier_child_loads_only_what_training_the_classifier_needs():
    """`python -m ganterm.training.classifier_build`: no worker, loop or quality in the child process."""
    code = (
        "import sys\n"
        "import ganterm.training.classifier_build\n"
        "print(sorted(m for m in sys.modules if m.startswith('ganterm')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(result.stdout)
    assert "ganterm.training.worker" not in loaded and "ganterm.training.quality" not in loaded
    assert len(loaded) <= 12, loaded


def test_the_dashboard_imports_of_ganterm_only_what_the_architecture_table_names():
    """docs/architecture.md's row for dashboard/: of ganterm, `run/`, `sources/`, `listing`, `progress`, `errors`,
    `families`, `notify`."""
    allowed = (
        "ganterm.families",
        "ganterm.notify",
        "ganterm.run",
        "ganterm.sources",
        "ganterm.listing",
        "ganterm.progress",
        "ganterm.errors",
        "ganterm.dashboard",
    )
    graph = import_graph(PACKAGE)
    outside = {
        f"{module} imports {imported}"
        for module, imports in graph.items()
        if module.startswith("ganterm.dashboard")
        for imported in imports
        if not any(imported == name or imported.startswith(name + ".") for name in allowed)
    }
    assert outside == set()
