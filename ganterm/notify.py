"""Alerts and a run's end, pushed to a URL the user reads (a Slack-compatible webhook, an ntfy topic).

The worker hands each notice to a `Notifier`, which queues it and returns at
once; one background thread POSTs the queue, with a short timeout and a few
retries with backoff. A URL that is down costs the training loop nothing, is
never fatal, and is logged once, not once per notice.

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
import json
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

TIMEOUT_SECONDS = 5.0  # per attempt: a receiver slower than this is treated as down
BACKOFF_SECONDS = (0.5, 2.0, 5.0)  # waits before the retries; after the last, the notice is dropped
CLOSE_WAIT_SECONDS = 10.0  # how long a finishing worker waits for its last notices to go out
QUEUE_LIMIT = 100  # notices waiting beyond this are dropped: a run raising that many has said enough
END_EVENTS = {"finished": "info", "stopped": "info", "failed": "error", "stalled": "warning", "lost": "error"}
NTFY_HEADERS = {"X-Template": "yes", "X-Title": "{{.title}}", "X-Message": "{{.text}}"}
PRIORITY = {"error": "4", "warning": "3", "info": "3"}  # ntfy's scale: 3 is default, 4 high


def payload(run: str, event: str, step: int, host: str, **fields: Any) -> dict[str, Any]:
    """One notice: `event` is `alert` (with `check`, `severity`, `message`) or how the run ended."""
    check = str(fields.get("check", ""))
    severity = str(fields.get("severity") or END_EVENTS.get(event, "warning"))
    message = str(fields.get("message") or f"run {run} {event} at step {step}")
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
        self.url = url
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

    def close(self, wait: float | None = None) -> None:
        """Let the queued notices go out, waiting at most `wait` seconds: the run's end is the one people wait for."""
        with contextlib.suppress(queue.Full):  # full: the join below waits `wait` out, and the thread dies with us
            self._queue.put_nowait(None)
        self._thread.join(CLOSE_WAIT_SECONDS if wait is None else wait)
        self._closing.set()  # retries still waiting give up now

    def _deliver_all(self) -> None:
        while (notice := self._queue.get()) is not None:
            self._deliver(notice)

    def _deliver(self, notice: dict[str, Any]) -> None:
        body = json.dumps(notice).encode()
        headers = {"Content-Type": "application/json", **NTFY_HEADERS}
        headers["X-Priority"] = PRIORITY.get(str(notice.get("severity")), "3")
        error = ""
        for wait in (0.0, *self.backoff):
            if wait and self._closing.wait(wait):
                break
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
                return
            except urllib.error.HTTPError as failure:
                error = f"HTTP {failure.code} {failure.reason}"
                if 400 <= failure.code < 500 and failure.code != 429:
                    break  # the receiver refuses this request as it is: sending it again will not help
            except (OSError, ValueError) as failure:  # refused, unreachable, timed out, a malformed URL
                error = str(getattr(failure, "reason", failure))
        self._give_up(error)

    def _give_up(self, error: str) -> None:
        self.failed += 1
        if not self._said_so:
            self._said_so = True
            self.log(f"warning: could not notify {self.url} ({error}); training goes on, later failures unlogged")
