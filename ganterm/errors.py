"""The one exception type that means "the user asked for something we cannot do".

The CLI turns a `UserError` into a single line on stderr and a non-zero exit;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input, explained in one sentence."""

    exit_code: int = 1


class ConfigError(UserError):
    """A bad config file, key, type or value; exits 2 like a usage error."""

    exit_code = 2
