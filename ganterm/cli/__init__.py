"""The `ganterm` command: parses arguments and hands over to the module that does the work.

One module per group of commands (`training`, `runs`, `outputs`), all on the one Typer app of
`common`. torch is imported only inside the commands that need it (sample, export, eval), so
`ganterm --help`, `runs` and the viewers start at once.
"""

from ganterm.cli import outputs, runs, training  # noqa: F401  (importing them adds their commands to the app)
from ganterm.cli.common import app, main

__all__ = ["app", "main"]
