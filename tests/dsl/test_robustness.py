"""No input breaks the language: fuzzed and hostile text ends as a positioned RuleError or
as a bound value that never appears in the SQL text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from dsl.catalog import quote
from dsl.checker import check_files, check_text
from dsl.compiler import compile_scheme
from dsl.errors import RuleError
from dsl.evaluator import CustomerFacts
from dsl.parser import MAX_SOURCE_CHARS, parse_condition
from tests.dsl.golden_inputs import mutated_texts
from tests.dsl.support import AS_OF, insert, rows, sources


def _must_fail_cleanly(text: str) -> None:
    try:
        check_files({"f.rules": text}, known_tiers={"a": ["B"]})
    except RuleError as error:
        for d in error.diagnostics:
            assert d.file == "f.rules" and d.line >= 1 and d.column >= 1 and d.message
            for raw in ("COMP_OP", "$END", "TIER_NAME", "LPAR"):
                assert raw not in d.message or raw in text


def test_mutated_rule_text_tens_of_thousands() -> None:
    """Random edits of valid files and random token soup: 20,000 cases, seeded."""
    for text in mutated_texts(20_000):
        _must_fail_cleanly(text)


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    _must_fail_cleanly(text)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=100))
def test_arbitrary_conditions(text: str) -> None:
    try:
        parse_condition(text)
    except RuleError as error:
        assert error.diagnostics[0].line >= 1


def test_size_and_depth_are_bounded() -> None:
    for text in (
        "tier A when frequency > 1\n" * (MAX_SOURCE_CHARS // 20),
        "tier A when " + "(" * 5000 + "frequency > 1" + ")" * 5000,
        "tier A when " + "not " * 5000 + "frequency > 1",
        "tier A when " + " and ".join(["frequency > 1"] * 20_000),
    ):
        try:
            check_text(text)
        except RuleError as error:
            assert "longer than" in str(error) or "nested more than" in str(error)
        else:
            assert text.count("and") == 19_999  # a long flat chain is fine


HOSTILE = [
    "'; DROP TABLE customers; --",
    '" OR 1=1 --',
    "a\\b\\\\c",
    "$1 $$ $tag$ :param %(x)s %s",
    "\n\t'\"",
    "x" * 5000,
    "北方'); DELETE FROM orders; --",
]


async def test_hostile_strings_are_bound_values(engine: AsyncEngine, tenant: str) -> None:
    people = [CustomerFacts({"region": value}) for value in HOSTILE]
    async with engine.connect() as connection:
        ids = await insert(connection, tenant, people)
        for value, customer_id in zip(HOSTILE, ids, strict=True):
            rule = (
                f"tier {quote(value[:60])} when region = {quote(value)} "
                f"or region contains {quote(value)} or attributes.x = {quote(value)}"
            )
            scheme = check_text(rule).schemes[0]
            statement = compile_scheme(scheme, sources(tenant), AS_OF)
            sql = str(statement.compile(dialect=postgresql.dialect()))
            for piece in ("DROP", "DELETE", "OR 1=1", "$tag$", "x" * 50):
                assert piece not in sql
            result = {r.customer_id: r.tier for r in await rows(connection, statement)}
            assert result[customer_id] == value[:60]
            assert sum(tier is not None for tier in result.values()) == 1
        await connection.rollback()


def test_nul_and_bad_escapes_are_errors() -> None:
    for text in ('tier A when region = "a\x00b"', 'tier A when region = "a\\qb"'):
        try:
            check_text(text)
        except RuleError as error:
            assert error.diagnostics[0].column == 22
        else:
            raise AssertionError(text)
