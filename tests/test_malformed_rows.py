"""Viewers read files other writers may get wrong: a bad row or event is left out, counted, said once.

Issue 12, item 15: a metrics row without `t` or with `"t": "noon"`, an event with `"t": "abc"`, crashed
`watch --no-dashboard` and the dashboard (which then exited 0).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from ganterm.cli import app as cli_app
from ganterm.dashboard.app import Dashboard
from ganterm.run.jsonl import valid_event, valid_row
from ganterm.run.layout import RunDir
from ganterm.run.status import write_status
from ganterm.sources import columns as columns_module
from ganterm.sources.columns import columns_from_rows, parse_lines
from ganterm.sources.follow import RunReader
from ganterm.sources.history import parse_span
from tests.dashboard_runs import START, dead_pid

GOOD = [{"step": s, "t": START + s, "loss_d": 0.5, "loss_g": 1.0} for s in (1, 2, 3)]
BAD_ROWS = [
    {"step": 4, "loss_d": 0.5, "loss_g": 1.0},  # no t
    {"step": 5, "t": "noon", "loss_d": 0.5, "loss_g": 1.0},
    {"step": "6", "t": START + 6, "loss_d": 0.5, "loss_g": 1.0},
    {"step": True, "t": START + 7, "loss_d": 0.5, "loss_g": 1.0},  # JSON's true is no step: not step 1
    {"step": 7.5, "t": START + 7, "loss_d": 0.5, "loss_g": 1.0},
    {"step": -1, "t": START + 7, "loss_d": 0.5, "loss_g": 1.0},
    {"step": 2**63, "t": START + 7, "loss_d": 0.5, "loss_g": 1.0},  # past int64: no array or Parquet holds it
    {"step": 8, "t": START + 8, "loss_d": "high", "loss_g": 1.0},
    {"step": 9, "t": START + 9, "loss_d": [1, 2], "loss_g": 1.0},
    {"t": START + 10, "loss_d": 0.5},  # no step
]
GOOD_AFTER = [{"step": 10, "t": START + 10, "loss_d": None, "loss_g": 0.9}]  # null is NaN: a good row
BAD_EVENTS = [
    {"t": "abc", "step": 3, "kind": "status", "state": "running", "ack": "x"},
    {"t": START, "step": "3", "kind": "alert", "message": "m"},
    {"t": START, "step": 3, "kind": "alert", "message": {"nested": 1}},
    {"t": START, "step": 3},
]
GOOD_EVENT = {"t": START + 3, "step": 3, "kind": "alert", "check": "c", "severity": "warning", "message": "fine one"}


def _run(root: Path, garbage: bytes = b"") -> RunDir:
    run = RunDir(root / "odd")
    run.path.mkdir(parents=True)
    lines = [orjson.dumps(row) for row in GOOD + BAD_ROWS + GOOD_AFTER]
    run.metrics.write_bytes(b"\n".join(lines) + b"\n" + garbage)
    run.events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in [*BAD_EVENTS, GOOD_EVENT]))
    status = {"state": "finished", "step": 10, "total": 10, "started": START, "device": "cpu"}
    write_status(run, {**status, "pid": dead_pid(), "host": "elsewhere", "heartbeat": START})
    return run


def test_the_rules_field_by_field():
    assert all(valid_row(row) for row in GOOD + GOOD_AFTER)
    assert valid_row({"step": 0, "t": START, "loss_d": 0.7})  # a user's loop may count from 0
    assert valid_row({"step": 2**63 - 1, "t": START, "loss_d": 0.7})  # the last step int64 holds
    assert not any(valid_row(row) for row in BAD_ROWS)
    assert valid_event(GOOD_EVENT) and not any(valid_event(event) for event in BAD_EVENTS)


def test_columns_leave_malformed_rows_out_and_count_them():
    rows = GOOD + BAD_ROWS + GOOD_AFTER
    columns, bad = columns_from_rows(rows)
    assert bad == len(BAD_ROWS)
    steps, values = columns["loss_d"]
    assert steps.tolist() == [1, 2, 3, 10] and values[:3].tolist() == [0.5] * 3 and np.isnan(values[3])
    assert columns["t"][1].tolist() == [START + s for s in (1, 2, 3, 10)]


def test_ordinary_rows_take_the_bulk_paths_and_only_a_bad_line_or_a_null_the_slow_ones(monkeypatch):
    """A long run's history loads in seconds because clean lines are parsed in one call and their numbers tabled
    in a few numpy calls; line by line and value by value is several times slower. Only a chunk holding a bad
    line, or a group holding a value that is no number, may pay for that, and gets the same records and numbers."""
    slow: list[str] = []
    parse_each, row_by_row = columns_module._parse_each, columns_module._numbers_row_by_row
    monkeypatch.setattr(columns_module, "_parse_each", lambda lines: slow.append("lines") or parse_each(lines))
    monkeypatch.setattr(
        columns_module, "_numbers_row_by_row", lambda keys, picked: slow.append("values") or row_by_row(keys, picked)
    )
    clean = [orjson.dumps({"step": step, "t": START + step, "loss_d": step / 10, "d_x": 0.5}) for step in (1, 2, 3)]
    rows, bad = parse_lines(clean)
    columns, malformed = columns_from_rows(rows)
    assert (bad, malformed, slow) == (0, 0, [])
    assert columns["loss_d"][1].tolist() == pytest.approx([0.1, 0.2, 0.3]) and columns["d_x"][0].tolist() == [1, 2, 3]
    assert columns_from_rows([{"step": 1, "t": START, "loss_d": 0.5}])[0]["loss_d"][1].tolist() == [0.5]
    assert slow == []  # a row of a single metric besides step and t

    rows, bad = parse_lines([*clean[:2], b"not json", clean[2]])
    assert bad == 1 and [row["step"] for row in rows] == [1, 2, 3] and slow == ["lines"]
    columns, malformed = columns_from_rows([*rows, {"step": 4, "t": START + 4, "loss_d": None, "d_x": 0.5}])
    assert malformed == 0 and slow == ["lines"]  # a null is NaN to the bulk path too
    assert np.isnan(columns["loss_d"][1][3]) and columns["loss_d"][1][:3].tolist() == pytest.approx([0.1, 0.2, 0.3])
    columns, malformed = columns_from_rows([*rows, {"step": 4, "t": START + 4, "loss_d": "high", "d_x": 0.5}])
    assert malformed == 1 and slow == ["lines", "values"] and columns["loss_d"][0].tolist() == [1, 2, 3]


def test_history_pieces_count_malformed_rows_as_unreadable(tmp_path: Path):
    run = _run(tmp_path, garbage=b"not json\n")
    columns, rows, bad = parse_span(run.metrics, 0, run.metrics.stat().st_size)
    assert (rows, bad) == (4, len(BAD_ROWS) + 1) and columns["loss_g"][0].tolist() == [1, 2, 3, 10]


def test_lines_after_a_bad_one_are_still_read_and_a_step_0_row_and_rows_out_of_order_are_kept_in_step_order():
    lines = [b'{"step":0,"t":1.0,"loss_d":0.5}', b"not json", b'{"step":3,"t":3.0,"loss_d":0.3}']
    lines.append(b'{"step":2,"t":2.0,"loss_d":0.2}')  # a rewound writer's row, or a user's loop logging late
    rows, bad = parse_lines(lines)
    assert bad == 1 and [row["step"] for row in rows] == [0, 3, 2]
    columns, malformed = columns_from_rows(rows)
    steps, values = columns["loss_d"]
    assert malformed == 0 and steps.tolist() == [0, 2, 3] and values.tolist() == pytest.approx([0.5, 0.2, 0.3])


def test_a_history_piece_is_the_whole_lines_of_its_span_with_time_and_the_plotted_metrics(tmp_path: Path):
    """What a helper parses for the plots: t for a wall-clock axis; the header's rates come from the newest rows."""
    lines = [
        orjson.dumps({"step": s, "t": START + s, "loss_d": s / 10, "lr_d": 2e-4, "epoch": 1}) + b"\n" for s in (1, 2, 3)
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"".join(lines))
    start = len(lines[0])
    columns, rows, bad = parse_span(path, start, start + len(lines[1]))  # the second line alone
    assert (rows, bad, sorted(columns)) == (1, 0, ["loss_d", "t"])
    assert columns["loss_d"][0].tolist() == [2] and columns["t"][1].tolist() == [START + 2]


def test_reader_skips_bad_rows_and_events_and_says_how_many(tmp_path: Path):
    reader = RunReader(_run(tmp_path, garbage=b"not json\n"))
    update = reader.poll()
    assert update.rows == 4 and update.events == [GOOD_EVENT]
    assert update.skipped == reader.bad_lines == len(BAD_ROWS) + 1 + len(BAD_EVENTS)
    assert reader.poll().skipped == 0


def test_watch_without_dashboard_says_once_that_lines_were_left_out(tmp_path: Path):
    run = _run(tmp_path)
    result = CliRunner().invoke(cli_app, ["watch", str(run.path), "--no-dashboard"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and result.exception is None
    notes = [line for line in result.output.splitlines() if "malformed line(s) of metrics.jsonl" in line]
    assert len(notes) == 1 and f"left out {len(BAD_ROWS)} malformed" in notes[0], result.output
    assert "odd: finished at step 10/10" in result.output


async def test_dashboard_keeps_running_and_says_once_in_the_log_panel(tmp_path: Path):
    run = _run(tmp_path, garbage=b"not json\n")
    app = Dashboard([run], tmp_path, refresh_per_second=20)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(40):
            await pilot.pause(0.05)
            if not app.primary.loading:
                break
        with open(run.events, "ab") as handle:  # more bad ones while watching: counted, not said again
            handle.write(orjson.dumps({**BAD_EVENTS[0], "t": "later"}) + b"\n")
        await pilot.pause(0.5)
        assert app.is_running and app.return_code in (None, 0)
        log = "\n".join(str(line.text) for line in app.query_one("#log").lines)
        assert log.count("malformed line(s)") == 1, log
        assert f"left out {len(BAD_ROWS) + 1 + len(BAD_EVENTS)} malformed" in log
        assert app.primary.skipped == len(BAD_ROWS) + 1 + len(BAD_EVENTS) + 1
        assert app.primary.store.get("loss_g").steps.tolist() == [1, 2, 3, 10]
        assert [alert["message"] for alert in app.primary.alerts] == ["fine one"]


def test_a_crashed_dashboard_exits_non_zero(tmp_path: Path, monkeypatch):
    """Textual prints the crash; the command must not then exit 0 as if the user had left."""
    import io
    import threading

    from rich.console import Console

    from ganterm.cli import training

    def crashed(self):
        self._return_code = 1  # what App does when a handler raised
        return None

    run = _run(tmp_path)
    monkeypatch.setattr(Dashboard, "run", crashed)
    monkeypatch.setattr(training, "console", Console(file=io.StringIO(), force_terminal=True))
    done = threading.Thread(target=lambda: None)
    done.start()
    monkeypatch.setattr(training, "_ask_terminal_for_graphics", lambda: done)
    tty = type("Tty", (), {"isatty": lambda self: True})()
    monkeypatch.setattr(training, "sys", SimpleNamespace(stdin=tty))  # CliRunner swaps sys.stdin itself
    result = CliRunner().invoke(cli_app, ["watch", str(run.path)])
    assert result.exit_code == 1, result.output
