"""`python -m ganterm` is the `ganterm` command."""

from ganterm.cli import main

main()
