"""Commands that start and show runs: `train`, `watch`, `serve`."""

from __future__ import annotations

import importlib
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from ganterm.errors import UserError
from ganterm.urls import shown_url

if TYPE_CHECKING:
    from ganterm import launch
    from ganterm.sources.new_runs import NewRuns


from ganterm.cli.common import (
    NoDashboardOption,
    RolesOption,
    RootOption,
    app,
    console,
    errors,
    say,
    user_errors,
)
from ganterm.run.text import visible


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
    notify: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="POST alerts and the run's end here as JSON: a webhook, an ntfy topic (notify.url).",
            show_default=False,
        ),
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
        str | None, typer.Option(help="Node 0's HOST:PORT, where the machines meet.", show_default=False)
    ] = None,
    rdzv_id: Annotated[
        str | None, typer.Option(help="Rendezvous id; the run name if omitted.", show_default=False)
    ] = None,
    root: RootOption = Path("runs"),
) -> None:
    """Train a GAN in a background worker and watch it."""
    # long only by its option declarations above; what it does is launch.plan_run and launch.start_run
    from ganterm import launch
    from ganterm.scale import scale_from_options
    from ganterm.waiting import follow_node

    flags = {
        "data.name": data,
        "train.steps": steps,
        "train.epochs": epochs,
        "train.batch_size": batch_size,
        "train.device": device,
        "notify.url": notify,
    }
    values = {key: value for key, value in flags.items() if value is not None}
    if name is not None:
        from ganterm.run.layout import check_run_name

        check_run_name(name, "--name")
    scale = scale_from_options(nproc_per_node, nnodes, node_rank, rdzv_endpoint, rdzv_id, name)
    plan = launch.plan_run(config, values, set_ or [], resume, root)
    if dry_run:
        # a webhook's URL is its secret: shown as every log line shows it
        shown = replace(plan.config, notify=replace(plan.config.notify, url=shown_url(plan.config.notify.url)))
        console.print(shown.to_toml(), end="", markup=False, highlight=False)
        return
    started = launch.start_run(plan, name, root, scale, say=lambda line: console.print(line, markup=False))
    run, pid = started.run, started.pid
    if scale.node_rank > 0:
        code = follow_node(run, pid, started.log_offset, scale, on_log=say)
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
        say(f"  watch it:  ganterm watch {run.name}\n  stop it:   ganterm stop {run.name}")
        return
    _attach([run], root, dashboard=not no_dashboard)


def _wait_for_start(started: launch.Started) -> dict[str, Any]:
    """Until the worker says it trains, or fails, or dies; what it logs meanwhile is shown."""
    from ganterm.waiting import wait_until_started

    run = started.run
    if not console.is_terminal:
        return wait_until_started(run, lambda line: say(_worker_line(run, line)), started.log_offset)
    with console.status(Text(f"starting {run.name}…")) as spinner:
        show = lambda line: spinner.update(Text(visible(_worker_line(run, line))))  # noqa: E731
        return wait_until_started(run, show, started.log_offset)


def _worker_line(run, line: str) -> str:
    """A worker.log line as the progress lines read: the run's name, then what happened, without the timestamp."""
    from ganterm.logline import LOG_TIMESTAMP

    stamped = LOG_TIMESTAMP.match(line)
    return f"{run.name}: {line[stamped.end() :] if stamped else line}"


def _attach(runs: list, root: Path, dashboard: bool, notify: str = "", new_runs: NewRuns | None = None) -> None:
    """Follow the runs until the first ends or the viewer leaves; training goes on either way.

    `runs`: run folders, or sources (`open_runs`); `notify` gets the alerts the viewer raises on a read-only
    run (another tool writes it). Without the dashboard, read-only runs are followed until Ctrl-C: they never
    end for ganterm. `new_runs`: where to look for runs that appear later under a folder given whole.
    """
    from ganterm import progress
    from ganterm.dashboard.browser import in_browser

    run = runs[0]
    if in_browser():  # a tab of `ganterm serve`: the page is the terminal, and nothing may be printed after it
        from ganterm.dashboard.app import Dashboard

        viewer = Dashboard(runs, root, notify_url=notify, new_runs=new_runs)
        viewer.run()
        raise typer.Exit(viewer.return_code or 0)
    if dashboard and console.is_terminal and sys.stdin.isatty():
        probe = _ask_terminal_for_graphics()
        from ganterm.dashboard.app import Dashboard

        probe.join()
        viewer = Dashboard(runs, root, notify_url=notify, new_runs=new_runs)
        ended = viewer.run()
        if viewer.return_code:  # the viewer crashed (Textual printed why): say so in the exit status
            raise typer.Exit(viewer.return_code)
        if ended == "stopped":
            say(f"asked {run.name} to checkpoint and stop")
        elif not getattr(run, "read_only", False):
            _still_training(getattr(run, "run", run))
        return
    if getattr(run, "read_only", False):  # other tools write them: their lines, until Ctrl-C
        read_only = [source for source in runs if getattr(source, "read_only", False)]
        progress.follow_read_only(read_only, console, notify_url=notify, new_runs=new_runs)
        return
    run = getattr(run, "run", run)  # the progress line follows a run folder
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
        say(f"training continues in the background; watch it again with: ganterm watch {run.name}")


def _interrupted(run) -> None:
    """Ctrl-C in a viewer asks before it stops anything."""
    from rich.prompt import Confirm

    from ganterm.run import control

    stop = False
    if console.is_terminal:
        try:
            stop = Confirm.ask(Text(visible(f"\nStop training {run.name} too? (no leaves it running)")), default=False)
        except (KeyboardInterrupt, EOFError):
            stop = False
    if stop:
        event = control.send_and_wait(run, "stop", timeout=300)
        say(f"stopped {run.name} at step {event.get('step')}; continue it with: ganterm train --resume {run.name}")
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
    say(f"{run.name}: {state} at step {status.get('step')}/{status.get('total')}")  # as progress.follow_plain says


@app.command()
@user_errors
def watch(
    runs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Runs (names or paths) to watch, or a folder of runs (a TensorBoard --logdir); several overlay their "
            "curves. Newest if omitted.",
            show_default=False,
        ),
    ] = None,
    no_dashboard: NoDashboardOption = False,
    root: RootOption = Path("runs"),
    roles: RolesOption = None,
    notify: Annotated[
        str,
        typer.Option(
            help="POST the alerts the viewer raises on read-only runs (TensorBoard, StyleGAN) here as JSON; "
            "a ganterm run's own worker tells its notify.url itself.",
            show_default=False,
        ),
    ] = "",
) -> None:
    """Attach to runs (running or not): ganterm's, TensorBoard event files, StyleGAN training folders;
    quitting the viewer never stops training."""
    from ganterm.sources import open_runs
    from ganterm.sources.new_runs import NewRuns, logdirs
    from ganterm.urls import url_problem

    if notify and (problem := url_problem(notify)):
        raise UserError(f"--notify {shown_url(notify)!r} {problem}")
    sources = open_runs(runs, root, roles)
    new_runs = NewRuns(logdirs(runs or []), sources, roles)
    _attach(sources, root, dashboard=not no_dashboard, notify=notify, new_runs=new_runs)


@app.command()
@user_errors
def serve(
    runs: Annotated[
        list[str] | None,
        typer.Argument(help="Runs (names or paths) to show, as for watch. Newest if omitted.", show_default=False),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but loopback reaches other machines.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="GANTERM_SERVE_TOKEN",
            help="Secret the page asks for (open it with ?token=...); from the environment, it stays out of ps.",
            show_default=False,
        ),
    ] = None,
    root: RootOption = Path("runs"),
    roles: RolesOption = None,
) -> None:
    """Serve the dashboard to a browser; each tab is its own ganterm watch."""
    from ganterm.sources import open_runs
    from ganterm.sources.new_runs import logdirs

    try:
        from ganterm import serve as serving
    except ModuleNotFoundError as error:
        raise UserError(
            f"ganterm serve needs the textual-serve package ({error.name} is missing); "
            "install it with: pip install 'ganterm[serve]'"
        ) from None
    targets = open_runs(runs, root, roles)
    if token is not None and not token.strip():
        raise UserError("--token must not be empty; give a secret, or leave --token out")
    if not serving.is_loopback(host):
        lock = "only --token keeps them out" if token else "textual-serve has no login, so add --token"
        errors.print(
            Text.assemble(("warning:", "bold yellow"), f" --host {host} lets other machines reach the dashboard and "
                          f"stop your runs; {lock}, or keep the default host and tunnel in: "
                          f"ssh -L {port}:localhost:{port} THIS_HOST"),
            highlight=False, soft_wrap=True,
        )  # fmt: skip
    address = serving.address(host, port, token)
    names = ", ".join(target.name for target in targets) if runs else "the newest run"
    on_start = lambda: say(f"serving the dashboard of {names} at {address} (Ctrl-C stops)")  # noqa: E731
    server = serving.DashboardServer(targets if runs else None, root, host, port, token, on_start, roles,
                                     logdirs(runs or []))  # fmt: skip
    try:
        serving.check_free(host, port)
        server.serve()
    except OSError as error:
        raise UserError(
            f"cannot listen on {host}:{port} ({error.strerror or error}); pick another --port or --host"
        ) from None
