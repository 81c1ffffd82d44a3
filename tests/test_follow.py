"""Following a ganterm run folder: what the viewer gets from its files when it opens them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest

from ganterm.run.layout import RunDir
from ganterm.sources import follow, history
from ganterm.sources.follow import LOG_TAIL_BYTES, RunReader, RunUpdate
from tests.conftest import wait_for


def test_a_long_worker_log_opens_on_its_last_lines(tmp_path: Path):
    """Only the tail is read, from its first whole line; the lines of that tail are shown, not dropped."""
    run = RunDir(tmp_path)
    count = LOG_TAIL_BYTES // 4
    run.log.write_text("".join(f"line {n}\n" for n in range(count)))
    lines = RunReader(run).poll().log_lines
    assert lines[-1] == f"line {count - 1}"
    assert 0 < len(lines) < count
    assert lines[0] == f"line {int(lines[1].split()[1]) - 1}"  # whole: no line cut at the tail's start


def test_a_worker_log_exactly_as_long_as_the_tail_is_shown_whole(tmp_path: Path):
    run = RunDir(tmp_path)
    lines = [f"line {n:05}" for n in range(LOG_TAIL_BYTES // 11)]  # 11 bytes a line
    text = "\n".join(lines) + "\n"
    run.log.write_text(text + "x" * (LOG_TAIL_BYTES - len(text) - 1) + "\n")
    assert run.log.stat().st_size == LOG_TAIL_BYTES
    assert RunReader(run).poll().log_lines[:2] == lines[:2]


@pytest.fixture
def long_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunDir:
    """600 steps, read as a long run is: the newest ~3 kB first, the rest by helpers in ~4 kB pieces; a bad line
    among the oldest steps and one among the newest."""
    monkeypatch.setattr(follow, "NEWEST_FIRST_BYTES", 3_000)
    monkeypatch.setattr(history, "CHUNK_BYTES", 4_000)
    run = RunDir(tmp_path)
    rows = [orjson.dumps({"step": step, "t": float(step), "loss_d": step / 1000}) for step in range(1, STEPS + 1)]
    rows.insert(10, b"not json")
    rows.insert(len(rows) - 10, b'{"step": "late", "loss_d": 0.5}')
    run.metrics.write_bytes(b"\n".join(rows) + b"\n")
    return run


STEPS = 600


def _helpers_gone(reader: RunReader) -> Callable[[], bool]:
    """No helper left, not even a zombie (`<defunct>`) for the viewer to reap."""
    assert reader.history is not None
    pids = [helper.pid for helper in reader.history._helpers]
    return lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_a_long_run_shows_its_newest_steps_first_then_every_older_row_once(long_metrics: RunDir):
    reader = RunReader(long_metrics)
    gone = _helpers_gone(reader)
    first = reader.poll()
    assert first.more and 0 < first.rows < 100 and first.columns["loss_d"][0][-1] == STEPS
    steps, skipped, deadline = [first.columns["loss_d"][0]], first.skipped, time.monotonic() + 30
    while (update := reader.poll()).more or update:
        if update.history_rows:
            assert update  # an update of history alone is news to the viewer
            steps.insert(0, update.history["loss_d"][0])
        skipped += update.skipped
        assert time.monotonic() < deadline, "the history never finished"
        time.sleep(0.01)
    assert np.concatenate(steps).tolist() == list(range(1, STEPS + 1))
    assert skipped == reader.bad_lines == 2
    wait_for(gone, timeout=10, what="the helpers to be reaped")


def test_closing_a_long_run_stops_its_history(long_metrics: RunDir):
    reader = RunReader(long_metrics)
    gone = _helpers_gone(reader)
    reader.close()
    wait_for(gone, timeout=10, what="the helpers to be stopped and reaped")
    assert not reader.poll().more


def test_closing_a_short_run_is_harmless(tmp_path: Path):
    run = RunDir(tmp_path)
    run.metrics.write_bytes(b'{"step": 1, "t": 1.0, "loss_d": 0.5}\n')
    reader = RunReader(run)
    reader.close()
    assert reader.poll().rows == 1


def test_a_big_newest_part_comes_in_chunks_so_the_screen_starts_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(follow, "METRICS_CHUNK_BYTES", 1_000)
    run = RunDir(tmp_path)
    run.metrics.write_bytes(
        b"".join(orjson.dumps({"step": s, "t": float(s), "loss_d": 0.5}) + b"\n" for s in range(1, 201))
    )
    reader = RunReader(run)
    first = reader.poll()
    assert first.more and 0 < first.rows < 200
    rows = first.rows
    while (update := reader.poll()).more:
        rows += update.rows
    assert rows + update.rows == 200 and reader.history is None


def test_an_update_that_brings_only_history_is_news_to_the_viewer():
    assert RunUpdate(history_rows=3)
    assert not RunUpdate()


def test_a_long_run_rewound_while_its_history_loads_reads_on_from_the_rewind(long_metrics: RunDir):
    reader = RunReader(long_metrics)
    gone = _helpers_gone(reader)
    reader.poll()
    data = long_metrics.metrics.read_bytes()
    long_metrics.metrics.write_bytes(data[: data.index(b'{"step":21,')])  # resumed from step 20
    update = reader.poll()
    assert update.reset and update.columns["loss_d"][0].tolist() == list(range(1, 21))
    wait_for(gone, timeout=10, what="the old history's helpers to be stopped and reaped")
    with open(long_metrics.metrics, "ab") as handle:
        handle.write(orjson.dumps({"step": 21, "t": 21.0, "loss_d": 0.5}) + b"\n")
    update = reader.poll()
    assert not update.reset and update.rows == 1 and not update.more
