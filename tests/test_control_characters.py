"""Text from run files reaches the terminal with its control characters shown, never obeyed.

A log line, an alert or an error holding an ESC sequence could otherwise retitle, clear or garble the
terminal of whoever watches or lists the run.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import time
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

import ganterm
from ganterm.cli import app
from ganterm.run.layout import RunDir
from ganterm.run.status import this_host
from tests.dashboard_runs import append_metrics, dead_pid, metric_rows

runner = CliRunner()
EVIL = "\x1b]0;pwned\x07 then \x1b[2J"  # retitles the terminal, then clears its screen
SHOWN = "\\x1b]0;pwned\\x07 then \\x1b[2J"  # how it reads once made visible


def evil_run(root: Path, name: str = "evil", state: str = "failed") -> RunDir:
    """A run whose every text (log, alert, state, error, device, settings) holds `EVIL`."""
    run = RunDir(root / name)
    run.path.mkdir(parents=True)
    append_metrics(run, metric_rows(1, 20))
    events = [
        {"t": 1.0, "step": 10, "kind": "alert", "check": "nonfinite", "severity": "error", "message": f"NaN {EVIL}"},
        {"t": 2.0, "step": 20, "kind": "state", "state": state, "error": f"boom {EVIL}"},
    ]
    run.events.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    run.log.write_text(f"2026-01-01 00:00:00 loading data {EVIL}\n", encoding="utf-8")
    run.loop_config.write_bytes(orjson.dumps({"note": f"try {EVIL}"}))
    live = state == "running"
    status = {
        "state": state, "step": 20, "total": 40, "device": f"cpu {EVIL}", "started": 1.0, "error": f"boom {EVIL}",
        "pid": os.getpid() if live else dead_pid(), "host": this_host(), "heartbeat": time.time() if live else 2.0,
    }  # fmt: skip
    run.status.write_bytes(orjson.dumps(status))
    return run


def test_watch_without_the_dashboard_shows_a_runs_error_with_its_escapes_visible(tmp_path: Path):
    evil_run(tmp_path / "runs")
    result = runner.invoke(app, ["watch", "evil", "--no-dashboard", "--root", str(tmp_path / "runs")])
    said = result.stdout + result.stderr
    assert result.exit_code != 0 and f"boom {SHOWN}" in said
    assert "\x1b" not in said


def test_runs_lists_names_devices_and_settings_with_their_escapes_visible(tmp_path: Path):
    root = tmp_path / "runs"
    evil_run(root)
    evil_run(root, name="odd\x1b[2Jname", state="finished")
    table = runner.invoke(app, ["runs", "--root", str(root)], env={"COLUMNS": "300"})
    assert table.exit_code == 0 and "odd\\x1b[2Jname" in table.stdout and f"cpu {SHOWN}" in table.stdout
    as_csv = runner.invoke(app, ["runs", "--csv", "--root", str(root)])
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert {row["name"] for row in rows} == {"evil", "odd\\x1b[2Jname"}
    assert "\x1b" not in table.stdout + as_csv.stdout


def test_the_start_of_a_run_passes_its_log_lines_on_with_their_escapes_visible(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """`ganterm train` shows what the worker logs while it starts: a loop's own output may hold anything."""
    from ganterm.cli.training import _wait_for_start
    from ganterm.launch import Started

    run = evil_run(tmp_path / "runs", state="running")
    assert _wait_for_start(Started(run, os.getpid(), new=False))["state"] == "running"
    said = capsys.readouterr().out
    assert f"evil: loading data {SHOWN}" in said and "\x1b" not in said


def test_a_real_terminal_watching_the_run_keeps_its_title_and_its_screen(tmp_path: Path, terminals):
    """In tmux, as a user's terminal: the progress bar's own colours go through, the run's sequences do not."""
    evil_run(tmp_path / "runs")
    code = Path(ganterm.__file__).parents[1]  # this checkout's, whichever copy the shell would find
    terminal = terminals(f"PYTHONPATH={code} {sys.executable} -m ganterm watch evil --no-dashboard", tmp_path)
    screen = terminal.wait_for(lambda text: "EXITED" in text)
    assert "pwned" not in terminal.title()
    assert "boom \\x1b]0;pwned" in screen.replace("\n", "")


def test_a_metric_named_with_an_escape_gets_its_panel_and_legend_with_the_escape_shown():
    """A user's loop or another tool's tag may name a number anything; plotext and Textual pass ESC through."""
    from ganterm.dashboard.plots import extra_panel
    from ganterm.run.schema import label

    name = f"temperature {EVIL}"
    assert extra_panel(name).title == label(name) == f"temperature {SHOWN}"
