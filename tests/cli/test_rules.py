"""`tierwise rules check` / `fmt`, driven through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from service.cli.rules import rules_app

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
        f"{path}:1:26: error: expected a metric or a value, but found the keyword `and`"
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
        "message": "unknown metric `monetory`; did you mean `monetary`?",
        "hint": "the metrics are listed in docs/rules.md",
    }


def test_cross_file_tier_references(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.rules", "scheme value {\n tier VIP when monetary > 1\n}\n")
    b = _write(tmp_path, "b.rules", "scheme care {\n tier P when in tier value.VIP\n}\n")
    assert runner.invoke(rules_app, ["check", str(a), str(b)]).exit_code == 0
    assert runner.invoke(rules_app, ["check", str(b)]).exit_code == 1


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
