"""The image cannot be built here (no Docker engine); what it relies on can be checked."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from service.cli.main import build_app

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _exec_form(instruction: str) -> list[str]:
    match = re.search(rf"^{instruction} (\[.*\])\s*$", DOCKERFILE, re.MULTILINE)
    assert match, f"no exec-form {instruction} in the Dockerfile"
    return list(json.loads(match.group(1)))


def test_the_command_it_runs_exists() -> None:
    command = _exec_form("CMD")
    assert command[0] == "tierwise"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "tierwise" in scripts
    result = CliRunner().invoke(build_app(), [*command[1:], "--help"])
    assert result.exit_code == 0, result.output


def test_it_copies_every_package_it_installs() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for pattern in packages["packages"]["find"]["include"]:
        assert f"COPY {pattern.rstrip('*')} " in DOCKERFILE


def test_it_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    final_stage = DOCKERFILE.rsplit("FROM ", 1)[1]
    assert re.search(r"^USER (?!root)\w+", final_stage, re.MULTILINE)
    assert "/healthz" in final_stage and "HEALTHCHECK" in final_stage
