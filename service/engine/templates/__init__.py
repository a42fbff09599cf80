"""Built-in scheme templates: value tiers, lifecycle stages, RFM segments, ABC classes,
declining spend (period over period), and from the prediction models predicted lifetime value
(clv) and churn risk.

Each template is a rule file in this package (the text the analyst sees and can copy) plus
default strategies per tier. `tierwise demo` publishes all seven (after fitting the models);
docs/rules.md shows the rule files verbatim in its cookbook (a test keeps them identical).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from dsl import CheckedScheme, check_text
from service.engine.templates.strategies import STRATEGIES, StrategySpec

__all__ = ["KEYS", "TEMPLATES", "StrategySpec", "Template"]

KEYS = ("value", "lifecycle", "rfm", "abc", "declining", "clv", "churn_risk")


@dataclass(frozen=True)
class Template:
    key: str
    title: str
    source: str  # the rule text, as in the package's `KEY.rules`
    strategies: tuple[StrategySpec, ...]

    @property
    def file(self) -> str:
        return f"{self.key}.rules"

    def check(self) -> CheckedScheme:
        """The checked scheme (templates check without errors or warnings; tests prove it)."""
        return check_text(self.source, file=self.file).schemes[0]


def _load(key: str) -> Template:
    source = resources.files(__name__).joinpath(f"{key}.rules").read_text(encoding="utf-8")
    scheme = check_text(source, file=f"{key}.rules").schemes[0]
    # Key and title come from the rule text, so the two cannot disagree.
    assert scheme.key == key, (key, scheme.key)
    return Template(key, scheme.title or key, source, STRATEGIES[key])


TEMPLATES: Mapping[str, Template] = {key: _load(key) for key in KEYS}
