"""Published schemes: immutable versions of rule text, the current one checked and ready.

Publishing checks the text against every scheme already published for the tenant (so `in tier`
can reach them and cycles are found), stores a new version of each scheme whose text changed,
and makes it current. Text is stored in the formatter's canonical layout, so publishing the
same rules again (even re-indented) creates no version.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import ColumnElement, Row, Select, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from dsl import (
    CheckedScheme,
    Diagnostic,
    RuleError,
    check,
    evaluation_order,
    format_text,
    parse_rules,
)
from dsl.checker import CheckResult
from dsl.evaluator import is_population
from dsl.parser import parse_recovering
from dsl.tree import Scheme
from service.access import audit
from service.db import locks
from service.db.tables import scheme_versions, schemes
from service.errors import NotFound, UserError

T = TypeVar("T")
P = ParamSpec("P")

# Rule text longer than this is parsed, checked and compiled in a worker thread: a big file
# (the parser takes up to 500,000 characters) costs seconds of CPU, which on the event loop
# would stall every other request of the process. Shorter text is not worth the thread hop.
OFF_LOOP_CHARS = 10_000


async def rule_work(chars: int, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``work(*args, **kwargs)``, the parsing, checking or compiling of rule text ``chars``
    long: in a worker thread when the text is long (the event loop keeps serving meanwhile),
    else at once."""
    if chars > OFF_LOOP_CHARS:
        return await asyncio.to_thread(work, *args, **kwargs)
    return work(*args, **kwargs)


@dataclass(frozen=True)
class PublishedScheme:
    key: str
    title: str | None
    version: int
    source: str
    checked: CheckedScheme

    @property
    def tiers(self) -> tuple[str, ...]:
        return self.checked.tier_names

    @property
    def uses_population(self) -> bool:
        """Whether a tier depends on how other customers compare (scores, percentiles)."""
        return any(is_population(ref) for ref in self.checked.refs)

    def check_tier(self, tier: str) -> None:
        """Raises `NotFound` unless the current version has a tier named ``tier``."""
        if tier not in self.tiers:
            raise NotFound(
                f"scheme {self.key!r} has no tier {tier!r}; its tiers are {', '.join(self.tiers)}"
            )


@dataclass(frozen=True)
class Published:
    schemes: tuple[PublishedScheme, ...]
    changed: tuple[str, ...]
    """Keys of the schemes that got a new version (the others were already current)."""
    warnings: CheckResult


def _current_versions(tenant: str, *also: ColumnElement[Any]) -> Select[Any]:
    """The tenant's current versions (key, title, version, source), after the ``also``
    columns."""
    return (
        select(
            *also,
            schemes.c.key,
            schemes.c.title,
            scheme_versions.c.version,
            scheme_versions.c.source,
        )
        .join(
            scheme_versions,
            (scheme_versions.c.tenant_id == schemes.c.tenant_id)
            & (scheme_versions.c.scheme_key == schemes.c.key)
            & (scheme_versions.c.version == schemes.c.current_version),
        )
        .where(schemes.c.tenant_id == tenant)
        .order_by(schemes.c.key)
    )


async def _checked_versions(rows: Sequence[Row[Any]]) -> list[PublishedScheme]:
    versions = tuple((row.key, row.title, row.version, row.source) for row in rows)
    return list(await rule_work(sum(len(v[3]) for v in versions), _checked, versions))


async def current(connection: AsyncConnection, tenant: str) -> list[PublishedScheme]:
    """Every scheme's current version, checked, in evaluation order (dependencies first)."""
    rows = (await connection.execute(_current_versions(tenant))).all()
    return await _checked_versions(rows)


async def current_and(
    connection: AsyncConnection, tenant: str, question: ColumnElement[T]
) -> tuple[list[PublishedScheme], T]:
    """`current` and the answer to ``question`` (a scalar SQL expression), in the same round
    trip when the tenant has a scheme (a column of each row; on Citus a query on one node)."""
    rows = (await connection.execute(_current_versions(tenant, question.label("answer")))).all()
    if not rows:
        answer: T = (await connection.execute(select(question))).scalar_one()
        return [], answer
    return await _checked_versions(rows), rows[0].answer


@functools.lru_cache(maxsize=256)
def _checked(
    versions: tuple[tuple[str, str | None, int, str], ...],
) -> tuple[PublishedScheme, ...]:
    """Parse and check a tenant's current versions together, once per set of versions:
    versions are immutable, and checking on every ingest would cost more than the update."""
    if not versions:
        return ()
    parsed = [s for key, _, _, source in versions for s in parse_rules(source, f"{key}.rules")]
    checked = {scheme.key: scheme for scheme in check(parsed, stored=True).schemes}
    by_key = {key: (title, version, source) for key, title, version, source in versions}
    return tuple(
        PublishedScheme(key, *by_key[key], checked[key])
        for key in (scheme.key for scheme in evaluation_order(list(checked.values())))
        if key is not None
    )


def unpublished(key: str, tenant: str) -> NotFound:
    """The error for a scheme key the tenant has not published."""
    return NotFound(f"no published scheme {key!r} in tenant {tenant!r}")


def named(published: Sequence[PublishedScheme], key: str, tenant: str) -> PublishedScheme:
    """The scheme ``key`` among the tenant's ``published`` ones; raises `NotFound` if absent."""
    for scheme in published:
        if scheme.key == key:
            return scheme
    raise unpublished(key, tenant)


async def find(connection: AsyncConnection, tenant: str, key: str) -> PublishedScheme:
    """The current version of the tenant's scheme ``key``.

    Raises `NotFound` ("no published scheme ...") when the tenant has no such scheme."""
    return named(await current(connection, tenant), key, tenant)


async def published_keys(
    connection: AsyncConnection, tenant: str, keys: Collection[str]
) -> set[str]:
    """Those of ``keys`` that name a scheme the tenant has published (one indexed read; the
    rules are not loaded)."""
    found = await connection.scalars(
        select(schemes.c.key).where(schemes.c.tenant_id == tenant, schemes.c.key.in_(keys))
    )
    return set(found)


@dataclass(frozen=True)
class Draft:
    """Rule text to be published (or previewed): its schemes as far as they parse (a bare list
    of tiers given its key), what parsing found, and, when it found no error, each scheme's
    own text in canonical layout, a self-contained `scheme` block."""

    schemes: list[Scheme]
    diagnostics: tuple[Diagnostic, ...]
    texts: list[str]


def parse_for_publishing(
    source: str, file: str, scheme_key: str | None, *, require_key: bool = True
) -> Draft:
    """The draft of rule text ``source``; UserError when a file of schemes has a
    ``scheme_key`` that is not its only scheme's, or (with ``require_key``, as publishing
    needs) a bare list of tiers has none: without, such a list is checked as a scheme without
    a key."""
    parsed = parse_recovering(source, file)
    rule_file = parsed.file
    if rule_file.bare and scheme_key is None and not require_key:
        return Draft(list(rule_file.schemes), parsed.diagnostics, [])
    if rule_file.bare:
        if scheme_key is None:
            raise UserError(
                f"{file} is a bare list of tiers: say which scheme it is (--scheme KEY on "
                "the command line, `key` in the API)"
            )
        keyed = [dataclasses.replace(s, key=scheme_key) for s in rule_file.schemes]
        if parsed.errors:
            return Draft(keyed, parsed.diagnostics, [])
        return Draft(
            keyed,
            parsed.diagnostics,
            [format_text(f"scheme {scheme_key} {{\n{source}\n}}\n", file)],
        )
    keys = [scheme.key for scheme in rule_file.schemes]
    if scheme_key is not None and keys != [scheme_key]:
        raise UserError(
            f"{file} defines schemes {', '.join(map(str, keys))}; --scheme only names the "
            "scheme of a bare list of tiers"
        )
    if parsed.errors:
        return Draft(list(rule_file.schemes), parsed.diagnostics, [])
    texts = [format_text(_own_text(source, scheme), file) for scheme in rule_file.schemes]
    return Draft(list(rule_file.schemes), parsed.diagnostics, texts)


# From the end of a scheme's key to just past its `{`: spaces, comments, maybe a title.
_TO_BRACE = re.compile(r'(?:\s|#[^\n]*)*(?:"(?:[^"\\\n]|\\.)*")?(?:\s|#[^\n]*)*\{')


def _own_text(source: str, scheme: Scheme) -> str:
    """A scheme's block as written, self-contained: the definitions at the top of its file
    (`scheme.shared`) written at the top of the block, so the published version reads the
    same without the rest of the file."""
    starts = [0, *(m.end() for m in re.finditer("\n", source))]

    def offset(line: int, column: int) -> int:
        return starts[line - 1] + column - 1

    # The block's lines whole, as written (comments on them kept).
    lines = source.splitlines()
    own = "\n".join(lines[scheme.span.line - 1 : scheme.span.end_line]) + "\n"
    if not scheme.shared or scheme.key_span is None:
        return own
    begin = starts[scheme.span.line - 1]
    end = begin + len(own) - 1
    key_end = offset(scheme.key_span.end_line, scheme.key_span.end_column)
    brace = _TO_BRACE.match(source, key_end)
    assert brace is not None  # the scheme parsed: its `{` follows the key (and title)
    defines = [
        source[offset(d.span.line, d.span.column) : offset(d.span.end_line, d.span.end_column)]
        for d in scheme.shared
    ]
    return "\n".join([source[begin : brace.end()], *defines, source[brace.end() : end]]) + "\n"


@dataclass(frozen=True)
class References:
    """What `in tier` can reach among a tenant's published schemes: their tiers and the
    schemes each reads (for cycles), by key."""

    tiers: dict[str, tuple[str, ...]]
    dependencies: dict[str, list[str]]


async def published_references(
    connection: AsyncConnection, tenant: str, defined: Collection[str | None] = ()
) -> References:
    """The tenant's published schemes as `in tier` sees them, but those of keys ``defined``
    (new versions of them are being checked)."""
    others = [s for s in await current(connection, tenant) if s.key not in defined]
    return References(
        {s.key: s.tiers for s in others}, {s.key: sorted(s.checked.depends_on) for s in others}
    )


async def check_against_published(
    connection: AsyncConnection, tenant: str, draft: Draft, *, chars: int = 0
) -> CheckResult:
    """Check a draft (of ``chars`` characters of text) together with the tenant's other
    published schemes; raises RuleError with every error, those found parsing included."""
    references = await published_references(connection, tenant, {s.key for s in draft.schemes})
    return await rule_work(
        chars,
        check,
        draft.schemes,
        known_tiers=references.tiers,
        known_dependencies=references.dependencies,
        parse_diagnostics=draft.diagnostics,
    )


async def publish(
    connection: AsyncConnection,
    tenant: str,
    source: str,
    *,
    file: str = "<rules>",
    scheme_key: str | None = None,
    actor: audit.Actor = audit.SERVICE,
) -> Published:
    """Check and publish every scheme of ``source``; raises RuleError on any error. Each new
    version is recorded in the audit log as ``actor``'s, with the version it replaced."""
    draft = await rule_work(len(source), parse_for_publishing, source, file, scheme_key)
    result = await check_against_published(connection, tenant, draft, chars=len(source))
    await connection.execute(
        text("INSERT INTO tenants (id, name) VALUES (:t, :t) ON CONFLICT (id) DO NOTHING"),
        {"t": tenant},
    )
    changed: list[str] = []
    for scheme, canonical in zip(draft.schemes, draft.texts, strict=True):
        assert scheme.key is not None
        # Serialise publishers of one scheme: versions are numbered without gaps.
        await locks.acquire(connection, locks.Purpose.publish, tenant, scheme.key)
        latest = (
            await connection.execute(
                select(scheme_versions.c.version, scheme_versions.c.source)
                .join(
                    schemes,
                    (schemes.c.tenant_id == scheme_versions.c.tenant_id)
                    & (schemes.c.key == scheme_versions.c.scheme_key)
                    & (schemes.c.current_version == scheme_versions.c.version),
                )
                .where(
                    scheme_versions.c.tenant_id == tenant,
                    scheme_versions.c.scheme_key == scheme.key,
                )
            )
        ).one_or_none()
        if latest is not None and latest.source == canonical:
            continue
        highest = await connection.scalar(
            select(func.coalesce(func.max(scheme_versions.c.version), 0)).where(
                scheme_versions.c.tenant_id == tenant, scheme_versions.c.scheme_key == scheme.key
            )
        )
        version = int(highest or 0) + 1
        checked = next(s for s in result.schemes if s.key == scheme.key)
        await connection.execute(
            scheme_versions.insert().values(
                tenant_id=tenant,
                scheme_key=scheme.key,
                version=version,
                source=canonical,
                tiers=list(checked.tier_names),
                depends_on=sorted(checked.depends_on),
                uses_population=any(is_population(ref) for ref in checked.refs),
            )
        )
        upsert = insert(schemes).values(
            tenant_id=tenant,
            key=scheme.key,
            title=scheme.title,
            current_version=version,
            updated_at=func.now(),
        )
        await connection.execute(
            upsert.on_conflict_do_update(
                index_elements=[schemes.c.tenant_id, schemes.c.key],
                set_={
                    "title": upsert.excluded.title,
                    "current_version": upsert.excluded.current_version,
                    # Citus allows only immutable functions in DO UPDATE: the time comes
                    # from the inserted row.
                    "updated_at": upsert.excluded.updated_at,
                },
            )
        )
        changed.append(scheme.key)
        await audit.record(
            connection,
            tenant,
            actor,
            "scheme.publish",
            scheme.key,
            before=None if latest is None else {"version": latest.version, "source": latest.source},
            after={"version": version, "source": canonical},
        )
    published = {s.key: s for s in await current(connection, tenant)}
    return Published(
        tuple(published[s.key] for s in draft.schemes if s.key in published),
        tuple(changed),
        result,
    )


__all__ = ["Published", "PublishedScheme", "RuleError", "current", "find", "publish"]
