"""Text in the record is kept to a few KB: a 5 MB exception message must not become a 5 MB status.json.

Every writer of status.json and events.jsonl passes its fields through here
(`write_status`, `record_event`), and the recorder its notices, so a status
line, an event, a webhook body and what `watch --no-dashboard` prints stay
small. The beginning of a text (what happened) and its end (often the
innermost cause) are kept; the middle is replaced by a note of how much was cut.
"""

from __future__ import annotations

from typing import Any

TEXT_LIMIT = 4096  # characters of one text field, the note of the cut included
_NOTE_ROOM = 64  # " [... 123456789 characters cut ...] " and more


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
