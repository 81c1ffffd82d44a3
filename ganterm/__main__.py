"""`python -m ganterm` is the `ganterm` command."""

from ganterm.cli import main

if __name__ == "__main__":  # a spawned helper process imports this module too, and must not run the CLI
    main()
