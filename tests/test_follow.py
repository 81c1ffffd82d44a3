"""Following a ganterm run folder: what the viewer gets from its files when it opens them."""

from __future__ import annotations

from pathlib import Path

from ganterm.run.layout import RunDir
from ganterm.sources.follow import LOG_TAIL_BYTES, RunReader


def test_a_long_worker_log_opens_on_its_last_lines(tmp_path: Path):
    """Only the tail is read, from its first whole line; the lines of that tail are shown, not dropped."""
    run = RunDir(tmp_path)
    count = LOG_TAIL_BYTES // 4
    run.log.write_text("".join(f"line {n}\n" for n in range(count)))
    lines = RunReader(run).poll().log_lines
    assert lines[-1] == f"line {count - 1}"
    assert 0 < len(lines) < count
    assert lines[0] == f"line {int(lines[1].split()[1]) - 1}"  # whole: no line cut at the tail's start
