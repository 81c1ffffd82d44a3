"""A first run on a fresh machine trains at once; its quality classifier is trained beside it, not before it."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import read_status
from tests.conftest import TINY, run_cli, wait_for


def _train_on_a_fresh_machine(tmp_path: Path, steps: int) -> tuple[RunDir, Path]:
    """`ganterm train --detach` with an empty cache, as on a machine that never ran ganterm; quality every 50."""
    home = tmp_path / "home"
    home.mkdir()
    cache = home / ".cache"
    settings = [*TINY, "quality.every=50", "quality.samples=200"]
    options = [word for setting in settings for word in ("--set", setting)]
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(cache)}
    result = run_cli(tmp_path, "train", "--detach", "--name", "first", "--steps", str(steps), *options, env=env)
    assert result.returncode == 0, result.stderr
    return RunDir(tmp_path / "runs" / "first"), cache / "ganterm" / "classifiers"


def test_a_first_run_writes_rows_before_its_classifier_exists_and_says_what_quality_waits_for(tmp_path: Path):
    run, classifiers = _train_on_a_fresh_machine(tmp_path, steps=1_000_000)
    session = os.getpgid(read_status(run)["pid"])  # the worker's own session (setsid): it and its children
    try:
        wait_for(lambda: run.metrics.exists() and run.metrics.stat().st_size > 0, what="the first metrics row")
        assert not list(classifiers.glob("*.safetensors"))  # the first row did not wait for it
        assert "mnist5k classifier" in read_status(run)["waiting_for"]
        assert "in the background" in run.log.read_text()
        stop = run_cli(tmp_path, "stop", "first", timeout=60)  # a stop does not wait for the classifier
        assert stop.returncode == 0, stop.stderr
        assert read_status(run)["state"] == "stopped"
        assert _classifier_builds(session)  # left to finish the cache for the next run
    finally:  # after a stop the classifier's child would go on to finish the cache; not in a test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session, signal.SIGKILL)


def _classifier_builds(session: int) -> list[int]:
    """The classifier processes of this session still running."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == session and b"ganterm.training.classifier_build" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_a_first_run_that_finishes_ends_with_a_quality_point_from_the_classifier(tmp_path: Path):
    run, classifiers = _train_on_a_fresh_machine(tmp_path, steps=200)
    session = os.getpgid(read_status(run)["pid"])
    try:
        wait_for(lambda: read_status(run).get("state") in ("finished", "failed"), timeout=600, what="the run's end")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session, signal.SIGKILL)
    status = read_status(run)
    assert status["state"] == "finished", status.get("error")
    (classifier,) = classifiers.glob("mnist5k-*.safetensors")
    rows = read_jsonl(run.metrics)
    assert rows[0]["t"] < classifier.stat().st_mtime  # training did not wait for the classifier
    quality = [row for row in rows if "fd_classifier" in row]
    assert quality and quality[-1]["step"] == 200  # the finished run waited for it, for its last point
    assert not status.get("waiting_for")
    assert "quality classifier is ready" in run.log.read_text()
