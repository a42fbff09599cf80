"""Synthetic demo data: customers, orders and behaviour events shaped like a real shop's.

Each customer is generated from its own seeds, mixed from (config seed, customer index,
stream), so `customer_rows`, `order_rows` and `event_rows` can each run on their own, in any
order or process, and still agree; and nothing is held beyond the customer in hand, so a
million customers stream in constant memory. A customer's data depends only on the seed, its
index, `end` and `years`, never on `customers`: a smaller demo is a prefix of a larger one.

Shape (see the tests for the measured claims): about 8 % prospects who never buy, 4 % new
customers (registered in the last 60 days, at most one order), 18 % churned (stopped buying
at least 180 days before `end`; with buyers who lapsed on their own, about a quarter have not
bought for 180 days), 1 % VIP-like heavy buyers (several orders a month, thousands each),
the rest ordinary buyers whose purchase rates (gamma) and order values (lognormal) are skewed
so the top fifth brings most of the revenue. Orders peak in November/December
(Singles' Day) and mid-June (the "618" sale); dissatisfied customers complain more, answer
NPS surveys lower and are the ones who churn.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import operator
import os
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from service.data.kinds import Kind
from service.data.records import known_fields

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "CUSTOMER_FIELDS",
    "EVENT_FIELDS",
    "ORDER_FIELDS",
    "RATE_FIELDS",
    "REPORTING_CURRENCY",
    "DemoConfig",
    "customer_rows",
    "event_rows",
    "order_rows",
    "rate_rows",
    "set_up_tenant",
    "write_all",
    "write_csv",
]

# The CSV headers: the canonical ingest fields, as service.data.records defines them.
CUSTOMER_FIELDS: tuple[str, ...] = tuple(known_fields(Kind.customers))
ORDER_FIELDS: tuple[str, ...] = tuple(known_fields(Kind.orders))
EVENT_FIELDS: tuple[str, ...] = tuple(known_fields(Kind.events))
RATE_FIELDS: tuple[str, ...] = tuple(known_fields(Kind.rates))

# The shop reports in yuan; its overseas customers (FOREIGN_SHARE of them) pay in US dollars,
# converted at a monthly rate (`rate_rows`) that drifts around 7.1 yuan to the dollar.
REPORTING_CURRENCY = "CNY"
FOREIGN_CURRENCY = "USD"
FOREIGN_SHARE = 0.05

DAY = 86_400
YEAR = 365.25 * DAY
MAX_YEARS = 100.0


def _today_utc() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class DemoConfig:
    """How much demo data, from which seed, over which stretch of time."""

    customers: int = 20_000
    seed: int = 42
    end: datetime = field(default_factory=_today_utc)  # exclusive bound of every timestamp
    years: float = 3.0  # history length: nothing happens before end - years

    def __post_init__(self) -> None:
        if self.customers < 0:
            raise ValueError(f"customers must be >= 0, got {self.customers}")
        if not 0 < self.years <= MAX_YEARS:
            raise ValueError(f"years must be in (0, {MAX_YEARS:g}], got {self.years}")
        if self.end.tzinfo is None or self.end.utcoffset() is None:
            raise ValueError("end must be timezone-aware (UTC)")
        # Normalise so equal instants give equal configs and equal data.
        object.__setattr__(self, "end", self.end.astimezone(UTC))


# --- stable per-customer seeds ---------------------------------------------------------------

_M64 = (1 << 64) - 1
_PLAN, _PROFILE, _ORDERS, _EVENTS, _RETURNS = range(5)


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _mix(seed: int, index: int, stream: int) -> int:
    # Not hash(): str hashes are salted per process, and every run must agree. splitmix64 is
    # a bijection, so distinct (index, stream) under one seed never share a seed.
    return _splitmix64(_splitmix64(seed % (1 << 64)) ^ ((index << 2 | stream) & _M64))


# --- vocabulary ------------------------------------------------------------------------------

_SURNAMES = (
    ("Wang", "王"), ("Li", "李"), ("Zhang", "张"), ("Liu", "刘"), ("Chen", "陈"),
    ("Yang", "杨"), ("Huang", "黄"), ("Zhao", "赵"), ("Wu", "吴"), ("Zhou", "周"),
    ("Xu", "徐"), ("Sun", "孙"), ("Ma", "马"), ("Zhu", "朱"), ("Hu", "胡"),
    ("Guo", "郭"), ("He", "何"), ("Lin", "林"), ("Gao", "高"), ("Luo", "罗"),
)  # fmt: skip
_GIVEN = (
    ("Wei", "伟"), ("Fang", "芳"), ("Na", "娜"), ("Min", "敏"), ("Jing", "静"),
    ("Li", "丽"), ("Qiang", "强"), ("Lei", "磊"), ("Jun", "军"), ("Yang", "洋"),
    ("Yong", "勇"), ("Yan", "艳"), ("Jie", "杰"), ("Juan", "娟"), ("Tao", "涛"),
    ("Ming", "明"), ("Chao", "超"), ("Xiuying", "秀英"), ("Hui", "慧"), ("Ping", "平"),
)  # fmt: skip
_DOMAINS = ("example.com", "example.net", "example.org")  # reserved: never a real inbox
_OCCUPATIONS = (
    "engineer", "teacher", "doctor", "nurse", "sales", "manager", "designer", "accountant",
    "civil servant", "self-employed", "worker", "lawyer", "researcher", "driver", "chef",
)  # fmt: skip
_INDUSTRIES = (
    "retail", "manufacturing", "technology", "finance", "healthcare", "education",
    "hospitality", "logistics", "media", "public sector", "agriculture", "construction",
)  # fmt: skip
_REGIONS = ("east", "south", "north", "central", "west")
_REGION_CUM = (30, 55, 75, 90, 100)
_GENDERS = ("female", "male", "other")
_GENDER_CUM = (49, 97, 100)
_SOURCES = ("organic", "ads", "referral", "partner", "store")

_CATEGORIES = ("electronics", "apparel", "home", "beauty", "food", "books", "sports")
_CATEGORY_CUM = (12, 34, 49, 63, 83, 90, 100)
# Typical price of a category relative to the customer's own typical order.
_CATEGORY_PRICE = {
    "electronics": 3.0,
    "apparel": 1.0,
    "home": 1.5,
    "beauty": 0.8,
    "food": 0.35,
    "books": 0.4,
    "sports": 1.2,
}
_CHANNELS = ("web", "app", "store", "phone")
_CHANNEL_CUM = (35, 75, 90, 100)
_B2B_CHANNEL_CUM = (40, 50, 60, 100)  # companies order by phone far more often

_DEVICES = ('{"device": "ios"}', '{"device": "android"}', '{"device": "web"}')
_TOPICS = ("delivery", "refund", "account", "product", "invoice")
_REASONS = ("late_delivery", "damaged_item", "wrong_item", "rude_service", "refund_delay")

# Orders by hour of day (UTC), shaped by the customers' local day in UTC+8:
# quiet at night, busy at lunch and in the evening.
_HOUR_WEIGHTS = (
    # UTC 00..07 = local 08..15
    4, 6, 8, 8, 6, 5, 5, 6,
    # UTC 08..15 = local 16..23
    7, 8, 9, 10, 10, 11, 9, 6,
    # UTC 16..23 = local 00..07
    3, 2, 1, 1, 1, 1, 2, 3,
)  # fmt: skip
_HOUR_CUM = tuple(sum(_HOUR_WEIGHTS[: i + 1]) for i in range(24))
_MONTH_WEIGHTS = (0.85, 0.8, 0.95, 0.95, 1.0, 1.3, 1.0, 0.95, 1.0, 1.05, 1.6, 1.5)


def _pick(rng: random.Random, items: Sequence[str], cum: Sequence[int]) -> str:
    # bisect on integer cumulative weights: several times cheaper than rng.choices per call.
    return items[bisect.bisect_right(cum, rng.random() * cum[-1])]


def _season(ts: int) -> float:
    t = time.gmtime(ts)
    w = _MONTH_WEIGHTS[t.tm_mon - 1]
    if t.tm_mon == 11 and 9 <= t.tm_mday <= 11:  # Singles' Day run-up
        w *= 2.5
    elif t.tm_mon == 6 and 16 <= t.tm_mday <= 18:  # the mid-year "618" sale
        w *= 2.0
    if t.tm_wday >= 5:
        w *= 1.1
    return w


class _Calendar:
    """The history window as integer UTC seconds, with per-day formatting and seasonality."""

    def __init__(self, config: DemoConfig) -> None:
        self.end = math.floor(config.end.timestamp())
        self.start = self.end - round(config.years * YEAR)
        self.day0 = self.start - self.start % DAY  # midnight of the first day
        days = range((self.end - 1 - self.day0) // DAY + 1)
        self.dates = [time.strftime("%Y-%m-%d", time.gmtime(self.day0 + d * DAY)) for d in days]
        self.weights = [_season(self.day0 + d * DAY) for d in days]
        self.mean_weight = sum(self.weights) / len(self.weights)
        # cum[d] = seasonal weight of all days before day d: "seasonal time", in which a
        # seasonal purchase process is a plain Poisson process (sampled by inverting cum).
        self.cum = [0.0]
        for w in self.weights:
            self.cum.append(self.cum[-1] + w)

    def iso(self, ts: int) -> str:
        day, sec = divmod(ts - self.day0, DAY)
        minute, sec = divmod(sec, 60)
        return f"{self.dates[day]}T{_HH_MM[minute]}:{sec:02d}Z"

    def date(self, ts: int) -> str:
        return self.dates[(ts - self.day0) // DAY]

    def seasonal(self, ts: int) -> float:
        """Seasonal time of ts (weight-days since day0)."""
        day, sec = divmod(ts - self.day0, DAY)
        if day == len(self.weights):  # ts is end, at midnight
            return self.cum[day]
        return self.cum[day] + self.weights[day] * sec / DAY


_HH_MM = [f"{m // 60:02d}:{m % 60:02d}" for m in range(24 * 60)]


# --- the per-customer plan -------------------------------------------------------------------

PROSPECT, NEW, CHURNED, ACTIVE, VIP = "prospect", "new", "churned", "active", "vip"


@dataclass(slots=True)
class _Plan:
    """What kind of customer this is; drawn first so every stream sees the same customer."""

    index: int
    customer_id: str
    kind: str
    registered: int | None  # None: the source system never recorded it
    floor: int  # nothing about this customer happens before this
    until: int  # purchases stop before this: end, or the moment they churned
    orders_per_year: float
    order_value: float  # median order value before category and noise
    favourite: str
    loyalty: float  # chance an order is in the favourite category
    channel: str
    b2b: bool
    satisfaction: float  # 0..1; drives complaints, NPS and (via kind) churn


def _between(rng: random.Random, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi); callers guarantee hi > lo."""
    return lo + int(rng.random() * (hi - lo))


def _growing(rng: random.Random, lo: int, hi: int) -> int:
    # sqrt of a uniform: sign-ups grow linearly over the history, as a growing shop's do.
    return lo + int(math.sqrt(rng.random()) * (hi - lo))


def _plan(seed: int, index: int, cal: _Calendar, rng: random.Random) -> _Plan:
    rng.seed(_mix(seed, index, _PLAN))
    start, end = cal.start, cal.end
    u = rng.random()
    kind = (
        VIP if u < 0.01 else PROSPECT if u < 0.09 else NEW if u < 0.13
        else CHURNED if u < 0.31 else ACTIVE
    )  # fmt: skip
    # Established customers signed up at least 90 days ago, so "new" stays unambiguous.
    settled = max(start + 1, end - 90 * DAY)
    churn_by = end - 180 * DAY  # churned customers' last purchase is before this
    if kind == CHURNED and churn_by - 30 * DAY <= start:
        kind = ACTIVE  # history too short to have churned in
    registered: int | None
    if kind == NEW:
        registered = _between(rng, max(start, end - 60 * DAY), end)
    elif kind == PROSPECT:
        registered = _growing(rng, start, end)
    elif kind == CHURNED:
        registered = _growing(rng, start, churn_by - 30 * DAY)
    else:
        registered = _growing(rng, start, settled)
    # Legacy records without a sign-up date (never for NEW: that is what makes them new).
    if kind != NEW and rng.random() < 0.02:
        registered = None
    floor = start if registered is None else registered
    until = end
    if kind == CHURNED:
        until = _between(rng, min(floor + 30 * DAY, churn_by - 1), churn_by)

    b2b = rng.random() < 0.25
    if kind == VIP:
        orders_per_year = 12 * rng.uniform(2.2, 4.5)
        order_value = rng.uniform(1000.0, 2200.0)
        satisfaction = rng.betavariate(7, 2)
    else:
        # Gamma rates x lognormal values: the heavy tail that puts most revenue in few hands.
        orders_per_year = rng.gammavariate(0.9, 10.0) + 0.3
        order_value = rng.lognormvariate(math.log(150.0), 0.75)
        satisfaction = rng.betavariate(2, 3) if kind == CHURNED else rng.betavariate(5, 2)
        if kind == CHURNED:
            orders_per_year += 2.0  # they bought, then stopped
    return _Plan(
        index=index,
        customer_id=f"C{index + 1:06d}",
        kind=kind,
        registered=registered,
        floor=floor,
        until=until,
        orders_per_year=orders_per_year,
        order_value=order_value,
        favourite=_pick(rng, _CATEGORIES, _CATEGORY_CUM),
        loyalty=rng.uniform(0.2, 0.8),
        channel=_pick(rng, _CHANNELS, _B2B_CHANNEL_CUM if b2b else _CHANNEL_CUM),
        b2b=b2b,
        satisfaction=satisfaction,
    )


def _plans(config: DemoConfig, cal: _Calendar, rng: random.Random) -> Iterator[_Plan]:
    for index in range(config.customers):
        yield _plan(config.seed, index, cal, rng)


# --- customers -------------------------------------------------------------------------------


def _profile(plan: _Plan, cal: _Calendar, rng: random.Random) -> dict[str, str]:
    surname, surname_zh = rng.choice(_SURNAMES)
    given, given_zh = rng.choice(_GIVEN)
    # Some names in Chinese characters, so importers meet real UTF-8.
    name = f"{surname_zh}{given_zh}" if rng.random() < 0.35 else f"{surname} {given}"
    email = f"{given.lower()}.{surname.lower()}{plan.index + 1}@{rng.choice(_DOMAINS)}"
    phone = f"+861{rng.choice('35789')}{rng.randrange(10**9):09d}"
    age = int(rng.triangular(18, 80, 33))
    if age < 23 and rng.random() < 0.6:
        occupation = "student"
    elif age >= 62 and rng.random() < 0.7:
        occupation = "retired"
    else:
        occupation = rng.choice(_OCCUPATIONS)
    company_size = ""
    if plan.b2b:
        company_size = str(min(200_000, max(1, int(rng.lognormvariate(math.log(40), 1.6)))))
    registered_at = ""
    if plan.registered is not None:
        # Some sources keep only the date; importers read it as midnight UTC.
        # (Not on the history's first day: midnight would fall before the history starts.)
        date_only = rng.random() < 0.15 and plan.registered - plan.registered % DAY >= cal.start
        registered_at = cal.date(plan.registered) if date_only else cal.iso(plan.registered)
    attributes: dict[str, object] = {}
    if rng.random() >= 0.1:
        if plan.kind == VIP:
            tier = rng.choice(("gold", "platinum"))
        else:
            tier = _pick(rng, ("free", "silver", "gold"), (60, 90, 100))
        attributes = {
            "plan": tier,
            "newsletter": rng.random() < 0.4,
            "source": rng.choice(_SOURCES),
        }
        if plan.b2b:
            attributes["tags"] = ["b2b"]
    return {
        "customer_id": plan.customer_id,
        "name": name,
        "email": email,
        "phone": phone,
        "age": str(age),
        "gender": _pick(rng, _GENDERS, _GENDER_CUM),
        "occupation": occupation,
        "region": _pick(rng, _REGIONS, _REGION_CUM),
        "industry": rng.choice(_INDUSTRIES),
        "company_size": company_size,
        "registered_at": registered_at,
        "attributes": json.dumps(attributes, ensure_ascii=False),
    }


def customer_rows(config: DemoConfig) -> Iterator[dict[str, str]]:
    """Customer rows (`CUSTOMER_FIELDS`), ids C000001, C000002, ... in order."""
    cal = _Calendar(config)
    rng = random.Random()
    for plan in _plans(config, cal, rng):
        rng.seed(_mix(config.seed, plan.index, _PROFILE))
        yield _profile(plan, cal, rng)


# --- orders ----------------------------------------------------------------------------------


def _order_times(plan: _Plan, cal: _Calendar, rng: random.Random) -> list[int]:
    lo, hi = plan.floor, plan.until
    if plan.kind == PROSPECT or hi <= lo:
        return []
    if plan.kind == NEW:
        # Most new sign-ups buy once within days; none has had time for a second order.
        if rng.random() < 0.7:
            return [_between(rng, lo, min(hi, lo + 7 * DAY))]
        return []
    times = []
    if plan.registered is not None and (plan.kind == CHURNED or rng.random() < 0.85):
        # People sign up to buy: the first order follows registration within days.
        first = lo + int(rng.expovariate(1 / (2 * DAY)))
        if first < hi:
            times.append(first)
    # A Poisson process in seasonal time, mapped back to clock time: November and June get
    # their share of orders at the cost of one draw and one bisect per order.
    per_weight_day = plan.orders_per_year / 365.25 / cal.mean_weight
    cum, weights, day0 = cal.cum, cal.weights, cal.day0
    x, x_hi = cal.seasonal(lo), cal.seasonal(hi)
    x += rng.expovariate(per_weight_day)
    while x < x_hi:
        day = bisect.bisect_right(cum, x) - 1
        ts = min(day0 + day * DAY + int((x - cum[day]) / weights[day] * DAY), hi - 1)
        # Re-place within the day by the hour-of-day profile, unless that leaves [lo, hi).
        hour = bisect.bisect_right(_HOUR_CUM, rng.random() * _HOUR_CUM[-1])
        placed = day0 + day * DAY + hour * 3600 + int(rng.random() * 3600)
        times.append(placed if lo <= placed < hi else max(ts, lo))
        x += rng.expovariate(per_weight_day)
    times.sort()
    return times


def _amount(plan: _Plan, category: str, rng: random.Random) -> str:
    value = plan.order_value * _CATEGORY_PRICE[category] * math.exp(rng.gauss(0.0, 0.45))
    cents = min(max(100, round(value * 100)), 99_999_999)
    r = rng.random()
    if r < 0.55:  # shop prices: x.00, x.90, x.99 more often than not
        cents = cents - cents % 100 + (0 if r < 0.25 else 90 if r < 0.45 else 99)
    return f"{cents // 100}.{cents % 100:02d}"


# Of the orders of customers with more than one: cancelled, and refunded (a refund row some
# days later naming the order; a third of them in full, the rest in part).
CANCELLED_SHARE = 0.02
REFUNDED_SHARE = 0.04


def _monthly_rates(config: DemoConfig) -> dict[str, Decimal]:
    """The USD rate of each month of the history ("YYYY-MM" -> yuan per dollar): a random walk
    from the seed, in 4 decimals."""
    cal = _Calendar(config)
    months = sorted({day[:7] for day in cal.dates})
    rng = random.Random(_splitmix64(config.seed ^ 0x5EED_CAFE))
    rate, out = 7.1, {}
    for month in months:
        rate = min(7.4, max(6.8, rate + rng.gauss(0.0, 0.04)))
        out[month] = Decimal(f"{rate:.4f}")
    return out


def rate_rows(config: DemoConfig) -> Iterator[dict[str, str]]:
    """Exchange rate rows (`RATE_FIELDS`): the dollar's rate from the first of each month of
    the history, so every order's date has one."""
    for month, rate in _monthly_rates(config).items():
        yield {"currency": FOREIGN_CURRENCY, "date": f"{month}-01", "rate": str(rate)}


def _pays_abroad(config: DemoConfig, index: int) -> bool:
    # A draw of its own (not a stream of `_mix`), so every other stream is unchanged.
    return (
        _splitmix64(_mix(config.seed, index, _ORDERS) ^ 0xD011A5) % 10_000 < FOREIGN_SHARE * 10_000
    )


def order_rows(config: DemoConfig) -> Iterator[dict[str, str]]:
    """Order rows (`ORDER_FIELDS`), grouped by customer in id order, each customer's by time
    (a refund row right after the order it refunds, dated some days later, before `end`).
    Overseas customers' orders are in dollars: the yuan price at that month's rate, in cents."""
    cal = _Calendar(config)
    rates = _monthly_rates(config)
    rng = random.Random()
    returns = random.Random()  # its own stream: the sales are the same with or without it
    number = 0
    for plan in _plans(config, cal, rng):
        rng.seed(_mix(config.seed, plan.index, _ORDERS))
        returns.seed(_mix(config.seed, plan.index, _RETURNS))
        times = _order_times(plan, cal, rng)
        abroad = _pays_abroad(config, plan.index)
        for ts in times:
            number += 1
            if rng.random() < plan.loyalty:
                category = plan.favourite
            else:
                category = _pick(rng, _CATEGORIES, _CATEGORY_CUM)
            # Customers stick to their usual channel, with the odd exception.
            channel = plan.channel if rng.random() < 0.75 else _pick(rng, _CHANNELS, _CHANNEL_CUM)
            amount = _amount(plan, category, rng)
            currency = REPORTING_CURRENCY
            if abroad:
                currency = FOREIGN_CURRENCY
                dollars = Decimal(amount) / rates[cal.date(ts)[:7]]
                amount = str(max(Decimal("0.01"), dollars.quantize(Decimal("0.01"))))
            order = {
                "order_id": f"O{number:08d}",
                "customer_id": plan.customer_id,
                "ordered_at": cal.iso(ts),
                "amount": amount,
                "currency": currency,
                "category": category,
                "channel": channel,
                "status": "completed",
                "refund_of": "",
            }
            fate = returns.random() if len(times) > 1 else 1.0
            if fate < CANCELLED_SHARE:
                order["status"] = "cancelled"
            yield order
            refunded_at = ts + returns.randint(2, 20) * DAY
            if CANCELLED_SHARE <= fate < CANCELLED_SHARE + REFUNDED_SHARE and refunded_at < cal.end:
                cents = round(Decimal(amount) * 100)
                if returns.random() >= 1 / 3:  # in part: 10-60 % of it
                    cents = max(1, cents * returns.randint(10, 60) // 100)
                yield order | {
                    "order_id": f"O{number:08d}R",
                    "ordered_at": cal.iso(refunded_at),
                    "amount": f"-{cents // 100}.{cents % 100:02d}",
                    "status": "completed",
                    "refund_of": order["order_id"],
                }


async def set_up_tenant(engine: AsyncEngine, tenant: str, config: DemoConfig) -> None:
    """Make ``tenant`` ready for the demo's orders: its reporting currency and the dollar's
    rates (before the orders, which are refused without them)."""
    from service.data import rates
    from service.data.ingest import import_rate_rows

    await rates.set_reporting_currency(engine, tenant, REPORTING_CURRENCY)
    await import_rate_rows(engine, tenant, enumerate(rate_rows(config), 2), source="demo rates")


# --- events ----------------------------------------------------------------------------------


def _poisson(rng: random.Random, lo: int, hi: int, per_year: float) -> list[int]:
    """Times of a homogeneous Poisson process with `per_year` events a year on [lo, hi)."""
    if per_year <= 0 or hi <= lo:
        return []
    rate = per_year / YEAR
    out = []
    t = lo + rng.expovariate(rate)
    while t < hi:
        out.append(int(t))
        t += rng.expovariate(rate)
    return out


def _page(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.6:
        path = f"/product/{rng.randrange(1, 5000)}"
    elif r < 0.85:
        path = f"/category/{rng.choice(_CATEGORIES)}"
    elif r < 0.95:
        path = "/cart"
    else:
        path = "/"
    return f'{{"page": "{path}"}}'  # hand-built JSON: the values never need escaping


def _customer_events(
    plan: _Plan, cal: _Calendar, rng: random.Random
) -> list[tuple[int, str, str, str]]:
    """(time, type, value, properties) of one customer's events, in time order."""
    lo, hi = plan.floor, cal.end
    if plan.kind == CHURNED:
        hi = min(hi, plan.until + int(rng.random() * 60 * DAY))  # they drift off, then vanish
    if hi <= lo:
        return []
    dissatisfaction = 1.0 - plan.satisfaction
    events: list[tuple[int, str, str, str]] = []
    logins = 1.5 if plan.kind == PROSPECT else 0.5 + 0.3 * plan.orders_per_year
    for t in _poisson(rng, lo, hi, min(logins, 40.0)):
        events.append((t, "login", "", rng.choice(_DEVICES)))
        while rng.random() < 0.5:  # a session browses a page or two
            t += 10 + int(rng.expovariate(1 / 120))
            if t >= hi:
                break
            events.append((t, "page_view", "", _page(rng)))
    if plan.kind != PROSPECT:
        for t in _poisson(rng, lo, hi, 0.2 + 1.0 * dissatisfaction):
            events.append((t, "support_contact", "", f'{{"topic": "{rng.choice(_TOPICS)}"}}'))
        complaints = _poisson(rng, lo, hi, 0.03 + 1.2 * dissatisfaction**2)
        if plan.kind == CHURNED and rng.random() < dissatisfaction:
            # The complaint that preceded leaving.
            complaints.append(_between(rng, max(lo, plan.until - 60 * DAY), plan.until))
        for t in complaints:
            events.append((t, "complaint", "", f'{{"reason": "{rng.choice(_REASONS)}"}}'))
        r = rng.random()
        for _ in range(2 if r < 0.2 else 1 if r < 0.6 else 0):
            score = round(plan.satisfaction * 10 + rng.gauss(0.0, 1.2))
            survey = rng.choice(("quarterly", "post_purchase"))
            events.append(
                (_between(rng, lo, hi), "nps", str(min(10, max(0, score))),
                 f'{{"survey": "{survey}"}}')
            )  # fmt: skip
    events.sort()
    return events


def event_rows(config: DemoConfig) -> Iterator[dict[str, str]]:
    """Event rows (`EVENT_FIELDS`), grouped by customer in id order, each customer's by time."""
    cal = _Calendar(config)
    rng = random.Random()
    number = 0
    for plan in _plans(config, cal, rng):
        rng.seed(_mix(config.seed, plan.index, _EVENTS))
        for ts, kind, value, properties in _customer_events(plan, cal, rng):
            number += 1
            yield {
                "event_id": f"E{number:09d}",
                "customer_id": plan.customer_id,
                "type": kind,
                "occurred_at": cal.iso(ts),
                "value": value,
                "properties": properties,
            }


# --- files -----------------------------------------------------------------------------------


def write_csv(rows: Iterable[dict[str, str]], path: Path, fields: Sequence[str]) -> int:
    """Write rows as UTF-8 CSV with a header; returns the number of rows written.

    The file appears complete or not at all (written beside it, then renamed), so an
    interrupted demo never leaves a truncated file for an importer to half-load.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    columns = list(fields)
    # csv.writer over itemgetter: about twice as fast as DictWriter, which re-checks every row.
    pick = operator.itemgetter(*columns) if len(columns) > 1 else (lambda row: (row[columns[0]],))
    count = 0
    try:
        with partial.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(columns)
            for row in rows:
                if count == 0 and not row.keys() <= set(columns):
                    raise ValueError(f"row has fields not in {columns}: {sorted(row)}")
                writer.writerow(pick(row))
                count += 1
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count


def write_all(config: DemoConfig, directory: Path) -> dict[str, int]:
    """customers.csv, orders.csv, events.csv and rates.csv (the dollar's rates, to import
    before the orders into a tenant reporting in CNY) in `directory`; rows written per file."""
    directory = Path(directory)
    return {
        "rates": write_csv(rate_rows(config), directory / "rates.csv", RATE_FIELDS),
        "customers": write_csv(customer_rows(config), directory / "customers.csv", CUSTOMER_FIELDS),
        "orders": write_csv(order_rows(config), directory / "orders.csv", ORDER_FIELDS),
        "events": write_csv(event_rows(config), directory / "events.csv", EVENT_FIELDS),
    }
