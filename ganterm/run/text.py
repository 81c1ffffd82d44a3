"""Text in the record is kept to a few KB, and text read back reaches a terminal shown, not obeyed.

Every writer of status.json and events.jsonl passes its fields through here
(`write_status`, `record_event`), and the recorder its notices, so a status
line, an event, a webhook body and what `watch --no-dashboard` prints stay
small. The beginning of a text (what happened) and its end (often the
innermost cause) are kept; the middle is replaced by a note of how much was cut.

A run file holds whatever its writers wrote (a loop's own prints, an
exception's message, a folder's name): whatever prints such text to a
terminal outside Textual passes it through `visible` first.
"""

from __future__ import annotations

import re
from typing import Any

TEXT_LIMIT = 4096  # characters of one text field, the note of the cut included
_NOTE_ROOM = 64  # " [... 123456789 characters cut ...] " and more
# C0 but tab and newline, DEL, C1: rich drops only BEL, backspace, CR, VT and FF, and lets ESC and CSI through
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clip(text: str, limit: int = TEXT_LIMIT) -> str:
    """`text`, or its beginning and end with the middle cut out and said: never longer than `limit`."""
    if len(text) <= limit:
        return text
    keep = (limit - _NOTE_ROOM) // 2
    return f"{text[:keep]} [... {len(text) - 2 * keep} characters cut ...] {text[-keep:]}"


def clipped(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` with every text in it clipped, in nested objects and lists too (an alert's evidence, say)."""
    return {key: _clipped_value(value) for key, value in fields.items()}


def _clipped_value(value: Any) -> Any:
    if isinstance(value, str):
        return clip(value)
    if isinstance(value, dict):
        return clipped(value)
    if isinstance(value, (list, tuple)):
        return [_clipped_value(item) for item in value]
    return value


def visible(text: str) -> str:
    """`text` safe to print: each control character written as its escape (ESC as `\\x1b`), so a sequence in
    a log line or an alert cannot retitle, clear or garble the terminal; newlines and tabs stay as they are."""
    return _CONTROL.sub(lambda control: f"\\x{ord(control.group()):02x}", text)
