"""worker.log's lines: whole, whoever writes them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ganterm.logline import LOG_TIMESTAMP

LINES = 20_000


def test_two_ranks_logging_at_once_never_run_their_lines_into_one(tmp_path: Path):
    """The ranks of a node append to one worker.log at the same moments (each logs its state at the same step)."""
    log = tmp_path / "worker.log"
    code = (
        "import sys\nfrom ganterm.logline import log\nfor i in range(int(sys.argv[1])): log(f'step {i}', sys.argv[2])"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # as the detached processes run
    with open(log, "ab") as appended:
        ranks = [
            subprocess.Popen([sys.executable, "-c", code, str(LINES), speaker], stdout=appended, env=env)
            for speaker in ("", "rank 1")
        ]
        assert [rank.wait(timeout=60) for rank in ranks] == [0, 0]
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 * LINES
    assert all(LOG_TIMESTAMP.match(line) and len(LOG_TIMESTAMP.findall(line)) == 1 for line in lines)
