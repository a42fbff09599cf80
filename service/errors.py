"""The error users see: a message that says what was wrong and where, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or configuration; the CLI prints ``str(error)`` and exits 1."""
