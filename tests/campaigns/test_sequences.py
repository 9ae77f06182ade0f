"""Sequences: one-to-one steps on their days in business hours, stopped by a reply, a bounce, an
unsubscribe or staff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from campaigns import sequences, tasks, timeline
from campaigns.models import (
    ConnectedInbox,
    EnrollmentStatus,
    OneToOneEmail,
    OneToOneStatus,
    Sequence,
    SequenceEnrollment,
    StopReason,
)
from crm import consent
from crm.models import ConsentMethod, Contact, Suppression, SuppressionReason
from tests.conftest import messages_of
from tests.test_settings import load_settings

pytest_plugins = ["tests.mailbox_fixtures"]

DSN = Path(__file__).resolve().parents[1] / "reference" / "mail" / "dsn_user_unknown.eml"
MONDAY_0930 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)  # CURRENT_TIME


@pytest.fixture
def follow_up(db) -> Sequence:
    """follow_up: three steps, day 0, day 3 and day 7."""
    sequence = Sequence.objects.create(name="Follow-up after the demo")
    sequence.steps.create(day=0, subject="Thanks for your time, {{ contact.first_name }}", body="Slides attached.")
    sequence.steps.create(day=3, subject="Any questions?", body="Hi {{ contact.first_name }}, any questions?")
    sequence.steps.create(day=7, subject="Last note", body="I'll leave it here.")
    return sequence


def enrolled(contact: Contact, sequence: Sequence, user, now) -> SequenceEnrollment:
    return sequences.enroll(contact, sequence, user=user, now=now)


@pytest.mark.parametrize(
    ("moment", "zone", "expected"),
    [
        (MONDAY_0930, "", MONDAY_0930),  # open: at once
        (datetime(2026, 11, 2, 8, 59, tzinfo=UTC), "UTC", datetime(2026, 11, 2, 9, 0, tzinfo=UTC)),
        (datetime(2026, 11, 2, 16, 59, tzinfo=UTC), "UTC", datetime(2026, 11, 2, 16, 59, tzinfo=UTC)),
        (datetime(2026, 11, 2, 17, 0, tzinfo=UTC), "UTC", datetime(2026, 11, 3, 9, 0, tzinfo=UTC)),
        (datetime(2026, 11, 6, 18, 0, tzinfo=UTC), "UTC", datetime(2026, 11, 9, 9, 0, tzinfo=UTC)),  # Fri → Mon
        (datetime(2026, 11, 7, 12, 0, tzinfo=UTC), "UTC", datetime(2026, 11, 9, 9, 0, tzinfo=UTC)),  # Saturday
        # 09:30 UTC is 04:30 in New York (EST since 1 November): 09:00 there is 14:00 UTC.
        (MONDAY_0930, "America/New_York", datetime(2026, 11, 2, 14, 0, tzinfo=UTC)),
        # 09:30 UTC is 18:30 in Tokyo, after closing: Tuesday 09:00 there is Tuesday 00:00 UTC.
        (MONDAY_0930, "Asia/Tokyo", datetime(2026, 11, 3, 0, 0, tzinfo=UTC)),
    ],
)
def test_steps_go_in_business_hours_in_the_contacts_time_zone(moment, zone, expected):
    assert sequences.business_time(moment, zone) == expected


def test_enrolling_from_the_contact_page_schedules_the_first_step(ann, alice, follow_up, client, now):
    client.force_login(ann)

    response = client.post(reverse("admin:campaigns_enroll", args=[alice.pk]), {"sequence": follow_up.pk})

    assert response.status_code == 302
    enrollment = SequenceEnrollment.objects.get()
    assert (enrollment.contact, enrollment.enrolled_by, enrollment.status) == (alice, ann, EnrollmentStatus.ACTIVE)
    assert enrollment.next_step.day == 0 and enrollment.next_due_at == now
    assert messages_of(client.get(response["Location"])) == [
        "Enrolled Alice@Example.com in Follow-up after the demo; the first step goes 2026-11-02 09:30 UTC."
    ]
    assert timeline.contact_timeline(alice)[0].what == "Enrolled in sequence"


def test_each_step_goes_on_its_day_and_the_sequence_finishes(ann, alice, follow_up, smtp_mailbox, now):
    enrollment = enrolled(alice, follow_up, ann, now)

    first = sequences.run(now=now)
    assert first.sent == 1
    assert smtp_mailbox.received[0].recipients == ["Alice@example.com"]
    assert sequences.run(now=now + timedelta(days=2)).sent == 0  # day 3 is not due yet

    third_day = now + timedelta(days=3)
    assert sequences.run(now=third_day).sent == 1
    assert sequences.run(now=now + timedelta(days=7)).sent == 1

    enrollment.refresh_from_db()
    assert enrollment.status == EnrollmentStatus.FINISHED
    subjects = list(OneToOneEmail.objects.order_by("sent_at").values_list("subject", flat=True))
    assert subjects == ["Thanks for your time, Alice", "Any questions?", "Last note"]
    assert all(email.sender == ann for email in OneToOneEmail.objects.all())
    whats = [entry.what for entry in timeline.contact_timeline(alice)]
    assert whats[0] == "Sequence finished"
    assert whats.count("One-to-one sent") == 3


def test_running_the_job_twice_sends_a_step_once(ann, alice, follow_up, smtp_mailbox, now):
    enrolled(alice, follow_up, ann, now)

    sequences.send_due_steps(now=now)
    sequences.send_due_steps(now=now)
    tasks.run_sequences.delay()

    assert len(smtp_mailbox.received) == 1


def test_a_step_already_logged_by_a_dead_worker_is_not_sent_again(ann, alice, follow_up, smtp_mailbox, now):
    enrollment = enrolled(alice, follow_up, ann, now)
    # A worker claimed the step (its row exists), then died before moving the enrollment on.
    OneToOneEmail.objects.create(
        contact=alice, email=alice.email_normalized, sender=ann, inbox_label="x", subject="s", body="b",
        fingerprint="f", enrollment=enrollment, step=enrollment.next_step, message_id="<x@y>", sent_at=now,
    )  # fmt: skip

    sequences.send_due_steps(now=now)

    assert not smtp_mailbox.received
    enrollment.refresh_from_db()
    assert enrollment.next_step.day == 3


def test_a_reply_read_over_imap_stops_the_sequence(ann, alice, follow_up, smtp_mailbox, imap_mailbox, now):
    enrollment = enrolled(alice, follow_up, ann, now)
    sequences.run(now=now)
    first = OneToOneEmail.objects.get()
    imap_mailbox.add(
        "INBOX",
        (
            "From: Alice Liddell <alice@example.com>\r\n"
            "To: Ann Sales <ann@sales.example.com>\r\n"
            f"Subject: Re: {first.subject}\r\n"
            f"In-Reply-To: {first.message_id}\r\n"
            f"References: {first.message_id}\r\n"
            "Message-ID: <reply-1@example.com>\r\n\r\n"
            "Yes, let's talk on Thursday.\r\n"
        ).encode(),
    )
    day_three = now + timedelta(days=3)

    run = sequences.run(now=day_three)

    assert run.sent == 0
    assert len(smtp_mailbox.received) == 1
    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.stop_reason) == (EnrollmentStatus.STOPPED, StopReason.REPLIED)
    first.refresh_from_db()
    assert first.replied_at == day_three
    assert first.reply_subject == "Re: Thanks for your time, Alice"
    entries = {entry.what: entry for entry in timeline.contact_timeline(alice)}
    assert entries["Replied"].detail == "Re: Thanks for your time, Alice"
    assert entries["Sequence stopped"].detail == "The contact replied"


def test_an_out_of_office_reply_does_not_stop_the_sequence(ann, alice, follow_up, imap_mailbox, now):
    enrollment = enrolled(alice, follow_up, ann, now)
    sequences.run(now=now)
    imap_mailbox.add(
        "INBOX",
        b"From: alice@example.com\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\n\r\nAway.\r\n",
    )

    assert sequences.run(now=now + timedelta(days=3)).sent == 1
    enrollment.refresh_from_db()
    assert enrollment.status == EnrollmentStatus.ACTIVE


def test_a_bounce_read_over_imap_stops_the_sequence_and_records_the_bounce(ann, follow_up, imap_mailbox, now):
    lead = Contact.objects.create(email="kijitora@example.co.jp", first_name="Kijitora")
    enrollment = enrolled(lead, follow_up, ann, now)
    sequences.run(now=now)
    sent = OneToOneEmail.objects.get()
    returned = b"<A8F82EDD-E518-4F5C-8C70-BC4EFF24AB9F@example.ne.jp>"
    imap_mailbox.add("INBOX", DSN.read_bytes().replace(returned, sent.message_id.encode()))

    assert sequences.run(now=now + timedelta(days=3)).sent == 0

    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.stop_reason) == (EnrollmentStatus.STOPPED, StopReason.BOUNCED)
    sent.refresh_from_db()
    assert sent.status == OneToOneStatus.BOUNCED
    assert Suppression.objects.filter(email="kijitora@example.co.jp", reason=SuppressionReason.HARD_BOUNCE).exists()


def test_a_rejected_step_stops_the_sequence(ann, follow_up, now):
    nobody = Contact.objects.create(email="nobody@customer.example")
    enrollment = enrolled(nobody, follow_up, ann, now)

    sequences.run(now=now)

    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.stop_reason) == (EnrollmentStatus.STOPPED, StopReason.BOUNCED)


def test_unsubscribing_stops_the_sequence(ann, alice, follow_up, smtp_mailbox, now):
    enrollment = enrolled(alice, follow_up, ann, now)
    sequences.run(now=now)
    consent.unsubscribe_from_all(Contact.objects.filter(pk=alice.pk), method=ConsentMethod.UNSUBSCRIBE_LINK, now=now)

    assert sequences.run(now=now + timedelta(days=3)).sent == 0

    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.stop_reason) == (EnrollmentStatus.STOPPED, StopReason.UNSUBSCRIBED)
    assert len(smtp_mailbox.received) == 1


def test_asking_not_to_be_contacted_stops_the_sequence(ann, alice, follow_up, now):
    enrollment = enrolled(alice, follow_up, ann, now)
    Contact.objects.filter(pk=alice.pk).update(do_not_contact=True)

    sequences.run(now=now)

    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.stop_reason) == (EnrollmentStatus.STOPPED, StopReason.REFUSED)
    assert not OneToOneEmail.objects.exists()


def test_staff_stop_an_enrollment_by_hand(ann, alice, follow_up, client, now):
    enrollment = enrolled(alice, follow_up, ann, now)
    client.force_login(ann)

    response = client.post(
        reverse("admin:campaigns_sequenceenrollment_changelist"),
        {"action": "stop", "_selected_action": [enrollment.pk]},
        follow=True,
    )

    assert messages_of(response) == ["Stopped 1 enrollment(s); the others had already ended."]
    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.stop_reason, enrollment.stopped_by) == (
        EnrollmentStatus.STOPPED,
        StopReason.MANUAL,
        ann,
    )
    assert sequences.run(now=now).sent == 0


def test_a_contact_is_enrolled_in_a_sequence_once_at_a_time(ann, alice, follow_up, now):
    enrolled(alice, follow_up, ann, now)

    with pytest.raises(sequences.EnrollmentRefused, match="already enrolled"):
        enrolled(alice, follow_up, ann, now)


def test_the_contact_list_action_enrolls_and_reports_who_was_left_out(ann, alice, bob, carol, follow_up, client, now):
    client.force_login(ann)
    url = reverse("admin:crm_contact_changelist")
    selected = [alice.pk, bob.pk, carol.pk]

    confirm = client.post(url, {"action": "enroll_in_sequence", "_selected_action": selected})
    assert b"at most 20 contacts at once" in confirm.content
    response = client.post(
        url,
        {"action": "enroll_in_sequence", "_selected_action": selected, "confirmed": "yes", "sequence": follow_up.pk},
        follow=True,
    )

    enrolled_message, *left_out = messages_of(response)
    assert enrolled_message == "Enrolled 1 contact(s) in Follow-up after the demo."
    assert sorted(left_out) == [
        "Not enrolled, 1 contact(s): Mail to the contact hard-bounced: the mailbox does not accept it.",
        "Not enrolled, 1 contact(s): the contact unsubscribed from all marketing email, and sequences stop on "
        "unsubscribe.",
    ]
    assert SequenceEnrollment.objects.get().contact == alice


def test_enrolling_more_contacts_than_the_bulk_limit_at_once_is_refused(ann, follow_up, settings, now):
    settings.ONE_TO_ONE_BULK_LIMIT = 2
    for number in range(3):
        Contact.objects.create(email=f"lead{number}@example.org")

    with pytest.raises(sequences.EnrollmentRefused, match="use a campaign"):
        sequences.enroll_contacts(Contact.objects.all(), follow_up, user=ann, now=now)
    assert not SequenceEnrollment.objects.exists()


def test_steps_beyond_the_hourly_bulk_limit_wait_for_a_later_run(ann, follow_up, settings, smtp_mailbox, now):
    settings.ONE_TO_ONE_BULK_LIMIT = 2
    for number in range(3):
        enrolled(Contact.objects.create(email=f"lead{number}@example.org"), follow_up, ann, now)

    assert (sequences.run(now=now).sent, sequences.run(now=now).sent) == (2, 0)
    assert sequences.run(now=now + timedelta(hours=1)).sent == 1


def test_a_sender_who_disconnected_their_inbox_stops_their_sequences(ann, alice, follow_up, now):
    enrollment = enrolled(alice, follow_up, ann, now)
    ConnectedInbox.objects.filter(user=ann).delete()

    sequences.run(now=now)

    enrollment.refresh_from_db()
    assert enrollment.stop_reason == StopReason.NO_INBOX


def test_the_beat_job_exists_after_migrate(db):
    job = PeriodicTask.objects.get(name="Read connected inboxes and send due sequence steps")
    assert job.task == "campaigns.tasks.run_sequences"
    assert job.crontab.minute == "*/5"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SEQUENCE_BUSINESS_HOURS_START": "18"}, "SEQUENCE_BUSINESS_HOURS_START must be before"),
        ({"SEQUENCE_BUSINESS_DAYS": "1,8"}, "SEQUENCE_BUSINESS_DAYS: ISO weekdays"),
        ({"ONE_TO_ONE_CA_FILE": "/nowhere/ca.pem"}, "ONE_TO_ONE_CA_FILE='/nowhere/ca.pem' is not a file"),
        ({"ONE_TO_ONE_BULK_LIMIT": "0"}, "ONE_TO_ONE_BULK_LIMIT=0 must be at least 1"),
    ],
)
def test_nonsense_in_the_one_to_one_settings_fails_at_start_up(tmp_path, env, message):
    result = load_settings(tmp_path, **env)
    assert result.returncode != 0
    assert message in result.stderr
