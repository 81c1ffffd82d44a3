"""A long text is cut once on its way to a file, a webhook or an error sentence, and the cut says its size."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import ganterm
from ganterm.errors import UserError
from ganterm.notify import Notifier
from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.recorder import Recorder
from ganterm.run.status import read_status
from tests.test_notify import Receiver

NOTE = re.compile(r" \[\.\.\. (\d+) characters cut \.\.\.\] ")
HUGE = "begins " + "x" * 50_000 + " ends"


def cut_once(text: str, original: str) -> bool:
    """`text` is `original` with one stretch of its middle cut out, and the note in its place says how long."""
    notes = list(NOTE.finditer(text))
    if len(notes) != 1:
        return False
    head, tail = text[: notes[0].start()], text[notes[0].end() :]
    told = int(notes[0][1])
    return (
        bool(head and tail)
        and original.startswith(head)
        and original.endswith(tail)
        and (len(head) + told + len(tail) == len(original))
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver()
    yield served
    served.stop()


def test_an_alert_and_a_failure_are_cut_once_in_the_events_the_status_and_the_webhook(
    tmp_path: Path, receiver: Receiver
):
    run = RunDir(tmp_path)
    recorder = Recorder(run, log=lambda message: None, state="running")
    recorder.notices = Notifier(receiver.url, "long", "host", log=lambda message: None)
    try:
        recorder.event("alert", 3, check="mine", severity="warning", message=HUGE)
        recorder.set_state("failed", 3, error=HUGE)
    finally:
        recorder.close()
    alert, failed = read_jsonl(run.events)[-2:]
    assert cut_once(alert["message"], HUGE) and cut_once(failed["error"], HUGE)
    assert cut_once(read_status(run)["error"], HUGE)
    (told_alert, _), (told_failure, _) = receiver.received
    assert cut_once(told_alert["message"], HUGE) and cut_once(told_failure["message"], f"failed: {HUGE}")
    assert len(NOTE.findall(told_alert["text"])) == 1  # what Slack shows quotes the message, cut as it was


def test_a_long_value_that_is_no_number_is_quoted_cut_with_how_much(tmp_path: Path):
    with ganterm.Run("quoted", root=tmp_path) as run, pytest.raises(UserError) as said:
        run.log(1, loss_d=HUGE)
    message = str(said.value)
    quoted = message.split("but str ", 1)[1].split("; ", 1)[0]
    assert len(message) < 300 and cut_once(quoted, repr(HUGE))


def test_a_long_run_name_that_is_not_valid_is_quoted_cut_with_how_much(tmp_path: Path):
    name = "x" * 100_000 + "/"
    with pytest.raises(UserError) as said:
        ganterm.Run(name, root=tmp_path)
    message = str(said.value)
    quoted = message.split("run name ", 1)[1].split(" is not", 1)[0]
    assert len(message) < 300 and cut_once(quoted, repr(name))
