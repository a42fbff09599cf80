"""The metric catalog as the rule language knows it (`dsl.CATALOG`, the one definition of
each metric), for rule editors' autocomplete and documentation."""

from __future__ import annotations

import strawberry

from dsl import CATALOG
from dsl import Metric as CatalogMetric
from service.access.auth import Permission
from service.api.fields import resolver


@strawberry.type(description="A metric of the rule language, from its catalog.")
class Metric:
    name: str = strawberry.field(description="Name as written in rules.")
    type: str = strawberry.field(description="number, days, text, timestamp, boolean, attribute.")
    unit: str = strawberry.field(description="Unit of its values, if any.")
    description: str = strawberry.field(description="What it means.")
    example: str = strawberry.field(description="A condition that uses it.")
    parameters: list[str] = strawberry.field(description="Parameters it accepts.")
    required_parameters: list[str] = strawberry.field(description="Parameters it needs.")

    @classmethod
    def of(cls, metric: CatalogMetric) -> Metric:
        return cls(
            name=metric.name,
            type=metric.type.value,
            unit=metric.unit,
            description=metric.description,
            example=metric.example,
            parameters=[p.value for p in metric.params],
            required_parameters=[p.value for p in metric.required],
        )


@strawberry.type
class CatalogQuery:
    @resolver(
        description="Every metric the rule language knows (its catalog).",
        needs=Permission.read_reports,
    )
    def metrics(self) -> list[Metric]:
        return [Metric.of(metric) for metric in CATALOG.values()]
