"""The one shape of a worker.log line: a timestamp, who speaks when it is not the worker, the message.

A torch-free leaf: the worker, its ranks, the supervisor, the lookout and the
classifier build write through `log`, and the launcher reads lines back with
`LOG_TIMESTAMP`; the recorder says a run's states with `state_line`, and the
launcher's start-wait stops at the first (`STATE_LINE`). So writers and readers
cannot drift apart.
"""

from __future__ import annotations

import re
import time

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
LOG_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")  # how every logged line begins
STATE_LINE = re.compile(r"step \d+: [a-z]+")  # a worker's message as its run enters a state (`state_line`)


def log_line(message: str, speaker: str = "") -> str:
    """`message` stamped with the local time, after `speaker: ` when one is named."""
    return f"{time.strftime(TIMESTAMP_FORMAT)} {speaker + ': ' if speaker else ''}{message}"


def log(message: str, speaker: str = "") -> None:
    """One line to standard output, which the detached processes have pointed at worker.log; flushed at once.

    One write, newline included: the ranks of a node append to the same log, and print's separate write of
    the newline let two ranks' lines run into one.
    """
    print(log_line(message, speaker) + "\n", end="", flush=True)


def state_line(step: int, state: str) -> str:
    """The message a worker logs as its run enters `state` at `step`; `STATE_LINE` matches it."""
    return f"step {step}: {state}"
