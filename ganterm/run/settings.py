"""A run's settings, for the record and for comparing runs: a user loop's `config=`, or ganterm's config.toml.

A user's loop hands `ganterm.Run(config=...)` a dict, a dataclass or an
argparse Namespace; it is kept as config.json (JSON keeps its None, lists
and nesting; a value JSON cannot hold is kept as its repr, so nothing is
dropped). ganterm's own runs keep config.toml, which other code loads as a
`Config`, so the two files stay apart. Viewers read either as one flat dict
of dotted keys (`model.width`), the way the CLI names settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import numbers
from collections.abc import Mapping
from typing import Any

import orjson

from ganterm.config import tomllib
from ganterm.errors import UserError
from ganterm.run.files import write_atomic
from ganterm.run.layout import RunDir
from ganterm.urls import shown_url

HIDDEN = ("notify.url",)  # may hold a secret (an ntfy topic, a token): never listed or compared
_PLAIN = (bool, int, float, str, type(None))


def plain_config(config: Any) -> dict[str, Any]:
    """`config` as a JSON-ready dict; one sentence for a kind of object that is not a config."""
    fields = _fields(config)
    if fields is None:
        raise UserError(
            f"config must be a dict, a dataclass or an argparse Namespace, not {type(config).__name__} ({config!r:.60})"
        )
    try:
        return {str(key): _plain(value) for key, value in fields.items()}
    except RecursionError:  # a config that holds itself
        raise UserError("config holds itself (or is nested thousands deep); give plain settings") from None


def _fields(config: Any) -> Mapping[Any, Any] | None:
    if isinstance(config, Mapping):
        return config
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}
    if isinstance(config, argparse.Namespace):
        return vars(config)
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return repr(value)  # JSON as the record writes it holds no integer past 64 bits
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no UTF-8 file can hold it
            return repr(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, numbers.Integral):  # numpy and torch scalars: the number, not its repr
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # arrays and tensors: their values
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    fields = _fields(value)
    if fields is not None:
        return {str(key): _plain(item) for key, item in fields.items()}
    return repr(value)


def write_loop_config(run: RunDir, config: dict[str, Any]) -> None:
    """Replace the loop's config.json whole (a resumed run may bring changed settings)."""
    write_atomic(run.loop_config, orjson.dumps(config, option=orjson.OPT_INDENT_2))


def read_nested_settings(run: RunDir) -> dict[str, Any]:
    """The run's settings as written (the hidden ones left out): a loop's config.json, else ganterm's config.toml."""
    try:
        if run.loop_config.exists():
            nested = orjson.loads(run.loop_config.read_bytes())
        else:
            nested = tomllib.loads(run.config.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, half-written by hand, not UTF-8: nothing to show
        return {}
    return _without_hidden(nested) if isinstance(nested, dict) else {}


def _without_hidden(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Settings as they may be shown: no notify.url, and any other URL as its scheme and host (a loop's own
    config may hold its webhook too, password and secret path included)."""
    return {
        key: _without_hidden(value, f"{prefix}{key}.") if isinstance(value, dict) else _shown(value)
        for key, value in nested.items()
        if f"{prefix}{key}" not in HIDDEN
    }


def _shown(value: Any) -> Any:
    if isinstance(value, str) and value[:8].lower().startswith(("http://", "https://")):
        return shown_url(value)
    if isinstance(value, list):
        return [_shown(item) for item in value]
    return value


def read_settings(run: RunDir) -> dict[str, Any]:
    """The run's settings as dotted keys, the hidden ones left out."""
    return _flat(read_nested_settings(run))


def shown_config(nested: dict[str, Any]) -> dict[str, Any]:
    """Settings another tool wrote (StyleGAN's training_options.json) as they may be shown: no secrets."""
    return _without_hidden(nested)


def shown_settings(nested: dict[str, Any]) -> dict[str, Any]:
    """Settings another tool wrote, as dotted keys, the hidden ones left out."""
    return _flat(_without_hidden(nested))


def _flat(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def setting_text(value: Any) -> str:
    """A value as a user wrote it: 0.0002, true, adam, [64, 128]; a repr kept for JSON stays a repr."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def settings_line(settings: dict[str, Any]) -> str:
    """`lr=0.0002 batch_size=64`: one line, for a table cell or a header."""
    return " ".join(f"{key}={setting_text(value)}" for key, value in settings.items())


def differing(runs_settings: list[dict[str, Any]]) -> list[str]:
    """The keys whose values are not the same in every run (missing counts as a value), in first-seen order."""
    keys = list(dict.fromkeys(key for settings in runs_settings for key in settings))
    missing = object()
    return [key for key in keys if len({repr(s.get(key, missing)) for s in runs_settings}) > 1]
