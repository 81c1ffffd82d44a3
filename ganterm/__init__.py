"""ganterm: train GANs and watch them train, in any terminal."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Run"]


def __getattr__(name: str) -> Any:
    """`ganterm.Run` on first use, so `import ganterm` (and the CLI) stays instant."""
    if name == "Run":
        from ganterm.api import Run

        return Run
    raise AttributeError(f"module 'ganterm' has no attribute {name!r}")
