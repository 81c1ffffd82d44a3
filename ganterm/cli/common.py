"""What every command shares: the Typer app, the two consoles, option types, user errors, `--out` files."""

from __future__ import annotations

import contextlib
import functools
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from ganterm.errors import UserError
from ganterm.run.text import visible

app = typer.Typer(
    help="Train GANs and watch them train, in any terminal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


console = Console(soft_wrap=True)  # log lines stay whole in pipes and files
errors = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

RootOption = Annotated[Path, typer.Option("--root", help="Folder that holds the runs.")]
NoDashboardOption = Annotated[
    bool, typer.Option("--no-dashboard", help="Show a progress line instead of the dashboard.")
]
RolesOption = Annotated[
    Path | None,
    typer.Option(
        "--roles",
        help="TOML file mapping a TensorBoard or StyleGAN run's tags to ganterm's roles, and naming its loss "
        "(default: ganterm-roles.toml in the run's folder); see docs/watching.md.",
        show_default=False,
    ),
]
RunArgument = Annotated[
    str | None, typer.Argument(help="Run name or path; the newest run if omitted.", show_default=False)
]


def say(line: str) -> None:
    """One line of output that quotes user text (run names, paths, a run's files): never markup, and its control
    characters shown, not sent (`visible`)."""
    console.print(visible(line), highlight=False, markup=False)


def warn(line: str) -> None:
    """`say` on stderr, for notes and warnings beside a command's output."""
    errors.print(visible(line), highlight=False, markup=False, soft_wrap=True)


def user_errors(command: F) -> F:
    """A user's mistake becomes one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as error:
            # the message quotes user text (names, paths, config values, a run's error): never markup, never escapes
            errors.print(
                Text.assemble(("error:", "bold red"), " ", visible(str(error))), highlight=False, soft_wrap=True
            )
            raise typer.Exit(error.exit_code) from None

    return wrapper  # type: ignore[return-value]


def output_file(path: Path) -> Path:
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


def output_folder(path: Path) -> None:
    """`--out` of folders: a new path or an existing folder (a link to one too)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {str(path)!r} is not a folder; give a new path or a folder to write the run folders in")


def write_output(path: Path, write: Callable[[Path], T]) -> T:
    """Run `write(target)` for `--out`, after checking the target is a new path or a regular file."""
    target = output_file(path)
    with writing_output(path):
        return write(target)


@contextlib.contextmanager
def writing_output(path: Path) -> Iterator[None]:
    """A failed write (full disk, no permission) of `--out` is one sentence naming it."""
    try:
        yield
    except OSError as error:
        raise UserError(f"cannot write {str(path)!r}: {error.strerror or error}") from None


def main() -> None:
    app(prog_name="ganterm")
