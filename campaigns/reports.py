"""A campaign's results: counts and rates by result, bounce category and skip reason."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count

from campaigns.bounces import BounceCategory
from campaigns.models import SKIP_REASONS, Campaign, SendStatus

# Everything that was handed to a transport: the base of the rates.
ATTEMPTED = [
    SendStatus.ACCEPTED,
    SendStatus.DELIVERED,
    SendStatus.DEFERRED,
    SendStatus.HARD_BOUNCED,
    SendStatus.SOFT_BOUNCED,
    SendStatus.NOT_SENT,
]


@dataclass
class Results:
    by_status: dict[str, int] = field(default_factory=dict)
    bounces: list[tuple[str, str, int]] = field(default_factory=list)  # (status label, category label, count)
    skipped: list[tuple[str, int]] = field(default_factory=list)  # (reason label, count)

    @property
    def attempted(self) -> int:
        return sum(self.by_status.get(status, 0) for status in ATTEMPTED)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    def rows(self) -> list[tuple[str, int, str]]:
        """(label, count, rate of attempted) for every status that occurred, in pipeline order."""
        attempted = self.attempted
        rows = []
        for status in SendStatus:
            count = self.by_status.get(status, 0)
            if not count:
                continue
            rate = f"{count / attempted:.1%}" if status in ATTEMPTED and attempted else ""
            rows.append((status.label, count, rate))
        return rows


def campaign_results(campaign: Campaign) -> Results:
    """Three grouped queries over the campaign's sends (its (campaign, status) index)."""
    sends = campaign.sends.order_by()
    by_status = dict(sends.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    categories = dict(BounceCategory.choices)
    statuses = dict(SendStatus.choices)
    bounces = [
        (statuses[status], categories.get(category, category or "—"), n)
        for status, category, n in sends.filter(status__in=[SendStatus.HARD_BOUNCED, SendStatus.SOFT_BOUNCED])
        .values_list("status", "bounce_category")
        .annotate(n=Count("pk"))
        .order_by("-n")
        .values_list("status", "bounce_category", "n")
    ]
    reasons = dict(SKIP_REASONS)
    skipped = [
        (reasons.get(reason, reason), n)
        for reason, n in sends.filter(status=SendStatus.SKIPPED)
        .values_list("skip_reason")
        .annotate(n=Count("pk"))
        .order_by("-n")
        .values_list("skip_reason", "n")
    ]
    return Results(by_status, bounces, skipped)
