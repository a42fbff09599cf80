"""The errors users see: a message that says what was wrong and where, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or configuration; the CLI prints ``str(error)`` and exits 1, the API answers
    BAD_INPUT."""


class NotFound(UserError):
    """No such thing: scheme, tier, customer, strategy, key, webhook, delivery, run, ...; the
    API answers NOT_FOUND."""


class TimedOut(UserError):
    """Work stopped by a time bound: a statement past its timeout, or a wait for a database
    connection past it; the API answers TIMEOUT. The message names the bound and its
    setting."""
