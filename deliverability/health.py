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
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Count, Exists, OuterRef, Q, QuerySet, Value, When
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


# Every domain's evaluation of one day in one statement (SQLite and PostgreSQL): the window's and
# the baseline's sums from the rollup, the verdict, the streak continued from the day before. It
# returns, beside the row, the domain's unresolved open-rate alerts and the last day evaluated
# before this one, so the nightly run needs nothing else unless something changes.
_EVALUATE_DAY = """
INSERT INTO deliverability_healthevaluation (domain_id, day, window_start, window_end, delivered, human_opens,
    open_rate, baseline_delivered, baseline_open_rate, status, low_streak, evaluated_at)
SELECT r.domain_id, %(day)s, %(start)s, %(end)s, r.delivered, r.opens, r.rate, r.base_delivered, r.base_rate,
    CASE WHEN r.delivered < %(min)s THEN %(insufficient)s
         WHEN r.rate < %(critical)s THEN %(low)s
         WHEN r.base_delivered >= %(min)s AND r.rate < r.base_rate * %(keep)s THEN %(dropped)s
         ELSE %(healthy)s END,
    CASE WHEN r.delivered >= %(min)s AND r.rate < %(critical)s THEN coalesce(y.low_streak, 0) + 1 ELSE 0 END,
    %(now)s
FROM (
    SELECT t.*,
        CASE WHEN t.delivered > 0 THEN CAST(t.opens AS DOUBLE PRECISION) / t.delivered END AS rate,
        CASE WHEN t.base_delivered > 0 THEN CAST(t.base_opens AS DOUBLE PRECISION) / t.base_delivered END AS base_rate
    FROM (
        SELECT d.id AS domain_id,
            coalesce(sum(CASE WHEN m.day >= %(start)s THEN m.delivered END), 0) AS delivered,
            coalesce(sum(CASE WHEN m.day >= %(start)s THEN m.human_opens END), 0) AS opens,
            coalesce(sum(CASE WHEN m.day < %(start)s THEN m.delivered END), 0) AS base_delivered,
            coalesce(sum(CASE WHEN m.day < %(start)s THEN m.human_opens END), 0) AS base_opens
        FROM deliverability_sendingdomain d
        LEFT JOIN deliverability_dailymetrics m ON m.domain_id = d.id AND m.day >= %(base)s AND m.day < %(end)s
        GROUP BY d.id
    ) t
) r
LEFT JOIN deliverability_healthevaluation y ON y.domain_id = r.domain_id AND y.day = %(yesterday)s
WHERE true
ON CONFLICT (domain_id, day) DO UPDATE SET window_start = excluded.window_start, window_end = excluded.window_end,
    delivered = excluded.delivered, human_opens = excluded.human_opens, open_rate = excluded.open_rate,
    baseline_delivered = excluded.baseline_delivered, baseline_open_rate = excluded.baseline_open_rate,
    status = excluded.status, low_streak = excluded.low_streak, evaluated_at = excluded.evaluated_at
RETURNING id, domain_id, delivered, human_opens, open_rate, baseline_delivered, baseline_open_rate, status,
    low_streak,
    delivered >= %(min)s AND baseline_delivered >= %(min)s AND open_rate < baseline_open_rate * %(keep)s,
    (SELECT min(a.id) FROM deliverability_healthalert a WHERE a.domain_id = deliverability_healthevaluation.domain_id
        AND a.kind = %(low_kind)s AND a.resolved_at IS NULL),
    (SELECT min(a.id) FROM deliverability_healthalert a WHERE a.domain_id = deliverability_healthevaluation.domain_id
        AND a.kind = %(drop_kind)s AND a.resolved_at IS NULL),
    (SELECT max(e.day) FROM deliverability_healthevaluation e WHERE e.day < %(day)s)
"""


@dataclass(frozen=True)
class _Evaluated:
    """One domain's evaluation of a day as the statement returned it: dropped against its baseline, open alerts."""

    evaluation: HealthEvaluation
    dropped: bool
    low_alert: int | None
    drop_alert: int | None


def evaluation_figures(day: date, moment: datetime) -> dict:
    """The days and thresholds of `day`'s evaluation made at `moment` (the statement's parameters)."""
    window, baseline = evaluation_windows(moment)
    return {
        "day": day,
        "yesterday": day - timedelta(days=1),
        "start": window.start,
        "end": window.end,
        "base": baseline.start,
        "min": settings.OPEN_RATE_MIN_DELIVERED,
        "critical": settings.OPEN_RATE_CRITICAL_PERCENT / 100,
        "keep": 1 - settings.OPEN_RATE_DROP_PERCENT / 100,
    }


def _evaluate_day(day: date, moment: datetime, *, now: datetime) -> tuple[list[_Evaluated], date | None]:
    """Every domain's evaluation of `day`, as made at `moment`, and the last day evaluated before it."""
    window, _ = evaluation_windows(moment)
    params = {
        **evaluation_figures(day, moment),
        "now": now,
        "low_kind": HealthAlertKind.OPEN_RATE_LOW.value,
        "drop_kind": HealthAlertKind.OPEN_RATE_DROP.value,
        **{status.name.lower(): status.value for status in EvaluationStatus},
    }
    with connection.cursor() as cursor:
        cursor.execute(_EVALUATE_DAY, params)
        rows = sorted(cursor.fetchall(), key=lambda row: row[1])
    results = []
    for pk, domain_id, delivered, opens, rate, base_delivered, base_rate, status, streak, dropped, *alerts, _ in rows:
        evaluation = HealthEvaluation(
            pk=pk,
            domain_id=domain_id,
            day=day,
            window_start=window.start,
            window_end=window.end,
            delivered=delivered,
            human_opens=opens,
            open_rate=rate,
            baseline_delivered=base_delivered,
            baseline_open_rate=base_rate,
            status=status,
            low_streak=streak,
            evaluated_at=now,
        )
        results.append(_Evaluated(evaluation, bool(dropped), *alerts))
    last = rows[0][-1] if rows else None
    return results, date.fromisoformat(last) if isinstance(last, str) else last


def evaluate_open_rates(*, now: datetime) -> list[HealthEvaluation]:
    """Evaluate every sending domain's open rate for today; raise and resolve alerts; start repair plans.

    Days the job missed are evaluated first (back to OPEN_RATE_CRITICAL_DAYS), so a missed run
    never breaks a streak: today's statement says which day was evaluated last, and today is
    evaluated again after them. Returns today's evaluations.
    """
    today = now.date()
    results, last = _evaluate_day(today, now, now=now)
    if not results:
        return []
    missed_from = today - timedelta(days=settings.OPEN_RATE_CRITICAL_DAYS - 1)
    if last is not None:
        missed_from = max(missed_from, last + timedelta(days=1))
    if missed_from < today:
        day = missed_from
        while day <= today:
            results, _ = _evaluate_day(day, now - timedelta(days=(today - day).days), now=now)
            day += timedelta(days=1)
    _act_on(results, now=now)
    return [result.evaluation for result in results]


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


def _act_on(results: list[_Evaluated], *, now: datetime) -> None:
    """Raise and resolve the domains' open-rate alerts by today's evaluations (too little mail: left as they are)."""
    resolved = []
    for result in results:
        evaluation, low, drop = result.evaluation, result.low_alert, result.drop_alert
        if evaluation.status == EvaluationStatus.INSUFFICIENT:
            continue
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
                    repair.start_plan(evaluation.domain, now=now, reason=summary, alert=alert)
        elif evaluation.status != EvaluationStatus.LOW and low is not None:
            resolved.append(low)
        if result.dropped and drop is None:
            summary = (
                f"Human open rate {_percent(evaluation.open_rate)} fell by more than "
                f"{settings.OPEN_RATE_DROP_PERCENT:g} % against its {settings.OPEN_RATE_BASELINE_DAYS}-day baseline "
                f"of {_percent(evaluation.baseline_open_rate)}."
            )
            _raise(evaluation, HealthAlertKind.OPEN_RATE_DROP, Severity.WARNING, summary, now=now)
        elif not result.dropped and drop is not None:
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
