"""The roles a caller may have (what each may do: `service.access.auth.ROLE_PERMISSIONS`).

Apart from `auth` so that the command line can name them without importing what
authentication needs (JWTs, the database)."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    viewer = "viewer"
    analyst = "analyst"
    ingest = "ingest"
    admin = "admin"
