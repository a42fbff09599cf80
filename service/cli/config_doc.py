"""The configuration reference in docs/operations.md, made from `Settings` (each field's
docstring is its description, read from service/config.py's syntax tree), so there is one
source.

    python -m service.cli.config_doc            # print the table
    python -m service.cli.config_doc --write    # replace it in docs/operations.md

tests/cli/test_config_doc.py fails when the file and the settings drift apart.
"""

from __future__ import annotations

import ast
import enum
import inspect
import itertools
import sys
from pathlib import Path

from pydantic.fields import FieldInfo

from service import config
from service.config import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
BEGIN = "<!-- settings:begin (python -m service.cli.config_doc --write) -->"
END = "<!-- settings:end -->"


def _default(field: FieldInfo) -> str:
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, enum.Enum):
        value = value.value
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.replace("``", "`").replace("|", "\\|").split())


def descriptions() -> dict[str, str]:
    """Each setting's docstring (the string right after its field in `Settings`), cleaned as
    `inspect.cleandoc` does; a setting without one is missing."""
    found: dict[str, str] = {}
    module = ast.parse(Path(config.__file__).read_text(encoding="utf-8"))
    body = next(
        node.body
        for node in module.body
        if isinstance(node, ast.ClassDef) and node.name == Settings.__name__
    )
    for field, after in itertools.pairwise(body):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            found[field.target.id] = inspect.cleandoc(after.value.value)
    return found


def settings_table() -> str:
    """Every ``TIERWISE_*`` variable with its default and description, as a Markdown table."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    described = descriptions()
    for name, field in Settings.model_fields.items():
        description = described.get(name, "")
        lines.append(f"| `TIERWISE_{name.upper()}` | {_default(field)} | {_cell(description)} |")
    return "\n".join(lines) + "\n"


def replaced(document: str) -> str:
    """``document`` with the text between the markers replaced by the current table."""
    head, found, rest = document.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    if not (found and found_end):
        raise ValueError(f"{DOC} lacks the markers {BEGIN!r} ... {END!r}")
    return f"{head}{BEGIN}\n{settings_table()}{END}{tail}"


def main(arguments: list[str]) -> None:
    if arguments == ["--write"]:
        DOC.write_text(replaced(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(settings_table(), end="")


if __name__ == "__main__":
    main(sys.argv[1:])
