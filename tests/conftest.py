"""Shared fixtures: a tiny model config, and runs trained by the real worker code in-process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ganterm.config import Config, load_config
from ganterm.run.layout import RunDir
from tests import terminal

TINY = [
    "model.width=8",
    "model.z_dim=16",
    "train.batch_size=16",
    "train.device=cpu",
    "log.every=2",
    "sample.every=0",
    "checkpoint.every=0",
    "quality.every=0",
]


def run_cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`python -m ganterm ARGS` in `cwd` as a separate process, the way a user's shell runs it; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "ganterm", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def wait_for(condition: Callable[[], object], timeout: float = 60.0, what: str = "the condition") -> None:
    """Poll until `condition()` is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.05)


def tiny_config(*overrides: str, data: str = "mnist5k") -> Config:
    return load_config(None, [*TINY, f"data.name={data}", *overrides])


def train_in_process(run: RunDir, config: Config | None = None, resume: Path | None = None) -> int:
    """Train `run` with the worker's own code, in this process; returns its exit code."""
    from ganterm.training.worker import run_worker

    run.path.mkdir(parents=True, exist_ok=True)
    if config is not None:
        run.config.write_text(config.to_toml(), encoding="utf-8")
    return run_worker(run, resume)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test from an empty folder, as a user would from their project."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """A finished 8-step mnist5k run with a checkpoint and sample grids, shared by read-only tests."""
    run = RunDir(tmp_path_factory.mktemp("shared") / "runs" / "tiny")
    exit_code = train_in_process(run, tiny_config("train.steps=8", "sample.every=4", "checkpoint.every=4"))
    assert exit_code == 0
    return run


def pytest_configure(config: pytest.Config) -> None:
    """Each of `pytest -n`'s processes computes on one thread: four of them with torch's thread per core
    each would run eight threads on two cores, and a test's own torch work wait behind the others'."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _tests_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """$XDG_CACHE_HOME for every test and every process it starts: nothing a test trains or downloads
    reaches the user's ~/.cache, and nothing cached there changes what a test sees."""
    cache = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache))
        yield cache


def a_rival_claims_between_check_and_create(monkeypatch: pytest.MonkeyPatch, start_rival: Callable[[str], Any]) -> list:
    """Two starts at the same instant, made deterministic: right after this one looks, another takes the name."""
    real_exists, rivals = RunDir.exists, []

    def exists_then_a_rival_starts(run: RunDir) -> bool:
        answer = real_exists(run)
        if not rivals:
            rivals.append(None)
            rivals.append(start_rival(run.name))
        return answer

    monkeypatch.setattr(RunDir, "exists", exists_then_a_rival_starts)
    return rivals


@pytest.fixture
def terminals():
    """Opens terminals on demand (`terminals(command, cwd)`) and closes them all after the test."""
    terminal.require_tmux()
    made: list[terminal.Terminal] = []
    yield lambda command, cwd: made.append(terminal.Terminal(command, cwd)) or made[-1]
    for opened in made:
        opened.kill()
