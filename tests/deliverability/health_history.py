"""Simulated sending histories for the sender-health tests: campaigns sent through the gate, and
what their recipients did, recorded through the one event path (campaigns.events)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from campaigns import audience, events
from campaigns.models import Campaign, CampaignStatus, EventSource, EventType, Send, SendStatus
from crm.models import SubscriptionType
from deliverability import health, repair

# A person's browser: neither Apple's proxy nor a scanner (campaigns/machines.py).
PERSON = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5"
PERSON_IP = "198.51.100.7"
APPLE_PROXY_IP = "17.58.0.1"


def at(day: date, hour: int = 9) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def campaign(newsletter: SubscriptionType, name: str, *, domain: str = "news.example.com", **fields) -> Campaign:
    return Campaign.objects.create(
        name=name,
        subscription_type=newsletter,
        from_name="Example News",
        from_email=f"news@{domain}",
        subject=name,
        html_body="<p>News</p>",
        **fields,
    )


def deliver(
    campaign: Campaign,
    *,
    when: datetime,
    opened: int | None = None,
    open_share: float = 0.0,
    clicked: set[str] | frozenset[str] = frozenset(),
    machine_opens: int = 0,
) -> list[Send]:
    """Build the campaign's sends through the gate at `when` and deliver every queued one.

    The first `opened` of them (or `open_share` of them) are opened by a person two hours later;
    the addresses in `clicked` click three hours later (without an open: images off); the next
    `machine_opens` are opened by Apple's privacy proxy at once. Returns the delivered sends.
    """
    audience.build_sends(campaign, now=when, due_at=when)
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.SENT, status_changed_at=when)
    queued = list(campaign.sends.filter(status=SendStatus.QUEUED).order_by("pk"))
    Send.objects.filter(pk__in=[s.pk for s in queued]).update(
        status=SendStatus.SENDING, first_attempt_at=when, last_attempt_at=when, attempts=1
    )
    if opened is None:
        opened = round(len(queued) * open_share)
    observations = [
        events.Observation(
            type=EventType.DELIVERED, source=EventSource.SMTP, occurred_at=when, send_id=s.pk, smtp_code=250
        )
        for s in queued
    ]
    observations += [
        events.Observation(
            type=EventType.OPEN,
            source=EventSource.TRACKING,
            occurred_at=when + timedelta(hours=2),
            send_id=s.pk,
            user_agent=PERSON,
            ip_address=PERSON_IP,
        )
        for s in queued[:opened]
    ]
    observations += [
        events.Observation(
            type=EventType.OPEN,
            source=EventSource.TRACKING,
            occurred_at=when + timedelta(seconds=30),
            send_id=s.pk,
            user_agent="Mozilla/5.0",
            ip_address=APPLE_PROXY_IP,
        )
        for s in queued[opened : opened + machine_opens]
    ]
    observations += [
        events.Observation(
            type=EventType.CLICK,
            source=EventSource.TRACKING,
            occurred_at=when + timedelta(hours=3),
            send_id=s.pk,
            user_agent=PERSON,
            ip_address=PERSON_IP,
        )
        for s in queued
        if s.email in clicked
    ]
    events.record_events(observations, now=when + timedelta(hours=3))
    return queued


def run_daily_jobs(now: datetime) -> None:
    """What Celery beat runs each night, in its order."""
    health.roll_up_daily_metrics(now=now)
    health.evaluate_open_rates(now=now)
    repair.progress_repair_plans(now=now)
