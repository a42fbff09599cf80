"""Commands that do not serve or need a database start without what only those need.

Each runs in a fresh process, as a user runs it, which then lists the modules it imported:
the server (uvicorn, starlette), the GraphQL API (strawberry), the database (asyncpg, alembic),
SQLAlchemy at all (the rule language imports it only to build SQL), settings
(pydantic-settings), JWTs and the prediction engine (numpy, scipy) must not be among them.
Nor asyncio, which only commands that reach a database run. `rules check` imports neither the
rule language's stages it does not run (in-process evaluation, explain, formatting, SQL) nor
the other commands' modules, and `evaluate` not the prediction models, alembic, the webhook
client, Prometheus or the import.
A behaviour, not a timing: the time is in docs/benchmarks.md."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import typer
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from service.cli.main import COMMAND_MODULES, build_app
from service.db.database import plain_url
from tests.support import cdnow_orders_csv, tierwise

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
    "asyncio",
    "prometheus_client",
)
# What a command of one group does without: the other groups' modules.
OTHER_COMMANDS = tuple(
    f"service.cli.{module}"
    for module in ("serve", "data", "reports", "strategies", "keys", "predict")
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


@pytest.mark.parametrize(
    ("args", "without"),
    [
        (("rules", "check", "RULES"), ("dsl.evaluator", "dsl.explain", "dsl.formatter")),
        (("rules", "fmt", "--check", "RULES"), ("dsl.evaluator", "dsl.explain", "dsl.checker")),
        (("rules", "templates"), ("dsl.evaluator", "dsl.explain", "dsl.formatter")),
    ],
)
def test_a_rules_command_imports_only_its_stages_and_its_group(
    tmp_path: Path, args: tuple[str, ...], without: tuple[str, ...]
) -> None:
    rules = tmp_path / "value.rules"
    rules.write_text('scheme value "Value" {\n  tier All otherwise\n}\n', encoding="utf-8")
    code, found, printed = _imported(
        *(str(rules) if arg == "RULES" else arg for arg in args),
        cwd=tmp_path,
        heavy=(*without, "dsl.compiler", "service.config", *OTHER_COMMANDS),
    )
    assert code == 0, printed
    assert found == []


def test_each_top_level_name_is_in_the_module_said_to_define_it() -> None:
    """`tierwise NAME ...` builds only the commands of `COMMAND_MODULES[NAME]`'s module: the
    table must hold every top-level command and group, each where it is defined."""
    every = typer.main.get_command(build_app())
    assert isinstance(every, typer.core.TyperGroup)
    assert set(every.commands) == set(COMMAND_MODULES)
    for name in COMMAND_MODULES:
        alone = typer.main.get_command(build_app(name))
        assert isinstance(alone, typer.core.TyperGroup)
        assert name in alone.commands


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
    models = (
        "numpy",
        "scipy",
        "alembic",
        "httpx",
        "prometheus_client",
        "service.data.ingest",
        *(name for name in OTHER_COMMANDS if name != "service.cli.reports"),
    )
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


async def test_a_one_row_import_loads_the_models_only_for_a_tenant_that_has_one(
    database: URL, engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """Ingest refreshes the predictions of the customers it touched with the tenant's model,
    which needs numpy and scipy; without a model there is nothing to refresh, and a one-row
    import starts without them. With one, a new process still loads them and refreshes."""

    def one_order(name: str, day: str) -> Path:
        path = tmp_path / f"{name}.csv"
        path.write_text(
            f"order_id,customer_id,ordered_at,amount\n{name},{name},{day},25\n", encoding="utf-8"
        )
        return path

    async def predicted() -> int:
        async with engine.connect() as connection:
            count = await connection.scalar(
                text("SELECT count(*) FROM customer_predictions WHERE tenant_id = :t"),
                {"t": tenant},
            )
        return int(count or 0)

    def import_one(path: Path) -> tuple[int, list[str], str]:
        return _imported(
            "import",
            "orders",
            str(path),
            "--tenant",
            tenant,
            cwd=tmp_path,
            database=database,
            heavy=("numpy", "scipy"),
        )

    code, found, printed = import_one(one_order("first", "1997-06-01"))
    assert (code, found) == (0, []), printed

    orders = cdnow_orders_csv(tmp_path / "cdnow.csv")
    assert tierwise(database, "import", "orders", str(orders), "--tenant", tenant).returncode == 0
    fitted = tierwise(database, "predict", "fit", "--as-of", "1997-10-01", "--tenant", tenant)
    assert fitted.returncode == 0, fitted.stderr
    before = await predicted()
    code, found, printed = import_one(one_order("later", "1998-01-02"))
    assert code == 0, printed
    assert "numpy" in found
    assert await predicted() == before + 1
