"""The kinds of data Tierwise takes in, apart from how their fields are checked (`records`):
the command line names them at start-up, which must not import the rule language."""

from __future__ import annotations

import enum


class Kind(enum.StrEnum):
    customers = "customers"
    orders = "orders"
    events = "events"
    rates = "rates"
