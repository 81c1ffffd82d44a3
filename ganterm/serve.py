"""`ganterm serve`: the dashboard in a browser tab, through textual-serve (the optional `serve` extra).

Each tab that connects gets its own `ganterm watch RUN ...` process, drawn by
xterm.js in the page; the server passes key presses in and frames out.
textual-serve has no authentication of its own, so the server binds
127.0.0.1 unless told otherwise, and `token` makes the page, its files and
its websocket ask for a secret (once in the address, then a cookie). The
page needs nothing from the internet: textual-serve's template asks Google
for its web font, which textual-serve also ships, so the page is served
asking for that copy instead.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import shlex
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
from aiohttp import web
from textual_serve.server import Server
from yarl import URL

from ganterm.run.layout import RunDir

WEB_FONT_LINK = re.compile(r'<link\s+rel="stylesheet"\s+href="https://fonts\.googleapis\.com[^"]*"\s*/>')
LOCAL_FONT = (
    "<style>@font-face { font-family: 'Roboto Mono'; "
    "src: url('{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf'); }</style>"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def watch_command(runs: list[RunDir], root: Path) -> str:
    """The shell command each tab runs: `ganterm watch` with the runs given, by absolute path."""
    paths = [str(run.path.resolve()) for run in runs]
    return shlex.join([sys.executable, "-m", "ganterm", "watch", "--root", str(root.resolve()), *paths])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address(host: str, port: int, token: str | None) -> str:
    """What the user opens: a name the browser resolves, and the token quoted as an address needs it."""
    shown = "localhost" if host in ("127.0.0.1", "::1", "0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown  # an IPv6 address
    return f"http://{shown}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")


NO_ICON = '<link rel="icon" href="data:," />'  # else the browser asks for /favicon.ico: a 404 in its console


def check_free(host: str, port: int) -> None:
    """Bind and let go, so a taken port is an error before the address is printed; raises OSError."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        probe.bind((host, port))


def offline_page(template: str) -> str:
    """textual-serve's page, with its web font taken from the server instead of fonts.googleapis.com."""
    return WEB_FONT_LINK.sub(LOCAL_FONT, template).replace("<head>", f"<head>{NO_ICON}", 1)


def _same_place(origin: URL, host: str) -> bool:
    """Whether a page from `origin` was served from `host` (a Host header), default ports alike.

    `Origin: null` (a sandboxed frame, a `file:` or `data:` page) has no host: it is nobody's page of ours.
    """
    if origin.host is None:
        return False
    served = URL(f"{origin.scheme}://{host}")
    return (origin.host, origin.port) == (served.host, served.port)


class DashboardServer(Server):
    """textual-serve's server, offline, with an optional token and a page that works under any host name."""

    def __init__(self, command: str, host: str, port: int, token: str | None, on_start: Callable[[], None]) -> None:
        super().__init__(command, host=host, port=port, title="ganterm")
        self.token = token
        self.on_start = on_start

    def initialize_logging(self) -> None:
        """Problems only, in plain lines: a line per request would bury the address the user needs, and
        textual-serve's own handler prints each frame's local variables (a token among them)."""
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        page = offline_page((Path(self.templates_path) / "app_index.html").read_text(encoding="utf-8"))
        aiohttp_jinja2.setup(app, loader=jinja2.DictLoader({"app_index.html": page}))
        app.middlewares.append(self._check_origin)
        if self.token:
            app.middlewares.append(self._check_token)
        return app

    @staticmethod
    def token_cookie(request: web.Request) -> str:
        """One cookie per port the browser uses: browsers share cookies across a host's ports, and two servers
        (or two tunnels, `ssh -L 8000:...` and `ssh -L 8001:...`) must not clash."""
        return f"ganterm_token_{URL(f'//{request.host}').port or 80}"

    async def on_startup(self, app: web.Application) -> None:
        self.on_start()

    async def handle_index(self, request: web.Request) -> web.StreamResponse:
        # the page names its websocket by an absolute address: the one the browser used, not the bound one,
        # so 0.0.0.0, a tunnel's localhost and a cookie's host all work (nothing is awaited in between)
        self.public_url = f"{request.scheme}://{request.host}"
        return await super().handle_index(request)  # type: ignore[no-any-return]

    @web.middleware
    async def _check_origin(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A page from another site may not open the websocket: it could press `x` and stop the run.

        Browsers send `Origin` with every websocket handshake; a page of ours comes from the host the
        browser asked for. A client without `Origin` is not a browser page and is let through. Bound to
        loopback, the server answers to loopback names only: a site whose name is made to resolve to
        127.0.0.1 (DNS rebinding) would otherwise be its own origin.
        """
        try:
            origin = request.headers.get("Origin")
            foreign = origin is not None and not _same_place(URL(origin), request.host)
            rebound = is_loopback(self.host) and not is_loopback(URL(f"//{request.host}").host or "")
        except ValueError:  # a Host or Origin that is no address at all
            foreign = rebound = True
        if foreign or rebound:
            return web.Response(status=403, text="ganterm serve: this dashboard accepts its own pages only\n")
        return await handler(request)

    @web.middleware
    async def _check_token(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        assert self.token is not None
        given = request.query.get("token")
        if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
            # the token moves from the address into a cookie, which the websocket and a reload carry; always to
            # the page itself: a path such as //elsewhere.example/ would otherwise send the browser off the host
            rest = {key: value for key, value in request.query.items() if key != "token"}
            response = web.Response(status=303, headers={"Location": str(URL("/").with_query(rest))})
            response.set_cookie(self.token_cookie(request), self.token, httponly=True, samesite="Strict")
            return response
        cookie = request.cookies.get(self.token_cookie(request), "")
        if not hmac.compare_digest(cookie.encode(), self.token.encode()):
            return web.Response(status=401, text="ganterm serve: open the address with ?token=... as printed\n")
        return await handler(request)
