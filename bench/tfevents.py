"""TensorBoard event files: a 1,000,000-step run with 8 scalar tags, loaded by TensorBoard and by ganterm.

Writes the run once (8,000,000 events, one per tag per step, as
`SummaryWriter.add_scalar` writes them) into the folder given with --keep, then,
in the same run, each reader in a process of its own, so that its peak resident
memory can be read from the kernel as it exits:

- TensorBoard's own `EventAccumulator` (size guidance 0: every point kept),
  loading every point, as TensorBoard does when it starts;
- ganterm's `TfeventsReader`: the first poll (the newest steps), then polls
  until `more` is false (the whole history; the helper processes' memory is
  the largest helper's).

The times include each process's imports, not the Python interpreter's start;
the CPU seconds are those of the process and its helpers, which on a machine
that others share say more than the time. Prints a table with the ratios (of
time, and of CPU seconds); no thresholds. Another reader (`ganterm watch`
end to end, say) is one more entry in READERS: a snippet that prints one JSON
object of seconds and counts.

    python bench/tfevents.py [--steps 1000000] [--keep PATH] [--readers tensorboard,ganterm,piece,piece-protos]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TAGS = ("Loss/D", "Loss/G", "D(x)", "D(G(z))", "Loss/D_real", "Loss/D_fake", "grad_norm/D", "lr")

PIECE = """
import json, sys, time
from pathlib import Path
started = time.perf_counter()
from ganterm.sources import tfevents_decode
from ganterm.sources.history import CHUNK_BYTES
from ganterm.sources.tfevents import event_files, parse_span
tfevents_decode.FAST_SCALARS = {fast}
piece = parse_span(event_files(Path(sys.argv[1]))[-1], 0, CHUNK_BYTES)
result = {{"all_s": time.perf_counter() - started, "points": sum(len(steps) for steps, _ in piece.scalars.values())}}
"""
# Each snippet runs in a process of its own with the run's folder as argv[1], and prints one JSON object;
# MEASURED adds its peak resident memory (VmHWM: this process alone) and that of its largest child.
READERS = {
    "tensorboard": """
import json, sys, time
started = time.perf_counter()
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
accumulator = EventAccumulator(sys.argv[1], size_guidance={SCALARS: 0})
accumulator.Reload()
points = sum(len(accumulator.Scalars(tag)) for tag in accumulator.Tags()["scalars"])
result = {"all_s": time.perf_counter() - started, "points": points}
""",
    "ganterm": """
import json, sys, time
from pathlib import Path
started = time.perf_counter()
from ganterm.sources.tfevents import TfeventsReader
imports_s = time.perf_counter() - started
reader = TfeventsReader(Path(sys.argv[1]))
batch = reader.poll()
first_s = time.perf_counter() - started
first = sum(len(steps) for steps, _ in batch.scalars.values())
newest = max(int(steps[-1]) for steps, _ in batch.scalars.values())
points = first
while batch.more:
    time.sleep(0.005)
    batch = reader.poll()
    points += sum(len(steps) for steps, _ in (*batch.scalars.values(), *batch.history.values()))
result = {"imports_s": imports_s, "first_s": first_s, "first_points": first, "newest_step": newest,
          "all_s": time.perf_counter() - started, "points": points}
reader.close()
""",
    # what `ganterm watch` gets: the run opened as the dashboard opens it, its tags in ganterm's names, and
    # the viewer's health checks over the history (they go on after the last point is in: checked_s)
    "watch": """
import json, sys, time
started = time.perf_counter()
import ganterm
follower = ganterm.open_run(sys.argv[1]).follow()
files = {"more": True}
read = follower.reader.poll
def poll():
    batch = read()
    files["more"] = batch.more
    return batch
follower.reader.poll = poll
points, first_s, all_s, newest = 0, None, None, -1
while True:
    update = follower.poll()
    pairs = (*update.columns.items(), *update.history.items())
    got = sum(len(steps) for name, (steps, _) in pairs if name != "t")  # t: each step's wall time, no point
    points += got
    if first_s is None and update.columns:
        first_s, newest = time.perf_counter() - started, max(int(steps[-1]) for steps, _ in update.columns.values())
    if all_s is None and not files["more"]:
        all_s = time.perf_counter() - started
    if not update.more:
        break
    time.sleep(0.005)
result = {"first_s": first_s, "newest_step": newest, "all_s": all_s, "points": points,
          "checked_s": time.perf_counter() - started}
follower.close()
""",
    # what the bulk decoding of the common scalar event (ganterm/sources/tfevents_fast.py) saves: the first
    # 8 MB piece of the history decoded in this one process, with it and through the protobuf classes alone
    "piece": PIECE.format(fast=True),
    "piece-protos": PIECE.format(fast=False),
}
MEASURED = """
import os, resource
{snippet}
while True:  # reap the helpers, so that the kernel counts their peak memory as the children's
    try:
        os.wait()
    except ChildProcessError:
        break
with open("/proc/self/status") as status:
    result["peak_mb"] = int(next(line.split()[1] for line in status if line.startswith("VmHWM"))) / 1024
children, own = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
result["child_peak_mb"] = children.ru_maxrss / 1024
result["cpu_s"] = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
print(json.dumps(result))
"""


def write_event_file(folder: Path, steps: int, tags: tuple[str, ...] = TAGS) -> Path:
    """One event per tag per step, the bytes `SummaryWriter.add_scalar` writes, through tensorboardX's writer.

    The SummaryWriter hands each event to a queue that pickles it; its synchronous `EventsWriter` writes
    the same records in a third of the time. Progress goes to stderr.
    """
    from tensorboardX.event_file_writer import EventsWriter
    from tensorboardX.proto.event_pb2 import Event

    folder.mkdir(parents=True, exist_ok=True)
    writer = EventsWriter(str(folder / "events"))
    rng = random.Random(0)
    start = time.time() - steps * 0.1
    started = time.perf_counter()
    for step in range(steps):
        for index, name in enumerate(tags):
            event = Event(step=step, wall_time=start + step * 0.1)
            event.summary.value.add(tag=name, simple_value=math.exp(-step / steps) * (index + 1) + rng.gauss(0, 0.05))
            writer.write_event(event)
        if step % 20_000 == 0 and step:
            left = (time.perf_counter() - started) / step * (steps - step)
            print(f"\rwriting the event file: step {step:,} of {steps:,}, about {left:.0f} s left",
                  end="", file=sys.stderr, flush=True)  # fmt: skip
    writer.close()
    print(f"\rwrote {steps:,} steps in {time.perf_counter() - started:.0f} s" + " " * 30, file=sys.stderr)
    return Path(writer._file_name)


def cached_run(base: Path, steps: int) -> Path:
    """The run's folder under `base`, written on the first call for this many steps."""
    folder = base / f"{steps}-steps"  # "tfevents" in a folder name would read to TensorBoard as a file
    done = folder / "complete"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        write_event_file(folder, steps)
        done.touch()  # not an event file: TensorBoard and ganterm pass it over
    return folder


def measure(reader: str, folder: Path) -> dict[str, float]:
    """One reader's figures, in a process of its own: its seconds, points, and peak resident MB."""
    code = MEASURED.format(snippet=READERS[reader])
    result = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{reader} failed: {result.stderr}")
    return json.loads(result.stdout.splitlines()[-1])


def table(figures: dict[str, dict[str, float]]) -> list[str]:
    """The figures as lines; a reader of every point is set against TensorBoard, in seconds and in CPU seconds."""
    baseline = figures.get("tensorboard")
    lines = [f"{'reader':<13} {'first poll':>10} {'time':>9} {'CPU':>9} {'points':>10} {'CPU us/pt':>9} "
             f"{'vs TB':>13} {'peak RSS':>9} {'helpers':>9}"]  # fmt: skip
    for name, got in figures.items():
        first = f"{got['first_s']:.2f} s" if "first_s" in got else "-"
        ratio = "-"
        if baseline is not None and got["points"] == baseline["points"]:
            ratio = f"{baseline['all_s'] / got['all_s']:.1f}x, {baseline['cpu_s'] / got['cpu_s']:.1f}x"
        helpers = f"{got['child_peak_mb']:.0f} MB" if got["child_peak_mb"] else "-"
        per_point = got["cpu_s"] / got["points"] * 1e6
        lines.append(f"{name:<13} {first:>10} {got['all_s']:>7.1f} s {got['cpu_s']:>7.1f} s {got['points']:>10,} "
                     f"{per_point:>9.2f} {ratio:>13} {got['peak_mb']:>6.0f} MB {helpers:>9}")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="where the event file is written once and kept between runs")
    parser.add_argument("--readers", default=",".join(READERS), help=f"of: {', '.join(READERS)}")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="ganterm-bench-"))
    try:
        folder = cached_run(base, args.steps)
        size = sum(path.stat().st_size for path in folder.iterdir()) / 1e6
        print(f"{args.steps:,} steps x {len(TAGS)} tags, {size:.0f} MB of events; "
              f"cores: {os.cpu_count()}, python {sys.version.split()[0]}")  # fmt: skip
        figures = {}
        for reader in args.readers.split(","):
            figures[reader] = measure(reader, folder)
            print(f"{reader}: {json.dumps(figures[reader])}", file=sys.stderr)
        got = figures.get("ganterm")
        if got:
            print(
                f"ganterm's first poll: {got['first_points']:,} points, up to step {got['newest_step']:,}, "
                f"{got['first_s']:.2f} s after the process started its imports, {got['imports_s']:.2f} s of them"
            )
        watched = figures.get("watch")
        if watched:
            print(
                f"ganterm watch: the newest steps (to step {watched['newest_step']:,}) in its first update "
                f"{watched['first_s']:.2f} s after the process started, every point in after {watched['all_s']:.1f} s, "
                f"the health checks over the whole history done after {watched['checked_s']:.1f} s"
            )
        print("\n".join(table(figures)))
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
