"""Commands about runs as they stand: `runs` lists them; `stop`, `pause`, ... steer their workers."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ganterm.cli.common import (
    RolesOption,
    RootOption,
    RunArgument,
    app,
    console,
    say,
    user_errors,
)
from ganterm.errors import UserError

ALL_COLUMNS = 1_000  # characters a table may take when no terminal limits it


@app.command()
@user_errors
def runs(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per run, in a list.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="One CSV row per run.")] = False,
    root: RootOption = Path("runs"),
    roles: RolesOption = None,
) -> None:
    """List runs with their state and latest statistics: ganterm's, and TensorBoard or StyleGAN runs under --root."""
    import time

    from ganterm.listing import csv_row, run_record, runs_table
    from ganterm.sources import find_runs

    if as_json and as_csv:
        raise UserError("--json and --csv each print the whole list; give one of them")
    if as_json or as_csv:
        records = [run_record(run, time.time()) for run in find_runs(root, roles)]
        if as_json:
            print(json.dumps(records, indent=2))
        else:
            _print_csv([csv_row(record) for record in records])
        return
    if console.is_terminal:
        console.print(runs_table(root, console.width, roles))
    else:  # piped into a file or another program, every column: nobody's terminal is too narrow there
        Console(width=ALL_COLUMNS).print(runs_table(root, ALL_COLUMNS, roles))


def _print_csv(rows: list[dict[str, Any]]) -> None:
    import csv

    from ganterm.listing import CSV_COLUMNS

    writer = csv.DictWriter(sys.stdout, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _control(command: str, done: str) -> Callable[..., None]:
    def handler(run: RunArgument = None, root: RootOption = Path("runs")) -> None:
        from ganterm.run import control
        from ganterm.sources import ForeignRun, open_run, open_runs
        from ganterm.sources.foreign import read_only_reason

        source = open_run(run, root) if run is not None else open_runs(None, root)[0]
        if isinstance(source, ForeignRun):  # nothing ganterm writes reaches another tool's loop
            raise UserError(f"{read_only_reason(source)}; {command} cannot reach it")
        target = source.run
        event = control.send_and_wait(target, command, timeout=300 if command == "stop" else 30)
        said = event.get("state", done)
        detail = f": {event['path']}" if "path" in event else ""
        say(f"{target.name}: {said} at step {event.get('step')}{detail}")

    return user_errors(handler)


app.command("stop", help="Stop a run's worker after writing a checkpoint.")(_control("stop", "stopped"))


app.command("pause", help="Pause a run; it keeps all its state and loses no step.")(_control("pause", "paused"))


app.command("unpause", help="Continue a paused run.")(_control("unpause", "running again"))


app.command("checkpoint", help="Write a checkpoint now.")(_control("checkpoint", "checkpoint written"))


app.command("snapshot", help="Write a sample grid now.")(_control("snapshot", "sample grid written"))
