"""Default strategies of the built-in templates: what the business does for each tier.

From the brief: VIP customers get personal service, exclusive offers and regular follow-up
calls; normal customers standard service and promotions; potential customers nurturing
campaigns; declining customers a win-back offer. Priority: lower comes first. Parameters are
what a channel needs to act (a discount, a call interval, a campaign's length).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StrategySpec:
    tier: str
    name: str
    description: str
    channel: str
    priority: int
    parameters: Mapping[str, Any] = field(default_factory=dict)


def _s(
    tier: str, name: str, description: str, channel: str, priority: int, **parameters: Any
) -> StrategySpec:
    return StrategySpec(tier, name, description, channel, priority, parameters)


STRATEGIES: Mapping[str, tuple[StrategySpec, ...]] = {
    "value": (
        _s(
            "VIP",
            "Personal account manager",
            "A named account manager handles every request and knows the customer's history.",
            "account_manager",
            10,
            response_hours=4,
        ),
        _s(
            "VIP",
            "Exclusive offers",
            "Early access to new products and members-only discounts.",
            "coupon",
            20,
            discount_percent=15,
            valid_days=30,
        ),
        _s(
            "VIP",
            "Regular follow-up call",
            "A call to ask about satisfaction and upcoming needs.",
            "phone",
            30,
            interval_days=30,
        ),
        _s(
            "Normal",
            "Standard service",
            "Service through the regular support queue.",
            "email",
            50,
        ),
        _s(
            "Normal",
            "Seasonal promotions",
            "The shop-wide promotions: the 618 sale, Singles' Day, year-end.",
            "email",
            60,
            discount_percent=5,
        ),
        _s(
            "Potential",
            "Nurturing campaign",
            "A series of product guides and recommendations towards a second purchase.",
            "email",
            40,
            messages=4,
            interval_days=7,
        ),
        _s(
            "Potential",
            "Second-purchase coupon",
            "A coupon for the next order, to turn a first purchase into a habit.",
            "coupon",
            50,
            discount_percent=10,
            valid_days=14,
        ),
    ),
    "lifecycle": (
        _s(
            "Prospect",
            "First-purchase offer",
            "A welcome discount on the first order.",
            "email",
            40,
            discount_percent=10,
            valid_days=30,
        ),
        _s(
            "New",
            "Welcome series",
            "How to get the most out of the shop; what other customers buy next.",
            "email",
            30,
            messages=3,
            interval_days=5,
        ),
        _s(
            "Growing",
            "Cross-sell recommendations",
            "Products from categories the customer has not bought yet.",
            "email",
            50,
        ),
        _s(
            "Mature",
            "Loyalty programme",
            "Points on every order and a birthday gift.",
            "sms",
            60,
            points_per_100=5,
        ),
        _s(
            "Declining",
            "Win-back offer",
            "No purchase for 90 days: a personal discount to come back.",
            "coupon",
            10,
            discount_percent=20,
            valid_days=14,
        ),
        _s(
            "Declining",
            "Satisfaction call",
            "Ask what went wrong before the customer is gone.",
            "phone",
            20,
        ),
        _s(
            "Churned",
            "Reactivation campaign",
            "A last, strong offer; customers who do not react leave the mailing list.",
            "email",
            80,
            discount_percent=25,
            valid_days=30,
        ),
    ),
    "rfm": (
        _s(
            "Champions",
            "VIP treatment",
            "Early access, exclusive offers, ask for reviews and referrals.",
            "account_manager",
            10,
        ),
        _s(
            "Loyal",
            "Loyalty rewards",
            "Upsell higher-value products; reward with points.",
            "email",
            30,
            points_per_100=5,
        ),
        _s(
            "Potential Loyalist",
            "Membership offer",
            "Offer the loyalty programme and personal recommendations.",
            "email",
            40,
        ),
        _s(
            "New",
            "Onboarding",
            "Welcome series that builds the relationship early.",
            "email",
            40,
            messages=3,
            interval_days=5,
        ),
        _s(
            "Promising",
            "Brand awareness",
            "Free trials and content that shows what else the shop offers.",
            "email",
            50,
        ),
        _s(
            "Need Attention",
            "Limited-time offer",
            "A time-limited offer based on past purchases.",
            "sms",
            40,
            discount_percent=10,
            valid_days=7,
        ),
        _s(
            "About to Sleep",
            "Reminder with recommendations",
            "Popular products and a small discount before the customer drifts away.",
            "email",
            40,
            discount_percent=5,
        ),
        _s(
            "At Risk",
            "Win-back offer",
            "Personal emails with a strong discount and helpful resources.",
            "coupon",
            20,
            discount_percent=20,
            valid_days=14,
        ),
        _s(
            "Can't Lose Them",
            "Personal win-back call",
            "Valuable customers slipping away: call them, ask why, make a personal offer.",
            "phone",
            10,
            discount_percent=25,
        ),
        _s(
            "Hibernating",
            "Reactivation campaign",
            "Relevant products and special offers; otherwise keep contact low.",
            "email",
            80,
            discount_percent=15,
        ),
    ),
    "abc": (
        _s(
            "A",
            "Key account service",
            "The customers behind most of the revenue: personal service and regular reviews.",
            "account_manager",
            10,
            review_interval_days=90,
        ),
        _s(
            "B",
            "Growth offers",
            "Volume discounts and bundles to move them towards A.",
            "email",
            40,
            discount_percent=10,
        ),
        _s(
            "C",
            "Automated service",
            "Self-service and newsletters at low cost per customer.",
            "email",
            90,
        ),
    ),
    "declining": (
        _s(
            "Lapsed",
            "Win-back offer",
            "Bought in the 90 days before, nothing since: a personal discount to come back.",
            "coupon",
            10,
            discount_percent=20,
            valid_days=14,
        ),
        _s(
            "Lapsed",
            "Satisfaction call",
            "Ask what went wrong before the customer is gone.",
            "phone",
            20,
        ),
        _s(
            "Declining",
            "Re-engagement offer",
            "Spend fell by half or more: a reminder of what they bought, with a discount.",
            "email",
            15,
            discount_percent=10,
            valid_days=21,
        ),
        _s(
            "Growing",
            "Thank-you and cross-sell",
            "Spend is up: thank them and suggest categories they have not bought yet.",
            "email",
            50,
        ),
        _s(
            "Steady",
            "Standard promotions",
            "The regular newsletter and seasonal promotions.",
            "email",
            60,
        ),
        _s(
            "Inactive",
            "Reactivation newsletter",
            "No spend for 180 days: a monthly newsletter, nothing more.",
            "email",
            70,
            interval_days=30,
        ),
    ),
    "clv": (
        _s(
            "Top",
            "Loyalty programme",
            "The customers expected to bring the most next year: top membership level, "
            "personal service and early access.",
            "account_manager",
            10,
            review_interval_days=90,
        ),
        _s(
            "High",
            "Upsell campaign",
            "Recommendations and bundles that raise the next order's value.",
            "email",
            40,
            discount_percent=10,
        ),
        _s(
            "Rest",
            "Standard service",
            "Service through the regular support queue and the shop-wide promotions.",
            "email",
            90,
        ),
    ),
    "churn_risk": (
        _s(
            "At risk",
            "Win-back call",
            "A personal call to a valuable customer who has probably stopped buying: ask why, "
            "and make it right.",
            "phone",
            10,
            within_days=7,
        ),
        _s(
            "At risk",
            "Win-back offer",
            "A strong personal discount to bring them back before they are lost.",
            "coupon",
            20,
            discount_percent=20,
            valid_days=30,
        ),
        _s(
            "Slipping",
            "Re-engagement email",
            "What is new since their last purchase, with a small incentive to come back.",
            "email",
            40,
            discount_percent=10,
        ),
        _s(
            "Other",
            "Regular newsletter",
            "No churn-specific action: the regular newsletter, and their other schemes' "
            "strategies.",
            "email",
            90,
        ),
    ),
}
