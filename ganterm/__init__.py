"""ganterm: train GANs and watch them train, in any terminal."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Run", "open_run"]


def __getattr__(name: str) -> Any:
    """`ganterm.Run` and `ganterm.open_run` on first use, so `import ganterm` (and the CLI) stays instant."""
    if name == "Run":
        from ganterm.api import Run

        return Run
    if name == "open_run":
        from ganterm.sources import open_run

        return open_run
    raise AttributeError(f"module 'ganterm' has no attribute {name!r}")
