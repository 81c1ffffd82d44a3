"""The project's own promises: the README's commands are what CI runs and all parse, the code is lint-clean."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ganterm.cli import app

ROOT = Path(__file__).parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_the_train_and_test_commands():
    train, test = _readme_commands()[:2]
    assert train.endswith("ganterm train")
    assert test.endswith("python -m pytest -n 4")  # four processes: many tests wait on workers they started


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = _readme_commands()[1]
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_ci_installs_chromium_as_the_readme_says_before_the_tests():
    """The browser test needs the system's chromium: the README's development section and CI install it alike."""
    text = (ROOT / "README.md").read_text()
    install = next(line for line in text.splitlines() if "apt-get install -y chromium" in line).split("  #")[0]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install in ci and ci.index(install) < ci.index(_readme_commands()[1])


DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _documented_ganterm_commands() -> list[list[str]]:
    """Every `ganterm ...` line of the shell blocks of the README and docs/, as arguments; `a / b` lines are several."""
    text = "".join(document.read_text() for document in DOCUMENTS)
    commands = []
    for block in text.split("```sh\n")[1:]:
        for line in block.split("```", 1)[0].splitlines():
            line = re.split(r"\s+#", line, maxsplit=1)[0].strip()
            if line.startswith("ganterm "):
                commands += [shlex.split(part) for part in line.removeprefix("ganterm ").split(" / ")]
    return commands


def test_the_documents_are_found():
    """The README and the pages it links; a page moved away from docs/ would take its commands out of the check."""
    assert {document.name for document in DOCUMENTS} >= {"README.md", "guide.md", "api.md", "many-gpus.md"}
    assert len(_documented_ganterm_commands()) > 30


@pytest.mark.parametrize("args", _documented_ganterm_commands(), ids=" ".join)
def test_every_ganterm_command_in_the_readme_is_accepted(args: list[str], in_tmp: Path):
    """Run where there are no runs (train only --dry-run): any error must be about the runs, not the options."""
    result = CliRunner().invoke(app, args + (["--dry-run"] if args[0] == "train" else []))
    assert "Usage:" not in result.output and "No such option" not in result.output, result.output


def _ruff() -> str | None:
    beside_python = Path(sys.executable).parent / "ruff"  # the venv's, even when it is not activated
    return str(beside_python) if beside_python.exists() else shutil.which("ruff")


@pytest.mark.skipif(_ruff() is None, reason="ruff is not installed (it comes with the test extra)")
def test_code_is_ruff_clean():
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run([_ruff(), *command, str(ROOT)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


NEEDS_A_SYSTEM_TOOL = [  # (the test, what it says under CI=true when the tool is missing)
    ("tests/test_terminal.py::test_no_color_tells_series_apart_by_marker", "tmux is missing, and CI=true"),
    ("tests/test_serve.py::test_a_browser_shows_the_dashboard_and_its_keys_act",
     "chromium (apt-get install -y chromium) missing, and CI=true"),
]  # fmt: skip


@pytest.mark.parametrize(("ci", "outcome"), [("true", "2 errors"), ("", "2 skipped")])
def test_a_test_without_its_system_tool_fails_in_ci_and_skips_elsewhere(ci: str, outcome: str, tmp_path: Path):
    """tmux and chromium: CI machines install them, so their absence there is a failure, not a skip."""
    bare = tmp_path / "bin"  # a PATH with python but neither tmux nor chromium
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PATH": str(bare), **({"CI": ci} if ci else {})}
    tests = [test for test, _ in NEEDS_A_SYSTEM_TOOL]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert outcome in result.stdout, result.stdout + result.stderr
    assert (result.returncode != 0) == bool(ci)
    if ci:
        assert all(said in result.stdout for _, said in NEEDS_A_SYSTEM_TOOL), result.stdout


def test_subprocesses_run_the_code_under_test_not_another_installed_copy(tmp_path: Path):
    """Many tests start `python -m ganterm` from an empty folder: it must import this checkout's package.

    An editable install of another checkout, or a wheel in the environment, would make those tests pass or
    fail for code nobody is looking at.
    """
    probe = "import ganterm, ganterm.cli, ganterm.training.worker; print(ganterm.__file__)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(result.stdout.strip()).resolve() == (ROOT / "ganterm" / "__init__.py").resolve()


def test_every_link_of_the_readme_and_docs_to_a_file_of_the_project_finds_it():
    """The README was split into docs/: a link left pointing at the old place is a dead end for a newcomer."""
    dead = []
    for document in DOCUMENTS:
        for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)|src=\"([^\"]+)\"", document.read_text()):
            path = next(part for part in target if part)
            if "://" not in path and not (document.parent / path).exists():
                dead.append(f"{document.relative_to(ROOT)} -> {path}")
    assert dead == []


def test_the_readme_stays_short():
    """What ganterm is, the two commands, the everyday commands, one API example, links: a page, not a log."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
