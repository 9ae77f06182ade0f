"""A campaign's results and performance: by result, bounce category and skip reason; opens and clicks
(people and machines side by side), per link and over time; the figures the campaign list shows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.db.models.functions import TruncHour

from campaigns.bounces import BounceCategory
from campaigns.models import SKIP_REASONS, Campaign, CampaignLink, CampaignStatus, EmailEvent, EventType, SendStatus
from crm.exporting import escape_formula

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
    by_status = campaign.sends.order_by().values_list("status").annotate(n=Count("pk")).values_list("status", "n")
    return _results(campaign, dict(by_status))


def _results(campaign: Campaign, by_status: dict[str, int]) -> Results:
    """`by_status` with the bounces by category and the skips by reason."""
    sends = campaign.sends.order_by()
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


# Handed over and not bounced: the base of open, click, unsubscribe and complaint rates. A
# message an ESP accepted counts until its webhook says otherwise.
DELIVERED_OR_ACCEPTED = [SendStatus.DELIVERED, SendStatus.ACCEPTED]
BOUNCED = [SendStatus.HARD_BOUNCED, SendStatus.SOFT_BOUNCED]
# Recipients who did it, from the sends' <name>_at.
ENGAGEMENT = ["opened", "clicked", "complained", "unsubscribed"]


def _rate(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "—"


@dataclass(frozen=True)
class LinkRow:
    url: str
    position: int
    unique: int
    total: int
    machine: int


@dataclass
class Performance:
    """Everything the performance page shows about one campaign."""

    results: Results
    delivered: int = 0
    opened: int = 0  # recipients with a human open
    clicked: int = 0  # recipients with a human click
    complained: int = 0
    unsubscribed: int = 0
    opens: int = 0  # human opens, all of them
    clicks: int = 0
    machine_opened: int = 0  # recipients with an open no person made
    machine_clicked: int = 0
    machine_opens: int = 0
    machine_clicks: int = 0
    links: list[LinkRow] = field(default_factory=list)
    # (hour, human opens, human clicks) since the first send
    over_time: list[tuple[datetime, int, int]] = field(default_factory=list)

    @property
    def bounced(self) -> int:
        return sum(self.results.by_status.get(status, 0) for status in BOUNCED)

    def tiles(self) -> list[tuple[str, str, str]]:
        """(label, figure, rate and what it is of) for the page's headline figures."""
        attempted, delivered = self.results.attempted, self.delivered
        return [
            ("Sent", f"{attempted:,}", f"{self.results.by_status.get(SendStatus.SKIPPED, 0):,} skipped"),
            ("Delivered", f"{delivered:,}", f"{_rate(delivered, attempted)} of sent"),
            ("Opened", f"{self.opened:,}", f"{_rate(self.opened, delivered)} of delivered"),
            ("Clicked", f"{self.clicked:,}", f"{_rate(self.clicked, delivered)} of delivered"),
            ("Click-to-open", _rate(self.clicked, self.opened), "clicked of opened"),
            ("Bounced", f"{self.bounced:,}", f"{_rate(self.bounced, attempted)} of sent"),
            ("Unsubscribed", f"{self.unsubscribed:,}", f"{_rate(self.unsubscribed, delivered)} of delivered"),
            ("Complaints", f"{self.complained:,}", f"{_rate(self.complained, delivered)} of delivered"),
        ]

    def human_and_machine(self) -> list[tuple[str, int, int, str]]:
        """(what, people, machines, people's rate of delivered): the figures side by side."""
        return [
            ("Unique opens", self.opened, self.machine_opened, _rate(self.opened, self.delivered)),
            ("All opens", self.opens, self.machine_opens, ""),
            ("Unique clicks", self.clicked, self.machine_clicked, _rate(self.clicked, self.delivered)),
            ("All clicks", self.clicks, self.machine_clicks, ""),
        ]

    def stats(self) -> dict[str, int]:
        """The figures the campaign list shows, stored on the campaign by `refresh_stats`."""
        return {
            "attempted": self.results.attempted,
            "delivered": self.delivered,
            "opened": self.opened,
            "clicked": self.clicked,
            "bounced": self.bounced,
            "unsubscribed": self.unsubscribed,
            "complained": self.complained,
        }


def campaign_performance(campaign: Campaign, *, with_details: bool = True) -> Performance:
    """The campaign's figures: results and engagement from its sends, opens and clicks from its events.

    One pass over the sends for the counts by status and the engaged recipients, one over the
    opens and clicks for their totals; `with_details` adds the per-link table and the chart's hours.
    """
    by_status = list(
        campaign.sends.order_by()
        .values("status")
        .annotate(n=Count("pk"), **{name: Count(f"{name}_at") for name in ENGAGEMENT})
    )
    results = _results(campaign, {row["status"]: row["n"] for row in by_status})
    # Opens and clicks are read from the email_event_engagement index alone (migration 0010):
    # count rows, not ids, or every row is fetched from the table.
    events = EmailEvent.objects.filter(campaign=campaign, type__in=[EventType.OPEN, EventType.CLICK]).order_by()
    # People who opened or clicked are the sends' opened_at and clicked_at: only the machines'
    # recipients need a count of distinct sends, the costly part of this statement.
    figures: dict[str, int] = {}
    for kind, machine, total, senders in events.values_list("type", "is_machine").annotate(
        total=Count("*"), senders=Count("send", distinct=True, filter=Q(is_machine=True))
    ):
        noun, did = ("opens", "opened") if kind == EventType.OPEN else ("clicks", "clicked")
        if machine:
            figures[f"machine_{noun}"], figures[f"machine_{did}"] = total, senders
        else:
            figures[noun] = total
    performance = Performance(
        results,
        delivered=sum(results.by_status.get(status, 0) for status in DELIVERED_OR_ACCEPTED),
        **{name: sum(row[name] for row in by_status) for name in ENGAGEMENT},
        **figures,
    )
    if with_details:
        performance.links = _links(campaign)
        performance.over_time = _over_time(events.filter(is_machine=False))
    return performance


def _links(campaign: Campaign) -> list[LinkRow]:
    clicks = {
        (link_id, machine): (total, unique)
        for link_id, machine, total, unique in EmailEvent.objects.filter(campaign=campaign, type=EventType.CLICK)
        .order_by()
        .values_list("link_id", "is_machine")
        .annotate(total=Count("*"), unique=Count("send_id", distinct=True))
    }
    rows = [
        LinkRow(
            link.url,
            link.position,
            unique=clicks.get((link.pk, False), (0, 0))[1],
            total=clicks.get((link.pk, False), (0, 0))[0],
            machine=clicks.get((link.pk, True), (0, 0))[0],
        )
        for link in CampaignLink.objects.filter(campaign=campaign)
    ]
    return sorted(rows, key=lambda row: (-row.unique, row.position))


def _over_time(events) -> list[tuple[datetime, int, int]]:
    by_hour: dict[datetime, list[int]] = {}
    for hour, kind, count in (
        events.annotate(hour=TruncHour("occurred_at", tzinfo=UTC))
        .values_list("hour", "type")
        .annotate(count=Count("*"))
        .order_by("hour")
    ):
        by_hour.setdefault(hour, [0, 0])[0 if kind == EventType.OPEN else 1] += count
    return [(hour, opens, clicks) for hour, (opens, clicks) in sorted(by_hour.items())]


def refresh_stats(*, now: datetime) -> int:
    """Store the list's figures of every campaign that may still change; return how many.

    A campaign changes while it sends and for a while after (opens and clicks keep coming):
    sending, paused or scheduled, or sent or cancelled within STATS_REFRESH_DAYS.
    """
    active = Campaign.objects.filter(
        Q(status__in=[CampaignStatus.SENDING, CampaignStatus.PAUSED, CampaignStatus.SCHEDULED])
        | Q(
            status__in=[CampaignStatus.SENT, CampaignStatus.CANCELLED],
            status_changed_at__gte=now - timedelta(days=settings.STATS_REFRESH_DAYS),
        )
        | Q(stats_updated_at__isnull=True, status__in=[CampaignStatus.SENT, CampaignStatus.CANCELLED])
    )
    refreshed = 0
    for campaign in active.only("pk"):
        stats = campaign_performance(campaign, with_details=False).stats()
        Campaign.objects.filter(pk=campaign.pk).update(stats=stats, stats_updated_at=now)
        refreshed += 1
    return refreshed


# The export's columns: (header, Send field); the two differ where the header says more.
_RECIPIENT_FIELDS = [
    ("email", "email"),
    ("result", "status"),
    ("skip_reason", "skip_reason"),
    ("bounce_category", "bounce_category"),
    ("smtp_code", "smtp_code"),
    ("server_reply", "smtp_reply"),
    ("attempts", "attempts"),
    ("first_attempt_at", "first_attempt_at"),
    ("last_attempt_at", "last_attempt_at"),
    ("opened_at", "opened_at"),
    ("clicked_at", "clicked_at"),
    ("unsubscribed_at", "unsubscribed_at"),
    ("complained_at", "complained_at"),
]
RECIPIENT_COLUMNS = [header for header, _ in _RECIPIENT_FIELDS]


def recipient_rows(campaign: Campaign) -> Iterator[list[str]]:
    """One row per recipient for the results export; cells a spreadsheet would run are neutralised."""
    fields = [field for _, field in _RECIPIENT_FIELDS]
    for values in campaign.sends.order_by("pk").values_list(*fields).iterator(chunk_size=2000):
        yield [escape_formula(value.isoformat() if isinstance(value, datetime) else value) for value in values]
