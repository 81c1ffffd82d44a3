"""Runs as TensorBoard event files: one folder per run, with scalars, sample grids and alerts at their steps.

Scalars go under the tidy tags of `schema.tag` (`loss/d`, `D/G(z)`, `quality/precision`;
a user's own names as they are), one event per metrics row at the row's step and
wall time. TensorBoard holds scalars as 32-bit floats; a null is NaN. The sample
grids are stored as the PNG files the run wrote, byte for byte; alerts as text,
those of branches a resume abandoned left out (the metrics are cut back too).

The events are written through tensorboardX's synchronous `EventsWriter`:
its `SummaryWriter` hands every event to a queue that pickles it, which made
a million-row export nearly three times slower.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from ganterm.errors import UserError
from ganterm.families import family_of
from ganterm.run.files import temp_name
from ganterm.run.schema import tag
from ganterm.run.settings import setting_text
from ganterm.sources import GantermRun, Pinned, Source
from ganterm.sources.tfevents_decode import import_tensorboardx

SAMPLES_TAG = "samples"
ALERTS_TAG = "alerts"  # tensorboardX's text summaries append /text_summary
CONFIG_TAG = "config"  # the run's settings: a loop's config=, or ganterm's config.toml
LOSS_TAG = "loss"  # how to read D's outputs, for a loss family other than probability (ganterm.families)
_EVENT_FILE = "events.out.tfevents."
_COLORSPACE = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def write_event_folders(histories: list[Pinned], out: Path, advance: Callable[[int], None]) -> list[str]:
    """`out/<run>/` for each run, all written before any is moved into place; returns notes for the user."""
    import_tensorboardx()
    for history in histories:
        _check_replaceable(out / history.source.name, out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, Path]] = []
    notes: list[str] = []
    try:
        for history in histories:
            folder = temp_name(out / history.source.name)
            written.append((folder, out / history.source.name))
            folder.mkdir()
            notes += write_run(history, folder, advance)
        for folder, final in written:
            _move_into_place(folder, final)
    finally:
        for folder, _ in written:
            shutil.rmtree(folder, ignore_errors=True)
    return notes


def _check_replaceable(final: Path, out: Path) -> None:
    """A folder of an earlier export is replaced; anything else at that name is the user's and is kept."""
    if not final.exists() and not final.is_symlink():
        return
    ours = final.is_dir() and not final.is_symlink() and all(p.name.startswith(_EVENT_FILE) for p in final.iterdir())
    if not ours:
        raise UserError(
            f"--out {str(out)!r} already holds {str(final)!r}, which is not an earlier export's event folder; "
            "move it or give another --out"
        )


def _move_into_place(folder: Path, final: Path) -> None:
    old = final.with_name(f".{final.name}.{os.getpid()}.old")
    replaced = final.exists()
    if replaced:
        os.replace(final, old)
    os.replace(folder, final)
    if replaced:
        shutil.rmtree(old, ignore_errors=True)


def write_run(history: Pinned, folder: Path, advance: Callable[[int], None]) -> list[str]:
    """One run's event file in `folder`: its settings, its scalars row by row, then its sample grids and alerts."""
    from tensorboardX.event_file_writer import EventsWriter

    writer = EventsWriter(str(folder / "events"))
    try:
        _write_settings(writer, history.source)
        _write_loss_family(writer, history)
        _write_scalars(writer, history, advance)
        events = history.source.events()
        unreadable = _write_samples(writer, history, {int(e["step"]): e["t"] for e in events if e["kind"] == "sample"})
        _write_alerts(writer, alerts_of_the_branch(events))
    finally:
        writer.close()
    return [f"{history.source.name}: left out {unreadable} unreadable sample grid(s)"] if unreadable else []


def _write_scalars(writer: Any, history: Pinned, advance: Callable[[int], None]) -> None:
    """One event per metrics row, holding all its numbers: a million rows take half a minute."""
    from tensorboardX.proto.event_pb2 import Event

    nan, tags = float("nan"), {}
    for chunk in history.chunks(advance):
        for row in chunk:
            event = Event(step=int(row["step"]), wall_time=row.get("t", 0.0))  # no t: a run without wall times
            add = event.summary.value.add  # twice as fast as building each Summary.Value and then the list
            for name, value in row.items():
                if name != "step" and name != "t":
                    tidy = tags.get(name) or tags.setdefault(name, tag(name))
                    add(tag=tidy, simple_value=nan if value is None else value)
            writer.write_event(event)


def _write_samples(writer: Any, history: Pinned, sampled: dict[int, float]) -> int:
    """The sample grids on disk at their steps, timed by their `sample` events; returns how many were unreadable."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary

    unreadable = 0
    for step, path in history.source.samples():
        image = _image(path, Summary)
        if image is None:
            unreadable += 1
            continue
        summary = Summary(value=[Summary.Value(tag=SAMPLES_TAG, image=image)])
        writer.write_event(Event(step=step, wall_time=sampled.get(step) or path.stat().st_mtime, summary=summary))
    return unreadable


def alerts_of_the_branch(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The alerts of the history the metrics now hold, not of a branch a resume abandoned.

    events.jsonl is kept whole across resumes, while metrics.jsonl is cut back
    to the checkpoint: each start writes a status event with `total` at the
    step it starts from, and alerts raised past that step before it are gone.
    """
    alerts: list[dict[str, Any]] = []
    for event in events:
        if event["kind"] == "status" and "total" in event:
            alerts = [alert for alert in alerts if alert["step"] <= event["step"]]
        elif event["kind"] == "alert":
            alerts.append(event)
    return alerts


def _write_settings(writer: Any, source: Source) -> None:
    """A text summary at step 0, timed when the settings were written: a table TensorBoard's Text tab draws."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.summary import text

    settings = source.settings()
    if settings:
        lines = ["| setting | value |", "| --- | --- |"]
        lines += [f"| {key} | {setting_text(value).replace('|', '&#124;')} |" for key, value in settings.items()]
        writer.write_event(Event(step=0, wall_time=_written(source), summary=text(CONFIG_TAG, "\n".join(lines))))


def _written(source: Source, status: bool = False) -> float:
    """When a run's settings (or, `status`, its state) were written: the file's time; another tool's run's folder's."""
    if isinstance(source, GantermRun):
        run = source.run
        return (run.status if status else run.loop_config if run.loop_config.exists() else run.config).stat().st_mtime
    return source.path.stat().st_mtime


def _write_loss_family(writer: Any, history: Pinned) -> None:
    """How to read D/x and D/G(z), as text at step 0, for a run whose D outputs are raw (not probabilities)."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.summary import text

    family = family_of(history.source.status())
    if family.probability:
        return
    reading = f"{family.name}: D/x and D/G(z) are {family.output}"
    writer.write_event(Event(step=0, wall_time=_written(history.source, status=True), summary=text(LOSS_TAG, reading)))


def _write_alerts(writer: Any, alerts: list[dict[str, Any]]) -> None:
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.summary import text

    for alert in alerts:
        message = f"{alert.get('severity', 'warning')} ({alert.get('check', 'alert')}): {alert.get('message', '')}"
        writer.write_event(Event(step=int(alert["step"]), wall_time=alert["t"], summary=text(ALERTS_TAG, message)))


def _image(path: Path, summary: type) -> object | None:
    """A sample grid as TensorBoard's image summary, the PNG's own bytes; None when the file is no PNG."""
    try:
        data = path.read_bytes()
        with Image.open(path) as picture:
            width, height, mode = picture.width, picture.height, picture.mode
            if picture.format != "PNG":
                return None
    except (OSError, Image.UnidentifiedImageError):
        return None
    return summary.Image(height=height, width=width, colorspace=_COLORSPACE.get(mode, 3), encoded_image_string=data)
