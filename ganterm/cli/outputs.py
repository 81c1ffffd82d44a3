"""Commands that turn a run into files or figures: `sample`, `eval`, `export`, `timelapse`.

torch is imported inside them only, so the other commands start at once.
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from ganterm.cli.common import (
    RolesOption,
    RootOption,
    RunArgument,
    app,
    console,
    errors,
    output_folder,
    say,
    user_errors,
    warn,
    write_output,
    writing_output,
)
from ganterm.errors import UserError
from ganterm.run.text import visible


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
    if out is not None and out.suffix.lower() != ".png":
        raise UserError(f"--out {str(out)!r} must name a .png file")
    path = _intact_checkpoint(run_or_checkpoint, root)
    from ganterm.training.sample import render_checkpoint, save_png

    image, step = render_checkpoint(path, n, seed, nrow, interpolate)
    if out is None:
        owner = path.parent.parent.name if path.parent.name == "checkpoints" else path.stem
        walk = f"-to{interpolate}" if interpolate is not None else ""
        out = Path(f"{owner}-step{step}-seed{seed}{walk}.png")
    write_output(out, lambda target: save_png(image, target))
    say(f"wrote {out} ({image.width}x{image.height} px, step {step})")


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
    from ganterm.eval_table import metrics_table

    path = _intact_checkpoint(run_or_checkpoint, root)
    from ganterm.training.evaluate import evaluate_checkpoint

    measured, step = evaluate_checkpoint(path, log=warn)
    if as_json:
        print(json.dumps(measured))
    else:
        console.print(metrics_table(measured, f"{path} (step {step})"))


def _intact_checkpoint(argument: str | None, root: Path) -> Path:
    """The file named, or the newest checkpoint of a run that loads whole (checksum included), with a warning.

    torch is loaded for the first file to verify, not before: a run with no checkpoint is told so at once.
    """
    from ganterm.run.checkpoints import find_checkpoint

    def verify(path: Path) -> object:
        from ganterm.training.checkpoint import verify

        return verify(path)

    return find_checkpoint(argument, root, verify, warn)


class ExportFormat(str, enum.Enum):
    generator = "generator"
    csv = "csv"
    parquet = "parquet"
    tensorboard = "tensorboard"


@app.command()
@user_errors
def export(
    runs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Runs (names or paths), or for the generator one run or checkpoint; newest run if omitted.",
            show_default=False,
        ),
    ] = None,
    format_: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="generator: the (EMA) generator alone; csv, parquet: every metrics row of the runs in one table; "
            "tensorboard: an event-file folder per run (scalars, sample grids, alerts).",
        ),
    ] = ExportFormat.generator,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write: generator.safetensors, <run>.csv, <run>.parquet or the folder tensorboard/ if "
            "omitted (runs.csv, runs.parquet for several runs).",
            show_default=False,
        ),
    ] = None,
    root: RootOption = Path("runs"),
    roles: RolesOption = None,
) -> None:
    """Write the generator alone, or every number the runs logged as CSV, Parquet or TensorBoard event files."""
    if format_ is not ExportFormat.generator:
        _export_history(runs or [], format_.value, out, root, roles)
        return
    if runs and len(runs) > 1:
        raise UserError(
            f"--format generator writes one generator, and {len(runs)} runs were given; give one run or checkpoint "
            "(several runs go to --format csv, parquet or tensorboard)"
        )
    from ganterm.training.checkpoint import load_checkpoint, save_generator

    out = out or Path("generator.safetensors")
    path = _intact_checkpoint(runs[0] if runs else None, root)
    checkpoint = load_checkpoint(path)
    write_output(
        out, lambda target: save_generator(target, checkpoint.sampling_weights, checkpoint.config, checkpoint.step)
    )
    say(f"wrote {out} (generator at step {checkpoint.step}, {len(checkpoint.sampling_weights)} tensors)")


def _export_history(arguments: list[str], fmt: str, out: Path | None, root: Path, roles: Path | None) -> None:
    """Every metrics row of the runs, streamed to `out`; the writer's extra is checked before anything is read."""
    from ganterm.export import SUFFIX, export_history, open_histories, require_extra, work_bytes
    from ganterm.sources import open_runs

    require_extra(fmt)
    runs = open_runs(arguments, root, roles)
    if fmt == "tensorboard":
        out = out or Path("tensorboard")
        output_folder(out)
    else:
        out = out or Path(f"{runs[0].name if len(runs) == 1 else 'runs'}{SUFFIX[fmt]}")
        if out.suffix.lower() != SUFFIX[fmt]:
            raise UserError(f"--out {str(out)!r} must name a {SUFFIX[fmt]} file for --format {fmt}")
    histories = open_histories(runs)
    what = runs[0].name if len(runs) == 1 else f"{len(runs)} runs"
    with progress_bar(work_bytes(histories, fmt), f"exporting {what} to {fmt}") as advance:
        if fmt == "tensorboard":
            with writing_output(out):
                exported = export_history(histories, fmt, out, advance)
        else:
            exported = write_output(out, lambda target: export_history(histories, fmt, target, advance))
    for note in exported.notes:
        warn(note)
    plural = "s" if len(runs) > 1 else ""
    if fmt == "tensorboard":
        folders = ", ".join(str(out / run.name) for run in runs)
        say(f"wrote {folders} ({exported.rows:,} metrics rows of {len(runs)} run{plural})")
        say(f"  view them with: tensorboard --logdir {out}")
    else:
        say(f"wrote {out} ({exported.rows:,} rows of {len(runs)} run{plural}, {len(exported.columns)} columns)")


@app.command()
@user_errors
def timelapse(
    run: RunArgument = None,
    out: Annotated[Path | None, typer.Option(help="GIF to write; <run>.gif if omitted.", show_default=False)] = None,
    frame_ms: Annotated[int, typer.Option(min=10, help="Milliseconds per frame.")] = 120,
    root: RootOption = Path("runs"),
    roles: RolesOption = None,
) -> None:
    """Make an animated GIF of a run's sample grids (or a TensorBoard or StyleGAN run's images)."""
    from ganterm.sources import open_run, open_runs
    from ganterm.training.sample import timelapse as make_timelapse

    target = open_run(run, root, roles) if run is not None else open_runs(None, root)[0]
    frames = [path for _, path in target.samples()]
    if not frames:
        raise UserError(f"run {target.name!r} has no sample grids yet")
    out = out or Path(f"{target.name}.gif")
    skipped: list[int] = []
    write_output(out, lambda target: skipped.append(make_timelapse(frames, target, frame_ms)))
    unreadable = f"; {skipped[0]} unreadable sample grids left out" if skipped[0] else ""
    say(f"wrote {out} ({len(frames) - skipped[0]} frames{unreadable})")


@contextlib.contextmanager
def progress_bar(total: int, what: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr while a long export reads its files; nothing when stderr is no terminal."""
    if not errors.is_terminal or not total:
        yield lambda _: None
        return
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}", markup=False), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    with Progress(*columns, console=errors, transient=True) as progress:
        task = progress.add_task(visible(what), total=total)  # it names runs: folder names may hold anything
        yield lambda done: progress.advance(task, done)
