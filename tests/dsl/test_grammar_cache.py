"""Lark's analysis of the grammar is kept between processes in the user's cache directory;
the file is a pickle, which lark loads before checking it, so only a directory of the user's
own that nobody else can write into is used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsl import parser
from dsl.grammar import grammar_text


def test_the_cache_is_a_file_per_grammar_in_the_users_own_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = parser._cache_file()
    assert isinstance(first, str) and Path(first).parent == tmp_path / "tierwise"
    assert (tmp_path / "tierwise").stat().st_mode & 0o777 == 0o700
    monkeypatch.setattr(parser, "grammar_text", lambda: grammar_text() + "\n// changed\n")
    assert parser._cache_file() not in (first, False)


def test_a_directory_others_can_write_into_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "tierwise").mkdir(mode=0o700)
    os.chmod(tmp_path / "tierwise", 0o777)
    assert parser._cache_file() is False


def test_no_home_means_no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "relative")
    assert parser._cache_file() is False
