"""Commands that do not serve or need a database start without what only those need.

Each runs in a fresh process, as a user runs it, which then lists the modules it imported:
the server (uvicorn, starlette), the GraphQL API (strawberry), the database (asyncpg, alembic),
SQLAlchemy at all (the rule language imports it only to build SQL), settings
(pydantic-settings), JWTs and the prediction engine (numpy, scipy) must not be among them.
A behaviour, not a timing: the time is in docs/benchmarks.md."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from service.db.database import plain_url

HEAVY = (
    "uvicorn",
    "starlette",
    "strawberry",
    "sqlalchemy",
    "asyncpg",
    "alembic",
    "pydantic_settings",
    "jwt",
    "numpy",
    "scipy",
    "service.api",
    "service.app",
    "service.db",
    "service.engine.evaluation",
)

_RUN = """
import json, sys
sys.argv = ["tierwise", *json.loads(sys.argv[1])]
from service.cli import main
try:
    main()
except SystemExit as exit:
    code = exit.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _imported(
    *args: str, cwd: Path, database: URL | None = None, heavy: Sequence[str] = HEAVY
) -> tuple[int, list[str], str]:
    """Run ``tierwise ARGS`` with ``database`` (default: none configured); its exit code, the
    ``heavy`` modules it imported and what it printed."""
    env = {"PATH": "/usr/bin:/bin", "TIERWISE_DATA_DIR": str(cwd / "nowhere")}
    if database is not None:
        env["TIERWISE_DATABASE_URL"] = plain_url(database)
    done = subprocess.run(
        [sys.executable, "-c", _RUN, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    found = [
        name
        for name in report["modules"]
        if any(name == top or name.startswith(top + ".") for top in heavy)
    ]
    return report["code"], found, done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("rules", "--help"),
        ("rules", "templates"),
        ("rules", "templates", "value"),
        ("rules", "check", "RULES"),
        ("rules", "fmt", "--check", "RULES"),
        ("evaluate", "--help"),
        ("export", "--help"),
        ("strategies", "--help"),
        ("strategies", "save", "--help"),
    ],
)
def test_light_commands_import_no_server_database_or_models(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    rules = tmp_path / "value.rules"
    rules.write_text(
        'scheme value "Value" {\n  tier VIP    when monetary > 5000\n  tier Normal otherwise\n}\n',
        encoding="utf-8",
    )
    code, heavy, printed = _imported(
        *(str(rules) if arg == "RULES" else arg for arg in args), cwd=tmp_path
    )
    assert code == 0, printed
    assert printed or "fmt" in args  # the command did its work (fmt --check: silently)
    assert heavy == []


def test_check_with_an_unresolved_reference_still_looks_for_the_database(tmp_path: Path) -> None:
    """The one case in which `check` needs the database: it imports it then, and says where
    it looked."""
    rules = tmp_path / "vip.rules"
    rules.write_text(
        'scheme vip "VIP" {\n  tier Kept when in tier value.VIP\n  tier Rest otherwise\n}\n',
        encoding="utf-8",
    )
    code, heavy, printed = _imported("rules", "check", str(rules), cwd=tmp_path)
    assert code == 0, printed
    assert "could not be checked" in printed or "note" in printed, printed
    assert "sqlalchemy.ext.asyncio" in heavy


def test_a_backtest_without_prediction_metrics_imports_no_models_nor_alembic(
    database: URL, tenant: str, tmp_path: Path
) -> None:
    """`evaluate` needs the database, but not the prediction models (numpy, scipy) for a
    scheme without prediction metrics, alembic to check the schema's revision, nor the HTTP
    client that delivers webhooks (a run only writes their outbox)."""
    rules = tmp_path / "value.rules"
    rules.write_text(
        'scheme value "Value" {\n  tier VIP    when monetary > 5000\n  tier Normal otherwise\n}\n',
        encoding="utf-8",
    )
    code, _, printed = _imported(
        "rules", "publish", str(rules), "--tenant", tenant, cwd=tmp_path, database=database
    )
    assert code == 0, printed
    models = ("numpy", "scipy", "alembic", "httpx")
    for args in ((), ("--as-of", "2026-01-01")):
        code, found, printed = _imported(
            "evaluate",
            "--scheme",
            "value",
            "--tenant",
            tenant,
            *args,
            cwd=tmp_path,
            database=database,
            heavy=models,
        )
        assert code == 0, printed
        assert "VIP" in printed
        assert found == [], args
