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
    "listing", "progress", "launch", "config", "health", "errors", "notify", "urls", "serve", "lookout",
]  # fmt: skip
TORCH_FREE = sorted(
    [path for package in ("run", "dashboard", "export") for path in (PACKAGE / package).glob("*.py")]
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
        "import ganterm.notify, ganterm.serve, ganterm.lookout\n"
        "import ganterm.run.control, ganterm.run.checkpoints, ganterm.run.rewind, ganterm.run.lock\n"
        "import ganterm.export.table, ganterm.export.tensorboard\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith('ganterm.training')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
