"""The bad-send guard pauses a campaign whose results pass the published limits, and staff decide how it goes on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from campaigns import pipeline
from campaigns.models import Campaign, CampaignStatus, GateRefusal, Send, SendStatus
from crm.models import Contact
from deliverability import health
from deliverability.models import HealthAlert, HealthAlertKind, Severity
from tests.conftest import messages_of, subscriber


@pytest.fixture
def guard_settings(settings):
    settings.BAD_SEND_MIN_ATTEMPTED = 50


def one_batch(campaign: Campaign, now, size: int = 100) -> int:
    """Claim and send one batch, as one worker's task does; returns how many were claimed."""
    ids = pipeline.claim(campaign.pk, now=now, limit=size)
    if ids:
        pipeline.send_batch(ids, now=now)
    return len(ids)


def sending(campaign: Campaign, now, *, delivered: int, complaints: int = 0, unsubscribes: int = 0, hard: int = 0):
    """A sending campaign whose sends came back like this (complaints and unsubscribes on delivered ones)."""
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.SENDING, status_changed_at=now)
    rows = [
        Send(
            campaign=campaign,
            email=f"r{n}@example.org",
            status=SendStatus.DELIVERED,
            due_at=now,
            created_at=now,
            first_attempt_at=now,
            complained_at=now if n < complaints else None,
            unsubscribed_at=now if complaints <= n < complaints + unsubscribes else None,
        )
        for n in range(delivered)
    ]
    rows += [
        Send(
            campaign=campaign,
            email=f"b{n}@example.org",
            status=SendStatus.HARD_BOUNCED,
            due_at=now,
            created_at=now,
            first_attempt_at=now,
        )
        for n in range(hard)
    ]
    Send.objects.bulk_create(rows)


def test_a_campaign_hard_bouncing_over_five_percent_is_paused_mid_send(
    november, newsletter, isp, now, manager, guard_settings
):
    for n in range(200):
        # Every tenth address does not exist: 10 % hard bounces.
        subscriber(f"unknown{n}@example.org" if n % 10 == 0 else f"reader{n}@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)
    one_batch(november, now)

    [alert] = health.guard_sending_campaigns(now=now)
    claimed_after = one_batch(november, now + timedelta(minutes=1))

    november.refresh_from_db()
    assert november.status == CampaignStatus.PAUSED
    assert november.status_reason == (
        "Paused automatically by the bad-send guard: hard bounces 10.0% (10 of 100 handed over; limit 5 %)."
    )
    assert (alert.kind, alert.severity, alert.campaign) == (HealthAlertKind.BAD_SEND, Severity.CRITICAL, november)
    assert alert.domain.domain == "news.example.com"
    assert alert.metrics == {"attempted": 100, "delivered": 90, "hard_bounces": 10, "complaints": 0, "unsubscribes": 0}
    assert claimed_after == 0
    assert len(isp.received) == 90
    assert november.sends.filter(status=SendStatus.QUEUED).count() == 100


def test_hard_bounces_at_exactly_five_percent_do_not_pause(november, now, guard_settings):
    sending(november, now, delivered=95, hard=5)

    assert health.guard_sending_campaigns(now=now) == []
    assert Campaign.objects.get(pk=november.pk).status == CampaignStatus.SENDING


def test_too_few_messages_are_not_judged(november, now, settings):
    settings.BAD_SEND_MIN_ATTEMPTED = 200
    sending(november, now, delivered=150, hard=49)

    assert health.guard_sending_campaigns(now=now) == []


@pytest.mark.parametrize(
    ("complaints", "severity"),
    [(1, None), (2, Severity.WARNING), (3, Severity.WARNING), (4, Severity.CRITICAL)],
)
def test_complaints_over_a_tenth_of_a_percent_warn_and_over_three_tenths_are_critical(
    november, now, guard_settings, complaints, severity
):
    sending(november, now, delivered=1000, complaints=complaints)

    alerts = health.guard_sending_campaigns(now=now)

    assert [alert.severity for alert in alerts] == ([severity] if severity else [])
    if severity:
        assert "spam complaints" in Campaign.objects.get(pk=november.pk).status_reason


def test_unsubscribes_over_five_percent_pause_with_a_warning(november, now, guard_settings):
    sending(november, now, delivered=100, unsubscribes=6)

    [alert] = health.guard_sending_campaigns(now=now)

    assert alert.severity == Severity.WARNING
    assert "unsubscribes 6.0% (6 of 100 delivered; limit 5 %)" in alert.summary


def test_running_the_guard_twice_pauses_once_and_raises_one_alert(november, now, guard_settings):
    sending(november, now, delivered=90, hard=10)

    first = health.guard_sending_campaigns(now=now)
    second = health.guard_sending_campaigns(now=now)

    assert (len(first), second) == (1, [])
    assert HealthAlert.objects.count() == 1


def test_after_staff_resume_only_what_is_sent_since_is_judged(november, now, manager, guard_settings):
    sending(november, now, delivered=90, hard=10)
    health.guard_sending_campaigns(now=now)
    later = now + timedelta(hours=1)
    november.refresh_from_db()
    pipeline.resume_campaign(november, user=manager, now=later)

    again = health.guard_sending_campaigns(now=later + timedelta(minutes=1))

    assert again == []
    assert Campaign.objects.get(pk=november.pk).status == CampaignStatus.SENDING
    assert HealthAlert.objects.get().resolved_at == later


def test_the_campaign_page_says_why_and_offers_to_resume_for_engaged_contacts_only(
    november, now, manager_client, guard_settings
):
    sending(november, now, delivered=90, hard=10)
    [alert] = health.guard_sending_campaigns(now=now)

    page = manager_client.get(reverse("admin:campaigns_campaign_change", args=[november.pk])).content.decode()

    assert reverse("admin:deliverability_healthalert_change", args=[alert.pk]) in page
    assert reverse("admin:deliverability_resume_engaged", args=[november.pk]) in page
    assert "Resume for engaged contacts only" in page


def test_resuming_for_engaged_contacts_only_skips_the_others_and_sends_to_the_engaged(
    november, newsletter, isp, now, manager, manager_client, guard_settings, django_capture_on_commit_callbacks
):
    for n in range(200):
        subscriber(f"unknown{n}@example.org" if n % 10 == 0 else f"reader{n}@example.org", newsletter, now)
    Contact.objects.filter(email__in=[f"reader{n}@example.org" for n in range(100, 110)]).update(
        last_engaged_at=now - timedelta(days=10)
    )
    pipeline.start_campaign(november, user=manager, now=now)
    one_batch(november, now)
    health.guard_sending_campaigns(now=now)
    url = reverse("admin:deliverability_resume_engaged", args=[november.pk])

    confirmation = manager_client.get(url).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        done = manager_client.post(url, follow=True)

    november.refresh_from_db()
    skipped = november.sends.filter(status=SendStatus.SKIPPED)
    assert "<strong>9</strong> of them go to contacts who opened or clicked" in confirmation
    assert skipped.filter(skip_reason=GateRefusal.ENGAGED_ONLY).count() == 91
    assert (november.status, november.status_reason) == (CampaignStatus.SENDING, "")
    assert messages_of(done)[-1].endswith("sending again to recently engaged contacts; 91 other sends skipped.")
    assert HealthAlert.objects.get().resolved_at is not None
    assert len(isp.received) == 90 + 9
