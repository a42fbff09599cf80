"""Customers: the customer card (profile, tiers, recommended strategies, metric values,
history, explanations), the customers connection (keyset-paged, filtered by tier and by a
rule-language condition), and the `Transition` type of tier changes. Per-node fields resolve
through the request's DataLoaders, so a page costs the same statements whatever its size."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated, Any

import strawberry
from sqlalchemy import Row, Select, func, select
from strawberry.scalars import JSON

from dsl import Value
from service.access.auth import Permission, Role, allows
from service.api.access import require
from service.api.context import Info
from service.api.explain import Explanation, explanation
from service.api.fields import arg, resolver
from service.api.limits import page_size
from service.api.loaders import CARD_METRICS, CustomerCard, MembershipRow, TransitionRow
from service.api.strategies import Strategy
from service.db.database import Record
from service.db.tables import customers
from service.engine.members import members_select
from service.engine.strategies import Strategy as StrategyRecord
from service.errors import NotFound, UserError


@strawberry.type(description="A customer's place in one scheme: the tier they are in now.")
class Membership:
    scheme: str = strawberry.field(description="Key of the scheme.")
    tier: str = strawberry.field(description="The tier the customer is in.")
    since: dt.datetime = strawberry.field(description="When the customer entered the tier.")
    version: int = strawberry.field(description="Version of the rules that put them there.")

    @classmethod
    def of(cls, row: MembershipRow) -> Membership:
        return cls(scheme=row.scheme, tier=row.tier, since=row.since, version=row.version)


def _int(value: Value) -> int | None:
    return None if value is None else int(value)  # type: ignore[arg-type]


def _decimal(value: Value) -> Decimal | None:
    return None if value is None else Decimal(value)  # type: ignore[arg-type]


def _time(value: Value) -> dt.datetime | None:
    return value if isinstance(value, dt.datetime) else None


@strawberry.type(description="A customer's current metric values (all-time, as of now).")
class CustomerMetrics:
    recency: int | None = strawberry.field(description="Days since the last purchase.")
    frequency: int = strawberry.field(
        description="Number of purchases (not refunds, cancelled orders or orders refunded "
        "in full)."
    )
    monetary: Decimal = strawberry.field(description="Net amount: orders less refunds.")
    average_order_value: Decimal | None = strawberry.field(description="Net amount per purchase.")
    first_purchase: dt.datetime | None = strawberry.field(description="Time of the first purchase.")
    last_purchase: dt.datetime | None = strawberry.field(description="Time of the last purchase.")
    tenure: int | None = strawberry.field(description="Days since registration.")
    nps: int | None = strawberry.field(description="Latest NPS answer, 0-10.")
    refunds: Decimal = strawberry.field(description="Amount refunded (positive).")
    returns: int = strawberry.field(description="Number of refunds.")
    p_alive: Decimal | None = strawberry.field(
        description="Probability that the customer is still active (`p_alive`, 6 decimals); "
        "null without orders or a fitted model."
    )
    expected_orders: Decimal | None = strawberry.field(
        description="Expected purchase occasions in the next 365 days "
        "(`expected_orders(365 days)`, 6 decimals); null as pAlive."
    )
    expected_order_value: Decimal | None = strawberry.field(
        description="Expected value of a future purchase (`expected_order_value`, 4 decimals); "
        "null as pAlive."
    )
    clv: Decimal | None = strawberry.field(
        description="Expected net revenue in the next 365 days (`clv(365 days)`, 4 decimals); "
        "null as pAlive."
    )

    @classmethod
    def of(cls, values: dict[Any, Value]) -> CustomerMetrics:
        (
            recency,
            frequency,
            monetary,
            aov,
            first,
            last,
            tenure,
            nps,
            refunds,
            returns,
            p_alive,
            expected_orders,
            expected_value,
            clv,
        ) = (values.get(ref) for ref in CARD_METRICS)
        return cls(
            recency=_int(recency),
            frequency=_int(frequency) or 0,
            monetary=_decimal(monetary) or Decimal(0),
            average_order_value=_decimal(aov),
            first_purchase=_time(first),
            last_purchase=_time(last),
            tenure=_int(tenure),
            nps=_int(nps),
            refunds=_decimal(refunds) or Decimal(0),
            returns=_int(returns) or 0,
            p_alive=_decimal(p_alive),
            expected_orders=_decimal(expected_orders),
            expected_order_value=_decimal(expected_value),
            clv=_decimal(clv),
        )


@strawberry.type(description="A change of a customer's tier in one scheme.")
class Transition:
    id: strawberry.ID = strawberry.field(
        description="Identifier: the scheme's key and the change's number in that scheme, "
        "counted from 1 with time (`value:17`)."
    )
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
            id=strawberry.ID(f"{row.scheme}:{row.number}"),
            scheme=row.scheme,
            customer_id=strawberry.ID(row.customer_external_id),
            from_tier=row.from_tier,
            to_tier=row.to_tier,
            at=row.at,
            version=row.version,
            trigger=row.trigger,
            internal_customer_id=row.customer_id,
        )


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
    # Read with the customer (`CustomerCard`), or None: then the loaders read them.
    known_tiers: strawberry.Private[list[MembershipRow] | None] = None
    known_strategies: strawberry.Private[list[StrategyRecord] | None] = None

    @classmethod
    def of_card(cls, card: CustomerCard) -> Customer:
        customer = cls.of(card.row)
        customer.known_tiers, customer.known_strategies = card.tiers, card.strategies
        return customer

    @classmethod
    def of(cls, row: Row[Any] | Record) -> Customer:
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
            # Read with service.db.exact: numbers come back digit for digit.
            attributes=JSON(row.attributes),
        )

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Customer | None:
        """A federation gateway's reference to a customer (when federation is on)."""
        require(info.context.caller, Permission.read_customers)
        row = await info.context.loaders.customer_by_external_id.load(str(id))
        return cls.of(row) if row is not None else None

    # Not coroutines when the card brought them: graphql-core completes a list it is given
    # at once, where every awaited field cost a task of its own and a gather.
    @resolver(
        description="The customer's tier in each scheme they are placed in.",
        graphql_type=list[Membership],
    )
    def tiers(self, info: Info) -> list[Membership] | Awaitable[list[Membership]]:
        if self.known_tiers is not None:
            return [Membership.of(row) for row in self.known_tiers]
        return self._load_tiers(info)

    async def _load_tiers(self, info: Info) -> list[Membership]:
        rows = await info.context.loaders.tiers.load(self.internal_id)
        return [Membership.of(row) for row in rows]

    @resolver(
        description="Active strategies of the customer's current tiers, by priority.",
        graphql_type=list[Strategy],
    )
    def strategies(self, info: Info) -> list[Strategy] | Awaitable[list[Strategy]]:
        ids = info.context.ids_at_hand()
        if self.known_strategies is not None and ids is not None:
            return [Strategy.of(s, ids) for s in self.known_strategies]
        return self._load_strategies(info)

    async def _load_strategies(self, info: Info) -> list[Strategy]:
        found = self.known_strategies
        if found is None:
            found = await info.context.loaders.strategies.load(self.internal_id)
        ids = await info.context.ids()
        return [Strategy.of(s, ids) for s in found]

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


# Pages are in the order of the customers' own ids, and a cursor holds the last one's: the
# client knows it already, and nothing of the tenant's internal numbering (a sequence shared
# by all tenants) shows. The prefix changed with the order, so an older cursor is refused.
_CURSOR_PREFIX = "customer-id:"


def encode_cursor(external_id: str) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{external_id}".encode()).decode()


def decode_cursor(cursor: str) -> str:
    """The customer id in a cursor `encode_cursor` made; `UserError` for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode()
    except ValueError:  # not ASCII, not base64, or not UTF-8 inside
        text = ""
    external_id = text.removeprefix(_CURSOR_PREFIX)
    if text == external_id or not external_id or "\0" in external_id:
        raise UserError(f"`after` is not a cursor this API gave out: {cursor[:100]!r}")
    return external_id


@strawberry.type
class CustomerQuery:
    @resolver(
        description="The customer of this id (their id in your systems), or null.",
        needs=Permission.read_customers,
    )
    async def customer(
        self, info: Info, id: Annotated[strawberry.ID, arg("The customer's id in your systems.")]
    ) -> Customer | None:
        # With its tiers and strategies, in one statement (`Loaders.customer_card`).
        card = await info.context.loaders.customer_card.load(str(id))
        return Customer.of_card(card) if card is not None else None

    @resolver(
        "Why a customer is in their tier of `scheme` (the customer card's `explain`, for "
        "tools that start from an id). NOT_FOUND for an unknown customer or scheme.",
        needs=Permission.read_customers,
    )
    async def explain(
        self,
        info: Info,
        customer: Annotated[strawberry.ID, arg("The customer's id in your systems.")],
        scheme: Annotated[str, arg("Key of a published scheme.")],
    ) -> Explanation:
        row = await info.context.loaders.customer_by_external_id.load(str(customer))
        if row is None:
            raise NotFound(f"no customer {str(customer)!r}")
        return await explanation(info, row.id, scheme)

    @resolver(
        "Customers in the order of their ids, a page at a time: optionally those in "
        "`tier` of `scheme`, and those for whom `where` (a rule-language condition, e.g. "
        '`monetary > 1000 and region = "east"`) is true now. `first` is capped by the '
        "server's page size limit.",
        needs=Permission.read_customers,
    )
    async def customers(
        self,
        info: Info,
        scheme: Annotated[str | None, arg("Only customers placed in this scheme.")] = None,
        tier: Annotated[str | None, arg("Only those in this tier of `scheme`.")] = None,
        where: Annotated[
            str | None, arg("A rule-language condition, e.g. `recency > 90 days`.")
        ] = None,
        first: Annotated[
            int | None, arg("Page size (default and cap: the server's limit).")
        ] = None,
        after: Annotated[str | None, arg("`endCursor` of the previous page.")] = None,
    ) -> CustomerConnection:
        context = info.context
        limit = context.settings.max_page_size
        size = limit if first is None else first
        if size < 0:
            raise UserError("`first` must not be negative")
        size = min(size, limit)
        start = decode_cursor(after) if after is not None else None
        async with context.transaction() as connection:
            filtered = await members_select(connection, context.tenant, scheme, tier, where)
            # The filters on the page's own rows: selecting them again by id (`id IN (ids)`)
            # made a second pass over the customers for every row when the planner thought
            # them few (a new tenant's): 30 s for a page of 400 customers.
            page = filtered.with_only_columns(*customers.c)
            if start is not None:
                page = page.where(customers.c.external_id > start)
            rows = (
                await connection.execute(page.order_by(customers.c.external_id).limit(size + 1))
            ).all()
        edges = [
            CustomerEdge(cursor=encode_cursor(row.external_id), node=Customer.of(row))
            for row in rows[:size]
        ]
        return CustomerConnection(
            edges=edges,
            page_info=PageInfo(
                # A page of none (`first: 0`, for `totalCount`) has no cursor to go on from.
                has_next_page=bool(edges) and len(rows) > size,
                has_previous_page=start is not None,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
            counted=select(func.count()).select_from(filtered.subquery("ids")),
        )
