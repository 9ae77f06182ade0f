"""ESP webhooks: the ESPs' real payloads posted through anymail's views, authenticated and recorded once."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from anymail.webhooks.sendgrid import SendGridTrackingWebhookView
from django.db import OperationalError, connection
from django.test import RequestFactory

from campaigns import events, webhooks
from campaigns.models import Campaign, EmailEvent, EventType, Send, SendStatus, UnprocessedPayload
from crm.models import Contact, Suppression

WEBHOOKS = Path(__file__).resolve().parent.parent / "reference" / "webhooks"
SECRET = "deliverwell:s3cret"
A = SendStatus.ACCEPTED
D = SendStatus.DELIVERED
H = SendStatus.HARD_BOUNCED

# (file, anymail's message id and recipient for it, the event we record, the send's status after)
CASES = [
    (
        "amazon_ses_bounce.json",
        "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        "jane@example.com",
        EventType.HARD_BOUNCE,
        H,
    ),
    (
        "amazon_ses_click.json",
        "7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
        "recipient@example.com",
        EventType.CLICK,
        D,
    ),
    (
        "amazon_ses_complaint.json",
        "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
        "richard@example.com",
        EventType.COMPLAINT,
        D,
    ),
    (
        "amazon_ses_delivered.json",
        "0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000",
        "jane@example.com",
        EventType.DELIVERED,
        D,
    ),
    (
        "amazon_ses_open.json",
        "7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
        "recipient@example.com",
        EventType.OPEN,
        D,
    ),
    (
        "brevo_bounce.json",
        "<201803011158.9876543210@smtp-relay.mailin.fr>",
        "not-a-user@example.com",
        EventType.HARD_BOUNCE,
        H,
    ),
    ("brevo_click.json", "<201803011158.9876543210@smtp-relay.mailin.fr>", "recipient@example.com", EventType.CLICK, D),
    ("brevo_complaint.json", "201798300811.5787683@relay.domain.com", "example@domain.com", EventType.COMPLAINT, D),
    (
        "brevo_deferred.json",
        "<201803011158.9876543210@smtp-relay.mailin.fr>",
        "notauser@example.com",
        EventType.DEFERRED,
        A,
    ),
    (
        "brevo_delivered.json",
        "<201803011158.9876543210@smtp-relay.mailin.fr>",
        "recipient@example.com",
        EventType.DELIVERED,
        D,
    ),
    ("brevo_open.json", "<201803011158.9876543210@smtp-relay.mailin.fr>", "recipient@example.com", EventType.OPEN, D),
    (
        "brevo_unsubscribe.json",
        "<201803011158.9876543210@smtp-relay.mailin.fr>",
        "recipient@example.com",
        EventType.UNSUBSCRIBE,
        D,
    ),
    (
        "mailgun_complained.json",
        "<20130718032413.263EE2E0926@example.org>",
        "recipient@example.com",
        EventType.COMPLAINT,
        D,
    ),
    (
        "mailgun_failed_permanent.json",
        "<20180812214658.1.0DF563D0B3597700@example.org>",
        "invalid@example.com",
        EventType.HARD_BOUNCE,
        H,
    ),
    (
        "mailgun_failed_temporary.json",
        "<20180812214638.1.4A7D468E9BC18C5D@example.org>",
        "undeliverable@nomx.example.com",
        EventType.DEFERRED,
        A,
    ),
    (
        "mailgun_unsubscribed.json",
        "<20130822232216.13966.79700@samples.mailgun.org>",
        "recipient@example.com",
        EventType.UNSUBSCRIBE,
        D,
    ),
    ("mailjet_bounce.json", "12345678901234567", "invalid@invalid", EventType.HARD_BOUNCE, H),
    ("mailjet_complaint.json", "12345678901234567", "spam@example.com", EventType.COMPLAINT, D),
    ("mailjet_deferred.json", "12345678901234567", "protected@example.com", EventType.DEFERRED, A),
    ("mailjet_delivered.json", "12345678901234567", "recipient@example.com", EventType.DELIVERED, D),
    ("mailjet_open.json", "12345678901234567", "recipient@example.com", EventType.OPEN, D),
    ("mailjet_unsubscribe.json", "12345678901234567", "recipient@example.com", EventType.UNSUBSCRIBE, D),
    ("postmark_bounce.json", "2706ee8a-737c-4285-b032-ccd317af53ed", "bounce@example.com", EventType.HARD_BOUNCE, H),
    (
        "postmark_spam_complaint.json",
        "2706ee8a-737c-4285-b032-ccd317af53ed",
        "spam@example.com",
        EventType.COMPLAINT,
        D,
    ),
    (
        "postmark_subscription_change_unsubscribe.json",
        "a4909a96-73d7-4c49-b148-a54522d3f7ac",
        "john@example.com",
        EventType.UNSUBSCRIBE,
        D,
    ),
    ("sendgrid_bounce.json", "de212213-bb66-4302-8f3f-20acdb7a104e", "noreply@example.com", EventType.HARD_BOUNCE, H),
    ("sendgrid_click.json", "75de5af9-a090-4325-87f9-8c599ad66f60", "recipient@example.com", EventType.CLICK, D),
    ("sendgrid_deferred.json", "ccf83222-0d7e-4542-8beb-893122afa757", "recipient@example.com", EventType.DEFERRED, A),
    (
        "sendgrid_delivered.json",
        "4ab185c2-0171-492f-9ce0-27de258efc99",
        "recipient@example.com",
        EventType.DELIVERED,
        D,
    ),
    ("sendgrid_open.json", "44920b35-3e31-478b-bb67-b4f5e0c85ebc", "recipient@example.com", EventType.OPEN, D),
    ("sparkpost_bounce.json", "84345317650824116", "bounce@example.com", EventType.HARD_BOUNCE, H),
    ("sparkpost_deferred.json", "84345317650824116", "recipient@nomx.example.com", EventType.DEFERRED, A),
    ("sparkpost_delivered.json", "65832150921904138", "recipient@example.com", EventType.DELIVERED, D),
    ("sparkpost_unsubscribe.json", "84345993965073285", "recipient@example.com", EventType.UNSUBSCRIBE, D),
]
# SparkPost's open and click examples carry no message id: they can only be kept as orphaned.
ORPHANED = [("sparkpost_open.json", EventType.OPEN), ("sparkpost_click.json", EventType.CLICK)]


@pytest.fixture(autouse=True)
def esp_secrets(settings):
    """Two webhook secrets (the old one still accepted during a rotation) and Mailgun's signing key."""
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": ["old:secret", SECRET],
        "MAILGUN_WEBHOOK_SIGNING_KEY": "TEST_WEBHOOK_SIGNING_KEY",
    }


def auth(credentials: str = SECRET) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(credentials.encode()).decode()}


def post(client, name: str, *, credentials: str = SECRET, body: bytes | None = None, content_type: str = ""):
    """POST a reference payload to its ESP's tracking webhook, as the ESP does."""
    body = body if body is not None else (WEBHOOKS / name).read_bytes()
    esp = name.removeprefix("amazon_ses").split("_")[0] if not name.startswith("amazon_ses") else "amazon_ses"
    headers = auth(credentials) if credentials else {}
    if esp == "amazon_ses":
        envelope = json.loads((WEBHOOKS / name).read_text())
        headers |= {"HTTP_X_AMZ_SNS_MESSAGE_TYPE": envelope["Type"], "HTTP_X_AMZ_SNS_MESSAGE_ID": envelope["MessageId"]}
    content_type = content_type or ("text/plain; charset=UTF-8" if esp == "amazon_ses" else "application/json")
    return client.post(f"/anymail/{esp}/tracking/", data=body, content_type=content_type, **headers)


def handed_to_esp(campaign: Campaign, email: str, message_id: str, now) -> Send:
    """A send the ESP accepted; Mailjet's example address is not valid enough for a contact (deleted since)."""
    contact = Contact.objects.create(email=email) if "." in email.rpartition("@")[2] else None
    return Send.objects.create(
        campaign=campaign,
        contact=contact,
        email=email,
        status=SendStatus.ACCEPTED,
        due_at=now,
        created_at=now,
        attempts=1,
        message_id=message_id,
    )


@pytest.mark.parametrize(("name", "message_id", "recipient", "kind", "status"), CASES, ids=[c[0] for c in CASES])
def test_each_esps_real_payload_is_recorded_once_against_its_send(
    client, spring_sale, now, name, message_id, recipient, kind, status
):
    send = handed_to_esp(spring_sale, recipient, message_id, now)

    first = post(client, name)
    replay = post(client, name)

    assert (first.status_code, replay.status_code) == (200, 200)
    event = EmailEvent.objects.get()
    assert (event.type, event.send_id, event.contact_id) == (kind, send.pk, send.contact_id)
    assert event.payload
    send.refresh_from_db()
    assert send.status == status
    if kind in {EventType.HARD_BOUNCE, EventType.COMPLAINT}:
        assert Suppression.objects.filter(email=send.email).exists()


@pytest.mark.parametrize(("name", "kind"), ORPHANED, ids=[c[0] for c in ORPHANED])
def test_an_event_for_no_message_of_ours_is_kept_as_orphaned(client, name, kind, db):
    response = post(client, name)

    assert response.status_code == 200
    event = EmailEvent.objects.get()
    assert (event.type, event.orphaned, event.recipient) == (kind, True, "recipient@example.com")


def test_every_reference_payload_is_posted_by_a_test():
    covered = {case[0] for case in CASES} | {case[0] for case in ORPHANED}
    assert covered == {path.name for path in WEBHOOKS.glob("*.json")}


def test_the_esps_metadata_finds_a_send_still_being_handed_over(client, spring_sale, now):
    send = handed_to_esp(spring_sale, "recipient@example.com", "", now)
    Send.objects.filter(pk=send.pk).update(status=SendStatus.SENDING)
    [event] = json.loads((WEBHOOKS / "sendgrid_delivered.json").read_text())
    event["send_id"] = str(send.pk)  # SendGrid returns custom args (anymail metadata) at the top level

    post(client, "sendgrid_delivered.json", body=json.dumps([event]).encode())
    # The pipeline's batch, finishing later, reports the hand-over: precedence keeps "delivered".
    send.refresh_from_db()
    send.status = SendStatus.SENDING
    handed = events.Observation(type=EventType.ACCEPTED, source="esp_api", occurred_at=now, send_id=send.pk)
    events.record_attempts([send], {send.pk: handed}, fields=["attempts"], now=now)

    send.refresh_from_db()
    assert send.status == SendStatus.DELIVERED
    assert list(EmailEvent.objects.order_by("id").values_list("type", flat=True)) == ["delivered", "accepted"]


def test_wrong_credentials_are_refused_and_nothing_is_stored(client, db):
    wrong = post(client, "sendgrid_bounce.json", credentials="deliverwell:guess")
    missing = post(client, "sendgrid_bounce.json", credentials="")

    assert wrong.status_code == 400
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Basic")
    assert not EmailEvent.objects.exists()
    assert not UnprocessedPayload.objects.exists()


def test_the_previous_secret_still_works_during_a_rotation(client, db):
    assert post(client, "sendgrid_delivered.json", credentials="old:secret").status_code == 200


def test_a_mailgun_payload_with_a_bad_signature_is_refused(client, db):
    payload = json.loads((WEBHOOKS / "mailgun_failed_permanent.json").read_text())
    payload["signature"]["signature"] = "0" * 64

    response = post(client, "mailgun_failed_permanent.json", body=json.dumps(payload).encode())

    assert response.status_code == 400
    assert not EmailEvent.objects.exists()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'[{"event": "bounce", "email": ', "application/json"),
        (b"<html>not json</html>", "text/html"),
        ("\xff\xfe garbage".encode("latin-1"), "application/json"),
        (b'{"not": "a list"}', "application/json"),
    ],
    ids=["truncated", "wrong-content-type", "not-utf8", "wrong-shape"],
)
def test_an_unreadable_authenticated_body_is_kept_for_staff_not_lost(client, db, body, content_type):
    response = post(client, "sendgrid_bounce.json", body=body, content_type=content_type)

    assert response.status_code == 200
    kept = UnprocessedPayload.objects.get()
    assert bytes(kept.body) == body
    assert kept.error
    assert not EmailEvent.objects.exists()


def test_a_kept_payload_is_processed_again_from_the_admin(admin_client, client, spring_sale, now):
    post(client, "sendgrid_bounce.json", body=b"[{")
    kept = UnprocessedPayload.objects.get()
    UnprocessedPayload.objects.filter(pk=kept.pk).update(body=(WEBHOOKS / "sendgrid_bounce.json").read_bytes())
    handed_to_esp(spring_sale, "noreply@example.com", "de212213-bb66-4302-8f3f-20acdb7a104e", now)

    response = admin_client.post(
        "/admin/campaigns/unprocessedpayload/", {"action": "process_again", "_selected_action": [kept.pk]}, follow=True
    )

    assert response.status_code == 200
    kept.refresh_from_db()
    assert kept.processed_at is not None
    assert EmailEvent.objects.get().type == EventType.HARD_BOUNCE


def test_a_huge_body_is_refused_before_it_is_read(client, db, settings):
    settings.WEBHOOK_MAX_BYTES = 1024

    response = post(client, "sendgrid_bounce.json", body=b"[" + b" " * 2048 + b"]")

    assert response.status_code == 413
    assert not UnprocessedPayload.objects.exists()


def test_webhooks_take_only_posts(client, db):
    assert client.get("/anymail/sendgrid/tracking/").status_code == 405
    assert client.head("/anymail/sendgrid/tracking/").status_code == 200


def test_an_event_type_we_do_not_know_is_recorded_as_other(client, spring_sale, now):
    handed_to_esp(spring_sale, "recipient@example.com", "4ab185c2-0171-492f-9ce0-27de258efc99", now)
    [event] = json.loads((WEBHOOKS / "sendgrid_delivered.json").read_text())
    event["event"] = "group_resubscribe"

    post(client, "sendgrid_delivered.json", body=json.dumps([event]).encode())

    assert EmailEvent.objects.get().type == EventType.OTHER


def test_a_batch_of_events_is_recorded_together(client, spring_sale, now):
    sends = [handed_to_esp(spring_sale, f"r{i}@example.com", f"m-{i}", now) for i in range(50)]
    [template] = json.loads((WEBHOOKS / "sendgrid_delivered.json").read_text())
    batch = [
        {**template, "email": send.email, "anymail_id": send.message_id, "sg_event_id": f"ev-{send.pk}"}
        for send in sends
    ]

    post(client, "sendgrid_delivered.json", body=json.dumps(batch).encode())

    assert Send.objects.filter(status=SendStatus.DELIVERED).count() == 50
    assert EmailEvent.objects.filter(type=EventType.DELIVERED).count() == 50


def test_a_webhook_waits_in_the_event_buffer_until_a_worker_records_it(client, spring_sale, now, event_buffer):
    handed_to_esp(spring_sale, "noreply@example.com", "de212213-bb66-4302-8f3f-20acdb7a104e", now)
    drains: list[bool] = []
    accept = webhooks.accept_view(
        "sendgrid_tracking_webhook",
        SendGridTrackingWebhookView,
        enqueue=lambda envelope: pytest.fail("went to Celery although the buffer answered"),
        schedule_drain=lambda: drains.append(True),
    )
    request = RequestFactory().post(
        "/anymail/sendgrid/tracking/",
        data=(WEBHOOKS / "sendgrid_bounce.json").read_bytes(),
        content_type="application/json",
        **auth(),
    )

    response = accept(request)
    waiting = event_buffer.llen(webhooks.QUEUE_KEY)
    recorded_before = EmailEvent.objects.count()
    drained = webhooks.drain(now=now)

    assert (response.status_code, waiting, recorded_before, drains) == (200, 1, 0, [True])
    assert drained == 1
    assert EmailEvent.objects.get().type == EventType.HARD_BOUNCE
    assert event_buffer.llen(webhooks.QUEUE_KEY) == 0


def test_a_queued_webhook_stays_when_the_database_fails_and_is_recorded_later(client, spring_sale, now, event_buffer):
    handed_to_esp(spring_sale, "noreply@example.com", "de212213-bb66-4302-8f3f-20acdb7a104e", now)
    item = json.dumps({"view": "sendgrid_tracking_webhook", "content_type": "application/json", "headers": {}})
    event_buffer.rpush(webhooks.QUEUE_KEY, item.encode() + b"\n" + (WEBHOOKS / "sendgrid_bounce.json").read_bytes())

    with pytest.raises(OperationalError), connection.execute_wrapper(_database_down):
        webhooks.drain(now=now)
    still_waiting = event_buffer.llen(webhooks.QUEUE_KEY)
    webhooks.drain(now=now)

    assert still_waiting == 1
    assert EmailEvent.objects.get().type == EventType.HARD_BOUNCE
    assert event_buffer.llen(webhooks.QUEUE_KEY) == 0


def _database_down(execute, sql, params, many, context):
    raise OperationalError("server closed the connection unexpectedly")
