"""`ganterm serve`: the dashboard in a browser tab, through textual-serve (the optional `serve` extra).

Each tab that connects gets its own `ganterm watch RUN ...` process, drawn by
xterm.js in the page; the server passes key presses in and frames out.
textual-serve has no authentication of its own, so the server binds
127.0.0.1 unless told otherwise, and `token` makes the page, its files and
its websocket ask for a secret (once in the address, then a cookie). The
page needs nothing from the internet: textual-serve's template asks Google
for its web font, which textual-serve also ships, so the page is served
asking for that copy instead. Beside the terminal the page shows the run's
sample grids as PNGs (serve_samples.html), fetched from `/samples`.
"""

from __future__ import annotations

import asyncio
import ctypes
import hmac
import ipaddress
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
from aiohttp import web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int
from yarl import URL

from ganterm.run.layout import list_runs
from ganterm.sources import GantermRun, Source

WEB_FONT_LINK = re.compile(r'<link\s+rel="stylesheet"\s+href="https://fonts\.googleapis\.com[^"]*"\s*/>')
LOCAL_FONT = (
    "<style>@font-face { font-family: 'Roboto Mono'; "
    "src: url('{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf'); }</style>"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_COLUMNS, MAX_ROWS = 500, 200  # more than a 4K screen holds at a legible font; a tab's frames stay megabytes
QUIT_GRACE_S = 5.0  # how long a closed tab's dashboard has to quit before it is killed
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# found before any fork: a child of a server with threads must not load libraries (another thread may hold a lock)
PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
TAB_MEMORY = 2 << 30  # resident memory a tab's dashboard may hold (it needs about 100 MB); past it, it is killed
MEMORY_CHECK_S = 2.0


def watch_command(runs: list[Source], root: Path, roles: Path | None = None, logdirs: list[Path] = ()) -> list[str]:
    """What each tab runs: `ganterm watch` with the runs given, by absolute path (and their roles file).

    A run found under a folder given whole (`logdirs`) goes as that folder, in its place: the tab's viewer
    then shows the runs that appear there later too.
    """
    folders = [folder.resolve() for folder in logdirs]
    paths: list[str] = []
    for run in runs:
        path = run.path.resolve()
        given = next((folder for folder in folders if path.is_relative_to(folder)), path)
        if str(given) not in paths:
            paths.append(str(given))
    given = ["--roles", str(roles.resolve())] if roles is not None else []
    return [sys.executable, "-m", "ganterm", "watch", "--root", str(root.resolve()), *given, *paths]


def screen_size(width: object, height: object) -> tuple[int, int]:
    """A page's terminal size, bounded to what a screen can hold: a page may ask for any number."""
    columns = to_int(str(width), 80)
    rows = to_int(str(height), 24)
    return max(1, min(MAX_COLUMNS, columns)), max(1, min(MAX_ROWS, rows))


def die_with_parent(parent: int) -> None:
    """In a tab's child before it runs: the kernel kills it when the server ends, even by `kill -9` (Linux)."""
    if PRCTL is None:
        return
    PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the server died before the line above
        os._exit(1)


def resident_bytes(pid: int) -> int:
    """The memory `pid` holds, from /proc (Linux); 0 once it is gone, or where there is no /proc."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


class TabService(AppService):
    """One tab's `ganterm watch`: started without a shell, in its own process group, bounded in size and memory,
    ended with the server and killed (with every process it started) when it does not quit after its tab closes."""

    def __init__(self, argv: list[str], **kwargs) -> None:
        super().__init__(" ".join(argv), **kwargs)
        self.argv = argv
        self._watchdog: asyncio.Task[None] | None = None

    async def _open_app_process(self, width: int = 80, height: int = 24) -> asyncio.subprocess.Process:
        server = os.getpid()
        self._process = process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._build_environment(width=width, height=height),
            start_new_session=True,
            preexec_fn=lambda: die_with_parent(server),
        )
        assert process.stdin is not None
        self._stdin = process.stdin
        return process

    async def start(self, width: int, height: int) -> None:
        await super().start(*screen_size(width, height))
        self._watchdog = asyncio.create_task(self._bound_memory())

    async def _bound_memory(self) -> None:
        """A dashboard that grows past TAB_MEMORY (a bug, a flood of input) is killed before it takes the machine."""
        process = self._process
        assert process is not None
        while process.returncode is None:
            if resident_bytes(process.pid) > TAB_MEMORY:
                logging.getLogger("ganterm.serve").warning(
                    "a tab's dashboard held more than %d MiB and was closed", TAB_MEMORY >> 20
                )
                self._kill()
                await self.remote_close()  # the page says the dashboard was closed
                return
            await asyncio.sleep(MEMORY_CHECK_S)

    def _kill(self) -> None:
        """The tab's dashboard and every process it started (its process group)."""
        if self._process is not None and self._process.returncode is None:
            with suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)

    async def set_terminal_size(self, width: int, height: int) -> None:
        await super().set_terminal_size(*screen_size(width, height))

    async def stop(self) -> None:
        """A dashboard blocked writing a frame nobody reads never sees the quit: it is killed after a grace."""
        process = self._process
        if process is not None and process.returncode is None:

            async def quit_and_wait() -> None:
                await self.send_meta({"type": "quit"})
                await process.wait()

            with suppress(asyncio.TimeoutError):  # not the builtin before Python 3.11
                await asyncio.wait_for(quit_and_wait(), QUIT_GRACE_S)
            if process.returncode is None:
                self._kill()
                await process.wait()
        if self._watchdog is not None:
            self._watchdog.cancel()
        await super().stop()  # its reader ends at the end of the dead process's output


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


SAMPLES_VIEW = (Path(__file__).parent / "serve_samples.html").read_text(encoding="utf-8")
CLOSED_WORDS = {
    '<div class="message">Session ended.</div>': (
        '<div class="message">The dashboard in this tab has ended (q closes it, and so does stopping the server);'
        " training, if any, goes on.</div>"
        '<div class="message">Reload the page to open it again.</div>'
    ),
    ">Restart</button>": ">Open it again</button>",
}
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


def dashboard_page(template: str) -> str:
    """The offline page, with the sample grids beside the terminal and words of ours once the dashboard is closed
    (textual-serve's say only "Session ended")."""
    page = offline_page(template).replace("</body>", f"{SAMPLES_VIEW}</body>", 1)
    for theirs, ours in CLOSED_WORDS.items():  # the browser test notices when textual-serve's words change
        page = page.replace(theirs, ours, 1)
    return page


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

    def __init__(
        self,
        runs: list[Source] | None,
        root: Path,
        host: str,
        port: int,
        token: str | None,
        on_start: Callable[[], None],
        roles: Path | None = None,
        logdirs: list[Path] = (),
    ) -> None:
        """`runs` None: each tab shows the newest run under `root` when it opens; `logdirs`: the folders given
        whole, where each tab looks for new runs."""
        self.argv = watch_command(runs or [], root, roles, logdirs)
        super().__init__(" ".join(self.argv), host=host, port=port, title="ganterm")
        self.runs = runs
        self.root = root
        self.token = token
        self.on_start = on_start

    def shown_runs(self) -> list[Source]:
        """The runs a tab opening now shows: those given, or the newest."""
        if self.runs is not None:
            return self.runs
        return [GantermRun(run) for run in list_runs(self.root)[-1:]]

    async def handle_sample_list(self, request: web.Request) -> web.StreamResponse:
        """Each shown run's sample grids by file name, oldest first, for the page's picture beside the terminal."""
        runs = [{"name": run.name, "grids": [path.name for path in _served_grids(run)]} for run in self.shown_runs()]
        return web.json_response({"runs": runs}, headers={"Cache-Control": "no-store"})

    async def handle_sample(self, request: web.Request) -> web.StreamResponse:
        """One grid a shown run wrote; any other name (`..`, a path, a file the run did not write) is not found."""
        runs = self.shown_runs()
        index = to_int(request.match_info["run"], -1)
        grids = {path.name: path for path in _served_grids(runs[index])} if 0 <= index < len(runs) else {}
        path = grids.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound(text="ganterm serve: no such sample grid\n")
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    def initialize_logging(self) -> None:
        """Problems only, in plain lines: a line per request would bury the address the user needs, and
        textual-serve's own handler prints each frame's local variables (a token among them)."""
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        page = dashboard_page((Path(self.templates_path) / "app_index.html").read_text(encoding="utf-8"))
        aiohttp_jinja2.setup(app, loader=jinja2.DictLoader({"app_index.html": page}))
        app.router.add_get("/samples", self.handle_sample_list)
        app.router.add_get("/samples/{run}/{name}", self.handle_sample)
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

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """textual-serve's, with a tab of our own (TabService) and the size the page asks for bounded."""
        websocket = web.WebSocketResponse(heartbeat=15)
        tab: TabService | None = None
        try:
            await websocket.prepare(request)
            tab = TabService(
                self.argv,
                write_bytes=websocket.send_bytes,
                write_str=websocket.send_str,
                close=websocket.close,
                download_manager=self.download_manager,
            )
            await tab.start(*screen_size(request.query.get("width", "80"), request.query.get("height", "24")))
            await self._process_messages(websocket, tab)
        except asyncio.CancelledError:
            await websocket.close()
        except Exception:
            logging.getLogger("ganterm.serve").exception("a tab failed")
        finally:
            if tab is not None:
                await tab.stop()
        return websocket

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


def _served_grids(run: Source) -> list[Path]:
    """The grids the run wrote, as plain files: a link placed among them (to /etc/passwd, say) is not served."""
    return [path for _, path in run.samples() if not path.is_symlink() and path.is_file()]
