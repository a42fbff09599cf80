"""The golden rule files, as seeds for mutation fuzzing."""

from pathlib import Path

SEEDS = [
    p.read_text(encoding="utf-8")
    for p in sorted(Path(__file__).with_name("golden").glob("*.rules"))
]
