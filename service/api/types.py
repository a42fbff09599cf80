"""The GraphQL object types: plain mappings of the service layer's results, with per-node
fields resolved through the request's DataLoaders."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

import strawberry
from sqlalchemy import Row, Select
from strawberry.scalars import JSON

from dsl import CATALOG, Value
from dsl import Diagnostic as RuleDiagnostic
from dsl import Metric as CatalogMetric
from dsl.explain import ClauseTrace
from dsl.explain import Explanation as RuleExplanation
from service.access.auth import Permission, Role, allows
from service.api.access import require
from service.api.context import Info
from service.api.errors import bad_input
from service.api.fields import arg, resolver
from service.api.limits import page_size
from service.api.loaders import CARD_METRICS, MembershipRow, TransitionRow
from service.engine import analytics, evaluation, schemes
from service.engine import strategies as strategy_service


@strawberry.type(description="A customer's place in one scheme: the tier they are in now.")
class Membership:
    scheme: str = strawberry.field(description="Key of the scheme.")
    tier: str = strawberry.field(description="The tier the customer is in.")
    since: dt.datetime = strawberry.field(description="When the customer entered the tier.")
    version: int = strawberry.field(description="Version of the rules that put them there.")

    @classmethod
    def of(cls, row: MembershipRow) -> Membership:
        return cls(scheme=row.scheme, tier=row.tier, since=row.since, version=row.version)


@strawberry.type(description="What the business does for the customers of a tier.")
class Strategy:
    id: strawberry.ID = strawberry.field(description="Identifier (for update and delete).")
    scheme: str = strawberry.field(description="Key of the scheme of the tier.")
    tier: str = strawberry.field(description="The tier the strategy is for.")
    name: str = strawberry.field(description="Name, unique within the tier.")
    description: str = strawberry.field(description="What the strategy does, for people.")
    channel: str = strawberry.field(description="How it reaches the customer (email, phone, ...).")
    priority: int = strawberry.field(description="Lower comes first when recommending.")
    parameters: JSON = strawberry.field(description="Free-form settings for the channel.")
    active: bool = strawberry.field(description="Inactive strategies are never recommended.")

    @classmethod
    def of(cls, strategy: strategy_service.Strategy) -> Strategy:
        return cls(
            id=strawberry.ID(str(strategy.id)),
            scheme=strategy.scheme,
            tier=strategy.tier,
            name=strategy.name,
            description=strategy.description,
            channel=strategy.channel,
            priority=strategy.priority,
            parameters=JSON(dict(strategy.parameters)),
            active=strategy.active,
        )


def _int(value: Value) -> int | None:
    return None if value is None else int(value)  # type: ignore[arg-type]


def _decimal(value: Value) -> Decimal | None:
    return None if value is None else Decimal(value)  # type: ignore[arg-type]


def _time(value: Value) -> dt.datetime | None:
    return value if isinstance(value, dt.datetime) else None


@strawberry.type(description="A customer's current metric values (all-time, as of now).")
class CustomerMetrics:
    recency: int | None = strawberry.field(description="Days since the last order.")
    frequency: int = strawberry.field(description="Number of orders.")
    monetary: Decimal = strawberry.field(description="Total amount of the orders.")
    average_order_value: Decimal | None = strawberry.field(description="Average order amount.")
    first_purchase: dt.datetime | None = strawberry.field(description="Time of the first order.")
    last_purchase: dt.datetime | None = strawberry.field(description="Time of the last order.")
    tenure: int | None = strawberry.field(description="Days since registration.")
    nps: int | None = strawberry.field(description="Latest NPS answer, 0-10.")

    @classmethod
    def of(cls, values: dict[Any, Value]) -> CustomerMetrics:
        recency, frequency, monetary, aov, first, last, tenure, nps = (
            values.get(ref) for ref in CARD_METRICS
        )
        return cls(
            recency=_int(recency),
            frequency=_int(frequency) or 0,
            monetary=_decimal(monetary) or Decimal(0),
            average_order_value=_decimal(aov),
            first_purchase=_time(first),
            last_purchase=_time(last),
            tenure=_int(tenure),
            nps=_int(nps),
        )


@strawberry.type(description="One clause of a tier's condition, evaluated for one customer.")
class Clause:
    text: str = strawberry.field(description="The clause in canonical rule text.")
    result: str = strawberry.field(description="`true`, `false` or `unknown` (a null value).")
    metric: str | None = strawberry.field(description="For a comparison: the metric compared.")
    actual: JSON | None = strawberry.field(description="The metric's value for this customer.")
    operator: str | None = strawberry.field(description="`>`, `between`, `in`, `is null`, ...")
    expected: JSON | None = strawberry.field(description="What it was compared with.")
    line: int = strawberry.field(description="Line of the clause in the scheme's source.")
    column: int = strawberry.field(description="Column of the clause in the scheme's source.")
    children: list[Clause] = strawberry.field(description="The parts of `and`, `or`, `not`.")

    @classmethod
    def of(cls, trace: ClauseTrace) -> Clause:
        return cls(
            text=trace.text,
            result=trace.result,
            metric=trace.metric,
            actual=JSON(trace.actual),
            operator=trace.operator,
            expected=JSON(trace.expected),
            line=trace.line,
            column=trace.column,
            children=[cls.of(child) for child in trace.children],
        )


@strawberry.type(description="One tier of a scheme, evaluated for one customer.")
class TierTrace:
    name: str = strawberry.field(description="The tier's name.")
    index: int = strawberry.field(description="Position in the scheme, from 0.")
    result: str = strawberry.field(description="`true`, `false`, `unknown` or `otherwise`.")
    matched: bool = strawberry.field(description="Whether this tier took the customer.")
    clause: Clause | None = strawberry.field(description="The condition; null for `otherwise`.")


@strawberry.type(description="Why a customer is in their tier of a scheme: every tier in order.")
class Explanation:
    scheme: str = strawberry.field(description="Key of the scheme.")
    tier: str | None = strawberry.field(
        description="The tier the rules give the customer now (null when none matches); "
        "it differs from the membership only when data changed since the last evaluation."
    )
    tiers: list[TierTrace] = strawberry.field(description="Every tier, in rule order.")

    @classmethod
    def of(cls, scheme: str, explanation: RuleExplanation) -> Explanation:
        return cls(
            scheme=scheme,
            tier=explanation.tier,
            tiers=[
                TierTrace(
                    name=t.name,
                    index=t.index,
                    result=t.result,
                    matched=t.matched,
                    clause=Clause.of(t.clause) if t.clause else None,
                )
                for t in explanation.tiers
            ],
        )


@strawberry.type(description="A change of a customer's tier in one scheme.")
class Transition:
    id: strawberry.ID = strawberry.field(description="Identifier, increasing with time.")
    scheme: str = strawberry.field(description="Key of the scheme.")
    customer_id: strawberry.ID = strawberry.field(description="The customer's id.")
    from_tier: str | None = strawberry.field(description="Previous tier; null when entering.")
    to_tier: str | None = strawberry.field(description="New tier; null when no tier matches.")
    at: dt.datetime = strawberry.field(description="When the change was recorded.")
    version: int = strawberry.field(description="Version of the scheme's rules.")
    trigger: str = strawberry.field(description="What caused it: `ingest`, `scheduled`, ...")
    internal_customer_id: strawberry.Private[int]

    @resolver(description="The customer who moved.")
    async def customer(self, info: Info) -> Customer | None:
        row = await info.context.loaders.customer_by_id.load(self.internal_customer_id)
        return Customer.of(row) if row is not None else None

    @classmethod
    def of(cls, row: TransitionRow) -> Transition:
        return cls(
            id=strawberry.ID(str(row.id)),
            scheme=row.scheme,
            customer_id=strawberry.ID(row.customer_external_id),
            from_tier=row.from_tier,
            to_tier=row.to_tier,
            at=row.at,
            version=row.version,
            trigger=row.trigger,
            internal_customer_id=row.customer_id,
        )


async def explanation(info: Info, customer_id: int, scheme: str) -> Explanation:
    traced = await info.context.loaders.explanations.load((customer_id, scheme))
    return Explanation.of(scheme, traced)


# Derived from the role table, like the check itself.
_PERSONAL = (
    " Personal data: null unless the caller's role is "
    + " or ".join(role.value for role in Role if allows(role, Permission.read_personal))
    + "."
)


def _personal(attribute: str) -> Callable[..., str | None]:
    """The resolver of a personal field, kept in ``attribute`` of the Customer."""

    def resolve(root: Customer, info: Info) -> str | None:
        if not info.context.caller.may(Permission.read_personal):
            return None
        value: str | None = getattr(root, attribute)
        return value

    return resolve


@strawberry.type(description="A customer: profile, tiers, recommended strategies and why.")
class Customer:
    internal_id: strawberry.Private[int]
    id: strawberry.ID = strawberry.field(description="The customer's id in the caller's systems.")
    # Personal data: served only to roles that may read it (`read_personal`), null to others.
    name: str | None = strawberry.field(
        resolver=_personal("full_name"), description=f"Full name.{_PERSONAL}"
    )
    email: str | None = strawberry.field(
        resolver=_personal("email_address"), description=f"Email address.{_PERSONAL}"
    )
    phone: str | None = strawberry.field(
        resolver=_personal("phone_number"), description=f"Phone number.{_PERSONAL}"
    )
    age: int | None = strawberry.field(description="Age in years.")
    gender: str | None = strawberry.field(description="Gender, as given.")
    occupation: str | None = strawberry.field(description="Occupation.")
    region: str | None = strawberry.field(description="Region.")
    industry: str | None = strawberry.field(description="Industry (business customers).")
    company_size: int | None = strawberry.field(description="Employees (business customers).")
    registered_at: dt.datetime | None = strawberry.field(description="Registration time.")
    attributes: JSON = strawberry.field(description="Free-form attributes, as a JSON object.")
    full_name: strawberry.Private[str | None]
    email_address: strawberry.Private[str | None]
    phone_number: strawberry.Private[str | None]

    @classmethod
    def of(cls, row: Row[Any]) -> Customer:
        return cls(
            internal_id=row.id,
            id=strawberry.ID(row.external_id),
            full_name=row.name,
            email_address=row.email,
            phone_number=row.phone,
            age=row.age,
            gender=row.gender,
            occupation=row.occupation,
            region=row.region,
            industry=row.industry,
            company_size=row.company_size,
            registered_at=row.registered_at,
            attributes=JSON(row.attributes),
        )

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Customer | None:
        """A federation gateway's reference to a customer (when federation is on)."""
        require(info.context.caller, Permission.read_customers)
        row = await info.context.loaders.customer_by_external_id.load(str(id))
        return cls.of(row) if row is not None else None

    @resolver(description="The customer's tier in each scheme they are placed in.")
    async def tiers(self, info: Info) -> list[Membership]:
        rows = await info.context.loaders.tiers.load(self.internal_id)
        return [Membership.of(row) for row in rows]

    @resolver(description="Active strategies of the customer's current tiers, by priority.")
    async def strategies(self, info: Info) -> list[Strategy]:
        found = await info.context.loaders.strategies.load(self.internal_id)
        return [Strategy.of(s) for s in found]

    @resolver(description="Current metric values.")
    async def metrics(self, info: Info) -> CustomerMetrics:
        return CustomerMetrics.of(await info.context.loaders.metrics.load(self.internal_id))

    @resolver(
        "Why the customer is in their tier of `scheme`: every tier's condition "
        "with the customer's values. NOT_FOUND for a scheme that is not published."
    )
    async def explain(
        self, info: Info, scheme: Annotated[str, arg("Key of a published scheme.")]
    ) -> Explanation:
        return await explanation(info, self.internal_id, scheme)

    @resolver(
        description="The customer's newest tier changes (`last` of them, at most "
        "TIERWISE_MAX_PAGE_SIZE), oldest first."
    )
    async def history(
        self,
        info: Info,
        scheme: Annotated[str | None, arg("Only this scheme's changes.")] = None,
        last: Annotated[int, arg("How many of the newest changes.")] = 50,
    ) -> list[Transition]:
        page_size(info.context.settings, "last", last)
        rows = await info.context.loaders.history.load((self.internal_id, scheme, last))
        return [Transition.of(row) for row in rows]


@strawberry.type(description="Relay page information.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="Whether more customers follow.")
    has_previous_page: bool = strawberry.field(description="Whether this page started `after`.")
    start_cursor: str | None = strawberry.field(description="Cursor of the first edge.")
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page.")


@strawberry.type(description="A customer in a page, with its cursor.")
class CustomerEdge:
    cursor: str = strawberry.field(description="Opaque position of this customer.")
    node: Customer = strawberry.field(description="The customer.")


@strawberry.type(description="A page of customers (Relay connection, keyset-paginated).")
class CustomerConnection:
    edges: list[CustomerEdge] = strawberry.field(description="The customers of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page is.")
    # Counting a big filtered set costs a scan of its own: done only when the field is asked for.
    counted: strawberry.Private[Select[Any]]

    @resolver("Customers matching the filters, all pages.")
    async def total_count(self, info: Info) -> int:
        async with info.context.transaction() as connection:
            return int(await connection.scalar(self.counted) or 0)


_CURSOR_PREFIX = "customer:"


def encode_cursor(internal_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{internal_id}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        if not text.startswith(_CURSOR_PREFIX):
            raise ValueError(cursor)
        return int(text.removeprefix(_CURSOR_PREFIX))
    except ValueError:
        raise bad_input(f"`after` is not a cursor this API gave out: {cursor!r}") from None


@strawberry.type(description="Customers and revenue of one tier, over current memberships.")
class Segment:
    scheme: str = strawberry.field(description="Key of the scheme.")
    tier: str = strawberry.field(description="The tier.")
    customer_count: int = strawberry.field(description="Customers in the tier.")
    customer_share: float = strawberry.field(description="Share of all customers, 0-1.")
    revenue: Decimal = strawberry.field(description="All-time revenue of its customers.")
    revenue_share: float = strawberry.field(description="Share of all revenue, 0-1.")
    average_revenue: Decimal | None = strawberry.field(
        description="Revenue per customer; null for an empty tier."
    )

    @resolver(description="Active strategies of the tier, by priority.")
    async def strategies(self, info: Info) -> list[Strategy]:
        found = await info.context.loaders.tier_strategies.load((self.scheme, self.tier))
        return [Strategy.of(s) for s in found if s.active]

    @classmethod
    def of(cls, row: analytics.SegmentRow) -> Segment:
        return cls(
            scheme=row.scheme,
            tier=row.tier,
            customer_count=row.customers,
            customer_share=row.customer_share,
            revenue=row.revenue,
            revenue_share=row.revenue_share,
            average_revenue=row.average_revenue,
        )


@strawberry.type(description="A published scheme: its current version of the rules.")
class Scheme:
    key: str = strawberry.field(description="Key, as in `scheme KEY { ... }`.")
    title: str | None = strawberry.field(description="Title, if the rules give one.")
    version: int = strawberry.field(description="Current version (a new text, a new version).")
    source: str = strawberry.field(description="The rules, in canonical layout.")
    tiers: list[str] = strawberry.field(description="Tier names, in rule order.")
    depends_on: list[str] = strawberry.field(description="Schemes whose tiers it reads.")
    uses_population: bool = strawberry.field(
        description="Whether tiers rank customers against each other (scores, percentiles): "
        "such schemes change only on full evaluations, not on ingest."
    )

    @classmethod
    def of(cls, scheme: schemes.PublishedScheme) -> Scheme:
        return cls(
            key=scheme.key,
            title=scheme.title,
            version=scheme.version,
            source=scheme.source,
            tiers=list(scheme.tiers),
            depends_on=sorted(scheme.checked.depends_on),
            uses_population=scheme.uses_population,
        )


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


def catalog() -> list[Metric]:
    return [Metric.of(metric) for metric in CATALOG.values()]


@strawberry.type(description="A problem found in rule text, where it is.")
class Diagnostic:
    line: int = strawberry.field(description="Line, from 1.")
    column: int = strawberry.field(description="Column, from 1.")
    end_line: int = strawberry.field(description="Line where the problem's span ends.")
    end_column: int = strawberry.field(description="Column where the problem's span ends.")
    severity: str = strawberry.field(description="`error` or `warning`.")
    message: str = strawberry.field(description="What is wrong.")
    hint: str | None = strawberry.field(description="How to fix it, when known.")

    @classmethod
    def of(cls, d: RuleDiagnostic) -> Diagnostic:
        return cls(
            line=d.line,
            column=d.column,
            end_line=d.end_line,
            end_column=d.end_column,
            severity=d.severity,
            message=d.message,
            hint=d.hint,
        )


@strawberry.type(description="The result of checking rule text (nothing is written).")
class RuleCheck:
    ok: bool = strawberry.field(description="No errors (warnings may remain).")
    diagnostics: list[Diagnostic] = strawberry.field(description="Errors and warnings.")


@strawberry.type(description="Customers and revenue a tier would hold.")
class TierCount:
    tier: str = strawberry.field(description="The tier.")
    customer_count: int = strawberry.field(description="Customers it would hold.")
    revenue: Decimal = strawberry.field(description="Their revenue.")


@strawberry.type(description="Customers who would move from one tier to another.")
class TierMove:
    from_tier: str | None = strawberry.field(description="Current tier; null for none.")
    to_tier: str | None = strawberry.field(description="Tier after publishing; null for none.")
    customer_count: int = strawberry.field(description="How many customers.")


@strawberry.type(description="What publishing one scheme would do.")
class SchemePreview:
    scheme: str = strawberry.field(description="Key of the scheme.")
    as_of: dt.datetime = strawberry.field(description="The time the rules were evaluated at.")
    tiers: list[TierCount] = strawberry.field(description="Every tier, in rule order.")
    moves: list[TierMove] = strawberry.field(
        description="Who would move, against current memberships, largest first."
    )

    @classmethod
    def of(cls, preview: evaluation.Preview) -> SchemePreview:
        return cls(
            scheme=preview.scheme,
            as_of=preview.as_of,
            tiers=[
                TierCount(tier=t.tier, customer_count=t.customers, revenue=t.revenue)
                for t in preview.tiers
            ],
            moves=[
                TierMove(from_tier=m.from_tier, to_tier=m.to_tier, customer_count=m.customers)
                for m in preview.moves
            ],
        )


@strawberry.type(description="What publishing rule text would do (nothing is written).")
class RulePreview:
    schemes: list[SchemePreview] = strawberry.field(description="One per scheme in the text.")


@strawberry.type(description="A row a mutation could not take, and why.")
class RowError:
    row: int = strawberry.field(description="Index of the row in the input list, from 0.")
    field: str | None = strawberry.field(description="The input field at fault, if one is.")
    message: str = strawberry.field(description="What is wrong with it.")


@strawberry.type(
    description="What an ingest mutation did: the valid rows are written (tiers updated "
    "incrementally), the invalid ones reported and not written at all."
)
class IngestResult:
    received: int = strawberry.field(description="Rows given.")
    inserted: int = strawberry.field(description="New rows written.")
    updated: int = strawberry.field(description="Existing rows (same id) changed.")
    unchanged: int = strawberry.field(description="Existing rows given again as they were.")
    rejected: int = strawberry.field(description="Rows not written: see `errors`.")
    customers_created: int = strawberry.field(
        description="Customers created because an order or event named an unknown id."
    )
    tier_changes: int = strawberry.field(description="Tier changes the new data caused.")
    errors: list[RowError] = strawberry.field(description="Every problem, by row and field.")


@strawberry.type(description="One evaluation of a scheme over all its customers.")
class EvaluationRun:
    id: strawberry.ID = strawberry.field(description="Identifier of the run.")
    scheme: str = strawberry.field(description="Key of the scheme.")
    version: int = strawberry.field(description="Version of the rules evaluated.")
    as_of: dt.datetime = strawberry.field(description="The time the rules were evaluated at.")
    customer_count: int = strawberry.field(description="Customers placed in some tier.")
    changed: int = strawberry.field(description="Tier changes recorded.")
    duration_ms: int = strawberry.field(description="How long it took.")
    tiers: list[TierCount] = strawberry.field(description="Customers and revenue per tier.")

    @classmethod
    def of(cls, run: evaluation.RunResult) -> EvaluationRun:
        return cls(
            id=strawberry.ID(str(run.run_id)),
            scheme=run.scheme,
            version=run.version,
            as_of=run.as_of,
            customer_count=run.customers,
            changed=run.changed,
            duration_ms=run.duration_ms,
            tiers=[
                TierCount(tier=t.tier, customer_count=t.customers, revenue=t.revenue)
                for t in run.tiers
            ],
        )


@strawberry.type(description="What publishing rules did.")
class PublishResult:
    scheme: Scheme = strawberry.field(description="The scheme's current version now.")
    changed: bool = strawberry.field(
        description="Whether a new version was made (false: the same rules were current)."
    )
    warnings: list[Diagnostic] = strawberry.field(description="Warnings about the rules.")
    runs: list[EvaluationRun] = strawberry.field(
        description="Evaluations run to make the new rules current (this scheme and those "
        "that read its tiers); empty when nothing changed or evaluation was not asked for."
    )
