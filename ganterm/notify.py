"""Alerts and a run's end, pushed to a URL the user reads (a Slack-compatible webhook, an ntfy topic).

The worker hands each notice to a `Notifier`, which queues it and returns at
once; one background thread POSTs the queue, with a few retries with backoff.
Each attempt has a deadline as a whole, not per socket read, so a receiver
that drips its answer a byte at a time delays the notices after it by one
timeout, not forever. A URL that is down costs the training loop nothing, is
never fatal, and is logged once, not once per notice, without its secrets
(`urls.shown_url`); a `user:password@` in it is sent as HTTP Basic auth.

The body is one JSON object (`payload`), checked against two services' own
documentation: Slack's incoming webhooks (api.slack.com/messaging/webhooks)
show its `text` field; ntfy (docs.ntfy.sh/publish, "Inline templating", ntfy
2.10 and later) publishes a JSON body sent to a topic URL as it is, so the
`X-Template`, `X-Title` and `X-Message` headers ask it to show `title` and
`text` instead. Other receivers get the fields and ignore the headers.
torch-free: stdlib HTTP only.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from ganterm.run.text import clip
from ganterm.urls import basic_auth, shown_url

TIMEOUT_SECONDS = 5.0  # per attempt, whole: connecting, sending and the answer; a slower receiver is not tried again
NOTICE_SECONDS = 15.0  # per notice, its retries and the waits between them included
BACKOFF_SECONDS = (0.5, 2.0, 5.0)  # waits before the retries; after the last, the notice is dropped
CLOSE_WAIT_SECONDS = 10.0  # how long a finishing worker waits for its last notices to go out
VIEWER_CLOSE_SECONDS = 3.0  # how long a viewer that leaves waits for a read-only run's last alerts to go out
ALERT_FIELDS = ("check", "severity", "message")  # what an alert's notice tells of it
QUEUE_LIMIT = 100  # notices waiting beyond this are dropped: a run raising that many has said enough
END_EVENTS = {"finished": "info", "stopped": "info", "failed": "error", "stalled": "warning", "lost": "error"}
NTFY_HEADERS = {"X-Template": "yes", "X-Title": "{{.title}}", "X-Message": "{{.text}}"}
PRIORITY = {"error": "4", "warning": "3", "info": "3"}  # ntfy's scale: 3 is default, 4 high
TIMED_OUT = "timed out"  # what a socket says when a read waited out its timeout


def payload(run: str, event: str, step: int, host: str, **fields: Any) -> dict[str, Any]:
    """One notice: `event` is `alert` (with `check`, `severity`, `message`) or how the run ended."""
    check = str(fields.get("check", ""))
    severity = str(fields.get("severity") or END_EVENTS.get(event, "warning"))
    message = clip(str(fields.get("message") or f"run {run} {event} at step {step}"))  # a 5 MB error: a few KB
    what = f"{severity} ({check})" if event == "alert" else event
    return {
        "run": run,
        "event": event,
        "check": check,
        "severity": severity,
        "message": message,
        "step": step,
        "host": host,
        "hint": f"ganterm watch {run}",
        "title": f"ganterm {run}: {check or event}",
        "text": f"ganterm {run} on {host}, step {step}, {what}: {message} (see: ganterm watch {run})",
    }


class Notifier:
    """POSTs the notices of run `run` to `url` from its own thread; `notice` never blocks and never raises."""

    def __init__(
        self,
        url: str,
        run: str,
        host: str,
        log: Callable[[str], None],
        timeout: float | None = None,
        backoff: tuple[float, ...] | None = None,
    ) -> None:
        self.url, self._auth = basic_auth(url)
        self.run = run
        self.host = host
        self.log = log
        self.timeout = TIMEOUT_SECONDS if timeout is None else timeout
        self.backoff = BACKOFF_SECONDS if backoff is None else backoff
        self.failed = 0  # notices given up on
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_LIMIT)
        self._said_so = False
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._deliver_all, name="ganterm-notify", daemon=True)
        self._thread.start()

    def notice(self, event: str, step: int, **fields: Any) -> None:
        """Queue one notice (see `payload`); what the `Recorder` calls on an alert and at the run's end."""
        try:
            self._queue.put_nowait(payload(self.run, event, step, self.host, **fields))
        except queue.Full:
            self._give_up("too many notices waiting")

    def alert(self, step: int, alert: dict[str, Any]) -> None:
        """Queue an alert (an events.jsonl record, or the fields of one) as a notice: its check, severity, message."""
        self.notice("alert", step, **{key: alert[key] for key in ALERT_FIELDS if key in alert})

    def close(self, wait: float | None = None) -> None:
        """Let the queued notices go out, waiting at most `wait` seconds: the run's end is the one people wait for."""
        with contextlib.suppress(queue.Full):  # full: the join below waits `wait` out, and the thread dies with us
            self._queue.put_nowait(None)
        self._thread.join(CLOSE_WAIT_SECONDS if wait is None else wait)
        self._closing.set()  # retries still waiting give up now

    def _deliver_all(self) -> None:
        while (notice := self._queue.get()) is not None:
            try:
                error = self._deliver(notice)
            except Exception as failure:  # one notice that cannot be sent must not silence the ones after it
                error = f"{type(failure).__name__}: {failure}"
            if error:
                self._give_up(error)

    def _deliver(self, notice: dict[str, Any]) -> str:
        """Send one notice, retrying while that may help and its time lasts; what went wrong, or ''."""
        body = json.dumps(notice).encode()
        headers = {"Content-Type": "application/json", **NTFY_HEADERS}
        headers["X-Priority"] = PRIORITY.get(str(notice.get("severity")), "3")
        deadline = time.monotonic() + NOTICE_SECONDS
        error = ""
        for wait in (0.0, *self.backoff):
            if wait and self._closing.wait(min(wait, max(deadline - time.monotonic(), 0.0))):
                break
            limit = min(self.timeout, deadline - time.monotonic())
            if limit <= 0:
                break
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            for name, value in self._auth.items():  # not passed on to where a redirect points
                request.add_unredirected_header(name, value)
            error, again = _post_within(request, limit)
            if not again:
                break
        return error

    def _give_up(self, error: str) -> None:
        self.failed += 1
        if not self._said_so:
            self._said_so = True
            self.log(
                f"warning: could not notify {shown_url(self.url)} ({error}); training goes on, later failures unlogged"
            )


def _post_within(request: urllib.request.Request, seconds: float) -> tuple[str, bool]:
    """POST `request`, given up on after `seconds` in all: (what went wrong or '', whether to try again).

    A socket's timeout bounds each read, and a receiver that sends a byte now
    and then never trips it: the request runs in a thread of its own that is
    left behind (it ends at the receiver's next pause) once its time is up.
    """
    outcome: list[tuple[str, bool]] = []

    def post() -> None:
        outcome.append(_post(request, seconds))

    attempt = threading.Thread(target=post, name="ganterm-notify-post", daemon=True)
    attempt.start()
    attempt.join(seconds)
    if not outcome or outcome[0][0] == TIMED_OUT:
        # not sent again: it may have arrived, and a receiver this slow would hold up the notices after it again
        return f"timed out after {seconds:.3g} s", False
    return outcome[0]


ANSWER_BYTES = 65_536  # of a receiver's answer, read and dropped: an endless one must not fill the trainer's memory


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirected POST would arrive as a GET without its body (urllib's rule for 301-303): a notice lost while
    counted as sent. The 3xx is the answer, and it is said."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _post(request: urllib.request.Request, timeout: float) -> tuple[str, bool]:
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(ANSWER_BYTES)
        return "", False
    except urllib.error.HTTPError as failure:
        # a 3xx, or a 4xx other than 429: the receiver will answer the same again, so sending again will not help
        refused = 300 <= failure.code < 500 and failure.code != 429
        where = f" to {shown_url(failure.headers.get('Location', ''))}" if 300 <= failure.code < 400 else ""
        return f"HTTP {failure.code} {failure.reason}{where}", not refused
    except (OSError, ValueError) as failure:  # refused, unreachable, timed out
        reason = getattr(failure, "reason", failure)
        return (TIMED_OUT if isinstance(reason, TimeoutError) else str(reason)), True
    except http.client.HTTPException as failure:  # whatever answered does not speak HTTP
        return f"not an HTTP answer: {type(failure).__name__} {failure}", True
