"""Graymail: contacts who stop engaging become unengaged; those who ignore a re-engagement campaign are sunset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from campaigns.gate import refusal
from crm.eligibility import Ineligibility
from crm.models import Contact, EngagementStatus, Suppression, SuppressionReason
from deliverability import chunks, health
from deliverability.models import SunsetCandidate
from tests.conftest import messages_of, subscriber
from tests.deliverability.health_history import campaign, deliver

T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_frequency_cap(settings):
    settings.FREQUENCY_CAP_EMAILS = 1000


@pytest.fixture
def reader(newsletter, time_machine) -> Contact:
    time_machine.move_to(T0, tick=False)
    return subscriber("reader@example.org", newsletter, T0)


def newsletters(newsletter, count: int, *, first_day: int = 0, **deliver_options) -> None:
    """`count` newsletters, one a day, delivered to every subscriber the gate lets through."""
    for day in range(first_day, first_day + count):
        deliver(campaign(newsletter, f"News {day}"), when=T0 + timedelta(days=day), **deliver_options)


def status_after_the_job(contact: Contact) -> str:
    health.mark_unengaged_contacts(now=T0 + timedelta(days=100))
    contact.refresh_from_db()
    return contact.engagement_status


@pytest.mark.parametrize(("sends", "status"), [(10, EngagementStatus.NEW), (11, EngagementStatus.UNENGAGED)])
def test_a_contact_who_never_engaged_is_unengaged_from_the_eleventh_email(reader, newsletter, sends, status):
    newsletters(newsletter, sends)

    assert status_after_the_job(reader) == status
    assert reader.sends_since_engagement == sends


@pytest.mark.parametrize(("sends", "status"), [(15, EngagementStatus.ENGAGED), (16, EngagementStatus.UNENGAGED)])
def test_a_contact_who_engaged_before_is_unengaged_from_the_sixteenth_email_since(reader, newsletter, sends, status):
    newsletters(newsletter, 1, opened=1)
    newsletters(newsletter, sends, first_day=1)

    assert status_after_the_job(reader) == status
    assert reader.sends_since_engagement == sends


def test_machine_opens_never_count_as_engagement(reader, newsletter):
    newsletters(newsletter, 11, machine_opens=1)

    assert status_after_the_job(reader) == EngagementStatus.UNENGAGED
    assert reader.last_open_at is None


def test_an_unengaged_contact_is_left_out_of_the_next_campaign_and_engaging_brings_them_back(reader, newsletter):
    newsletters(newsletter, 11)
    status_after_the_job(reader)
    reengage = campaign(newsletter, "We miss you", include_unengaged=True)

    skipped_by_regular = refusal(reader, campaign(newsletter, "Regular"), now=T0 + timedelta(days=100))
    deliver(reengage, when=T0 + timedelta(days=100), opened=1)

    reader.refresh_from_db()
    assert skipped_by_regular == Ineligibility.UNENGAGED
    assert (reader.engagement_status, reader.sends_since_engagement) == (EngagementStatus.ENGAGED, 0)


def test_the_thresholds_are_settings_and_raising_them_gives_the_status_back(reader, newsletter, settings):
    settings.UNENGAGED_NEVER_ENGAGED_SENDS = 3
    newsletters(newsletter, 3)
    marked = status_after_the_job(reader)
    settings.UNENGAGED_NEVER_ENGAGED_SENDS = 11

    assert marked == EngagementStatus.UNENGAGED
    assert status_after_the_job(reader) == EngagementStatus.NEW


def test_the_job_writes_in_key_range_chunks_without_reading_contact_ids(db, monkeypatch):
    monkeypatch.setattr(chunks, "CHUNK_ROWS", 2)
    contacts = [Contact.objects.create(email=f"quiet{n}@example.org") for n in range(5)]
    Contact.objects.update(sends_since_engagement=11)

    with CaptureQueriesContext(connection) as queries:
        changed = health.mark_unengaged_contacts(now=T0)

    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    selects = [sql for sql in statements if sql.startswith("SELECT")]
    updates = [sql for sql in statements if sql.startswith("UPDATE")]
    assert changed == 5
    assert len(selects) == 1 and "MIN(" in selects[0] and "MAX(" in selects[0]
    assert len(updates) == 3, "five consecutive keys, two per chunk"
    assert set(Contact.objects.values_list("engagement_status", flat=True)) == {EngagementStatus.UNENGAGED}
    assert len(contacts) == 5


def test_running_the_job_twice_changes_nothing_the_second_time(reader, newsletter):
    newsletters(newsletter, 11)

    first = health.mark_unengaged_contacts(now=T0 + timedelta(days=20))
    second = health.mark_unengaged_contacts(now=T0 + timedelta(days=20))

    assert (first, second) == (1, 0)


# Sunset.


@pytest.fixture
def ignored_reengagement(reader, newsletter) -> datetime:
    """The reader went unengaged, then got a re-engagement campaign and did nothing; returns when it went."""
    newsletters(newsletter, 11)
    health.mark_unengaged_contacts(now=T0 + timedelta(days=11))
    sent_at = T0 + timedelta(days=20)
    deliver(campaign(newsletter, "We miss you", include_unengaged=True), when=sent_at)
    return sent_at


def test_a_contact_becomes_a_sunset_candidate_thirty_days_after_ignoring_a_re_engagement_campaign(
    reader, ignored_reengagement
):
    day_before = health.sunset_candidates(now=ignored_reengagement + timedelta(days=30) - timedelta(minutes=1))
    on_the_day = health.sunset_candidates(now=ignored_reengagement + timedelta(days=30))

    assert list(day_before) == []
    assert list(on_the_day) == [reader]


def test_engaging_after_the_campaign_takes_a_contact_off_the_sunset_list(reader, ignored_reengagement):
    Contact.objects.filter(pk=reader.pk).update(last_engaged_at=ignored_reengagement + timedelta(days=1))

    assert list(health.sunset_candidates(now=ignored_reengagement + timedelta(days=31))) == []


def test_a_suppressed_address_is_not_offered_again(reader, ignored_reengagement):
    Suppression.objects.create(email="reader@example.org", reason=SuppressionReason.MANUAL, created_at=T0)

    assert list(health.sunset_candidates(now=ignored_reengagement + timedelta(days=31))) == []


def test_staff_review_the_sunset_list_and_approve_in_one_action(
    reader, ignored_reengagement, client, manager, time_machine
):
    later = ignored_reengagement + timedelta(days=31)
    time_machine.move_to(later, tick=False)
    client.force_login(manager)
    url = reverse("admin:deliverability_sunsetcandidate_changelist")
    data = {"action": "approve", "_selected_action": [reader.pk]}

    listed = client.get(url)
    confirmation = client.post(url, data)
    done = client.post(url, {**data, "confirmed": "yes"}, follow=True)

    assert "reader@example.org" in listed.content.decode()
    assert b"Suppress <strong>1</strong> contact" in confirmation.content
    assert not Suppression.objects.filter(email="reader@example.org").exclude(reason=SuppressionReason.UNENGAGED_SUNSET)
    entry = Suppression.objects.get(email="reader@example.org")
    assert (entry.reason, entry.created_by) == (SuppressionReason.UNENGAGED_SUNSET, manager)
    assert messages_of(done) == ["1 address suppressed (unengaged sunset): no more marketing email."]
    assert not SunsetCandidate.objects.filter(pk__in=health.sunset_candidates(now=later).values("pk")).exists()


def test_approving_skips_a_contact_who_engaged_since_the_list_was_shown(reader, ignored_reengagement, manager):
    later = ignored_reengagement + timedelta(days=31)
    listed = list(health.sunset_candidates(now=later).values_list("pk", flat=True))
    Contact.objects.filter(pk=reader.pk).update(
        last_engaged_at=later, engagement_status=EngagementStatus.ENGAGED, sends_since_engagement=0
    )

    suppressed = health.approve_sunset(Contact.objects.filter(pk__in=listed), user=manager, now=later)

    assert suppressed == 0 and not Suppression.objects.exists()


def test_a_marketer_may_review_but_not_approve(reader, ignored_reengagement, client, marketer, time_machine):
    time_machine.move_to(ignored_reengagement + timedelta(days=31), tick=False)
    client.force_login(marketer)
    url = reverse("admin:deliverability_sunsetcandidate_changelist")

    listed = client.get(url)
    client.post(url, {"action": "approve", "_selected_action": [reader.pk], "confirmed": "yes"})

    assert "reader@example.org" in listed.content.decode()
    assert not Suppression.objects.exists()
