"""A first run on a fresh machine trains at once: on mnist5k with the classifier ganterm ships, on other
labelled data with its classifier trained beside it, not before it."""

from __future__ import annotations

import contextlib
import os
import signal
import struct
from pathlib import Path

import pytest

from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import read_status
from ganterm.training.data import load_mnist5k
from tests.conftest import TINY, run_cli, wait_for


def _train_on_a_fresh_machine(tmp_path: Path, steps: int, mnist: Path | None = None) -> tuple[RunDir, Path]:
    """`ganterm train --detach` with an empty cache, as on a machine that never ran ganterm; quality every 50.

    On mnist5k, or on torchvision's MNIST in the folder `mnist` (its data.root, where its classifier is cached).
    Returns the run and the folder its data's classifier is cached in."""
    home = tmp_path / "home"
    home.mkdir()
    cache = home / ".cache" / "ganterm"
    data = [] if mnist is None else ["data.name=mnist", f"data.root={mnist}"]
    settings = [*TINY, "quality.every=50", "quality.samples=200", *data]
    options = [word for setting in settings for word in ("--set", setting)]
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(cache.parent)}
    result = run_cli(tmp_path, "train", "--detach", "--name", "first", "--steps", str(steps), *options, env=env)
    assert result.returncode == 0, result.stderr
    return RunDir(tmp_path / "runs" / "first"), (mnist or cache) / "classifiers"


def _mnist_on_disk(tmp_path: Path) -> Path:
    """torchvision's MNIST files, as its download leaves them, holding mnist5k's digits: labelled data that
    ganterm ships no classifier for, read offline. Returns their folder."""
    digits = load_mnist5k()
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for part in ("train", "t10k"):
        images = struct.pack(">IIII", 0x803, len(digits), 28, 28) + digits.tensor.numpy().tobytes()
        (raw / f"{part}-images-idx3-ubyte").write_bytes(images)
        labels = struct.pack(">II", 0x801, len(digits)) + digits.labels.numpy().astype("uint8").tobytes()
        (raw / f"{part}-labels-idx1-ubyte").write_bytes(labels)
    return tmp_path / "data"


def test_a_first_run_on_the_default_data_measures_quality_at_once_with_the_classifier_ganterm_ships(
    tmp_path: Path,
):
    run, classifiers = _train_on_a_fresh_machine(tmp_path, 100)
    wait_for(lambda: read_status(run).get("state") in ("finished", "failed"), timeout=120, what="the run's end")
    assert read_status(run)["state"] == "finished", read_status(run).get("error")
    assert [row["step"] for row in read_jsonl(run.metrics) if "fd_classifier" in row] == [50, 100]
    assert not classifiers.exists()  # nothing trained, nothing cached
    assert "in the background" not in run.log.read_text()


def test_a_first_run_writes_rows_before_its_classifier_exists_and_says_what_quality_waits_for(tmp_path: Path):
    run, classifiers = _train_on_a_fresh_machine(tmp_path, 1_000_000, _mnist_on_disk(tmp_path))
    session = os.getpgid(read_status(run)["pid"])  # the worker's own session (setsid): it and its children
    try:
        wait_for(lambda: run.metrics.exists() and run.metrics.stat().st_size > 0, what="the first metrics row")
        assert not list(classifiers.glob("*.safetensors"))  # the first row did not wait for it
        assert "the mnist classifier" in read_status(run)["waiting_for"]
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
    run, classifiers = _train_on_a_fresh_machine(tmp_path, 200, _mnist_on_disk(tmp_path))
    session = os.getpgid(read_status(run)["pid"])
    try:
        wait_for(lambda: read_status(run).get("state") in ("finished", "failed"), timeout=600, what="the run's end")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session, signal.SIGKILL)
    status = read_status(run)
    assert status["state"] == "finished", status.get("error")
    (classifier,) = classifiers.glob("mnist-*.safetensors")
    rows = read_jsonl(run.metrics)
    assert rows[0]["t"] < classifier.stat().st_mtime  # training did not wait for the classifier
    quality = [row for row in rows if "fd_classifier" in row]
    assert quality and quality[-1]["step"] == 200  # the finished run waited for it, for its last point
    assert not status.get("waiting_for")
    assert "quality classifier is ready" in run.log.read_text()
