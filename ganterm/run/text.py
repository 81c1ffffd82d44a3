"""Text kept short where it leaves (a file, a webhook, an error), and shown to a terminal, never obeyed.

`clip` is the one way a text is shortened: the beginning of a text (what
happened) and its end (often the innermost cause) are kept, the middle is
replaced by a note of how much was cut. Each text is clipped once, where it
leaves: every writer of status.json and events.jsonl passes its fields through
`clipped` (`write_status`, `record_event`), a webhook's body its message
(`notify.payload`), and an error its quote of a bad value or name. So a 5 MB
exception message is a few KB in a status line, an event, a notice and what
`watch --no-dashboard` prints.

A run file holds whatever its writers wrote (a loop's own prints, an
exception's message, a folder's name): whatever prints such text to a
terminal outside Textual passes it through `visible` first.
"""

from __future__ import annotations

import re
from typing import Any

TEXT_LIMIT = 4096  # characters of one text field, the note of the cut included
# C0 but tab and newline, DEL, C1: rich drops only BEL, backspace, CR, VT and FF, and lets ESC and CSI through
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clip(text: str, limit: int = TEXT_LIMIT) -> str:
    """`text`, or its beginning and end with the middle cut out and said: never longer than `limit` (from about
    40 on, where the note fits)."""
    if len(text) <= limit:
        return text
    keep = max(limit - len(_cut_note(len(text))), 0) // 2  # the note of the cut made is no longer than this one
    return f"{text[:keep]}{_cut_note(len(text) - 2 * keep)}{text[len(text) - keep :]}"


def _cut_note(count: int) -> str:
    return f" [... {count} characters cut ...] "


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
