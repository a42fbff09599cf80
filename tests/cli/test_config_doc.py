"""docs/operations.md's configuration table is the settings' own descriptions (one source)."""

from __future__ import annotations

from service.cli.config_doc import DOC, descriptions, replaced, settings_table
from service.config import Settings


def test_the_configuration_table_matches_the_settings() -> None:
    document = DOC.read_text(encoding="utf-8")
    assert replaced(document) == document, (
        "docs/operations.md is out of date: run `python -m service.cli.config_doc --write`"
    )


def test_every_setting_is_described() -> None:
    described = descriptions()
    undescribed = [name for name in Settings.model_fields if not described.get(name)]
    assert undescribed == [], "give these settings a docstring in service/config.py"
    for name in Settings.model_fields:
        assert f"`TIERWISE_{name.upper()}`" in settings_table()
