"""Diagnostics: the one error type of the language and how it is shown to a person."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from dsl.codes import Code
from dsl.tree import Span

# An error makes the rules unusable; a warning points at valid rules that cannot do what was
# meant; a note says what could not be checked.
Severity = Literal["error", "warning", "note"]


@dataclass(frozen=True)
class Diagnostic:
    """One problem with rule text: the file, where in it (1-based line and column of the first
    character, the end just past the last), its severity, its stable code (`dsl.codes`), a
    message and maybe a hint."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int
    severity: Severity
    code: Code
    message: str
    hint: str | None = None

    @classmethod
    def at(
        cls,
        file: str,
        span: Span,
        message: str,
        hint: str | None = None,
        severity: Severity = "error",
        *,
        code: Code,
    ) -> Diagnostic:
        """A diagnostic at `span` of `file`."""
        return cls(
            file,
            span.line,
            span.column,
            span.end_line,
            span.end_column,
            severity,
            code,
            message,
            hint,
        )

    def to_json(self) -> dict[str, object]:
        """The fields as a JSON object (`code` as its text)."""
        return {**asdict(self), "code": self.code.value}


def position(diagnostic: Diagnostic) -> tuple[str, int, int]:
    """The key that puts diagnostics in file order: file, line, column."""
    return diagnostic.file, diagnostic.line, diagnostic.column


class RuleError(Exception):
    """Every problem with rule text ends as this, with at least one positioned diagnostic."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        if not diagnostics:
            raise ValueError("RuleError needs at least one diagnostic")
        self.diagnostics = tuple(diagnostics)
        first = self.first
        super().__init__(f"{first.file}:{first.line}:{first.column}: {first.message}")

    @property
    def first(self) -> Diagnostic:
        """The first error (diagnostics are in file order, warnings and notes among them)."""
        return next((d for d in self.diagnostics if d.severity == "error"), self.diagnostics[0])


def display_width(text: str) -> int:
    """Columns a terminal uses for text: East Asian wide characters take two, combining marks
    that stack on the letter before them (a vowel sign above, an accent) none."""
    return sum(
        2
        if unicodedata.east_asian_width(ch) in ("W", "F")
        else 0
        if unicodedata.category(ch) in ("Mn", "Me")
        else 1
        for ch in text
    )


def render(diagnostic: Diagnostic, source: str | None) -> str:
    """`FILE:LINE:COL: error: message [code]`, then the source line and a caret under the spot
    (when `source` has that line), then the hint."""
    d = diagnostic
    out = [f"{d.file}:{d.line}:{d.column}: {d.severity}: {d.message} [{d.code}]"]
    lines = source.split("\n") if source is not None else []
    if 1 <= d.line <= len(lines):
        # Tabs shown as one space so the caret lines up whatever the terminal's tab width.
        text = lines[d.line - 1].replace("\t", " ").rstrip("\r")
        start = min(d.column - 1, len(text))
        end = d.end_column - 1 if d.end_line == d.line else len(text)
        end = max(min(end, len(text)), start + 1)
        out.append(f"    {text}")
        caret = "^" * max(1, display_width(text[start:end]))
        out.append("    " + " " * display_width(text[:start]) + caret)
    if d.hint:
        out.append(f"  hint: {d.hint}")
    return "\n".join(out)


def render_all(diagnostics: Iterable[Diagnostic], sources: Mapping[str, str]) -> str:
    """`render` of each diagnostic, one after another; `sources` maps file names to their text."""
    return "\n".join(render(d, sources.get(d.file)) for d in diagnostics)
