"""One event path: precedence, idempotency, matching and the actions events take on contacts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from campaigns.events import Observation, record_event, record_events
from campaigns.models import Campaign, EmailEvent, EventSource, EventType, Send, SendStatus
from crm.models import (
    ConsentRecord,
    Contact,
    EmailStatus,
    EngagementStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from tests.conftest import subscriber


def sent(campaign: Campaign, contact: Contact, now, *, status=SendStatus.ACCEPTED, message_id: str = "") -> Send:
    """A send handed over at `now`."""
    return Send.objects.create(
        campaign=campaign,
        contact=contact,
        email=contact.email_normalized,
        status=status,
        due_at=now,
        created_at=now,
        attempts=1,
        first_attempt_at=now,
        last_attempt_at=now,
        message_id=message_id or f"<{contact.pk}.abc@shop.example>",
    )


def observed(kind: str, send: Send | None, now, **fields) -> Observation:
    return Observation(
        type=kind,
        source=fields.pop("source", EventSource.WEBHOOK),
        occurred_at=fields.pop("occurred_at", now),
        send_id=send.pk if send else None,
        recipient=send.email if send else fields.pop("recipient", ""),
        esp=fields.pop("esp", "sendgrid"),
        **fields,
    )


@pytest.fixture
def dora(newsletter, now) -> Contact:
    """dora: a newsletter subscriber who has not engaged yet."""
    return subscriber("dora@example.org", newsletter, now)


def test_a_late_delivered_never_overwrites_a_hard_bounce(spring_sale, dora, now):
    send = sent(spring_sale, dora, now)
    record_event(observed(EventType.HARD_BOUNCE, send, now, smtp_code=550, smtp_reply="5.1.1 no such user"), now=now)

    record_event(observed(EventType.DELIVERED, send, now + timedelta(minutes=5), smtp_code=250), now=now)

    send.refresh_from_db()
    assert send.status == SendStatus.HARD_BOUNCED
    assert send.smtp_reply == "5.1.1 no such user"
    assert EmailEvent.objects.filter(send=send).count() == 2


def test_a_bounce_after_delivery_moves_the_send_on(spring_sale, dora, now):
    send = sent(spring_sale, dora, now, status=SendStatus.DELIVERED)

    record_event(
        observed(EventType.SOFT_BOUNCE, send, now, smtp_reply="mailbox full", bounce_category="mailbox_full"), now=now
    )

    send.refresh_from_db()
    assert (send.status, send.bounce_category) == (SendStatus.SOFT_BOUNCED, "mailbox_full")


def test_an_open_after_a_bounce_is_recorded_but_does_not_unbounce(spring_sale, dora, now):
    send = sent(spring_sale, dora, now, status=SendStatus.HARD_BOUNCED)

    event = record_event(
        observed(EventType.OPEN, send, now + timedelta(hours=1), user_agent="Mozilla/5.0 (X11)"), now=now
    )

    send.refresh_from_db()
    assert send.status == SendStatus.HARD_BOUNCED
    assert event.send_id == send.pk


def test_an_open_proves_delivery_of_a_message_the_esp_accepted(spring_sale, dora, now):
    send = sent(spring_sale, dora, now)

    record_event(
        observed(EventType.OPEN, send, now + timedelta(hours=1), user_agent="Mozilla/5.0 (Windows NT 10.0)"), now=now
    )

    send.refresh_from_db()
    assert send.status == SendStatus.DELIVERED
    assert send.opened_at == now + timedelta(hours=1)


def test_a_deferral_reported_by_the_esp_does_not_make_the_pipeline_send_again(spring_sale, dora, now):
    send = sent(spring_sale, dora, now)

    record_event(observed(EventType.DEFERRED, send, now, smtp_reply="421 try later"), now=now)

    send.refresh_from_db()
    assert send.status == SendStatus.ACCEPTED
    assert EmailEvent.objects.get(send=send).type == EventType.DEFERRED


def test_events_about_a_send_that_was_never_sent_change_nothing(spring_sale, dora, now):
    send = sent(spring_sale, dora, now, status=SendStatus.SKIPPED)

    event = record_event(observed(EventType.DELIVERED, send, now), now=now)

    send.refresh_from_db()
    assert send.status == SendStatus.SKIPPED
    assert event.effect.startswith("ignored")


def test_it_ignores_a_replayed_webhook_event(spring_sale, dora, now):
    send = sent(spring_sale, dora, now)
    first = record_event(observed(EventType.DELIVERED, send, now, event_id="sg-1"), now=now)

    again = record_event(observed(EventType.DELIVERED, send, now, event_id="sg-1"), now=now)
    in_one_batch = record_events(
        [observed(EventType.OPEN, send, now, event_id="sg-2", user_agent="Mozilla/5.0 (X11)")] * 2, now=now
    )

    assert first is not None and again is None
    assert len(in_one_batch) == 1
    assert EmailEvent.objects.filter(send=send).count() == 2


def test_one_event_id_may_cover_several_recipients(spring_sale, dora, newsletter, now):
    erin = subscriber("erin@example.org", newsletter, now)
    sends = [sent(spring_sale, dora, now), sent(spring_sale, erin, now)]

    recorded = record_events([observed(EventType.HARD_BOUNCE, send, now, event_id="sns-1") for send in sends], now=now)

    assert len(recorded) == 2


def test_an_event_that_matches_no_message_is_kept_as_orphaned(spring_sale, now):
    event = record_event(
        observed(EventType.HARD_BOUNCE, None, now, recipient="stranger@example.org", message_id="<nope@x>"), now=now
    )

    assert event.orphaned
    assert event.effect == "matched no message we sent"
    assert not Suppression.objects.exists()


def test_events_are_matched_by_message_id_when_the_source_names_no_send(spring_sale, dora, now):
    send = sent(spring_sale, dora, now, message_id="esp-message-17")

    event = record_event(observed(EventType.DELIVERED, None, now, message_id="esp-message-17"), now=now)

    assert event.send_id == send.pk
    assert event.contact_id == dora.pk


def test_a_hard_bounce_suppresses_the_address(spring_sale, dora, now):
    send = sent(spring_sale, dora, now)

    record_event(observed(EventType.HARD_BOUNCE, send, now, smtp_reply="550 5.1.1 unknown user"), now=now)

    dora.refresh_from_db()
    assert dora.email_status == EmailStatus.HARD_BOUNCED
    assert Suppression.objects.filter(email=dora.email_normalized, reason=SuppressionReason.HARD_BOUNCE).exists()


def test_a_complaint_suppresses_and_unsubscribes_from_all(spring_sale, dora, now):
    send = sent(spring_sale, dora, now, status=SendStatus.DELIVERED)

    record_event(observed(EventType.COMPLAINT, send, now + timedelta(hours=2)), now=now)

    dora.refresh_from_db()
    send.refresh_from_db()
    assert dora.email_status == EmailStatus.COMPLAINED
    assert dora.unsubscribed_from_all_at == now
    assert send.complained_at == now + timedelta(hours=2)
    assert Suppression.objects.filter(email=dora.email_normalized, reason=SuppressionReason.COMPLAINT).exists()
    assert ConsentRecord.objects.filter(contact=dora, action="withdrawn", subscription_type=None).count() == 1


def test_an_esp_unsubscribe_leaves_only_the_campaigns_subscription_type(spring_sale, dora, events, now):
    Subscription.objects.create(contact=dora, subscription_type=events, status=SubscriptionStatus.SUBSCRIBED)
    send = sent(spring_sale, dora, now, status=SendStatus.DELIVERED)

    record_event(observed(EventType.UNSUBSCRIBE, send, now), now=now)

    statuses = dict(Subscription.objects.filter(contact=dora).values_list("subscription_type__name", "status"))
    assert statuses == {"Newsletter": SubscriptionStatus.UNSUBSCRIBED, "Events": SubscriptionStatus.SUBSCRIBED}
    withdrawal = ConsentRecord.objects.get(contact=dora, action="withdrawn")
    assert withdrawal.method == "esp_event"
    assert "sendgrid" in withdrawal.source_detail


def test_an_esp_unsubscribe_from_everything_unsubscribes_from_all(spring_sale, dora, events, now):
    send = sent(spring_sale, dora, now, status=SendStatus.DELIVERED)

    record_event(observed(EventType.UNSUBSCRIBE, send, now, unsubscribe_all=True), now=now)

    dora.refresh_from_db()
    assert dora.unsubscribed_from_all_at == now


def test_a_human_open_is_engagement_and_a_machine_open_is_not(spring_sale, dora, newsletter, now):
    erin = subscriber("erin@example.org", newsletter, now)
    Contact.objects.filter(pk__in=[dora.pk, erin.pk]).update(sends_since_engagement=7)
    human, machine = sent(spring_sale, dora, now), sent(spring_sale, erin, now)
    later = now + timedelta(hours=3)

    record_events(
        [
            observed(EventType.OPEN, human, later, user_agent="Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"),
            observed(EventType.OPEN, machine, later, user_agent="Mozilla/5.0", ip_address="17.58.1.2"),
        ],
        now=later,
    )

    dora.refresh_from_db()
    erin.refresh_from_db()
    assert (dora.last_open_at, dora.last_engaged_at, dora.sends_since_engagement) == (later, later, 0)
    assert dora.engagement_status == EngagementStatus.ENGAGED
    assert (erin.last_open_at, erin.sends_since_engagement, erin.engagement_status) == (None, 7, EngagementStatus.NEW)
    assert EmailEvent.objects.get(send=machine).machine_reason == "Apple Mail Privacy Protection"
    assert Send.objects.get(pk=machine.pk).opened_at is None


def test_an_older_open_never_moves_engagement_dates_back(spring_sale, dora, now):
    send = sent(spring_sale, dora, now)
    record_event(observed(EventType.CLICK, send, now + timedelta(days=2), user_agent="Mozilla/5.0 (X11)"), now=now)

    record_event(observed(EventType.OPEN, send, now + timedelta(days=1), user_agent="Mozilla/5.0 (X11)"), now=now)

    dora.refresh_from_db()
    assert dora.last_engaged_at == now + timedelta(days=2)
    assert dora.last_open_at == now + timedelta(days=1)


def test_each_handed_over_email_counts_once_towards_sends_since_engagement(spring_sale, dora, now):
    send = sent(spring_sale, dora, now, status=SendStatus.SENDING)

    record_event(observed(EventType.ACCEPTED, send, now), now=now)
    record_event(observed(EventType.DELIVERED, send, now), now=now)

    dora.refresh_from_db()
    assert (dora.sends_since_engagement, dora.last_sent_at) == (1, now)


def soft_bounce_in(newsletter, contact, now, *, name: str, when) -> None:
    other = Campaign.objects.create(
        name=name,
        subscription_type=newsletter,
        from_name="Shop",
        from_email="n@shop.example",
        subject="s",
        html_body="b",
    )
    send = sent(other, contact, when)
    record_event(observed(EventType.SOFT_BOUNCE, send, now, occurred_at=when, smtp_reply="452 4.2.2 full"), now=now)


def test_soft_bounces_from_three_campaigns_within_sixty_days_count_as_a_hard_bounce(newsletter, dora, now):
    soft_bounce_in(newsletter, dora, now, name="one", when=now - timedelta(days=59))
    soft_bounce_in(newsletter, dora, now, name="two", when=now - timedelta(days=30))
    assert not Suppression.objects.filter(email=dora.email_normalized).exists()

    soft_bounce_in(newsletter, dora, now, name="three", when=now)

    dora.refresh_from_db()
    assert dora.email_status == EmailStatus.HARD_BOUNCED
    suppression = Suppression.objects.get(email=dora.email_normalized)
    assert suppression.reason == SuppressionReason.HARD_BOUNCE
    assert "3 or more campaigns" in suppression.note


def test_soft_bounces_older_than_sixty_days_do_not_escalate(newsletter, dora, now):
    soft_bounce_in(newsletter, dora, now, name="one", when=now - timedelta(days=61))
    soft_bounce_in(newsletter, dora, now, name="two", when=now - timedelta(days=30))

    soft_bounce_in(newsletter, dora, now, name="three", when=now)

    assert not Suppression.objects.filter(email=dora.email_normalized).exists()


def test_a_delivery_between_soft_bounces_starts_the_count_again(newsletter, spring_sale, dora, now):
    soft_bounce_in(newsletter, dora, now, name="one", when=now - timedelta(days=20))
    soft_bounce_in(newsletter, dora, now, name="two", when=now - timedelta(days=15))
    delivered = sent(spring_sale, dora, now - timedelta(days=10))
    record_event(observed(EventType.DELIVERED, delivered, now, occurred_at=now - timedelta(days=10)), now=now)

    soft_bounce_in(newsletter, dora, now, name="three", when=now)

    assert not Suppression.objects.filter(email=dora.email_normalized).exists()


def test_two_soft_bounces_from_one_campaign_count_as_one_campaign(newsletter, dora, now):
    soft_bounce_in(newsletter, dora, now, name="one", when=now - timedelta(days=5))
    repeat = Campaign.objects.get(name="one")
    record_event(observed(EventType.SOFT_BOUNCE, Send.objects.get(campaign=repeat), now), now=now)

    soft_bounce_in(newsletter, dora, now, name="two", when=now)

    assert not Suppression.objects.filter(email=dora.email_normalized).exists()


def test_a_hard_bounce_for_a_deleted_contact_still_suppresses_the_address(spring_sale, dora, now):
    send = sent(spring_sale, dora, now)
    dora.delete()

    record_event(observed(EventType.HARD_BOUNCE, Send.objects.get(pk=send.pk), now), now=now)

    assert Suppression.objects.filter(email="dora@example.org", reason=SuppressionReason.HARD_BOUNCE).exists()


def test_email_events_are_append_only(spring_sale, dora, now):
    event = record_event(observed(EventType.DELIVERED, sent(spring_sale, dora, now), now), now=now)

    with pytest.raises(TypeError):
        EmailEvent.objects.filter(pk=event.pk).update(type=EventType.OPEN)
    with pytest.raises(TypeError):
        event.save()


def test_a_complaint_about_a_deleted_contact_suppresses_the_address(spring_sale, dora, now):
    send = sent(spring_sale, dora, now, status=SendStatus.DELIVERED)
    dora.delete()

    record_event(observed(EventType.COMPLAINT, Send.objects.get(pk=send.pk), now), now=now)

    assert Suppression.objects.filter(email="dora@example.org", reason=SuppressionReason.COMPLAINT).exists()
