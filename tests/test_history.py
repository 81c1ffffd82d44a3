"""The older part of a long metrics file, parsed in pieces by helper processes (ganterm.sources.history).

Fast and in the test's own process where it can be: the helper's entry point is called directly, and the
viewer's side (`MetricsHistory`) is driven against real helpers and waited on until every one is reaped.
"""

from __future__ import annotations

import io
import itertools
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest

from ganterm.sources import history
from ganterm.sources.history import MetricsHistory, parse_span, spans
from tests.conftest import wait_for

STEPS = 600
VIEWER_PARSED: list[tuple[int, int]] = []  # spans parsed in the test's own process, not by a helper


def counted_parse(path: Path, start: int, end: int) -> history.Piece:
    """parse_span, noting the spans parsed in the test's process (in a helper the list is the helper's own)."""
    VIEWER_PARSED.append((start, end))
    return parse_span(path, start, end)


def slow_parse(path: Path, start: int, end: int) -> history.Piece:
    """A helper busy for a minute: long enough that only `close` ends it within a test."""
    VIEWER_PARSED.append((start, end))
    time.sleep(60)
    return parse_span(path, start, end)


@pytest.fixture(autouse=True)
def _no_parse_noted() -> None:
    VIEWER_PARSED.clear()


def _history(path: Path, parse: Callable[[Path, int, int], history.Piece]) -> history.SpanHistory[history.Piece]:
    return history.SpanHistory([(path, start, stop) for start, stop in spans(path, path.stat().st_size)], parse)


@pytest.fixture
def metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """600 rows of about 50 bytes, cut into pieces of about 4 kB (eight of them)."""
    monkeypatch.setattr(history, "CHUNK_BYTES", 4_000)
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": step, "t": float(step), "loss_d": step / 1000, "lr_d": 0.5} for step in range(1, STEPS + 1)]
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def _gone(pids: list[int]) -> bool:
    """No such process, not even a zombie left for its parent to reap."""
    return not any(Path(f"/proc/{pid}").exists() for pid in pids)


def _collect_all(reader: MetricsHistory) -> list[history.Piece]:
    """Every piece, in the order the viewer gets them; then waits until the helpers are reaped."""
    pids = [helper.pid for helper in reader._helpers]
    pieces: list[history.Piece] = []
    deadline = time.monotonic() + 30
    while reader.pending:
        pieces += reader.ready()
        assert time.monotonic() < deadline, "the history never finished"
        time.sleep(0.01)
    wait_for(lambda: _gone(pids), timeout=10, what="the helpers to be reaped")
    return pieces


def _steps(piece: history.Piece) -> np.ndarray:
    return piece[0]["loss_d"][0]


def _assert_every_row_once_newest_first(pieces: list[history.Piece]) -> None:
    assert len(pieces) > 2
    firsts = [int(_steps(piece)[0]) for piece in pieces]
    assert firsts == sorted(firsts, reverse=True)  # each piece goes in front of what is shown
    steps = np.concatenate([_steps(piece) for piece in reversed(pieces)])
    assert steps.tolist() == list(range(1, STEPS + 1))
    assert sum(piece[1] for piece in pieces) == STEPS and sum(piece[2] for piece in pieces) == 0


def test_spans_cover_the_file_at_line_ends_newest_first(metrics: Path):
    size = metrics.stat().st_size
    cut = spans(metrics, size)
    assert cut[0][1] == size and cut[-1][0] == 0 and len(cut) >= size / 4_000
    data = metrics.read_bytes()
    for (start, stop), (_, older_stop) in itertools.pairwise(cut):
        assert older_stop == start and data[start - 1 : start] == b"\n"
        assert stop - start <= 4_000


def test_a_file_within_one_chunk_is_one_span(metrics: Path):
    assert spans(metrics, 4_000) == [(0, 4_000)]
    assert spans(metrics, 3_999) == [(0, 3_999)]


def test_a_line_longer_than_a_chunk_stays_whole_in_one_span(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(history, "CHUNK_BYTES", 100)
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1, "loss_d": 0.5}\n{"step": 2, "note": "' + b"x" * 300 + b'"}\n')
    size = path.stat().st_size
    assert spans(path, size) == [(0, size)]


def test_spans_of_a_file_with_text_beyond_ascii_still_cut_at_line_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(history, "CHUNK_BYTES", 100)
    path = tmp_path / "metrics.jsonl"
    lines = [orjson.dumps({"step": step, "note": "é" * (step % 7 + 10)}) for step in range(1, 60)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    cut = spans(path, path.stat().st_size)
    assert len(cut) > 10 and all(path.read_bytes()[start - 1 : start] == b"\n" for start, _ in cut[:-1])


def test_a_span_parses_its_whole_lines_and_counts_the_bad_ones(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    lines = [b'{"step": 1, "t": 1.0, "loss_d": 0.1, "lr_d": 0.5}', b"not json", b'{"step": 2, "t": 2.0, "loss_d": 0.2}']
    path.write_bytes(b"\n".join(lines) + b"\n")
    columns, rows, bad = parse_span(path, 0, path.stat().st_size)
    assert rows == 2 and bad == 1
    assert _steps((columns, rows, bad)).tolist() == [1, 2] and columns["t"][1].tolist() == [1.0, 2.0]
    assert "lr_d" not in columns  # only its newest value is ever shown, and the newest steps have it
    start = len(lines[0]) + 1 + len(lines[1]) + 1
    columns, rows, bad = parse_span(path, start, path.stat().st_size)
    assert (rows, bad) == (1, 0) and columns["loss_d"][1].tolist() == pytest.approx([0.2])


def test_the_helper_writes_one_piece_per_span_in_the_order_given(
    tmp_path: Path, metrics: Path, monkeypatch: pytest.MonkeyPatch
):
    metrics = metrics.rename(tmp_path / "run 12:30:00.jsonl")  # a colon in a path is no separator
    out = io.TextIOWrapper(io.BytesIO())
    monkeypatch.setattr(sys, "stdout", out)
    size = metrics.stat().st_size
    asked = [(size // 2, size), (0, size // 2)]
    history.main(["ganterm.sources.history:parse_span", *(f"{start}:{end}:{metrics}" for start, end in asked)])
    out.buffer.seek(0)
    for start, end in asked:
        columns, rows, bad = pickle.load(out.buffer)
        expected = parse_span(metrics, start, end)
        assert (rows, bad) == expected[1:] and _steps((columns, rows, bad)).tolist() == _steps(expected).tolist()
    assert out.buffer.read() == b""


def test_history_arrives_every_row_once_newest_first(metrics: Path):
    reader = MetricsHistory(metrics, metrics.stat().st_size)
    _assert_every_row_once_newest_first(_collect_all(reader))
    assert not reader.pending and reader.ready() == []


def test_the_helpers_parse_the_history_not_the_viewer(metrics: Path):
    reader = _history(metrics, counted_parse)
    _assert_every_row_once_newest_first(_collect_all(reader))
    assert VIEWER_PARSED == []  # parsing in the viewer's process would starve its screen


def test_at_most_two_helpers_and_one_on_a_single_core(metrics: Path, monkeypatch: pytest.MonkeyPatch):
    """Two cores parse in half the time of one; more helpers would take cores from the training itself."""
    for cores, one_span, expected in ((8, False, 2), (1, False, 1), (None, False, 1), (8, True, 1)):
        monkeypatch.setattr(history.os, "cpu_count", lambda cores=cores: cores)
        end = 3_000 if one_span else metrics.stat().st_size
        reader = history.SpanHistory([(metrics, start, stop) for start, stop in spans(metrics, end)], parse_span)
        assert len(reader._helpers) == expected, (cores, one_span)
        _collect_all(reader)


def test_pieces_of_helpers_that_died_are_parsed_by_the_viewer(metrics: Path):
    reader = _history(metrics, counted_parse)
    for helper in reader._helpers:
        helper.kill()
    _assert_every_row_once_newest_first(_collect_all(reader))
    assert len(VIEWER_PARSED) == len(set(VIEWER_PARSED))  # none twice


def test_closing_stops_busy_helpers_reaps_them_and_parses_nothing_more(metrics: Path):
    reader = _history(metrics, slow_parse)
    pids = [helper.pid for helper in reader._helpers]
    assert pids
    reader.close()
    assert not reader.pending
    wait_for(lambda: _gone(pids), timeout=10, what="the helpers to be stopped and reaped")
    assert reader.ready() == [] and VIEWER_PARSED == []  # what they left is not parsed by the viewer either


def test_no_spans_start_no_helper_and_leave_nothing_pending():
    reader = history.SpanHistory([], parse_span)
    assert not reader.pending and reader.ready() == [] and reader._helpers == []
