"""A sending domain's deliverability dashboard: 90 days of rates as server-drawn SVG charts.

Charts are computed here as plain numbers (points, ticks, threshold lines) and drawn by the
template as inline SVG: no JavaScript, no chart library, nothing fetched from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min

from campaigns.bounces import BounceCategory
from campaigns.models import Send, SendStatus
from deliverability import repair
from deliverability.models import (
    OPEN_PLAN_STATUSES,
    DailyMetrics,
    DomainAlert,
    HealthAlert,
    HealthEvaluation,
    ReputationRepairPlan,
    SendingDomain,
)
from deliverability.recommendations import recommend

DAYS = 90
WIDTH, HEIGHT = 560, 170
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 10, 24


@dataclass(frozen=True)
class Threshold:
    value: float
    label: str
    style: str  # "critical", "warning" or "target"


@dataclass
class Chart:
    """One rate over the dashboard's days, with its thresholds, laid out for an SVG of WIDTH by HEIGHT."""

    key: str
    title: str
    explanation: str
    days: list[date]
    values: list[tuple[float | None, int, int]]  # (rate, count, base) per day
    thresholds: list[Threshold] = field(default_factory=list)
    # A second line: the evaluated rolling rate (the open rate's 30-day window).
    rolling: list[float | None] = field(default_factory=list)
    rolling_label: str = ""

    width: int = WIDTH
    height: int = HEIGHT

    @property
    def top(self) -> float:
        """The rate at the top of the plot: a round number above every value and threshold."""
        highest = max(
            [rate for rate, _, _ in self.values if rate is not None]
            + [rate for rate in self.rolling if rate is not None]
            + [threshold.value for threshold in self.thresholds]
            + [0.0001]
        )
        for step in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0):
            if highest * 1.1 <= step:
                return step
        return 1.0

    def x(self, index: int) -> float:
        span = max(len(self.days) - 1, 1)
        return round(LEFT + (self.width - LEFT - RIGHT) * index / span, 1)

    def y(self, rate: float) -> float:
        return round(TOP + (self.height - TOP - BOTTOM) * (1 - min(rate / self.top, 1)), 1)

    @property
    def left(self) -> int:
        return LEFT

    @property
    def plot_bottom(self) -> int:
        return self.height - BOTTOM

    @property
    def plot_right(self) -> int:
        return self.width - RIGHT

    def _segments(self, rates: list[float | None]) -> list[str]:
        """Polyline point lists; a day without mail breaks the line."""
        segments, current = [], []
        for index, rate in enumerate(rates):
            if rate is None:
                if current:
                    segments.append(" ".join(current))
                current = []
                continue
            current.append(f"{self.x(index)},{self.y(rate)}")
        if current:
            segments.append(" ".join(current))
        return segments

    @property
    def lines(self) -> list[str]:
        return self._segments([rate for rate, _, _ in self.values])

    @property
    def rolling_lines(self) -> list[str]:
        return self._segments(self.rolling)

    @property
    def points(self) -> list[tuple[float, float, str]]:
        """(x, y, tooltip) of each day with mail."""
        return [
            (self.x(index), self.y(rate), f"{day:%b %d}: {_percent(rate)} ({count:,} of {base:,})")
            for index, (day, (rate, count, base)) in enumerate(zip(self.days, self.values, strict=True))
            if rate is not None
        ]

    @property
    def y_ticks(self) -> list[tuple[float, str]]:
        return [(self.y(self.top * share), _percent(self.top * share)) for share in (0, 0.5, 1)]

    @property
    def x_ticks(self) -> list[tuple[float, str]]:
        """The first day of each month in range."""
        return [(self.x(index), f"{day:%b %-d}") for index, day in enumerate(self.days) if day.day == 1]

    @property
    def threshold_lines(self) -> list[tuple[float, str, str]]:
        return [(self.y(t.value), f"{t.label} {_percent(t.value)}", t.style) for t in self.thresholds]

    @property
    def latest(self) -> str:
        """The last day's rate in words, for the chart's heading and its accessible name."""
        for day, (rate, count, base) in zip(reversed(self.days), reversed(self.values), strict=True):
            if rate is not None:
                return f"{_percent(rate)} on {day:%b %d} ({count:,} of {base:,})"
        return "no mail in these days"


def _percent(rate: float | None) -> str:
    if rate is None:
        return "—"
    if rate and rate < 0.01:
        return f"{rate:.2%}"
    return f"{rate:.1%}".replace(".0%", "%")


def charts(domain: SendingDomain, *, today: date) -> list[Chart]:
    """The six rate charts over the DAYS days up to `today`."""
    days = [today - timedelta(days=DAYS - 1 - n) for n in range(DAYS)]
    by_day = {row.day: row for row in DailyMetrics.objects.filter(domain=domain, day__gte=days[0], day__lte=today)}
    rolling = dict(
        HealthEvaluation.objects.filter(domain=domain, day__gte=days[0], day__lte=today).values_list("day", "open_rate")
    )
    empty = DailyMetrics(sent=0, delivered=0)

    def series(count, base) -> list[tuple[float | None, int, int]]:
        values = []
        for day in days:
            row = by_day.get(day, empty)
            n, of = count(row), base(row)
            values.append((n / of if of else None, n, of))
        return values

    critical = settings.OPEN_RATE_CRITICAL_PERCENT / 100
    return [
        Chart(
            "delivered",
            "Delivered",
            "Delivered of handed over, by day.",
            days,
            series(lambda r: r.delivered, lambda r: r.sent),
        ),
        Chart(
            "opens",
            "Human opens",
            "Messages a person opened, of delivered (machine opens left out), by day; the line is the "
            f"{settings.OPEN_RATE_WINDOW_DAYS}-day rate the daily evaluation judges.",
            days,
            series(lambda r: r.human_opens, lambda r: r.delivered),
            [
                Threshold(critical, "critical", "critical"),
                Threshold(settings.REPAIR_PLAN_TARGET_OPEN_PERCENT / 100, "repair target", "target"),
            ],
            rolling=[rolling.get(day) for day in days],
            rolling_label=f"{settings.OPEN_RATE_WINDOW_DAYS}-day rate",
        ),
        Chart(
            "clicks",
            "Clicks",
            "Messages a person clicked in, of delivered, by day.",
            days,
            series(lambda r: r.clicks, lambda r: r.delivered),
        ),
        Chart(
            "bounces",
            "Hard bounces",
            "Hard bounces of handed over, by day.",
            days,
            series(lambda r: r.hard_bounces, lambda r: r.sent),
            [Threshold(settings.BAD_SEND_HARD_BOUNCE_PERCENT / 100, "limit", "critical")],
        ),
        Chart(
            "complaints",
            "Spam complaints",
            "Spam reports of delivered, by day.",
            days,
            series(lambda r: r.complaints, lambda r: r.delivered),
            [
                Threshold(settings.BAD_SEND_COMPLAINT_WARNING_PERCENT / 100, "warning", "warning"),
                Threshold(settings.BAD_SEND_COMPLAINT_CRITICAL_PERCENT / 100, "critical", "critical"),
            ],
        ),
        Chart(
            "unsubscribes",
            "Unsubscribes",
            "Unsubscribes of delivered, by day.",
            days,
            series(lambda r: r.unsubscribes, lambda r: r.delivered),
            [Threshold(settings.BAD_SEND_UNSUBSCRIBE_PERCENT / 100, "limit", "critical")],
        ),
    ]


def top_bounce_reasons(domain: SendingDomain, *, now: datetime, limit: int = 8) -> list[dict]:
    """The most frequent bounces of the domain's campaigns in the last 30 days, with one reply each."""
    categories = dict(BounceCategory.choices)
    rows = (
        Send.objects.filter(
            campaign__from_email__iendswith=f"@{domain.domain}",
            status__in=[SendStatus.HARD_BOUNCED, SendStatus.SOFT_BOUNCED],
            first_attempt_at__gte=now - timedelta(days=30),
        )
        .values("status", "bounce_category", "smtp_code")
        .annotate(count=Count("pk"), reply=Min("smtp_reply"))
        .order_by("-count", "bounce_category")[:limit]
    )
    return [
        {
            **row,
            "kind": SendStatus(row["status"]).label,
            "category": categories.get(row["bounce_category"], row["bounce_category"] or "—"),
        }
        for row in rows
    ]


def plan_context(plan: ReputationRepairPlan | None) -> dict | None:
    """The open plan's step, audience, and progress towards its target, for the dashboard."""
    if plan is None:
        return None
    step = repair.step_of(plan)
    progress = plan.progress or {}
    delivered, rate = progress.get("delivered", 0), progress.get("open_rate")
    target = settings.REPAIR_PLAN_TARGET_OPEN_PERCENT / 100
    minimum = settings.REPAIR_PLAN_MIN_DELIVERED
    days = progress.get("days_on_step", 0)
    return {
        "plan": plan,
        "step": step,
        "steps": repair.steps(),
        "audience": progress.get("audience"),
        "delivered": delivered,
        "min_delivered": minimum,
        "delivered_share": min(delivered / minimum, 1),
        "open_rate": _percent(rate),
        "target": _percent(target),
        "rate_share": min((rate or 0) / target, 1),
        "days": days,
        "step_days": settings.REPAIR_PLAN_STEP_DAYS,
        "days_share": min(days / settings.REPAIR_PLAN_STEP_DAYS, 1),
        "evaluated_at": progress.get("evaluated_at", ""),
        "transitions": list(plan.transitions.select_related("by")[:10]),
    }


def dashboard(domain: SendingDomain, *, now: datetime) -> dict:
    """Everything the dashboard shows, in a constant number of queries."""
    latest = domain.evaluations.order_by("-day").first()
    plan = domain.repair_plans.filter(status__in=OPEN_PLAN_STATUSES).first()
    health_alerts = list(HealthAlert.objects.unresolved().filter(domain=domain).select_related("campaign"))
    domain_alerts = list(DomainAlert.objects.open().filter(domain=domain))
    return {
        "domain": domain,
        "charts": charts(domain, today=now.date()),
        "evaluation": latest,
        "evaluation_rate": _percent(latest.open_rate) if latest else "—",
        "window_last_day": latest.window_end - timedelta(days=1) if latest else None,
        "baseline_rate": _percent(latest.baseline_open_rate) if latest else "—",
        "health_alerts": health_alerts,
        "domain_alerts": domain_alerts,
        "alert_count": len(health_alerts) + len(domain_alerts),
        "plan": plan_context(plan),
        "bounce_reasons": top_bounce_reasons(domain, now=now),
        "recommendations": recommend(domain, now=now),
    }
