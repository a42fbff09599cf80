"""The metric catalog as the rule language knows it (`dsl.CATALOG`, the one definition of
each metric), for rule editors' autocomplete and documentation."""

from __future__ import annotations

import enum

import strawberry

from dsl import CATALOG
from dsl import Metric as CatalogMetric
from dsl.catalog import Param, Type
from service.access.auth import Permission
from service.api.fields import resolver


@strawberry.enum(description="What a metric's values are.")
class MetricType(enum.Enum):
    """The API's spelling of `dsl.catalog.Type` (each value is the catalog's type)."""

    NUMBER = strawberry.enum_value(Type.NUMBER, description="A number (counts, amounts, scores).")
    DAYS = strawberry.enum_value(Type.DAYS, description="A number of days (`recency > 90 days`).")
    TEXT = strawberry.enum_value(Type.TEXT, description="Text.")
    TIMESTAMP = strawberry.enum_value(Type.TIMESTAMP, description="A point in time.")
    BOOLEAN = strawberry.enum_value(Type.BOOLEAN, description="True or false.")
    ATTRIBUTE = strawberry.enum_value(
        Type.ATTRIBUTE,
        description="A free-form attribute's JSON value, typed by what it is compared with.",
    )


@strawberry.enum(description="An argument a metric takes in rules, as in `monetary(90 days)`.")
class MetricParameter(enum.Enum):
    """The API's spelling of `dsl.catalog.Param` (each value is the catalog's parameter)."""

    WINDOW = strawberry.enum_value(Param.WINDOW, description="A time window: `30 days`.")
    CATEGORY = strawberry.enum_value(
        Param.CATEGORY, description='Only orders of a product category: `category "books"`.'
    )
    CHANNEL = strawberry.enum_value(
        Param.CHANNEL, description='Only orders of a sales channel: `channel "web"`.'
    )
    CURRENCY = strawberry.enum_value(
        Param.CURRENCY,
        description='Only orders in a currency, their original amounts summed: `currency "USD"`.',
    )
    EVENT = strawberry.enum_value(
        Param.EVENT, description='Only behaviour events of a type: `event "login"`.'
    )
    METRIC = strawberry.enum_value(
        Param.METRIC, description="The metric it ranks: `percentile(monetary(90 days))`."
    )
    AGO = strawberry.enum_value(
        Param.AGO,
        description="Its value as it was that long ago, the window ending then: "
        "`monetary(90 days, 90 days ago)`.",
    )


@strawberry.type(description="A metric of the rule language, from its catalog.")
class Metric:
    name: str = strawberry.field(description="Name as written in rules.")
    type: MetricType = strawberry.field(description="What its values are.")
    unit: str = strawberry.field(description="Unit of its values, if any.")
    description: str = strawberry.field(description="What it means.")
    example: str = strawberry.field(description="A condition that uses it.")
    parameters: list[MetricParameter] = strawberry.field(description="Parameters it accepts.")
    required_parameters: list[MetricParameter] = strawberry.field(
        description="Parameters it needs."
    )

    @classmethod
    def of(cls, metric: CatalogMetric) -> Metric:
        return cls(
            name=metric.name,
            type=MetricType(metric.type),
            unit=metric.unit,
            description=metric.description,
            example=metric.example,
            parameters=[MetricParameter(p) for p in metric.params],
            required_parameters=[MetricParameter(p) for p in metric.required],
        )


@strawberry.type
class CatalogQuery:
    @resolver(
        description="Every metric the rule language knows (its catalog).",
        needs=Permission.read_reports,
    )
    def metrics(self) -> list[Metric]:
        return [Metric.of(metric) for metric in CATALOG.values()]
