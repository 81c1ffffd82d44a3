"""Texts a run file keeps are clipped to a few KB, their beginning and end kept; printed, they are never obeyed."""

from __future__ import annotations

from pathlib import Path

from ganterm.run.jsonl import read_jsonl, record_event
from ganterm.run.layout import RunDir
from ganterm.run.status import read_status, write_status
from ganterm.run.text import TEXT_LIMIT, clip, visible


def test_a_text_of_the_limit_stays_whole_and_one_longer_keeps_its_start_and_end_and_says_the_cut():
    assert clip("x" * TEXT_LIMIT) == "x" * TEXT_LIMIT
    text = "a" * 50 + "b" * 50
    assert clip(text, 60) == "a" * 15 + " [... 70 characters cut ...] " + "b" * 15
    assert clip(text, 100) == text and clip(text, 99) == "a" * 34 + " [... 32 characters cut ...] " + "b" * 34


def test_a_huge_error_is_a_few_kb_in_status_json_and_events_jsonl_nested_texts_too(tmp_path: Path):
    run = RunDir(tmp_path)
    huge = "start " + "x" * 5_000_000 + " cause"
    write_status(run, {"state": "failed", "step": 7, "error": huge, "lines": [huge, 3], "pair": (huge, None)})
    status = read_status(run)
    assert status is not None and status["state"] == "failed" and status["step"] == 7
    for text in (status["error"], *status["lines"][:1], *status["pair"][:1]):
        assert len(text) == TEXT_LIMIT and text.startswith("start xx") and text.endswith("xx cause")
        assert " [... 4995950 characters cut ...] " in text
    assert status["lines"][1] == 3 and status["pair"][1] is None
    record_event(run, "alert", 7, message=huge, evidence={"why": huge, "value": 1.5})
    (event,) = read_jsonl(run.events)
    assert len(event["message"]) <= TEXT_LIMIT and len(event["evidence"]["why"]) <= TEXT_LIMIT
    assert event["evidence"]["value"] == 1.5 and event["step"] == 7 and event["kind"] == "alert"


def test_control_characters_are_printed_as_escapes_but_tabs_newlines_and_letters_stay():
    assert visible("\x1b]0;pwned\x07") == "\\x1b]0;pwned\\x07"
    assert visible("\x00\x08\x0b\x0c\x0d\x1f\x7f\x80\x9f") == "\\x00\\x08\\x0b\\x0c\\x0d\\x1f\\x7f\\x80\\x9f"
    assert visible("a\tb\nc ~\xa0é") == "a\tb\nc ~\xa0é"
