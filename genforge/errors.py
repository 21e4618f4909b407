"""The one error hierarchy of genforge. Lower layers raise these; only the CLI prints them.

Every message is one line a user can act on: it names the file, field or value and what is
allowed. The CLI turns a `GenforgeError` into `error: <message>` and exit code 2; anything
else that escapes is an internal failure (exit 1, with a note on how to report it).
"""

from __future__ import annotations


class GenforgeError(Exception):
    """A failure the user can fix: bad input, a bad config, a run folder in the way."""


class ConfigError(GenforgeError, ValueError):
    """A config, option or request value that cannot be used."""


class DataError(GenforgeError, RuntimeError):
    """Data that cannot be read; the message names the file and the fix."""
