"""The `ganterm` command: parses arguments and hands over to the module that does the work.

torch is imported only inside the commands that need it (sample, export,
eval), so `ganterm --help`, `runs` and the viewers start at once.
"""

from __future__ import annotations

import functools
import importlib
import json
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from ganterm.errors import UserError

if TYPE_CHECKING:
    from ganterm import launch

app = typer.Typer(
    help="Train GANs and watch them train, in any terminal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(soft_wrap=True)  # log lines stay whole in pipes and files
errors = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

ALL_COLUMNS = 1_000  # characters a table may take when no terminal limits it
RootOption = Annotated[Path, typer.Option("--root", help="Folder that holds the runs.")]
NoDashboardOption = Annotated[
    bool, typer.Option("--no-dashboard", help="Show a progress line instead of the dashboard.")
]
RunArgument = Annotated[
    str | None, typer.Argument(help="Run name or path; the newest run if omitted.", show_default=False)
]


def _say(line: str) -> None:
    """One line of output that quotes user text (run names, paths): printed as is, never as markup."""
    console.print(line, highlight=False, markup=False)


def user_errors(command: F) -> F:
    """A user's mistake becomes one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as error:
            # the message quotes user text (names, paths, config values): never parse it as markup
            errors.print(Text.assemble(("error:", "bold red"), " ", str(error)), highlight=False, soft_wrap=True)
            raise typer.Exit(error.exit_code) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors
def train(
    config: Annotated[
        Path | None,
        typer.Argument(help="TOML config (see configs/); the mnist5k recipe if omitted.", show_default=False),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="mnist5k, stacked-mnist, mnist, fashion-mnist, cifar10, ring, grid or a folder.", show_default=False
        ),
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Total steps (train.steps).", show_default=False)] = None,
    epochs: Annotated[
        float | None, typer.Option(help="Train this many epochs instead (train.epochs).", show_default=False)
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (train.batch_size).", show_default=False)] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps (train.device).", show_default=False)
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Run name; <data>-<date>-<time> if omitted.", show_default=False)
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override any key: section.key=value (repeatable).", show_default=False),
    ] = None,
    resume: Annotated[
        str | None, typer.Option(help="Continue a run (name or path) or a checkpoint file.", show_default=False)
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Start the worker and return; attach later with ganterm watch.")
    ] = False,
    no_dashboard: NoDashboardOption = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config and exit.")] = False,
    nproc_per_node: Annotated[
        str, typer.Option(help="Processes on this machine: a number, or auto for one per visible GPU (torchrun).")
    ] = "1",
    nnodes: Annotated[int, typer.Option(min=1, help="Machines taking part; each runs this same command.")] = 1,
    node_rank: Annotated[int, typer.Option(min=0, help="This machine's place among them; 0 owns the run.")] = 0,
    rdzv_endpoint: Annotated[
        str | None, typer.Option(help="HOST:PORT where the machines meet (torchrun's rendezvous).", show_default=False)
    ] = None,
    rdzv_id: Annotated[
        str | None, typer.Option(help="Rendezvous id; the run name if omitted.", show_default=False)
    ] = None,
    root: RootOption = Path("runs"),
) -> None:
    """Train a GAN in a background worker and watch it."""
    # long only by its option declarations above; what it does is launch.plan_run and launch.start_run
    from ganterm import launch

    flags = {
        "data.name": data,
        "train.steps": steps,
        "train.epochs": epochs,
        "train.batch_size": batch_size,
        "train.device": device,
    }
    values = {key: value for key, value in flags.items() if value is not None}
    if name is not None:
        from ganterm.run.layout import check_run_name

        check_run_name(name, "--name")
    scale = launch.scale_from_options(nproc_per_node, nnodes, node_rank, rdzv_endpoint, rdzv_id, name)
    plan = launch.plan_run(config, values, set_ or [], resume, root)
    if dry_run:
        console.print(plan.config.to_toml(), end="", markup=False, highlight=False)
        return
    started = launch.start_run(plan, name, root, scale)
    run, pid = started.run, started.pid
    if scale.node_rank > 0:
        code = launch.follow_node(
            started, scale, on_log=lambda line: console.print(line, highlight=False, markup=False)
        )
        raise typer.Exit(code)
    status = _wait_for_start(started)
    if status["state"] in ("failed", "lost"):  # lost: the worker died before it could say why
        if started.new:
            launch.discard_if_unborn(run)
        default = f"the worker died while starting; see {run.log}"
        error = UserError(status.get("error", default) if status["state"] == "failed" else default)
        error.exit_code = int(status.get("exit_code", 1))
        raise error
    if detach:
        console.print(Text.assemble("started ", (run.name, "bold"), f" (worker pid {pid}, log {run.log})"))
        _say(f"  watch it:  ganterm watch {run.name}\n  stop it:   ganterm stop {run.name}")
        return
    _attach([run], root, dashboard=not no_dashboard)


def _wait_for_start(started: launch.Started) -> dict[str, Any]:
    """Until the worker says it trains, or fails, or dies; what it logs meanwhile is shown."""
    from ganterm import launch

    run = started.run
    if not console.is_terminal:
        say = lambda line: console.print(line, highlight=False, markup=False)  # noqa: E731
        return launch.wait_until_started(run, say, started.log_offset)
    with console.status(Text(f"starting {run.name}…")) as spinner:
        show = lambda line: spinner.update(Text(f"{run.name}: {line[20:]}"))  # noqa: E731
        return launch.wait_until_started(run, show, started.log_offset)


def _attach(runs: list, root: Path, dashboard: bool) -> None:
    """Follow the runs until the first ends or the viewer leaves; training goes on either way."""
    from ganterm import progress

    run = runs[0]
    if dashboard and console.is_terminal and sys.stdin.isatty():
        probe = _ask_terminal_for_graphics()
        from ganterm.dashboard.app import Dashboard

        probe.join()
        viewer = Dashboard(runs, root)
        ended = viewer.run()
        if viewer.return_code:  # the viewer crashed (Textual printed why): say so in the exit status
            raise typer.Exit(viewer.return_code)
        if ended == "stopped":
            _say(f"asked {run.name} to checkpoint and stop")
        else:
            _still_training(run)
        return
    try:
        follow = progress.follow_rich if console.is_terminal else progress.follow_plain
        snap = follow(run, console)
    except KeyboardInterrupt:
        _interrupted(run)
        return
    _report_end(run, snap.state, snap.status)


def _ask_terminal_for_graphics() -> threading.Thread:
    """Import textual-image in a thread: on import it asks the terminal which image protocol it speaks.

    Each question waits for an answer up to 0.1 s, and most terminals never answer the Kitty one;
    asked from a thread, that wait overlaps loading the rest of the viewer. PIL is loaded first, so
    the two threads import no module in common but the ones rich already holds.
    """
    import PIL.Image  # noqa: F401

    thread = threading.Thread(target=importlib.import_module, args=("textual_image.renderable",), daemon=True)
    thread.start()
    return thread


def _still_training(run) -> None:
    from ganterm.run.status import ACTIVE_STATES, effective_state, read_status

    if effective_state(read_status(run)) in ACTIVE_STATES:
        _say(f"training continues in the background; watch it again with: ganterm watch {run.name}")


def _interrupted(run) -> None:
    """Ctrl-C in a viewer asks before it stops anything."""
    from rich.prompt import Confirm

    from ganterm.run import control

    stop = False
    if console.is_terminal:
        try:
            stop = Confirm.ask(Text(f"\nStop training {run.name} too? (no leaves it running)"), default=False)
        except (KeyboardInterrupt, EOFError):
            stop = False
    if stop:
        event = control.send_and_wait(run, "stop", timeout=300)
        _say(f"stopped {run.name} at step {event.get('step')}; continue it with: ganterm train --resume {run.name}")
    else:
        console.print()
        _still_training(run)


def _report_end(run, state: str, status: dict) -> None:
    if state == "failed":
        raise UserError(f"run {run.name!r} failed: {status.get('error', 'see ' + str(run.log))}")
    if state == "lost":
        raise UserError(
            f"the worker of run {run.name!r} is gone (see {run.log}); continue it with: "
            f"ganterm train --resume {run.name}"
        )
    _say(f"{run.name} {state} at step {status.get('step')}/{status.get('total')}")


@app.command()
@user_errors
def watch(
    runs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Runs (names or paths) to watch; several overlay their curves. Newest if omitted.", show_default=False
        ),
    ] = None,
    no_dashboard: NoDashboardOption = False,
    root: RootOption = Path("runs"),
) -> None:
    """Attach to runs (running or not); quitting the viewer never stops training."""
    from ganterm.run.layout import resolve_run

    _attach(
        [resolve_run(run, root) for run in runs] if runs else [resolve_run(None, root)],
        root,
        dashboard=not no_dashboard,
    )


@app.command()
@user_errors
def runs(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per run, in a list.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="One CSV row per run.")] = False,
    root: RootOption = Path("runs"),
) -> None:
    """List runs with their state and latest statistics."""
    import time

    from ganterm.listing import csv_row, run_record, runs_table
    from ganterm.run.layout import list_runs

    if as_json and as_csv:
        raise UserError("--json and --csv each print the whole list; give one of them")
    if as_json or as_csv:
        records = [run_record(run, time.time()) for run in list_runs(root)]
        if as_json:
            print(json.dumps(records, indent=2))
        else:
            _print_csv([csv_row(record) for record in records])
        return
    if console.is_terminal:
        console.print(runs_table(root, console.width))
    else:  # piped into a file or another program, every column: nobody's terminal is too narrow there
        Console(width=ALL_COLUMNS).print(runs_table(root, ALL_COLUMNS))


def _print_csv(rows: list[dict[str, Any]]) -> None:
    import csv

    from ganterm.listing import CSV_STATISTICS

    fields = ["name", "state", "step", "total", *CSV_STATISTICS, "device", "world_size", "started", "heartbeat", "path"]
    writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _control(command: str, done: str) -> Callable[..., None]:
    def handler(run: RunArgument = None, root: RootOption = Path("runs")) -> None:
        from ganterm.run import control
        from ganterm.run.layout import resolve_run

        target = resolve_run(run, root)
        event = control.send_and_wait(target, command, timeout=300 if command == "stop" else 30)
        said = event["message"] if event.get("kind") == "log" else event.get("state", done)  # already so, or done
        detail = f": {event['path']}" if "path" in event else ""
        _say(f"{target.name}: {said} at step {event.get('step')}{detail}")

    return user_errors(handler)


app.command("stop", help="Stop a run's worker after writing a checkpoint.")(_control("stop", "stopped"))
app.command("pause", help="Pause a run; it keeps all its state and loses no step.")(_control("pause", "paused"))
app.command("unpause", help="Continue a paused run.")(_control("unpause", "running again"))
app.command("checkpoint", help="Write a checkpoint now.")(_control("checkpoint", "checkpoint written"))
app.command("snapshot", help="Write a sample grid now.")(_control("snapshot", "sample grid written"))


@app.command()
@user_errors
def sample(
    run_or_checkpoint: Annotated[
        str | None,
        typer.Argument(help="Run name, run path or checkpoint file; newest run if omitted.", show_default=False),
    ] = None,
    n: Annotated[int, typer.Option("-n", min=1, max=4096, help="How many images (or frames of a walk).")] = 64,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the latent noise.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="PNG to write; <run>-step<N>-seed<S>.png if omitted.", show_default=False)
    ] = None,
    nrow: Annotated[
        int | None, typer.Option(min=1, help="Images per row; a square grid if omitted.", show_default=False)
    ] = None,
    interpolate: Annotated[
        int | None, typer.Option(min=0, help="Walk the latent space from --seed to this seed.", show_default=False)
    ] = None,
    root: RootOption = Path("runs"),
) -> None:
    """Write a PNG grid of samples from a checkpoint."""
    from ganterm.training.sample import render_checkpoint, save_png

    if out is not None and out.suffix.lower() != ".png":
        raise UserError(f"--out {str(out)!r} must name a .png file")
    path = _intact_checkpoint(run_or_checkpoint, root)
    image, step = render_checkpoint(path, n, seed, nrow, interpolate)
    if out is None:
        owner = path.parent.parent.name if path.parent.name == "checkpoints" else path.stem
        walk = f"-to{interpolate}" if interpolate is not None else ""
        out = Path(f"{owner}-step{step}-seed{seed}{walk}.png")
    _write(out, lambda target: save_png(image, target))
    _say(f"wrote {out} ({image.width}x{image.height} px, step {step})")


@app.command(name="eval")
@user_errors
def evaluate(
    run_or_checkpoint: Annotated[
        str | None,
        typer.Argument(help="Run name, run path or checkpoint file; newest run if omitted.", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    root: RootOption = Path("runs"),
) -> None:
    """Measure sample quality of a checkpoint's EMA and raw generators: modes, classes, offline FID, precision, recall.

    --json prints {"ema": {metric: value}, "raw": {...}}, EMA first; a checkpoint without an EMA
    generator has "raw" alone, and one written by `ganterm export` has "exported".
    """
    from ganterm.listing import metrics_table
    from ganterm.training.quality import evaluate_checkpoint

    path = _intact_checkpoint(run_or_checkpoint, root)
    measured, step = evaluate_checkpoint(path, log=lambda message: errors.print(message, highlight=False, markup=False))
    if as_json:
        print(json.dumps(measured))
    else:
        console.print(metrics_table(measured, f"{path} (step {step})"))


def _intact_checkpoint(argument: str | None, root: Path) -> Path:
    """The file named, or the newest checkpoint of a run that loads whole (checksum included), with a warning."""
    from ganterm.run.checkpoints import find_checkpoint
    from ganterm.training.checkpoint import verify

    def warn(line: str) -> None:
        errors.print(line, highlight=False, markup=False, soft_wrap=True)

    return find_checkpoint(argument, root, verify, warn)


@app.command()
@user_errors
def export(
    run_or_checkpoint: Annotated[
        str | None, typer.Argument(help="Run or checkpoint; newest run if omitted.", show_default=False)
    ] = None,
    out: Annotated[Path, typer.Option(help="Where to write the generator.")] = Path("generator.safetensors"),
    root: RootOption = Path("runs"),
) -> None:
    """Write the (EMA) generator alone, loadable with safetensors.torch.load_file."""
    from ganterm.training.checkpoint import load_checkpoint, save_generator

    path = _intact_checkpoint(run_or_checkpoint, root)
    checkpoint = load_checkpoint(path)
    _write(out, lambda target: save_generator(target, checkpoint.sampling_weights, checkpoint.config, checkpoint.step))
    _say(f"wrote {out} (generator at step {checkpoint.step}, {len(checkpoint.sampling_weights)} tensors)")


@app.command()
@user_errors
def timelapse(
    run: RunArgument = None,
    out: Annotated[Path | None, typer.Option(help="GIF to write; <run>.gif if omitted.", show_default=False)] = None,
    frame_ms: Annotated[int, typer.Option(min=10, help="Milliseconds per frame.")] = 120,
    root: RootOption = Path("runs"),
) -> None:
    """Make an animated GIF of a run's sample grids."""
    from ganterm.run.layout import resolve_run
    from ganterm.training.sample import timelapse as make_timelapse

    target = resolve_run(run, root)
    frames = target.sample_files()
    if not frames:
        raise UserError(f"run {target.name!r} has no sample grids yet")
    out = out or Path(f"{target.name}.gif")
    skipped: list[int] = []
    _write(out, lambda target: skipped.append(make_timelapse(frames, target, frame_ms)))
    unreadable = f"; {skipped[0]} unreadable sample grids left out" if skipped[0] else ""
    _say(f"wrote {out} ({len(frames) - skipped[0]} frames{unreadable})")


def _output_file(path: Path) -> Path:
    """Where `--out` may write: a new path or a regular file (through a symlink, its target), nothing else.

    Files are written to a temporary name and renamed over the target, and a rename replaces whatever
    the name held: a device node, a FIFO or a link to a folder would be lost, so those are refused.
    """
    target = path.resolve() if path.is_symlink() else path
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():  # dangling: the file it names does not exist yet; write it there
            return target
        return path
    except OSError as error:
        raise UserError(f"--out {str(path)!r} cannot be checked: {error.strerror or error}") from None
    if stat.S_ISREG(mode):
        return target
    kind = "a folder" if stat.S_ISDIR(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else None
    kind = kind or ("a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
    via = f" (a link to {str(target)!r})" if target != path else ""
    raise UserError(f"--out {str(path)!r}{via} is {kind}; give a new path or a regular file to replace")


def _write(path: Path, write: Callable[[Path], None]) -> None:
    """Run `write(target)` for `--out`, after checking the target is a new path or a regular file."""
    target = _output_file(path)
    try:
        write(target)
    except OSError as error:
        raise UserError(f"cannot write {str(path)!r}: {error.strerror or error}") from None


def main() -> None:
    app(prog_name="ganterm")


if __name__ == "__main__":
    sys.exit(main())
