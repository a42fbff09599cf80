"""Golden files: each `golden/NAME.rules` with the diagnostics it must give in `NAME.out`.

Run with TIERWISE_UPDATE_GOLDEN=1 to rewrite the expected files after an intended change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy.dialects import postgresql

from dsl.checker import check_files, check_text
from dsl.compiler import Sources, compile_scheme
from dsl.errors import RuleError, render_all
from service.db.tables import customers, events, orders
from tests.dsl.support import AS_OF, memberships

GOLDEN = Path(__file__).with_name("golden")
UPDATE = os.environ.get("TIERWISE_UPDATE_GOLDEN") == "1"


def _diagnostics(name: str, text: str) -> str:
    try:
        diagnostics = check_files({name: text}).warnings
    except RuleError as error:
        diagnostics = error.diagnostics
    return render_all(diagnostics, {name: text}) + "\n" if diagnostics else ""


def _compare(expected_path: Path, actual: str) -> None:
    if UPDATE:
        expected_path.write_text(actual, encoding="utf-8")
    assert actual == expected_path.read_text(encoding="utf-8")


@pytest.mark.parametrize("rules", sorted(GOLDEN.glob("*.rules")), ids=lambda p: p.stem)
def test_diagnostics(rules: Path) -> None:
    actual = _diagnostics(rules.name, rules.read_text(encoding="utf-8"))
    _compare(rules.with_suffix(".out"), actual)


@pytest.mark.parametrize("name", ["example", "chinese_ok"])
def test_compiled_sql(name: str) -> None:
    scheme = check_text((GOLDEN / f"{name}.rules").read_text(encoding="utf-8")).schemes[0]
    sources = Sources(customers, orders, events, memberships)
    statement = compile_scheme(scheme, sources, AS_OF)
    _compare(GOLDEN / f"{name}.sql", str(statement.compile(dialect=postgresql.dialect())) + "\n")
