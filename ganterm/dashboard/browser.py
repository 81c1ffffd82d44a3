"""Whether this dashboard is drawn in a browser tab (by `ganterm serve`, through textual-serve) or a terminal.

textual-serve starts one `ganterm watch` per tab with Textual's web driver
named in TEXTUAL_DRIVER; its stdin and stdout are pipes, not a terminal, and
xterm.js in the page draws text cells only, with no terminal graphics protocol.
"""

from __future__ import annotations

import os

WEB_DRIVER = "textual.drivers.web_driver:WebDriver"


def in_browser() -> bool:
    return os.environ.get("TEXTUAL_DRIVER") == WEB_DRIVER
