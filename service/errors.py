"""The errors users see: a message that says what was wrong and where, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or configuration; the CLI prints ``str(error)`` and exits 1, the API answers
    BAD_INPUT."""


class NotFound(UserError):
    """No such thing: scheme, tier, customer, strategy, key, webhook, delivery, run, ...; the
    API answers NOT_FOUND."""
