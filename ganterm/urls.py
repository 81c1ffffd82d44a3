"""A notify URL: checked before anything starts, its user and password sent as Basic auth, shown without secrets.

A webhook's URL is its secret: Slack's path, an ntfy topic, a `user:password@`.
`shown_url` is the one way a URL reaches people (log lines, errors, output):
scheme and host only. Torch-free and light: the config module checks URLs with it.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote, urlsplit, urlunsplit

PORTS = range(1, 65536)


def url_problem(url: str) -> str | None:
    """What keeps `url` from being POSTed to, said after the URL itself ("... is not ..."); None if nothing does."""
    if not url.startswith(("http://", "https://")):
        return "is not an http:// or https:// URL"
    if any(char.isspace() or not char.isprintable() for char in url):
        return "holds a space or a control character (percent-encode it, as %20)"
    if not url.isascii():
        return "holds a character that is not ASCII (percent-encode it, and write the host in punycode)"
    if _at_past_the_host(url):
        return "holds an @ after a / ? or # (percent-encode a password's @ / ? # as %40 %2F %3F %23)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # an address left open ("[::1"), a port that is not a number; the error quotes the URL
        return "is not a well-formed URL (an unclosed [ or a port that is no number)"
    if not parts.hostname:
        return "names no host"
    if port is not None and port not in PORTS:
        return f"has no such port ({port})"
    return None


def _at_past_the_host(url: str) -> bool:
    """`user:pa/ss@host`: an @ after the first / ? or #, so the host is not where a reader thinks it is."""
    rest = url.partition("://")[2]
    address = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return "@" in rest[len(address) :]


def shown_url(url: str) -> str:
    """`url` for people: its scheme and host, then `/…` for anything after them; never a user or password."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    rest = rest.rpartition("@")[2]  # whatever stands before the last @ may be a password, even one holding / or #
    address = re.split(r"[/?#]", rest, maxsplit=1)[0]
    host = address
    return f"{scheme}{separator}{host}{'/…' if len(address) < len(rest) else ''}"


def basic_auth(url: str) -> tuple[str, dict[str, str]]:
    """The URL to send to, without its `user:password@`, and the Authorization header that carries them."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, {}
    credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    token = base64.b64encode(credentials.encode()).decode("ascii")
    address = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=address)), {"Authorization": f"Basic {token}"}
