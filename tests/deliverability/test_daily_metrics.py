"""The daily rollup: each sending domain's outcomes per day, from the events, by the day they happened."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from campaigns import events
from campaigns.models import Campaign, EventSource, EventType, Send, SendStatus
from crm.models import Contact
from deliverability import health
from deliverability.models import DailyMetrics, SendingDomain
from tests.deliverability.health_history import APPLE_PROXY_IP, PERSON, PERSON_IP, campaign

DAY = date(2026, 10, 5)
MORNING = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def news(db) -> SendingDomain:
    return SendingDomain.objects.create(domain="news.example.com")


def sends_of(campaign_: Campaign, count: int, *, when=MORNING) -> list[Send]:
    return Send.objects.bulk_create(
        Send(
            campaign=campaign_,
            contact=Contact.objects.get_or_create(email=f"r{n}@example.org")[0],
            email=f"r{n}@example.org",
            status=SendStatus.SENDING,
            due_at=when,
            created_at=when,
            first_attempt_at=when,
            last_attempt_at=when,
        )
        for n in range(count)
    )


def observe(kind: str, send: Send, when: datetime, **fields) -> events.Observation:
    source = EventSource.TRACKING if kind in {EventType.OPEN, EventType.CLICK} else EventSource.SMTP
    return events.Observation(
        type=kind, source=fields.pop("source", source), occurred_at=when, send_id=send.pk, **fields
    )


def person(kind: str, send: Send, when: datetime) -> events.Observation:
    return observe(kind, send, when, user_agent=PERSON, ip_address=PERSON_IP)


def test_a_day_of_outcomes_is_counted_with_human_and_machine_opens_apart(news, newsletter):
    s = sends_of(campaign(newsletter, "October"), 7)
    later = MORNING + timedelta(hours=3)
    events.record_events(
        [
            *(observe(EventType.DELIVERED, send, MORNING) for send in s[:4]),
            observe(EventType.HARD_BOUNCE, s[4], MORNING, bounce_category="unknown_user"),
            observe(EventType.SOFT_BOUNCE, s[5], MORNING, bounce_category="mailbox_full"),
            observe(EventType.NOT_SENT, s[6], MORNING),
            person(EventType.OPEN, s[0], later),
            person(EventType.OPEN, s[0], later + timedelta(hours=1)),
            person(EventType.OPEN, s[1], later),
            observe(
                EventType.OPEN,
                s[2],
                MORNING + timedelta(seconds=20),
                user_agent="Mozilla/5.0",
                ip_address=APPLE_PROXY_IP,
            ),
            person(EventType.CLICK, s[1], later),
            observe(EventType.COMPLAINT, s[3], later, source=EventSource.WEBHOOK),
            observe(EventType.UNSUBSCRIBE, s[2], later, source=EventSource.WEBHOOK),
        ],
        now=later,
    )

    written = health.roll_up_daily_metrics(now=MORNING + timedelta(days=1))

    row = DailyMetrics.objects.get()
    assert written == 1 and (row.domain, row.day) == (news, DAY)
    counts = {name: getattr(row, name) for name in ["sent", "delivered", "not_sent", "hard_bounces", "soft_bounces"]}
    assert counts == {"sent": 7, "delivered": 4, "not_sent": 1, "hard_bounces": 1, "soft_bounces": 1}
    assert (row.human_opens, row.machine_opens, row.clicks) == (2, 1, 1)
    assert (row.complaints, row.unsubscribes) == (1, 1)
    assert row.bounce_categories == {"unknown_user": {"hard": 1, "soft": 0}, "mailbox_full": {"hard": 0, "soft": 1}}
    assert (row.open_rate, row.delivery_rate, row.complaint_rate) == (0.5, 4 / 7, 0.25)


def test_an_outcome_counts_on_the_day_it_happened(news, newsletter):
    [send] = sends_of(campaign(newsletter, "October"), 1)
    events.record_events(
        [observe(EventType.DELIVERED, send, MORNING), person(EventType.OPEN, send, MORNING + timedelta(days=1))],
        now=MORNING + timedelta(days=1),
    )

    health.roll_up_daily_metrics(now=MORNING + timedelta(days=2))

    rows = {row.day: (row.delivered, row.human_opens) for row in DailyMetrics.objects.all()}
    assert rows == {DAY: (1, 0), DAY + timedelta(days=1): (0, 1)}


def test_an_esp_hand_over_counts_as_sent_once_and_its_webhook_as_delivered(news, newsletter):
    [send] = sends_of(campaign(newsletter, "October"), 1)
    events.record_events([observe(EventType.ACCEPTED, send, MORNING, source=EventSource.ESP_API)], now=MORNING)
    events.record_events([observe(EventType.DELIVERED, send, MORNING, source=EventSource.WEBHOOK)], now=MORNING)

    health.roll_up_daily_metrics(now=MORNING)

    row = DailyMetrics.objects.get()
    assert (row.sent, row.delivered) == (1, 1)


def test_each_sending_domain_has_its_own_rows_and_other_domains_are_left_out(news, newsletter):
    SendingDomain.objects.create(domain="shop.example.com")
    for name, domain in [("News", "news.example.com"), ("Shop", "shop.example.com"), ("Elsewhere", "x.example.net")]:
        for send in sends_of(campaign(newsletter, name, domain=domain), 2):
            events.record_events([observe(EventType.DELIVERED, send, MORNING)], now=MORNING)

    health.roll_up_daily_metrics(now=MORNING)

    assert sorted(DailyMetrics.objects.values_list("domain__domain", "delivered")) == [
        ("news.example.com", 2),
        ("shop.example.com", 2),
    ]


def test_running_twice_gives_the_same_rows_and_late_events_are_picked_up(news, newsletter):
    s = sends_of(campaign(newsletter, "October"), 2)
    events.record_events([observe(EventType.DELIVERED, s[0], MORNING)], now=MORNING)
    health.roll_up_daily_metrics(now=MORNING)
    health.roll_up_daily_metrics(now=MORNING)
    once = list(DailyMetrics.objects.values_list("day", "delivered"))
    # Reported a day late, with the time it happened.
    events.record_events([observe(EventType.DELIVERED, s[1], MORNING)], now=MORNING + timedelta(days=1))

    health.roll_up_daily_metrics(now=MORNING + timedelta(days=1))

    assert once == [(DAY, 1)]
    assert list(DailyMetrics.objects.values_list("day", "delivered")) == [(DAY, 2)]


def test_days_older_than_the_recomputed_ones_are_kept_as_they_were(news, newsletter, settings):
    settings.HEALTH_ROLLUP_DAYS = 3
    october = campaign(newsletter, "October")
    [send] = sends_of(october, 1)
    events.record_events([observe(EventType.DELIVERED, send, MORNING)], now=MORNING)
    health.roll_up_daily_metrics(now=MORNING)
    october.delete()

    health.roll_up_daily_metrics(now=MORNING + timedelta(days=3))

    assert list(DailyMetrics.objects.values_list("day", "delivered")) == [(DAY, 1)]
