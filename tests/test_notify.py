"""Alerts and a run's end pushed to a URL: what a receiver gets, and a receiver that is down harms nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import tomllib

from ganterm import notify
from ganterm.errors import UserError
from ganterm.lookout import Lookout
from ganterm.run.layout import RunDir
from ganterm.run.recorder import Recorder
from ganterm.run.status import read_status, this_host
from ganterm.run.text import TEXT_LIMIT
from ganterm.urls import shown_url
from ganterm.waiting import ensure_idle
from tests.conftest import run_cli, tiny_config, train_in_process, wait_for
from tests.dashboard_runs import dead_pid
from tests.test_serve import free_port

# a fresh generator's samples are near-copies (diversity ~0.1 of real data's, the threshold is 0.4): with no
# warm-up and a 10-step window, mode_collapse fires at step 10 on every seed
ALERT_AT_ONCE = ["--set", "health.warmup=0", "--set", "health.window=10"]
TINY = ["--set", "model.width=8", "--set", "model.z_dim=16", "--set", "train.batch_size=16"]
TINY += ["--set", "train.device=cpu", "--set", "log.every=5", "--set", "quality.every=0"]
TINY += ["--set", "sample.every=0", "--set", "checkpoint.every=0"]


SECRET = "T0/B0/S3cretPath"  # a webhook's path is its secret, as Slack's are


class Receiver:
    """A webhook on 127.0.0.1 that keeps what it is sent; answers with `statuses` in turn, then 200.

    The first `drips` requests are answered one byte every `DRIP_SECONDS`, never finishing: a receiver
    that is there but too slow (until the test ends, or 40 s). The first `garbled` ones are answered with
    a line that is not HTTP.
    """

    DRIP_SECONDS = 0.2

    def __init__(
        self, statuses: list[int] | None = None, drips: int = 0, garbled: int = 0, redirects: int = 0, huge: int = 0
    ) -> None:
        self.received: list[tuple[dict, dict[str, str]]] = []
        self.statuses = list(statuses or [])
        self.drips, self.garbled, self.redirects, self.huge = drips, garbled, redirects, huge
        self.gets: list[str] = []
        self.done = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if owner.drips > 0:
                    owner.drips -= 1
                    self.drip()
                    return
                if owner.garbled > 0:
                    owner.garbled -= 1
                    self.wfile.write(b"hello\r\n\r\n")
                    return
                if owner.redirects > 0:  # as an http -> https move or a load balancer may answer
                    owner.redirects -= 1
                    self.send_response(302)
                    self.send_header("Location", "/landing")
                    self.end_headers()
                    return
                if owner.huge > 0:  # an answer that says 100 GB follow, and keeps sending
                    owner.huge -= 1
                    owner.received.append((json.loads(body), dict(self.headers)))
                    self.send_response(200)
                    self.send_header("Content-Length", str(100 << 30))
                    self.end_headers()
                    for _ in range(64):
                        if owner.done.is_set():
                            return
                        self.wfile.write(b"x" * (1 << 20))
                    return
                status = owner.statuses.pop(0) if owner.statuses else 200
                if status == 200:
                    owner.received.append((json.loads(body), dict(self.headers)))
                self.send_response(status)
                self.end_headers()

            def do_GET(self) -> None:
                owner.gets.append(self.path)
                self.send_response(200)
                self.end_headers()

            def drip(self) -> None:
                for _ in range(200):
                    if owner.done.wait(owner.DRIP_SECONDS):
                        return
                    self.wfile.write(b"H")
                    self.wfile.flush()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{SECRET}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.done.set()
        self.server.shutdown()

    def events(self) -> list[str]:
        return [body["event"] for body, _ in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver()
    yield served
    served.stop()


def with_password(url: str) -> str:
    return url.replace("http://", "http://alice:S3cretPW@")


def secrets_in(*texts: str) -> list[str]:
    """The parts of a notify URL that no log line, event or output may show."""
    return [secret for secret in ("S3cretPW", "alice", SECRET) if any(secret in text for text in texts)]


def test_a_run_tells_the_url_of_its_alert_and_its_end_and_so_does_its_resumption(tmp_path: Path, receiver: Receiver):
    """Through the CLI, as a user runs it; the resumed run was not given --notify: the run's config carries it.
    The URL's user and password go as HTTP Basic auth, and nothing the run prints or writes shows them or its path."""
    result = run_cli(
        tmp_path, "train", "--name", "told", "--steps", "30", "--no-dashboard", "--notify",
        with_password(receiver.url), *TINY, *ALERT_AT_ONCE,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert receiver.events() == ["alert", "finished"]
    assert {headers["Authorization"] for _, headers in receiver.received} == {"Basic YWxpY2U6UzNjcmV0UFc="}
    (alert, headers), (end, _) = receiver.received
    assert {key: alert[key] for key in ("run", "event", "check", "severity", "step", "hint")} == {
        "run": "told", "event": "alert", "check": "mode_collapse", "severity": "error", "step": 10,
        "hint": "ganterm watch told",
    }  # fmt: skip
    assert alert["host"] and "mode-collapsed" in alert["message"]
    assert alert["message"] in alert["text"] and "ganterm watch told" in alert["text"]  # what Slack shows
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Template"] == "yes" and headers["X-Message"] == "{{.text}}"  # what ntfy shows
    assert (end["event"], end["step"], end["severity"]) == ("finished", 30, "info")
    checkpoint = (tmp_path / "runs" / "told" / "checkpoints" / "latest.safetensors").read_bytes()
    assert secrets_in(checkpoint.decode("latin-1")) == []  # a shared checkpoint hands out no webhook
    resumed = run_cli(tmp_path, "train", "--resume", "told", "--steps", "40", "--no-dashboard")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert receiver.events()[-1] == "finished" and receiver.received[-1][0]["step"] == 40
    run = RunDir(tmp_path / "runs" / "told")
    shown = [result.stdout, result.stderr, resumed.stdout, resumed.stderr, run.log.read_text(), run.events.read_text()]
    assert secrets_in(*shown) == []


def test_a_users_own_loop_tells_the_url_of_its_alert_and_its_end(tmp_path: Path, receiver: Receiver):
    import ganterm
    from ganterm.config import HealthConfig

    health = HealthConfig(warmup=0, window=10)
    with ganterm.Run("own", root=tmp_path, total=30, health=health, notify=receiver.url) as run:
        for step in range(1, 31):  # a D that wins from the start
            run.log(step, loss_d=0.03, loss_g=6.0, d_x=0.99, d_g_z1=0.01)
    assert receiver.events() == ["alert", "finished"]
    alert = receiver.received[0][0]
    assert (alert["run"], alert["check"]) == ("own", "d_overpowering") and "train.lr_d" not in alert["message"]


MALFORMED = [
    "http://[::1",  # an address left open
    "http://127.0.0.1/a b",  # a space
    "https://hooks.example.com:99999/x",  # no such port
    "http:///x",  # no host
    "https://ntfy.sh/café",  # not ASCII: urllib cannot send it
    f"http://alice:S3cretPW@[::1/services/{SECRET}",  # said without its secrets
    f"http://alice:S3cretPW#x@127.0.0.1:9/services/{SECRET}",  # a password's # unencoded: the host is unclear
    f"http://alice:S3cret/PW@127.0.0.1:9/services/{SECRET}",  # ... or its /: urllib would post to host alice
]


@pytest.mark.parametrize("url", ["ntfy.sh/x", *MALFORMED])
def test_a_users_own_loop_given_a_notify_that_is_not_a_url_is_one_sentence(tmp_path: Path, url: str):
    """Said before anything is made, and without the URL's user, password or path."""
    import ganterm

    sentence = r"^notify '[^ ]*' [^;]+; give an http:// or https:// URL, or None to send nothing$"
    with pytest.raises(UserError, match=sentence) as said:
        ganterm.Run("own", root=tmp_path, notify=url)
    assert not (tmp_path / "own").exists() and secrets_in(str(said.value)) == []


def test_a_failed_run_is_told_with_its_reason(tmp_path: Path, receiver: Receiver):
    run = RunDir(tmp_path / "broken")
    (tmp_path / "empty").mkdir()  # a folder without images: the worker fails while loading the data
    config = tiny_config("train.steps=20", f"notify.url={receiver.url}", data=str(tmp_path / "empty"))
    assert train_in_process(run, config) != 0
    (end, _), *_ = receiver.received
    assert (end["event"], end["severity"], end["run"]) == ("failed", "error", "broken")
    assert end["message"].startswith("failed: ") and "empty" in end["message"]


def test_a_url_that_refuses_connections_costs_the_loop_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """The run finishes as always; handing a notice over takes microseconds; one log line says what failed."""
    monkeypatch.setattr(notify, "BACKOFF_SECONDS", (0.05, 0.1))
    handed_over: list[float] = []
    original = notify.Notifier.notice

    def timed(self: notify.Notifier, event: str, step: int, **fields: object) -> None:
        started = time.perf_counter()
        original(self, event, step, **fields)
        handed_over.append(time.perf_counter() - started)

    monkeypatch.setattr(notify.Notifier, "notice", timed)
    port = free_port()
    refusing = with_password(f"http://127.0.0.1:{port}/services/{SECRET}")  # nothing listens there
    run = RunDir(tmp_path / "unheard")
    config = tiny_config("train.steps=30", "health.warmup=0", "health.window=10", f"notify.url={refusing}")
    assert train_in_process(run, config) == 0
    assert (read_status(run) or {})["state"] == "finished"
    assert len(handed_over) == 2 and max(handed_over) < 0.05, handed_over  # the alert and the end: not waited on
    warnings = [line for line in capsys.readouterr().out.splitlines() if "could not notify" in line]
    assert len(warnings) == 1 and f"http://127.0.0.1:{port}/" in warnings[0] and "training goes on" in warnings[0]
    assert secrets_in(warnings[0]) == []


def test_a_resume_right_after_the_end_waits_for_the_worker_still_sending_its_last_notice(tmp_path: Path):
    """The worker wrote `finished` and holds the run while a notice to a receiver that is down is retried
    (7.5 s): `ganterm train --resume` waits for it to let go instead of starting a second writer."""
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    recorder = Recorder(run, log=lambda message: None)
    recorder.set_state("finished", 3)
    recorder.notices = notify.Notifier(f"http://127.0.0.1:{free_port()}/hook", "r", "h", lambda message: None)
    recorder.notices.notice("finished", 3)
    closing = threading.Thread(target=recorder.close)
    closing.start()
    try:
        with pytest.raises(UserError, match=r"is finished, but its worker \(process \d+\) has not let go of it"):
            ensure_idle(run, wait_s=0.5, say=lambda line: None)
        said: list[str] = []
        started = time.monotonic()
        ensure_idle(run, say=said.append)
        assert not closing.is_alive() and 5 < time.monotonic() - started < 15
        assert len(said) == 1 and "last notices" in said[0]  # said once, not once a poll
    finally:
        closing.join()


def _read_whole_requests_and_hang_up(listener: socket.socket, count: int) -> None:
    for _ in range(count):
        connection, _ = listener.accept()
        with connection:
            received = b""
            while b"\r\n\r\n" not in received:
                received += connection.recv(65536)
            head, _, body = received.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            while len(body) < length:
                body += connection.recv(65536)


class TestNotifier:
    def test_a_receiver_that_fails_for_a_while_gets_the_notice_on_a_retry(self, monkeypatch: pytest.MonkeyPatch):
        served = Receiver(statuses=[503, 500])
        logged: list[str] = []
        notifier = notify.Notifier(served.url, "r", "h", logged.append, backoff=(0.05, 0.05, 0.05))
        notifier.notice("finished", 7)
        notifier.close(wait=5)
        served.stop()
        assert served.events() == ["finished"] and logged == [] and notifier.failed == 0

    def test_an_alert_is_sent_with_its_check_severity_and_message_and_nothing_else_of_its_record(self):
        served = Receiver()
        notifier = notify.Notifier(served.url, "r", "h", [].append)
        record = {"t": 1.0, "step": 300, "kind": "alert", "check": "mode_collapse", "severity": "error",
                  "message": "G collapses", "evidence": {"diversity": 0.01}}  # fmt: skip
        notifier.alert(300, record)
        notifier.alert(400, {"message": "no check named"})
        notifier.close(wait=5)
        served.stop()
        sent = [(body["step"], body["check"], body["severity"], body["message"]) for body, _ in served.received]
        assert sent == [(300, "mode_collapse", "error", "G collapses"), (400, "", "warning", "no check named")]
        assert all("evidence" not in body and body["event"] == "alert" for body, _ in served.received)

    def test_the_urls_user_and_password_go_as_basic_auth(self):
        served = Receiver()
        notifier = notify.Notifier(with_password(served.url), "r", "h", [].append)
        notifier.notice("finished", 7)
        notifier.close(wait=5)
        served.stop()
        ((_, headers),) = served.received
        assert headers["Authorization"] == "Basic YWxpY2U6UzNjcmV0UFc="  # alice:S3cretPW

    def test_a_receiver_that_keeps_failing_is_given_up_on_when_the_notices_time_is_up(
        self, monkeypatch: pytest.MonkeyPatch
    ):
        """The retries share the notice's time (NOTICE_SECONDS here 2 s): the wait before a retry is cut short at the
        end of it, and no attempt starts after it; the failure is said."""
        monkeypatch.setattr(notify, "NOTICE_SECONDS", 2.0)
        served = Receiver(statuses=[503] * 10)
        logged: list[str] = []
        notifier = notify.Notifier(served.url, "r", "h", logged.append, backoff=(0.5, 10.0, 10.0))
        started = time.monotonic()
        notifier.notice("finished", 7)
        wait_for(lambda: notifier.failed == 1, timeout=8, what="the notice to be given up")
        took = time.monotonic() - started
        notifier.close(wait=1)
        served.stop()
        assert 10 - len(served.statuses) == 2 and took < 6, (served.statuses, took)  # at once, after 0.5 s; no more
        assert len(logged) == 1 and "(HTTP 503 Service Unavailable)" in logged[0]

    def test_a_refusal_of_the_request_itself_is_not_retried_and_is_logged_once(self):
        served = Receiver(statuses=[404])
        logged: list[str] = []
        notifier = notify.Notifier(served.url, "r", "h", logged.append, backoff=(0.05, 0.05, 0.05))
        notifier.notice("alert", 3, check="d_overpowering", severity="warning", message="D wins")
        notifier.notice("finished", 7)
        notifier.close(wait=5)
        served.stop()
        assert served.events() == ["finished"]  # the first 404 ended the alert's attempts; the end went through
        assert notifier.failed == 1 and len(logged) == 1 and "(HTTP 404 Not Found)" in logged[0]

    @pytest.mark.parametrize(
        ("status", "said"), [(300, "HTTP 300 Multiple Choices to "), (400, "HTTP 400 Bad Request")]
    )
    def test_the_edges_of_the_answers_not_tried_again(self, status: int, said: str):
        """Every 3xx and 4xx but 429 is the receiver's final word; only a 3xx says where it points."""
        served = Receiver(statuses=[status])
        logged: list[str] = []
        notifier = notify.Notifier(served.url, "r", "h", logged.append, backoff=(0.05,))
        notifier.notice("finished", 7)
        notifier.close(wait=5)
        served.stop()
        assert served.events() == [] and notifier.failed == 1
        assert len(logged) == 1 and f"({said})" in logged[0], logged

    def test_a_redirect_is_said_as_a_failure_not_followed_as_a_get_without_the_notice(self):
        """urllib turns a redirected POST into a bodiless GET: the notice would be lost while counted as sent."""
        served = Receiver(redirects=1)
        logged: list[str] = []
        notifier = notify.Notifier(served.url, "r", "h", logged.append, backoff=(0.05, 0.05, 0.05))
        notifier.notice("finished", 7)
        notifier.close(wait=5)
        served.stop()
        assert served.gets == [] and notifier.failed == 1
        assert len(logged) == 1 and "(HTTP 302 Found to /…)" in logged[0] and "landing" not in logged[0]

    def test_an_endless_answer_is_read_no_further_than_its_beginning(self):
        """The notice arrived; the answer's 100 GB are not the trainer's to hold, nor worth a time-out."""
        served = Receiver(huge=1)
        logged: list[str] = []
        notifier = notify.Notifier(served.url, "r", "h", logged.append, backoff=(0.05, 0.05, 0.05))
        started = time.monotonic()
        notifier.notice("finished", 7)
        notifier.close(wait=10)
        served.stop()
        assert served.events() == ["finished"] and notifier.failed == 0 and logged == []
        assert time.monotonic() - started < 5

    def test_a_receiver_too_slow_to_answer_costs_one_notice_its_time_and_no_more(self):
        """It sends a byte every 0.2 s, each within the 1 s read timeout: the whole attempt is what is limited.
        That notice is given up on and said; the next one goes out at once."""
        served = Receiver(drips=1)
        logged: list[str] = []
        notifier = notify.Notifier(served.url, "r", "h", logged.append, timeout=1.0, backoff=(0.05, 0.05))
        notifier.notice("alert", 3, check="d_overpowering", severity="warning", message="D wins")
        notifier.notice("finished", 7)
        started = time.monotonic()
        notifier.close(wait=10)
        took = time.monotonic() - started
        served.stop()
        assert served.events() == ["finished"] and notifier.failed == 1
        assert took < 5 and len(logged) == 1 and "(timed out after 1 s)" in logged[0], (took, logged)

    def test_a_receiver_that_does_not_answer_in_http_is_said_and_the_next_notice_still_goes_out(self):
        served = Receiver(garbled=1)
        logged: list[str] = []
        notifier = notify.Notifier(served.url, "r", "h", logged.append, backoff=())
        notifier.notice("alert", 3, check="d_overpowering", severity="warning", message="D wins")
        notifier.notice("finished", 7)
        notifier.close(wait=5)
        served.stop()
        assert served.events() == ["finished"] and notifier.failed == 1
        assert len(logged) == 1 and "(not an HTTP answer: BadStatusLine " in logged[0]

    def test_an_answer_that_is_not_http_is_tried_again(self):
        """It may be a proxy's hiccup: the retry goes through, and nothing is said."""
        served = Receiver(garbled=1)
        logged: list[str] = []
        notifier = notify.Notifier(served.url, "r", "h", logged.append, backoff=(0.05,))
        notifier.notice("finished", 7)
        notifier.close(wait=5)
        served.stop()
        assert served.events() == ["finished"] and notifier.failed == 0 and logged == []

    def test_a_notice_that_cannot_be_sent_is_said_and_the_next_one_still_goes_out(self, receiver: Receiver):
        import numpy

        logged: list[str] = []
        notifier = notify.Notifier(receiver.url, "r", "h", logged.append)
        notifier.notice("alert", numpy.int64(3), check="d_overpowering", severity="warning")  # not JSON
        notifier.notice("finished", 7)
        notifier.close(wait=5)
        assert receiver.events() == ["finished"] and notifier.failed == 1
        assert len(logged) == 1 and "(TypeError: Object of type int64 is not JSON serializable)" in logged[0]

    def test_ntfy_is_asked_for_the_title_and_text_and_an_error_comes_with_a_higher_priority(self):
        served = Receiver()
        notifier = notify.Notifier(served.url, "faces", "gpu3", [].append)
        notifier.notice("alert", 3, check="d_overpowering", severity="warning", message="D wins")
        notifier.notice("failed", 9, message="failed: out of memory")
        notifier.close(wait=5)
        served.server.shutdown()
        (alert, alert_headers), (failed, failed_headers) = served.received
        assert {key: alert_headers[key] for key in ("Content-Type", "X-Template", "X-Title", "X-Message")} == {
            "Content-Type": "application/json", "X-Template": "yes", "X-Title": "{{.title}}", "X-Message": "{{.text}}",
        }  # fmt: skip
        assert (alert_headers["X-Priority"], failed_headers["X-Priority"]) == ("3", "4")
        assert alert["title"] == "ganterm faces: d_overpowering" and failed["title"] == "ganterm faces: failed"
        assert alert["text"] == "ganterm faces on gpu3, step 3, warning (d_overpowering): D wins " \
                                "(see: ganterm watch faces)"  # fmt: skip
        assert (failed["severity"], failed["message"], failed["step"]) == ("error", "failed: out of memory", 9)

    def test_a_receiver_that_never_answers_is_given_up_on_after_the_timeout(self):
        with socket.socket() as silent:  # takes connections (the backlog) and never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            logged: list[str] = []
            url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
            before = set(threading.enumerate())
            notifier = notify.Notifier(url, "r", "h", logged.append, timeout=0.2, backoff=(0.05,))
            started = time.monotonic()
            notifier.notice("finished", 7)
            wait_for(lambda: notifier.failed == 1, timeout=5, what="the notice to be given up")
            assert time.monotonic() - started < 2  # one attempt of 0.2 s (a timed-out one is not sent again), not 5 s
            # the attempts' sockets time out too: nothing is left waiting on the silent receiver but the notifier
            wait_for(lambda: len(set(threading.enumerate()) - before) == 1, timeout=5, what="the attempts to end")
            notifier.close(wait=1)
        assert len(logged) == 1 and "timed out" in logged[0] and "training goes on" in logged[0]

    def test_a_receiver_that_asks_to_slow_down_gets_the_notice_on_a_retry(self):
        served = Receiver(statuses=[429])
        notifier = notify.Notifier(served.url, "r", "h", [].append, backoff=(0.05,))
        notifier.notice("finished", 7)
        notifier.close(wait=5)
        served.server.shutdown()
        assert served.events() == ["finished"] and notifier.failed == 0

    def test_closing_ends_the_wait_before_a_retry_at_once(self):
        """A finishing run does not sit out a 30 s backoff: the retry is dropped, said once."""
        logged: list[str] = []
        notifier = notify.Notifier(f"http://127.0.0.1:{free_port()}/hook", "r", "h", logged.append, backoff=(30.0,))
        notifier.notice("finished", 7)
        started = time.monotonic()
        notifier.close(wait=0.3)
        wait_for(lambda: notifier.failed == 1, timeout=5, what="the retry to be dropped")
        assert time.monotonic() - started < 3 and len(logged) == 1 and "] Connection refused)" in logged[0]

    def test_a_receiver_that_hangs_up_without_answering_is_said_in_its_own_words(self):
        """The whole request read, then the connection closed: an OSError with no `reason`, told in its own words."""
        logged: list[str] = []
        with socket.socket() as rude:
            rude.bind(("127.0.0.1", 0))
            rude.listen()
            threading.Thread(target=_read_whole_requests_and_hang_up, args=(rude, 2), daemon=True).start()
            notifier = notify.Notifier(f"http://127.0.0.1:{rude.getsockname()[1]}/hook", "r", "h", logged.append,
                                       backoff=(0.05,))  # fmt: skip
            notifier.notice("finished", 7)
            notifier.close(wait=5)
        assert notifier.failed == 1 and len(logged) == 1
        assert "(Remote end closed connection without response)" in logged[0], logged

    def test_more_notices_than_the_queue_holds_are_dropped_and_said_once(self):
        logged: list[str] = []
        notifier = notify.Notifier(f"http://127.0.0.1:{free_port()}/hook", "r", "h", logged.append, backoff=(30.0,))
        for step in range(notify.QUEUE_LIMIT + 11):  # the first is being sent, QUEUE_LIMIT wait, 10 are too many
            notifier.notice("alert", step, check="nan", severity="error", message="NaN")
        shown = shown_url(notifier.url)
        assert notifier.failed >= 10 and logged == [f"warning: could not notify {shown} (too many notices "
                                                     "waiting); training goes on, later failures unlogged"]  # fmt: skip
        notifier.close(wait=0.1)

    def test_an_alerts_own_severity_is_what_the_receiver_reads(self):
        """An error alert (a NaN loss) goes out as an error, at ntfy's high priority; one without, a warning; a
        severity of a user's own health check as it is, at the default priority."""
        served = Receiver()
        notifier = notify.Notifier(served.url, "r", "h", [].append)
        notifier.notice("alert", 3, check="nan", severity="error", message="loss_d is NaN")
        notifier.notice("alert", 4, check="custom", message="something")
        notifier.notice("alert", 5, check="own", severity="critical", message="a check of the user's own")
        notifier.close(wait=5)
        served.stop()
        (nan, nan_headers), (custom, custom_headers), (own, own_headers) = served.received
        assert (nan["severity"], nan_headers["X-Priority"]) == ("error", "4")
        assert nan["text"] == "ganterm r on h, step 3, error (nan): loss_d is NaN (see: ganterm watch r)"
        assert (custom["severity"], custom_headers["X-Priority"]) == ("warning", "3")
        assert (own["severity"], own_headers["X-Priority"]) == ("critical", "3")  # a severity ntfy has no level for

    def test_a_finishing_run_waits_for_its_last_notice_no_longer_than_the_close_wait(
        self, monkeypatch: pytest.MonkeyPatch
    ):
        """A receiver that takes the connection and never answers holds the end of the run CLOSE_WAIT_SECONDS, not
        the attempt's whole timeout."""
        monkeypatch.setattr(notify, "CLOSE_WAIT_SECONDS", 0.2)
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
            notifier = notify.Notifier(url, "r", "h", [].append, timeout=4.0, backoff=())
            notifier.notice("finished", 7)
            started = time.monotonic()
            notifier.close()
            assert time.monotonic() - started < 2

    def test_a_script_that_never_closes_its_notifier_still_exits(self):
        """Its threads do not hold the interpreter open: a loop that ends without `finish()` is not left hanging."""
        before = set(threading.enumerate())
        with socket.socket() as silent:  # the attempt's thread is alive too while the receiver stays silent
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
            notifier = notify.Notifier(url, "r", "h", [].append, timeout=1.0, backoff=())
            notifier.notice("finished", 7)
            wait_for(lambda: len(set(threading.enumerate()) - before) >= 2, timeout=5, what="the attempt's thread")
            assert [thread for thread in set(threading.enumerate()) - before if not thread.daemon] == []
            notifier.close(wait=5)

    def test_an_end_without_a_message_says_how_the_run_ended_with_its_severity(self):
        severities = {event: notify.payload("r", event, 5, "h")["severity"] for event in notify.END_EVENTS}
        assert severities == {"finished": "info", "stopped": "info", "failed": "error", "stalled": "warning",
                              "lost": "error"}  # fmt: skip
        assert notify.payload("r", "lost", 5, "h")["message"] == "run r lost at step 5"

    def test_a_huge_message_goes_out_clipped_with_its_start_and_end(self):
        message = "start " + "x" * 5_000_000 + " end"
        sent = notify.payload("r", "failed", 5, "h", message=message)["message"]
        assert len(sent) <= TEXT_LIMIT and sent.startswith("start ") and sent.endswith(" end") and "cut" in sent

    def test_the_payload_has_the_fields_a_receiver_reads(self):
        body = notify.payload("faces", "stalled", 120, "gpu3")
        assert body["severity"] == "warning" and body["hint"] == "ganterm watch faces"
        assert body["text"] == "ganterm faces on gpu3, step 120, stalled: run faces stalled at step 120 " \
                               "(see: ganterm watch faces)"  # fmt: skip
        assert set(body) >= {"run", "event", "check", "severity", "message", "step", "host", "hint", "text"}


def test_a_notify_url_that_is_not_http_is_one_sentence(tmp_path: Path):
    result = run_cli(tmp_path, "train", "--notify", "ntfy.sh/mytopic", "--dry-run")
    assert result.returncode == 2
    assert "notify.url 'ntfy.sh/…' is not an http:// or https:// URL" in result.stderr
    assert "Traceback" not in result.stderr and "mytopic" not in result.stderr


def test_a_dry_run_shows_the_notify_url_without_its_secrets(tmp_path: Path):
    url = with_password(f"http://127.0.0.1:9/services/{SECRET}?token=S3cretPW")
    result = run_cli(tmp_path, "train", "--notify", url, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert tomllib.loads(result.stdout)["notify"]["url"] == "http://127.0.0.1:9/…" and secrets_in(result.stdout) == []


@pytest.mark.parametrize("url", [MALFORMED[0], MALFORMED[1]])
def test_a_malformed_notify_url_is_one_sentence_and_starts_nothing(tmp_path: Path, url: str):
    """Once it killed the notifier's thread with a traceback in worker.log, after the run had begun."""
    result = run_cli(tmp_path, "train", "--notify", url, "--steps", "5", "--no-dashboard", *TINY)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: notify.url 'http://") and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


class TestLookout:
    def test_a_run_killed_while_training_is_told_as_lost(self, tmp_path: Path, receiver: Receiver):
        """kill -9 leaves the worker no word to say: the lookout `ganterm train` started beside it says it."""
        args = ["train", "--detach", "--name", "doomed", "--steps", "1000000", "--notify", with_password(receiver.url)]
        args += TINY
        result = run_cli(tmp_path, *args)
        assert result.returncode == 0, result.stdout + result.stderr
        run = RunDir(tmp_path / "runs" / "doomed")
        pid = (read_status(run) or {})["pid"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and receiver.events() != ["lost"]:
            time.sleep(0.2)
        assert receiver.events() == ["lost"]
        lost = receiver.received[0][0]
        assert lost["severity"] == "error" and "ganterm train --resume doomed" in lost["message"]
        assert "lookout: told" in run.log.read_text() and secrets_in(run.log.read_text()) == []

    def test_a_stall_is_told_once_per_stall_and_the_end_ends_the_watch(self, tmp_path: Path):
        lookout = Lookout(RunDir(tmp_path / "r"))
        beating = {"state": "running", "pid": 1, "host": this_host(), "started": 100.0, "step": 5}
        silent = {**beating, "heartbeat": time.time() - 60}  # pid 1 lives, and began long before its beat stopped
        looks = [
            {**beating, "state": "starting", "started": None, "heartbeat": time.time()},
            {**beating, "heartbeat": time.time()},
            silent,
            silent,
            {**beating, "heartbeat": time.time()},
            silent,
            {**beating, "state": "finished"},
        ]
        told = [lookout.look(status) for status in looks]
        assert [event[0] if event else None for event in told] == [None, None, "stalled", None, None, "stalled", None]
        assert not lookout.going

    def test_a_worker_dying_while_starting_is_left_to_the_user_who_started_it(self, tmp_path: Path):
        lookout = Lookout(RunDir(tmp_path / "r"))
        assert lookout.look({"state": "starting", "pid": dead_pid(), "host": this_host()}) is None
        assert not lookout.going

    def test_another_worker_taking_the_run_over_ends_the_watch(self, tmp_path: Path):
        lookout = Lookout(RunDir(tmp_path / "r"))
        now = time.time()
        lookout.look({"state": "running", "pid": 1, "host": this_host(), "started": 100.0, "heartbeat": now})
        lookout.look({"state": "running", "pid": 1, "host": this_host(), "started": 200.0, "heartbeat": now})
        assert not lookout.going


def test_a_webhook_in_a_loops_own_config_is_shown_as_its_host_only(tmp_path: Path):
    """`Run(notify=args.notify, config=args)`: the URL is in the settings too, which runs, export and header show."""
    import argparse

    import ganterm

    url = with_password(f"http://127.0.0.1:9/services/{SECRET}")
    args = argparse.Namespace(lr=0.1, notify=url, hooks=[url])
    with ganterm.Run("own", root=tmp_path / "runs", config=args, notify=url) as run:
        run.log(1, loss_d=0.5)
    listing = run_cli(tmp_path, "runs").stdout + run_cli(tmp_path, "runs", "--json").stdout
    out = tmp_path / "own.csv"
    run_cli(tmp_path, "export", "own", "--format", "csv", "--out", str(out))
    assert "127.0.0.1:9" in listing and secrets_in(listing, out.read_text()) == []
    assert ganterm.open_run(run.dir.path).config()["notify"] == "http://127.0.0.1:9/…"
