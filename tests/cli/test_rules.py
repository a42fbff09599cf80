"""`tierwise rules check` / `fmt`, driven through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from service.cli.rules import rules_app
from service.engine.templates import TEMPLATES
from tests.support import tierwise

runner = CliRunner()


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_check_clean_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "ok.rules", "tier VIP when monetary > 5000 and frequency >= 2\n")
    result = runner.invoke(rules_app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "0 error(s)" in result.output


def test_check_reports_errors_with_caret(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.rules", "tier VIP when monetary > and frequency >= 2\n")
    result = runner.invoke(rules_app, ["check", str(path)])
    assert result.exit_code == 1
    first = result.output.splitlines()
    assert first[0] == (
        f"{path}:1:26: error: expected a metric or a value, but found the keyword `and` "
        "[syntax-error]"
    )
    assert first[1] == "    tier VIP when monetary > and frequency >= 2"
    assert first[2] == "    " + " " * 25 + "^^^"
    assert "Traceback" not in result.output


def test_warnings_alone_exit_zero(tmp_path: Path) -> None:
    path = _write(tmp_path, "w.rules", "tier A otherwise\ntier B when frequency > 1\n")
    result = runner.invoke(rules_app, ["check", str(path)])
    assert result.exit_code == 0
    assert "warning: tier `B` comes after `otherwise`" in result.output


def test_check_json(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.rules", "tier VIP when monetory > 5000\n")
    result = runner.invoke(rules_app, ["check", "--format", "json", str(path)])
    assert result.exit_code == 1
    [item] = json.loads(result.output)
    assert item == {
        "file": str(path),
        "line": 1,
        "column": 15,
        "end_line": 1,
        "end_column": 23,
        "severity": "error",
        "code": "unknown-metric",
        "message": "unknown metric `monetory`; did you mean `monetary`?",
        "hint": "the metrics are listed in docs/rules.md",
    }


def _no_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("TIERWISE_DATABASE_URL", raising=False)
    monkeypatch.setenv("TIERWISE_DATA_DIR", str(tmp_path / "nowhere"))
    return tmp_path / "nowhere"


def test_cross_file_tier_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = _no_database(monkeypatch, tmp_path)
    a = _write(tmp_path, "a.rules", "scheme value {\n tier VIP when monetary > 1\n}\n")
    b = _write(tmp_path, "b.rules", "scheme care {\n tier P when in tier value.VIP\n}\n")
    both = runner.invoke(rules_app, ["check", str(a), str(b)])
    assert both.exit_code == 0 and "0 error(s), 0 warning(s)\n" in both.output
    bad = _write(tmp_path, "c.rules", "scheme care {\n tier P when in tier value.Gold\n}\n")
    assert runner.invoke(rules_app, ["check", str(a), str(bad)]).exit_code == 1
    # Alone, `value` is not in the files and there is no database to read it from: a note,
    # not an error, and no embedded database is made just to look.
    alone = runner.invoke(rules_app, ["check", str(b)])
    assert alone.exit_code == 0, alone.output
    assert f"{b}:2:14: note: scheme `value` is not in the files checked" in alone.output
    assert "[unchecked-reference]" in alone.output
    assert f"looked for the embedded Postgres in {data_dir.resolve()}" in alone.output
    assert "0 error(s), 0 warning(s), 1 note(s)" in alone.output
    assert not data_dir.exists()


def test_unreadable_files(tmp_path: Path) -> None:
    binary = tmp_path / "x.rules"
    binary.write_bytes(b"\xff\xfe tier")
    result = runner.invoke(rules_app, ["check", str(binary), str(tmp_path / "missing.rules")])
    assert result.exit_code == 1
    assert "not UTF-8" in result.output and "No such file" in result.output
    assert "Traceback" not in result.output


def test_fmt_rewrites_and_check_mode(tmp_path: Path) -> None:
    path = _write(tmp_path, "f.rules", "tier  VIP when (monetary>5000)  # big\ntier N otherwise\n")
    assert runner.invoke(rules_app, ["fmt", "--check", str(path)]).exit_code == 1
    result = runner.invoke(rules_app, ["fmt", str(path)])
    assert result.exit_code == 0
    assert path.read_text(encoding="utf-8") == (
        "tier VIP when monetary > 5000  # big\ntier N   otherwise\n"
    )
    assert runner.invoke(rules_app, ["fmt", "--check", str(path)]).exit_code == 0


def test_fmt_parse_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "f.rules", "tier VIP when\n")
    result = runner.invoke(rules_app, ["fmt", str(path)])
    assert result.exit_code == 1
    assert "error: expected" in result.output


def test_every_error_with_its_code(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "many.rules",
        'tier A when monetory > 1\ntier B when monetary > "3000"\ntier C when recency < 30 dayz\n',
    )
    result = runner.invoke(rules_app, ["check", str(path)])
    assert result.exit_code == 1
    heads = [line for line in result.output.splitlines() if line.startswith(str(path))]
    assert [h.rsplit(" ", 1)[-1] for h in heads] == [
        "[unknown-metric]",
        "[type-mismatch]",
        "[syntax-error]",
    ]
    assert "3 error(s)" in result.output
    assert "hint: numbers are written without quotes: 3000" in result.output
    assert "hint: did you mean `days`?" in result.output


def test_an_empty_file_is_a_warning(tmp_path: Path) -> None:
    path = _write(tmp_path, "empty.rules", "# to do\n")
    result = runner.invoke(rules_app, ["check", "--format", "json", str(path)])
    assert result.exit_code == 0
    [item] = json.loads(result.output)
    assert (item["severity"], item["code"], item["line"]) == ("warning", "empty-file", 1)


# The finding: `rules check care.rules` said "unknown scheme" for `in tier rfm.Champions` with
# rfm published, while `rules publish` accepted the same file.
CARE = "scheme care {\n  tier Call when in tier rfm.{tier}\n  tier Rest otherwise\n}\n"


def test_check_preview_and_publish_agree(database: URL, tenant: str, tmp_path: Path) -> None:
    rfm = _write(tmp_path, "rfm.rules", TEMPLATES["rfm"].source)
    assert tierwise(database, "rules", "publish", str(rfm), "--tenant", tenant).returncode == 0
    good = _write(tmp_path, "care.rules", CARE.replace("{tier}", "Champions"))
    bad = _write(tmp_path, "bad.rules", CARE.replace("{tier}", "Champs"))
    error = (
        f"{bad}:2:30: error: scheme `rfm` has no tier `Champs`; did you mean `Champions`? "
        "[unknown-tier]"
    )
    for command in ("check", "preview", "publish"):
        ok = tierwise(database, "rules", command, str(good), "--tenant", tenant)
        assert ok.returncode == 0, (command, ok.stdout, ok.stderr)
        assert "error:" not in ok.stdout + ok.stderr and "note:" not in ok.stdout + ok.stderr
        refused = tierwise(database, "rules", command, str(bad), "--tenant", tenant)
        assert refused.returncode == 1, command
        assert error in (refused.stdout + refused.stderr).splitlines(), command
    preview = tierwise(database, "rules", "preview", str(bad), "--tenant", tenant)
    assert f"{bad}: no preview: the rules have 1 error(s)" in preview.stderr
    assert "not published" not in preview.stderr
