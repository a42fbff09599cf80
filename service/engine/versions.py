"""A scheme's versions: who published which text when (from the versions and the audit log's
`scheme.publish` entries), and the difference between two versions, line by line."""

from __future__ import annotations

import datetime as dt
import difflib
import enum
from dataclasses import dataclass

from sqlalchemy import Integer, and_, cast, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import audit_log, scheme_versions, schemes
from service.engine.schemes import unpublished
from service.errors import NotFound

__all__ = ["DiffLine", "LineChange", "SchemeVersion", "VersionDiff", "diff", "versions"]


@dataclass(frozen=True)
class SchemeVersion:
    scheme: str
    version: int
    published_at: dt.datetime
    published_by: str | None  # the audit log's actor; None when it has no entry
    role: str | None
    source: str
    tiers: tuple[str, ...]
    current: bool


class LineChange(enum.Enum):
    SAME = "same"
    ADDED = "added"
    REMOVED = "removed"


@dataclass(frozen=True)
class DiffLine:
    change: LineChange
    text: str
    from_line: int | None  # 1-based line in the older text (None for an added line)
    to_line: int | None  # in the newer text (None for a removed line)


@dataclass(frozen=True)
class VersionDiff:
    scheme: str
    from_version: int
    to_version: int
    added_tiers: tuple[str, ...]
    removed_tiers: tuple[str, ...]
    lines: tuple[DiffLine, ...]


async def versions(connection: AsyncConnection, tenant: str, key: str) -> list[SchemeVersion]:
    """Every version of the scheme ``key``, newest first; `NotFound` if it was never
    published."""
    publish = (
        select(audit_log.c.actor, audit_log.c.role, audit_log.c.after)
        .where(
            audit_log.c.tenant_id == scheme_versions.c.tenant_id,
            audit_log.c.action == "scheme.publish",
            audit_log.c.target == scheme_versions.c.scheme_key,
            cast(audit_log.c.after["version"].astext, Integer) == scheme_versions.c.version,
        )
        .order_by(audit_log.c.id)
        .limit(1)
        .lateral("publish")
    )
    rows = (
        await connection.execute(
            select(
                scheme_versions.c.version,
                scheme_versions.c.created_at,
                scheme_versions.c.source,
                scheme_versions.c.tiers,
                schemes.c.current_version,
                publish.c.actor,
                publish.c.role,
            )
            .join(
                schemes,
                and_(
                    schemes.c.tenant_id == scheme_versions.c.tenant_id,
                    schemes.c.key == scheme_versions.c.scheme_key,
                ),
            )
            .outerjoin(publish, true())
            .where(scheme_versions.c.tenant_id == tenant, scheme_versions.c.scheme_key == key)
            .order_by(scheme_versions.c.version.desc())
        )
    ).all()
    if not rows:
        raise unpublished(key, tenant)
    return [
        SchemeVersion(
            scheme=key,
            version=row.version,
            published_at=row.created_at,
            published_by=row.actor,
            role=row.role,
            source=row.source,
            tiers=tuple(row.tiers),
            current=row.version == row.current_version,
        )
        for row in rows
    ]


async def diff(
    connection: AsyncConnection, tenant: str, key: str, from_version: int, to_version: int
) -> VersionDiff:
    """The lines of ``from_version``'s text removed and those of ``to_version``'s added (the
    rest kept), and the tiers one has and the other not. `NotFound` for an unknown scheme or
    version."""
    found = {v.version: v for v in await versions(connection, tenant, key)}
    for number in (from_version, to_version):
        if number not in found:
            raise NotFound(
                f"scheme {key!r} has no version {number}; its versions are 1 to {max(found)}"
            )
    old, new = found[from_version], found[to_version]
    before, after = old.source.splitlines(), new.source.splitlines()
    lines: list[DiffLine] = []
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            lines += [
                DiffLine(LineChange.SAME, before[i], i + 1, j1 + i - i1 + 1) for i in range(i1, i2)
            ]
            continue
        lines += [DiffLine(LineChange.REMOVED, before[i], i + 1, None) for i in range(i1, i2)]
        lines += [DiffLine(LineChange.ADDED, after[j], None, j + 1) for j in range(j1, j2)]
    return VersionDiff(
        scheme=key,
        from_version=from_version,
        to_version=to_version,
        added_tiers=tuple(t for t in new.tiers if t not in old.tiers),
        removed_tiers=tuple(t for t in old.tiers if t not in new.tiers),
        lines=tuple(lines),
    )
