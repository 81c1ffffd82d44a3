"""`ganterm serve`: the dashboard in a real headless browser, its token, and its clear errors.

The browser is the system's chromium (Debian's `chromium` package), driven by
Playwright with `executable_path`: Playwright's own browser download needs the
internet. Without them the browser test skips on a laptop and fails in CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from ganterm import serve
from ganterm.run.layout import RunDir
from ganterm.run.status import read_status
from tests.conftest import run_cli
from tests.dashboard_runs import START, append_metrics, make_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TINY_FLAGS = [
    *("--set", "model.width=8", "--set", "model.z_dim=16", "--set", "train.batch_size=16"),
    *("--set", "train.device=cpu", "--set", "log.every=5", "--set", "quality.every=0"),
    *("--set", "sample.every=20", "--set", "checkpoint.every=0"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """`ganterm serve` in its own process group, stopped with Ctrl-C (SIGINT) as a user would."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ganterm", "serve", *args, "--port", str(self.port)],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            env={**os.environ, "COLUMNS": "300", **(env or {})},
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_until_listening(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.communicate()
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise AssertionError("ganterm serve did not start listening")

    def stop(self) -> tuple[int, str, str]:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            out, err = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            out, err = self.process.communicate()
        return self.process.returncode, out, err


@pytest.fixture
def served_runs(tmp_path: Path) -> Iterator[list[Served]]:
    servers: list[Served] = []
    yield servers
    for server in servers:
        server.stop()


def get(
    url: str, cookie: str | None = None, origin: str | None = None, host: str | None = None
) -> tuple[int, dict[str, str], str]:
    """Status, headers and body, without following redirects; `origin` is the page a browser says it comes from,
    `host` the name it asked for."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    headers = {"Cookie": cookie} if cookie else {}
    headers |= {"Origin": origin} if origin else {}
    headers |= {"Host": host} if host else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


class TestToken:
    def test_the_page_its_files_and_its_websocket_need_the_token(self, tmp_path: Path, served_runs: list[Served]):
        """Without the token: 401 everywhere; with it once in the address, a cookie opens the rest."""
        make_run(tmp_path / "runs", "shown", "finished")
        server = Served(tmp_path, "shown", "--token", "s3cret")
        served_runs.append(server)
        server.wait_until_listening()
        for path in ("/", "/ws", "/static/js/textual.js", "/samples", "/?token=wrong"):
            assert get(server.url + path)[0] == 401, path
        status, headers, _ = get(server.url + "/?token=s3cret&fontsize=14")
        assert status == 303 and headers["Location"] == "/?fontsize=14"
        cookie = headers["Set-Cookie"].split(";")[0]
        assert cookie == f"ganterm_token_{server.port}=s3cret" and "HttpOnly" in headers["Set-Cookie"]
        status, _, page = get(server.url + "/", cookie)
        assert status == 200 and "data-session-websocket-url" in page
        assert "googleapis" not in page and "fonts/RobotoMono" in page  # the font comes from the server itself
        assert get(server.url + "/static/js/textual.js", cookie)[0] == 200

    @pytest.mark.parametrize("path", ["//evil.example/", "/\\evil.example/", "/%2F%2Fevil.example", "/%09/evil"])
    def test_the_token_never_redirects_to_another_site(self, tmp_path: Path, served_runs: list[Served], path: str):
        """A link to the dashboard's host whose path looks like an address elsewhere lands on the dashboard."""
        make_run(tmp_path / "runs", "shown", "finished")
        server = Served(tmp_path, "shown", "--token", "s3cret")
        served_runs.append(server)
        server.wait_until_listening()
        status, headers, _ = get(f"{server.url}{path}?token=s3cret&fontsize=14")
        assert status == 303 and headers["Location"] == "/?fontsize=14", headers["Location"]

    def test_without_a_token_the_page_is_open_on_loopback(self, tmp_path: Path, served_runs: list[Served]):
        make_run(tmp_path / "runs", "shown", "finished")
        server = Served(tmp_path)
        served_runs.append(server)
        server.wait_until_listening()
        status, _, page = get(server.url + "/")
        assert status == 200 and f"ws://127.0.0.1:{server.port}/ws" in page

    def test_a_page_of_another_site_cannot_open_the_websocket(self, tmp_path: Path, served_runs: list[Served]):
        """Any page in the user's browser can reach localhost; only the dashboard's own may drive a run."""
        make_run(tmp_path / "runs", "shown", "finished")
        server = Served(tmp_path)
        served_runs.append(server)
        server.wait_until_listening()
        status, _, text = get(server.url + "/ws", origin="https://attacker.example")
        assert status == 403 and "its own pages only" in text
        assert get(server.url + "/", origin=f"http://127.0.0.1:{server.port + 1}")[0] == 403
        assert get(server.url + "/ws", origin="null")[0] == 403  # a sandboxed frame of any site, a file: page
        assert get(server.url + "/", origin=server.url)[0] == 200
        rebound = f"rebind.example:{server.port}"  # a site whose name now resolves to 127.0.0.1
        assert get(server.url + "/ws", origin=f"http://{rebound}", host=rebound)[0] == 403
        assert get(f"http://localhost:{server.port}/", origin=f"http://localhost:{server.port}")[0] == 200

    def test_a_token_with_characters_an_address_reserves_is_printed_quoted_and_opens_the_page(
        self, tmp_path: Path, served_runs: list[Served]
    ):
        make_run(tmp_path / "runs", "shown", "finished")
        server = Served(tmp_path, "shown", env={"GANTERM_SERVE_TOKEN": "a+b&c#d"})
        served_runs.append(server)
        server.wait_until_listening()
        _, out, _ = server.stop()
        assert f"http://localhost:{server.port}/?token=a%2Bb%26c%23d " in out
        server = Served(tmp_path, "shown", env={"GANTERM_SERVE_TOKEN": "a+b&c#d"})
        served_runs.append(server)
        server.wait_until_listening()
        assert get(f"{server.url}/?token=a%2Bb%26c%23d")[0] == 303


class TestSampleGrids:
    def test_the_runs_grids_are_served_as_written_under_the_token(self, tmp_path: Path, served_runs: list[Served]):
        """The page shows the PNGs themselves; nothing else in or beside the run directory can be fetched."""
        run = make_run(tmp_path / "runs", "shown", "finished")
        grids = run.sample_files()
        server = Served(tmp_path, "shown", "--token", "s3cret")
        served_runs.append(server)
        server.wait_until_listening()
        cookie = get(server.url + "/?token=s3cret")[1]["Set-Cookie"].split(";")[0]
        status, _, listing = get(server.url + "/samples", cookie)
        assert status == 200 and json.loads(listing) == {"runs": [{"name": "shown", "grids": [g.name for g in grids]}]}
        newest = f"{server.url}/samples/0/{grids[-1].name}"
        request = urllib.request.Request(newest, headers={"Cookie": cookie})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Type"] == "image/png" and response.read() == grids[-1].read_bytes()
        assert get(newest)[0] == 401
        assert get(newest, cookie, origin="https://attacker.example")[0] == 403
        for elsewhere in (
            "/samples/0/..%2Fconfig.json",
            "/samples/0/../status.json",
            "/samples/0/%2Fetc%2Fpasswd",
            "/samples/1/" + grids[-1].name,
            "/samples/-1/" + grids[-1].name,
            "/samples/0/nope.png",
        ):
            assert get(server.url + elsewhere, cookie)[0] == 404, elsewhere  # fmt: skip

    def test_a_link_among_the_grids_is_not_followed(self, tmp_path: Path, served_runs: list[Served]):
        """A grid-named link to a file elsewhere (/etc/passwd, a key) is neither listed nor served."""
        run = make_run(tmp_path / "runs", "linked", "finished")
        secret = tmp_path / "secret.txt"
        secret.write_text("root:x:0:0")
        (run.samples / "step_9999999.png").symlink_to(secret)
        server = Served(tmp_path, "linked")
        served_runs.append(server)
        server.wait_until_listening()
        status, _, listing = get(server.url + "/samples")
        assert status == 200 and "step_9999999.png" not in listing
        assert get(server.url + "/samples/0/step_9999999.png")[0] == 404

    def test_without_runs_named_the_newest_runs_grids_are_listed(self, tmp_path: Path, served_runs: list[Served]):
        make_run(tmp_path / "runs", "older", "finished")
        server = Served(tmp_path)
        served_runs.append(server)
        server.wait_until_listening()
        newer = make_run(tmp_path / "runs", "newer", "running")  # started after the server: a new tab shows it
        status, _, listing = get(server.url + "/samples")
        assert status == 200 and [run["name"] for run in json.loads(listing)["runs"]] == [newer.name]


class TestStarting:
    def test_it_prints_the_address_and_ctrl_c_stops_it_cleanly(self, tmp_path: Path):
        make_run(tmp_path / "runs", "shown", "finished")
        server = Served(tmp_path, "shown", env={"GANTERM_SERVE_TOKEN": "abc"})  # a token kept out of ps
        server.wait_until_listening()
        code, out, err = server.stop()
        assert code == 0, err
        assert f"serving the dashboard of shown at http://localhost:{server.port}/?token=abc" in out
        assert "Traceback" not in err and "warning" not in err

    def test_another_host_than_loopback_is_warned_about(self, tmp_path: Path):
        make_run(tmp_path / "runs", "shown", "finished")
        server = Served(tmp_path, "--host", "0.0.0.0")
        server.wait_until_listening()
        code, _, err = server.stop()
        assert code == 0
        assert "warning: --host 0.0.0.0 lets other machines reach the dashboard" in err
        assert "add --token" in err and f"ssh -L {server.port}:localhost:{server.port}" in err

    def test_an_unknown_run_is_one_sentence(self, tmp_path: Path):
        make_run(tmp_path / "runs", "shown", "finished")
        result = run_cli(tmp_path, "serve", "nope", "--port", str(free_port()))
        assert result.returncode != 0
        assert "error:" in result.stderr and "nope" in result.stderr and "Traceback" not in result.stderr

    def test_a_port_in_use_is_one_sentence_and_no_address_is_printed(self, tmp_path: Path):
        make_run(tmp_path / "runs", "shown", "finished")
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = run_cli(tmp_path, "serve", "--port", str(port))
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port} (Address already in use)")

    def test_without_textual_serve_it_says_how_to_install_it(self, tmp_path: Path):
        make_run(tmp_path / "runs", "shown", "finished")
        hidden = tmp_path / "hide"
        (hidden / "textual_serve").mkdir(parents=True)
        (hidden / "textual_serve" / "__init__.py").write_text(
            "raise ModuleNotFoundError(\"No module named 'textual_serve'\", name='textual_serve')\n"
        )
        result = run_cli(tmp_path, "serve", env={"PYTHONPATH": str(hidden)})
        assert result.returncode != 0
        assert result.stderr.strip().splitlines() == [
            "error: ganterm serve needs the textual-serve package (textual_serve is missing); "
            "install it with: pip install 'ganterm[serve]'"
        ]


CURSOR_MOVE = re.compile(rb"\x1b\[(\d+);(\d+)H")  # how Textual places each line it draws


async def drawn_size(websocket: aiohttp.ClientWebSocketResponse, seconds: float = 30) -> tuple[int, int]:
    """The columns and rows the tab's dashboard draws on, read from its frames once it stops drawing."""
    frames = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            message = await websocket.receive(timeout=1.5)
        except asyncio.TimeoutError:
            if CURSOR_MOVE.search(frames):
                break  # a whole screen drawn, and nothing since
            continue
        if message.type != aiohttp.WSMsgType.BINARY:
            break  # closed
        frames += message.data
    moves = [(int(column), int(row)) for row, column in CURSOR_MOVE.findall(frames)]
    assert moves, frames[-500:]
    return max(column for column, _ in moves), max(row for _, row in moves)


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, found through /proc (the children of each of its threads)."""
    found: list[int] = []
    parents = [pid]
    while parents:
        for task in Path(f"/proc/{parents.pop()}/task").glob("*"):
            with contextlib.suppress(OSError):
                children = [int(child) for child in (task / "children").read_text().split()]
                found += children
                parents += children
    return found


def alive(pid: int) -> bool:
    """Whether `pid` still runs: a zombie waiting for an init that never reaps it has ended."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class TestTabs:
    def test_a_tab_is_never_larger_than_a_screen_can_hold(self, tmp_path: Path, served_runs: list[Served]):
        """A page asking for 100,000 × 100,000 cells (at the start, or later) gets 500 × 200: a frame that size
        would hold the tab's dashboard on gigabytes of memory."""
        make_run(tmp_path / "runs", "shown", "finished")
        server = Served(tmp_path, "shown")
        served_runs.append(server)
        server.wait_until_listening()

        async def sizes() -> tuple[tuple[int, int], tuple[int, int]]:
            async with aiohttp.ClientSession() as session:
                address = f"{server.url.replace('http', 'ws')}/ws?width=100000&height=30"
                async with session.ws_connect(address, max_msg_size=0) as websocket:
                    first = await drawn_size(websocket)
                    await websocket.send_json(["resize", {"width": 500, "height": 100_000}])
                    return first, await drawn_size(websocket)

        first, resized = asyncio.run(sizes())
        assert first == (500, 30)
        assert resized[1] == 200 and resized[0] <= 500  # a redraw after a resize skips what did not change

    def test_killing_the_server_ends_every_tab(self, tmp_path: Path, served_runs: list[Served]):
        """`kill -9` of the server leaves no tab's dashboard running on its own."""
        make_run(tmp_path / "runs", "shown", "finished")
        server = Served(tmp_path, "shown")
        served_runs.append(server)
        server.wait_until_listening()

        async def open_tab_and_kill_the_server() -> list[int]:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(f"{server.url.replace('http', 'ws')}/ws") as websocket,
            ):
                await drawn_size(websocket)
                tab = descendants(server.process.pid)
                server.process.kill()
                return tab

        tab = asyncio.run(open_tab_and_kill_the_server())
        assert tab
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(pid) for pid in tab):
            time.sleep(0.1)
        assert not [pid for pid in tab if alive(pid)]

    def test_a_closed_tab_that_does_not_quit_is_killed(self, monkeypatch: pytest.MonkeyPatch):
        """A dashboard that never reads the quit (blocked writing a frame nobody reads) does not outlive its tab."""
        monkeypatch.setattr(serve, "QUIT_GRACE_S", 1.0)

        async def close_a_tab() -> tuple[float, int | None]:
            tab = tab_running("import time; time.sleep(60)")
            await tab.start(80, 24)
            started = time.monotonic()
            await tab.stop()
            assert tab._process is not None
            return time.monotonic() - started, tab._process.returncode

        took, code = asyncio.run(close_a_tab())
        assert took < 5 and code == -signal.SIGKILL

    def test_a_tab_that_grows_past_its_memory_is_killed(self, monkeypatch: pytest.MonkeyPatch):
        """A dashboard holding more than its bound is killed within seconds, not left to take the machine."""
        monkeypatch.setattr(serve, "TAB_MEMORY", 200 << 20)
        monkeypatch.setattr(serve, "MEMORY_CHECK_S", 0.2)

        async def grow() -> tuple[int | None, bool]:
            closed = asyncio.Event()

            async def close_the_page() -> None:
                closed.set()

            tab = tab_running("import time; hoard = bytearray(400 << 20); time.sleep(60)", close_the_page)
            await tab.start(80, 24)
            assert tab._process is not None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(closed.wait(), 15)
                await asyncio.wait_for(tab._process.wait(), 5)
            code = tab._process.returncode
            await tab.stop()
            return code, closed.is_set()

        assert asyncio.run(grow()) == (-signal.SIGKILL, True)  # and the page says the dashboard was closed


def tab_running(code: str, close: Callable[[], Awaitable[None]] | None = None) -> serve.TabService:
    """A tab whose 'dashboard' is `code`: it says it started, as Textual's web driver does, and runs; `close`
    closes its page."""
    from textual_serve.download_manager import DownloadManager

    async def ignore(_: object) -> None:
        pass

    async def nothing() -> None:
        pass

    argv = [sys.executable, "-c", f"print('__GANGLION__', flush=True); {code}"]
    manager = DownloadManager()
    return serve.TabService(
        argv, write_bytes=ignore, write_str=ignore, close=close or nothing, download_manager=manager
    )


@pytest.fixture
def browser_tools() -> str:
    """The system chromium and Playwright; missing, the test skips, except under CI=true, where it fails."""
    missing = [] if CHROMIUM else ["chromium (apt-get install -y chromium)"]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[test]')")
    if missing:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{' and '.join(missing)} missing, and CI=true: the browser test must run in CI", False)
        pytest.skip(f"needs {' and '.join(missing)}")
    assert CHROMIUM is not None
    return CHROMIUM


@pytest.fixture
def training(tmp_path: Path) -> Iterator[RunDir]:
    """A tiny run training in its real detached worker, stopped at the end whatever happens."""
    result = run_cli(tmp_path, "train", "--detach", "--name", "browser-demo", "--steps", "1000000", *TINY_FLAGS)
    assert result.returncode == 0, result.stdout + result.stderr
    run = RunDir(tmp_path / "runs" / "browser-demo")
    yield run
    pid = (read_status(run) or {}).get("pid")
    if isinstance(pid, int):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # the worker turns it into a stop


def frames_text(frames: list[str | bytes]) -> str:
    return "".join(frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame for frame in frames)


SCREEN_CODE = re.compile(r"\x1b\[(\d+);(\d+)H|\x1b\[[0-9;?$]*[A-Za-z]|\x1b\][^\x07]*\x07|[\r\n]|(.)", re.DOTALL)


def screen_lines(frames: list[str | bytes]) -> list[str]:
    """The text xterm.js shows after these frames: Textual places every run of text with a cursor move."""
    cells: dict[tuple[int, int], str] = {}
    row = column = 1
    for move_row, move_column, char in SCREEN_CODE.findall(frames_text([f for f in frames if isinstance(f, bytes)])):
        if move_row:
            row, column = int(move_row), int(move_column)
        elif char:
            cells[row, column] = char
            column += 1
    rows = max((r for r, _ in cells), default=0)
    columns = max((c for _, c in cells), default=0)
    return ["".join(cells.get((r, c), " ") for c in range(1, columns + 1)) for r in range(1, rows + 1)]


def test_in_a_1400_by_900_tab_every_panel_fits_the_grids_are_the_pngs_and_q_says_what_to_do(
    tmp_path: Path, browser_tools: str, served_runs: list[Served]
):
    """The quality panels' plots show without scrolling, the picture beside the terminal is the newest PNG itself
    and `[` steps back as the terminal does, and `q` leaves a page saying how to open the dashboard again."""
    from playwright.sync_api import sync_playwright

    run = make_run(tmp_path / "runs", "shown", "finished")
    append_metrics(run, [{"step": s, "t": START + s, "class_kl": 1 / s} for s in range(50, 201, 50)])
    grids = run.sample_files()
    server = Served(tmp_path, "shown")
    served_runs.append(server)
    server.wait_until_listening()
    frames: list[str | bytes] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_tools, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("websocket", lambda socket: socket.on("framereceived", lambda frame: frames.append(frame)))
            page.goto(server.url + "/")
            page.wait_for_function("document.getElementById('sample-image').naturalWidth > 0", timeout=30_000)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and "class_kl" not in frames_text(frames):
                page.wait_for_timeout(250)
            page.wait_for_timeout(3000)  # the terminal fitted to the room the picture leaves, and redrawn
            page.screenshot(path=str(tmp_path / "tab.png"))
            lines = screen_lines(frames)
            for title in ("fd_classifier", "class_kl"):  # each panel's title, then its legend and plot below it
                row = next(i for i, line in enumerate(lines) if title in line and "·" not in line)
                assert any(title in line for line in lines[row + 1 : row + 3]), "\n".join(lines)
            with Image.open(grids[-1]) as newest:
                size = newest.size
            shown = page.evaluate("(() => { const i = document.getElementById('sample-image');"
                                  " return [i.naturalWidth, i.naturalHeight, i.getAttribute('src')]; })()")  # fmt: skip
            assert shown == [*size, f"/samples/0/{grids[-1].name}"]
            assert "step 200 · newest" in page.inner_text("#sample-caption")
            page.click("#terminal")
            page.keyboard.press("[")
            page.wait_for_function(f"document.getElementById('sample-image').src.endsWith('{grids[-2].name}')")
            assert "step 100 · 1/2" in page.inner_text("#sample-caption")
            page.keyboard.press("q")
            page.wait_for_selector("text=Reload the page to open it again", timeout=20_000)
            page.screenshot(path=str(tmp_path / "closed.png"))
            assert "Session ended" not in page.inner_text("body")
        finally:
            browser.close()


def test_a_browser_shows_the_dashboard_and_its_keys_act(
    tmp_path: Path, browser_tools: str, training: RunDir, served_runs: list[Served]
):
    """The page draws the run (xterm.js paints a canvas, so the websocket frames are read), `p` pauses it,
    nothing is fetched from outside, the console stays clean; the screenshot is for a person to look at."""
    from playwright.sync_api import sync_playwright

    server = Served(tmp_path, "browser-demo", "--token", "t0k")
    served_runs.append(server)
    server.wait_until_listening()
    frames: list[str | bytes] = []
    console: list[str] = []
    elsewhere: list[str] = []
    failed: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_tools, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.on("response", lambda response: response.status >= 400 and failed.append(response.url))
            page.on("request", lambda request: request.url.startswith(server.url) or elsewhere.append(request.url))
            page.on("websocket", lambda socket: socket.on("framereceived", lambda frame: frames.append(frame)))
            page.goto(f"{server.url}/?token=t0k")
            deadline = time.monotonic() + 60
            shown = ("D(x)", "browser-demo")
            while time.monotonic() < deadline and not all(text in frames_text(frames) for text in shown):
                page.wait_for_timeout(250)
            text = frames_text(frames)
            assert all(part in text for part in shown), text[-2000:]
            while time.monotonic() < deadline and "newest" not in frames_text(frames):  # a sample grid is shown
                page.wait_for_timeout(250)
            keep = os.environ.get("GANTERM_SERVE_SCREENSHOT")  # how docs/serve.png is made
            while keep and time.monotonic() < deadline + 60 and (read_status(training) or {}).get("step", 0) < 600:
                page.wait_for_timeout(250)  # for the picture: curves with a shape, samples past noise
            page.wait_for_timeout(1500)  # a few more frames, so the picture is whole
            assert "▀" in frames_text(frames)  # the samples in coloured half-blocks, not grey shade characters
            page.screenshot(path=str(tmp_path / "serve.png"))
            page.click("#terminal")
            page.keyboard.press("p")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (read_status(training) or {}).get("state") != "paused":
                page.wait_for_timeout(200)
            assert (read_status(training) or {}).get("state") == "paused"
        finally:
            browser.close()
    assert not elsewhere, elsewhere  # offline: nothing from the internet
    assert not failed, failed
    assert not [line for line in console if line.startswith("error")], console
    assert (tmp_path / "serve.png").stat().st_size > 20_000  # a drawn dashboard, not a blank page
    if keep:
        shutil.copy(tmp_path / "serve.png", keep)
