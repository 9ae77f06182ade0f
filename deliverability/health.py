"""Sender health: the jobs that notice a sending domain or a campaign going wrong, and act.

- `roll_up_daily_metrics`: each sending domain's outcomes per day (UTC) from the event table, by
  the day they happened: what was handed over and how it ended, human and machine opens,
  clicks, complaints and unsubscribes. Everything below and the dashboard read these rows.
- `mark_unengaged_contacts` (graymail, after HubSpot's rule): a contact that never engaged and
  did not engage with its last UNENGAGED_NEVER_ENGAGED_SENDS marketing emails, or engaged before
  but not with its last UNENGAGED_ENGAGED_SENDS, is unengaged. Engagement is a human open or
  click; machine opens never count. Event ingestion keeps `Contact.sends_since_engagement` up to
  date, so the rule reads one table; the job only writes the status.
- `sunset_candidates` / `approve_sunset`: unengaged (or long-quiet) contacts who also ignored a
  re-engagement campaign for SUNSET_AFTER_DAYS are offered to staff, who approve their suppression.
- `evaluate_open_rates`: per sending domain and day, the human open rate over a rolling window
  (leaving out the last hours, whose opens are still to come) against a critical threshold held
  for several consecutive days, and against the trailing baseline. Raises and resolves
  HealthAlerts; a critical one starts a reputation repair plan (deliverability/repair.py).
- `guard_sending_campaigns`: pauses a sending campaign whose hard bounces, complaints or
  unsubscribes pass the published limits, and says why; `resume_for_engaged_only` lets staff
  go on with the contacts who engaged recently.

Each takes `now`, is safe to run twice, and works set-based; writes to the contact and send
tables go in chunks of at most deliverability.chunks.CHUNK_ROWS rows per transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, Count, Exists, OuterRef, Q, QuerySet, Sum, Value, When
from django.db.models.functions import TruncDate

from campaigns import pipeline
from campaigns.models import (
    Campaign,
    CampaignStatus,
    EmailEvent,
    EventSource,
    EventType,
    GateRefusal,
    Send,
    SendStatus,
)
from crm import suppression
from crm.models import Contact, EngagementStatus, Suppression, SuppressionReason
from deliverability import repair
from deliverability.chunks import in_chunks, update_in_chunks
from deliverability.models import (
    DOMAIN_ALERT_KINDS,
    DailyMetrics,
    EvaluationStatus,
    HealthAlert,
    HealthAlertKind,
    HealthEvaluation,
    SendingDomain,
    Severity,
)

# The pipeline's own word on a hand-over (an ESP's later webhooks report delivery and bounces).
_HANDED_OVER_EVENTS = [
    EventType.ACCEPTED,
    EventType.DELIVERED,
    EventType.HARD_BOUNCE,
    EventType.SOFT_BOUNCE,
    EventType.NOT_SENT,
]
_PIPELINE_SOURCES = [EventSource.SMTP, EventSource.ESP_API]
_COUNTED_FIELDS = [
    "sent",
    "delivered",
    "not_sent",
    "hard_bounces",
    "soft_bounces",
    "human_opens",
    "machine_opens",
    "clicks",
    "complaints",
    "unsubscribes",
]


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def campaign_domains() -> dict[int, int]:
    """Campaign id → id of the sending domain its From address is on (campaigns on no sending domain left out)."""
    domains = dict(SendingDomain.objects.values_list("domain", "pk"))
    return {
        campaign_id: domains[domain_of(from_email)]
        for campaign_id, from_email in Campaign.objects.values_list("pk", "from_email")
        if domain_of(from_email) in domains
    }


# Daily metrics.


def roll_up_daily_metrics(*, now: datetime, since: date | None = None) -> int:
    """Recompute every sending domain's daily metrics from `since` on; return the rows written.

    Without `since`: the last HEALTH_ROLLUP_DAYS days (events reported late land on their own
    day), or the whole history when nothing was rolled up yet. One aggregate over the events,
    grouped by campaign, day and bounce category; campaigns fold into their sending domains here.
    """
    if since is None and DailyMetrics.objects.exists():
        since = now.date() - timedelta(days=settings.HEALTH_ROLLUP_DAYS - 1)
    events = EmailEvent.objects.filter(campaign__isnull=False)
    if since is not None:
        events = events.filter(occurred_at__gte=day_start(since))
    human = Q(is_machine=False)
    groups = (
        events.annotate(day=TruncDate("occurred_at"))
        .values("campaign_id", "day", "bounce_category")
        .annotate(
            sent=Count("pk", filter=Q(type__in=_HANDED_OVER_EVENTS, source__in=_PIPELINE_SOURCES)),
            delivered=Count("pk", filter=Q(type=EventType.DELIVERED)),
            not_sent=Count("pk", filter=Q(type=EventType.NOT_SENT)),
            hard_bounces=Count("pk", filter=Q(type=EventType.HARD_BOUNCE)),
            soft_bounces=Count("pk", filter=Q(type=EventType.SOFT_BOUNCE)),
            # Each message once a day, whoever opened it how often.
            human_opens=Count("send_id", filter=Q(human, type=EventType.OPEN), distinct=True),
            machine_opens=Count("pk", filter=Q(type=EventType.OPEN, is_machine=True)),
            clicks=Count("send_id", filter=Q(human, type=EventType.CLICK), distinct=True),
            complaints=Count("pk", filter=Q(type=EventType.COMPLAINT)),
            unsubscribes=Count("pk", filter=Q(type=EventType.UNSUBSCRIBE)),
        )
        .order_by()
    )
    domains = campaign_domains()
    rows: dict[tuple[int, date], DailyMetrics] = {}
    for group in groups:
        domain_id = domains.get(group["campaign_id"])
        if domain_id is None:
            continue
        row = rows.get((domain_id, group["day"]))
        if row is None:
            row = rows[(domain_id, group["day"])] = DailyMetrics(
                domain_id=domain_id, day=group["day"], bounce_categories={}, computed_at=now
            )
        for name in _COUNTED_FIELDS:
            setattr(row, name, getattr(row, name) + group[name])
        if group["hard_bounces"] or group["soft_bounces"]:
            category = row.bounce_categories.setdefault(group["bounce_category"] or "other", {"hard": 0, "soft": 0})
            category["hard"] += group["hard_bounces"]
            category["soft"] += group["soft_bounces"]
    with transaction.atomic():
        stale = DailyMetrics.objects.all() if since is None else DailyMetrics.objects.filter(day__gte=since)
        stale.delete()
        DailyMetrics.objects.bulk_create(rows.values(), batch_size=1000)
    return len(rows)


# Graymail.


def unengaged_rule() -> Q:
    """Contacts the graymail rule calls unengaged (read from the counters event ingestion keeps)."""
    return Q(last_engaged_at__isnull=True, sends_since_engagement__gte=settings.UNENGAGED_NEVER_ENGAGED_SENDS) | Q(
        last_engaged_at__isnull=False, sends_since_engagement__gte=settings.UNENGAGED_ENGAGED_SENDS
    )


def mark_unengaged_contacts(*, now: datetime) -> int:
    """Give every contact the engagement status the graymail rule says; return how many changed.

    Contacts the rule catches become unengaged; unengaged contacts it no longer catches (the
    thresholds were raised) go back to new or engaged. Events set "engaged" as they happen.
    """
    rule = unengaged_rule()
    unengaged = Q(engagement_status=EngagementStatus.UNENGAGED)
    changing = Contact.objects.filter((rule & ~unengaged) | (~rule & unengaged))
    return update_in_chunks(
        changing,
        engagement_status=Case(
            When(rule, then=Value(EngagementStatus.UNENGAGED.value)),
            When(last_engaged_at__isnull=True, then=Value(EngagementStatus.NEW.value)),
            default=Value(EngagementStatus.ENGAGED.value),
        ),
    )


def sunset_candidates(*, now: datetime, contacts: QuerySet[Contact] | None = None) -> QuerySet[Contact]:
    """Contacts to offer for suppression: they ignored a re-engagement campaign for SUNSET_AFTER_DAYS.

    That is: unengaged, or not engaged within RECENTLY_ENGAGED_DAYS; handed a campaign that
    includes unengaged contacts at least SUNSET_AFTER_DAYS ago, with no human open or click
    since; and not suppressed yet. Of `contacts` (default: all).
    """
    reengagement = Send.objects.filter(
        contact=OuterRef("pk"),
        campaign__include_unengaged=True,
        status__in=[SendStatus.ACCEPTED, SendStatus.DELIVERED],
        first_attempt_at__lte=now - timedelta(days=settings.SUNSET_AFTER_DAYS),
    )
    lapsed = (
        Q(engagement_status=EngagementStatus.UNENGAGED)
        | Q(last_engaged_at__isnull=True)
        | Q(last_engaged_at__lt=now - timedelta(days=settings.RECENTLY_ENGAGED_DAYS))
    )
    ignored = Q(Exists(reengagement), last_engaged_at__isnull=True) | Q(
        Exists(reengagement.filter(first_attempt_at__gt=OuterRef("last_engaged_at")))
    )
    return (
        (Contact.objects.all() if contacts is None else contacts)
        .filter(lapsed)
        .filter(ignored)
        .exclude(Exists(Suppression.objects.filter(email=OuterRef("email_normalized"))))
    )


def approve_sunset(contacts: QuerySet[Contact], *, user, now: datetime) -> int:
    """Suppress those of `contacts` that are still sunset candidates (reason: unengaged sunset).

    Returns how many addresses were suppressed.
    """
    approved = sunset_candidates(now=now).filter(pk__in=contacts.values("pk"))
    return in_chunks(
        approved,
        lambda chunk: suppression.suppress_contacts(
            chunk,
            reason=SuppressionReason.UNENGAGED_SUNSET,
            now=now,
            source=f"sunset approved by {user.get_username()}",
            note=f"Ignored a re-engagement campaign for {settings.SUNSET_AFTER_DAYS} days.",
            created_by=user,
        ),
    )


# Open-rate evaluation.


@dataclass(frozen=True)
class Window:
    start: date
    end: date  # exclusive


def evaluation_windows(moment: datetime) -> tuple[Window, Window]:
    """(window, baseline) of the evaluation made at `moment`, in whole days.

    The window ends with the last whole day before the last OPEN_RATE_EXCLUDE_HOURS; the
    baseline is the OPEN_RATE_BASELINE_DAYS before it.
    """
    end = (moment - timedelta(hours=settings.OPEN_RATE_EXCLUDE_HOURS)).date()
    start = end - timedelta(days=settings.OPEN_RATE_WINDOW_DAYS)
    return Window(start, end), Window(start - timedelta(days=settings.OPEN_RATE_BASELINE_DAYS), start)


def _totals(window: Window, baseline: Window) -> dict[int, tuple[int, int, int, int]]:
    """Sending domain id → (delivered, human opens) in the window, then in the baseline: one query."""
    in_window = Q(day__gte=window.start)
    rows = (
        DailyMetrics.objects.filter(day__gte=baseline.start, day__lt=window.end)
        .values("domain_id")
        .annotate(
            window_delivered=Sum("delivered", filter=in_window),
            window_opens=Sum("human_opens", filter=in_window),
            baseline_delivered=Sum("delivered", filter=~in_window),
            baseline_opens=Sum("human_opens", filter=~in_window),
        )
        .values_list("domain_id", "window_delivered", "window_opens", "baseline_delivered", "baseline_opens")
    )
    return {domain_id: tuple(value or 0 for value in values) for domain_id, *values in rows}


def _verdict(delivered: int, opens: int, base_delivered: int, base_opens: int) -> tuple[str, bool]:
    """(status, dropped against the baseline) of one domain's window."""
    if delivered < settings.OPEN_RATE_MIN_DELIVERED:
        return EvaluationStatus.INSUFFICIENT, False
    rate = opens / delivered
    dropped = base_delivered >= settings.OPEN_RATE_MIN_DELIVERED and rate < base_opens / base_delivered * (
        1 - settings.OPEN_RATE_DROP_PERCENT / 100
    )
    if rate < settings.OPEN_RATE_CRITICAL_PERCENT / 100:
        return EvaluationStatus.LOW, dropped
    return (EvaluationStatus.DROPPED if dropped else EvaluationStatus.HEALTHY), dropped


_EVALUATION_FIELDS = [
    "window_start",
    "window_end",
    "delivered",
    "human_opens",
    "open_rate",
    "baseline_delivered",
    "baseline_open_rate",
    "status",
    "low_streak",
    "evaluated_at",
]


def _evaluate_day(
    day: date, moment: datetime, domains: list[SendingDomain], *, now: datetime
) -> list[tuple[HealthEvaluation, bool]]:
    """Every domain's evaluation of `day`, as made at `moment`, written in one statement."""
    window, baseline = evaluation_windows(moment)
    totals = _totals(window, baseline)
    streaks = dict(HealthEvaluation.objects.filter(day=day - timedelta(days=1)).values_list("domain_id", "low_streak"))
    results = []
    for domain in domains:
        delivered, opens, base_delivered, base_opens = totals.get(domain.pk, (0, 0, 0, 0))
        status, dropped = _verdict(delivered, opens, base_delivered, base_opens)
        evaluation = HealthEvaluation(
            domain=domain,
            day=day,
            window_start=window.start,
            window_end=window.end,
            delivered=delivered,
            human_opens=opens,
            open_rate=opens / delivered if delivered else None,
            baseline_delivered=base_delivered,
            baseline_open_rate=base_opens / base_delivered if base_delivered else None,
            status=status,
            low_streak=streaks.get(domain.pk, 0) + 1 if status == EvaluationStatus.LOW else 0,
            evaluated_at=now,
        )
        results.append((evaluation, dropped))
    HealthEvaluation.objects.bulk_create(
        [evaluation for evaluation, _ in results],
        update_conflicts=True,
        unique_fields=["domain", "day"],
        update_fields=_EVALUATION_FIELDS,
    )
    return results


def evaluate_open_rates(*, now: datetime) -> list[HealthEvaluation]:
    """Evaluate every sending domain's open rate for today; raise and resolve alerts; start repair plans.

    Days the job missed are evaluated first (back to OPEN_RATE_CRITICAL_DAYS), so a missed run
    never breaks a streak. Returns today's evaluations.
    """
    today = now.date()
    last = HealthEvaluation.objects.filter(day__lt=today).order_by("-day").values_list("day", flat=True).first()
    first = today - timedelta(days=settings.OPEN_RATE_CRITICAL_DAYS - 1)
    if last is not None:
        first = max(first, last + timedelta(days=1))
    domains = list(SendingDomain.objects.all())
    results: list[tuple[HealthEvaluation, bool]] = []
    day = first
    while day <= today:
        results = _evaluate_day(day, now - timedelta(days=(today - day).days), domains, now=now)
        day += timedelta(days=1)
    _act_on(results, now=now)
    return [evaluation for evaluation, _ in results]


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1%}"


def _evaluation_metrics(evaluation: HealthEvaluation) -> dict:
    return {
        "day": evaluation.day.isoformat(),
        "window": [evaluation.window_start.isoformat(), evaluation.window_end.isoformat()],
        "delivered": evaluation.delivered,
        "human_opens": evaluation.human_opens,
        "open_rate": evaluation.open_rate,
        "baseline_delivered": evaluation.baseline_delivered,
        "baseline_open_rate": evaluation.baseline_open_rate,
        "low_streak": evaluation.low_streak,
    }


def _act_on(results: list[tuple[HealthEvaluation, bool]], *, now: datetime) -> None:
    """Raise and resolve the domains' open-rate alerts by today's evaluations (too little mail: left as they are)."""
    judged = [
        (evaluation, dropped) for evaluation, dropped in results if evaluation.status != EvaluationStatus.INSUFFICIENT
    ]
    if not judged:
        return
    raised = {
        (alert.domain_id, alert.kind): alert.pk
        for alert in HealthAlert.objects.unresolved().filter(
            domain__in=[evaluation.domain for evaluation, _ in judged], kind__in=DOMAIN_ALERT_KINDS
        )
    }
    resolved = []
    for evaluation, dropped in judged:
        domain = evaluation.domain
        low = raised.get((domain.pk, HealthAlertKind.OPEN_RATE_LOW))
        if evaluation.status == EvaluationStatus.LOW and evaluation.low_streak >= settings.OPEN_RATE_CRITICAL_DAYS:
            if low is None:
                summary = (
                    f"Human open rate {_percent(evaluation.open_rate)} over {evaluation.delivered:,} deliveries "
                    f"({evaluation.window_start:%b %d} to {evaluation.window_end - timedelta(days=1):%b %d}), below "
                    f"{settings.OPEN_RATE_CRITICAL_PERCENT:g} % for {evaluation.low_streak} days in a row: "
                    "mail is likely going to spam."
                )
                alert = _raise(evaluation, HealthAlertKind.OPEN_RATE_LOW, Severity.CRITICAL, summary, now=now)
                if alert is not None:
                    repair.start_plan(domain, now=now, reason=summary, alert=alert)
        elif evaluation.status != EvaluationStatus.LOW and low is not None:
            resolved.append(low)
        drop = raised.get((domain.pk, HealthAlertKind.OPEN_RATE_DROP))
        if dropped and drop is None:
            summary = (
                f"Human open rate {_percent(evaluation.open_rate)} fell by more than "
                f"{settings.OPEN_RATE_DROP_PERCENT:g} % against its {settings.OPEN_RATE_BASELINE_DAYS}-day baseline "
                f"of {_percent(evaluation.baseline_open_rate)}."
            )
            _raise(evaluation, HealthAlertKind.OPEN_RATE_DROP, Severity.WARNING, summary, now=now)
        elif not dropped and drop is not None:
            resolved.append(drop)
    if resolved:
        HealthAlert.objects.filter(pk__in=resolved).update(resolved_at=now)


def _raise(evaluation: HealthEvaluation, kind: str, severity: str, summary: str, *, now) -> HealthAlert | None:
    """A new unresolved alert of this kind for the evaluation's domain; None if a second run raised it first."""
    try:
        with transaction.atomic():
            return HealthAlert.objects.create(
                domain=evaluation.domain,
                kind=kind,
                severity=severity,
                summary=summary[:300],
                metrics=_evaluation_metrics(evaluation),
                raised_at=now,
            )
    except IntegrityError:
        return None


# The bad-send guard.


@dataclass(frozen=True)
class SendFigures:
    """A campaign's results since the guard last looked afresh (its start, or a resume after a pause)."""

    attempted: int
    delivered: int
    hard_bounces: int
    complaints: int
    unsubscribes: int

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def campaign_figures(campaign: Campaign, *, since: datetime | None) -> SendFigures:
    """Handed over (accepted, delivered or bounced), and what came of it; ESP-accepted counts as delivered."""
    sends = campaign.sends.filter(
        status__in=[SendStatus.ACCEPTED, SendStatus.DELIVERED, SendStatus.HARD_BOUNCED, SendStatus.SOFT_BOUNCED]
    )
    if since is not None:
        sends = sends.filter(first_attempt_at__gte=since)
    counts = sends.aggregate(
        attempted=Count("pk"),
        delivered=Count("pk", filter=Q(status__in=[SendStatus.ACCEPTED, SendStatus.DELIVERED])),
        hard_bounces=Count("pk", filter=Q(status=SendStatus.HARD_BOUNCED)),
        complaints=Count("pk", filter=Q(complained_at__isnull=False)),
        unsubscribes=Count("pk", filter=Q(unsubscribed_at__isnull=False)),
    )
    return SendFigures(**counts)


def bad_send_verdict(figures: SendFigures) -> tuple[str, list[str]] | None:
    """(severity, the limits it passed) when the figures call for a pause, else None."""
    if figures.attempted < settings.BAD_SEND_MIN_ATTEMPTED:
        return None
    problems: list[tuple[str, str]] = []

    def over(count: int, base: int, limit: float, what: str, base_word: str, severity: str) -> bool:
        if not base or count / base * 100 <= limit:
            return False
        problems.append((severity, f"{what} {count / base:.1%} ({count:,} of {base:,} {base_word}; limit {limit:g} %)"))
        return True

    over(
        figures.hard_bounces,
        figures.attempted,
        settings.BAD_SEND_HARD_BOUNCE_PERCENT,
        "hard bounces",
        "handed over",
        Severity.CRITICAL,
    )
    if not over(
        figures.complaints,
        figures.delivered,
        settings.BAD_SEND_COMPLAINT_CRITICAL_PERCENT,
        "spam complaints",
        "delivered",
        Severity.CRITICAL,
    ):
        over(
            figures.complaints,
            figures.delivered,
            settings.BAD_SEND_COMPLAINT_WARNING_PERCENT,
            "spam complaints",
            "delivered",
            Severity.WARNING,
        )
    over(
        figures.unsubscribes,
        figures.delivered,
        settings.BAD_SEND_UNSUBSCRIBE_PERCENT,
        "unsubscribes",
        "delivered",
        Severity.WARNING,
    )
    if not problems:
        return None
    severity = Severity.CRITICAL if any(level == Severity.CRITICAL for level, _ in problems) else Severity.WARNING
    return severity, [text for _, text in problems]


def guard_sending_campaigns(*, now: datetime) -> list[HealthAlert]:
    """Pause every sending campaign whose results pass a bad-send limit; return the alerts raised.

    After staff resume a paused campaign, only what it sends from then on is judged.
    """
    _close_resumed(now=now)
    resumed_at = dict(
        HealthAlert.objects.filter(
            kind=HealthAlertKind.BAD_SEND, campaign__status=CampaignStatus.SENDING, resolved_at__isnull=False
        )
        .order_by("campaign_id", "resolved_at")
        .values_list("campaign_id", "resolved_at")
    )
    domains = dict(SendingDomain.objects.values_list("domain", "pk"))
    raised = []
    for campaign in Campaign.objects.filter(status=CampaignStatus.SENDING):
        figures = campaign_figures(campaign, since=resumed_at.get(campaign.pk))
        verdict = bad_send_verdict(figures)
        if verdict is None:
            continue
        severity, problems = verdict
        reason = "Paused automatically by the bad-send guard: " + "; ".join(problems) + "."
        with transaction.atomic():
            # Only the run that changes the status raises the alert (the guard may run twice).
            paused = Campaign.objects.filter(pk=campaign.pk, status=CampaignStatus.SENDING).update(
                status=CampaignStatus.PAUSED, status_reason=reason, status_changed_at=now, status_changed_by=None
            )
            if paused:
                raised.append(
                    HealthAlert.objects.create(
                        domain_id=domains.get(domain_of(campaign.from_email)),
                        campaign=campaign,
                        kind=HealthAlertKind.BAD_SEND,
                        severity=severity,
                        summary=f"{campaign}: " + "; ".join(problems),
                        metrics=figures.as_dict(),
                        raised_at=now,
                    )
                )
    return raised


def _close_resumed(*, now: datetime) -> None:
    """Resolve the bad-send alerts of campaigns that are no longer paused, as of when that changed."""
    for alert in HealthAlert.objects.unresolved().filter(kind=HealthAlertKind.BAD_SEND).select_related("campaign"):
        if alert.campaign.status != CampaignStatus.PAUSED:
            alert.resolved_at = alert.campaign.status_changed_at or now
            alert.save(update_fields=["resolved_at"])


def paused_by_guard(campaign: Campaign) -> HealthAlert | None:
    """The bad-send alert that paused this campaign, while it is paused."""
    if campaign.status != CampaignStatus.PAUSED:
        return None
    return HealthAlert.objects.unresolved().filter(kind=HealthAlertKind.BAD_SEND, campaign=campaign).first()


def resume_for_engaged_only(campaign: Campaign, *, user, now: datetime) -> int:
    """Skip the paused campaign's remaining sends to contacts who did not engage recently, then resume it.

    "Recently": a human open or click within RECENTLY_ENGAGED_DAYS. The skipped sends keep the
    reason `GateRefusal.ENGAGED_ONLY`. Returns how many were skipped.
    """
    if campaign.status != CampaignStatus.PAUSED:
        raise pipeline.CampaignError(f"{campaign} is {campaign.get_status_display().lower()}, not paused.")
    recently = now - timedelta(days=settings.RECENTLY_ENGAGED_DAYS)
    engaged = Contact.objects.filter(last_engaged_at__gte=recently)
    remaining = Send.objects.filter(campaign=campaign, status__in=pipeline.CLAIMABLE).exclude(
        contact__in=engaged.values("pk")
    )
    skipped = update_in_chunks(remaining, status=SendStatus.SKIPPED, skip_reason=GateRefusal.ENGAGED_ONLY)
    with transaction.atomic():
        pipeline.resume_campaign(campaign, user=user, now=now)
        Campaign.objects.filter(pk=campaign.pk).update(status_reason="")
        HealthAlert.objects.unresolved().filter(kind=HealthAlertKind.BAD_SEND, campaign=campaign).update(
            resolved_at=now
        )
    return skipped
