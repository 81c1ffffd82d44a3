"""The project's own promises: the README's commands are what CI runs, and the code is lint-clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_the_train_and_test_commands():
    train, test = _readme_commands()[:2]
    assert train.endswith("ganterm train")
    assert test.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = _readme_commands()[1]
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def _ruff() -> str | None:
    beside_python = Path(sys.executable).parent / "ruff"  # the venv's, even when it is not activated
    return str(beside_python) if beside_python.exists() else shutil.which("ruff")


@pytest.mark.skipif(_ruff() is None, reason="ruff is not installed (it comes with the test extra)")
def test_code_is_ruff_clean():
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run([_ruff(), *command, str(ROOT)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout
