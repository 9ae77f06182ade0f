"""Bounce, complaint, auto-reply and unsubscribe mail to our return path: real DSNs and ARF reports."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from campaigns import pipeline
from campaigns.models import EmailEvent, EventSource, EventType, SendStatus, UnprocessedPayload
from crm import links
from crm.models import Contact, EmailStatus, Subscription, SubscriptionStatus, Suppression, SuppressionReason

MAIL = Path(__file__).resolve().parent.parent / "reference" / "mail"


@pytest.fixture
def delivered(november, alice, isp, now, manager):
    """alice's copy of November news, delivered by the ISP simulator: (send, its VERP return path)."""
    pipeline.start_campaign(november, user=manager, now=now)
    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)
    [received] = isp.wait_for_messages(1)
    send = november.sends.get()
    assert send.status == SendStatus.DELIVERED
    return send, received.mail_from


def pipe(tmp_path, raw: bytes, *, recipient: str = "") -> str:
    """Pipe a message into process_bounce_mail as a mail server would; return what it printed."""
    path = tmp_path / "message.eml"
    path.write_bytes(raw)
    out = io.StringIO()
    call_command("process_bounce_mail", str(path), recipient=recipient, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "kind", "status", "category"),
    [
        ("dsn_user_unknown.eml", EventType.HARD_BOUNCE, SendStatus.HARD_BOUNCED, "unknown_user"),
        ("dsn_host_unknown_dns.eml", EventType.HARD_BOUNCE, SendStatus.HARD_BOUNCED, "dns_failure"),
        ("dsn_mailbox_full.eml", EventType.SOFT_BOUNCE, SendStatus.SOFT_BOUNCED, "mailbox_full"),
        ("dsn_expired_timeout.eml", EventType.SOFT_BOUNCE, SendStatus.SOFT_BOUNCED, "expired"),
    ],
)
def test_a_delivery_report_to_the_verp_address_records_the_bounce(tmp_path, delivered, name, kind, status, category):
    send, return_path = delivered

    printed = pipe(tmp_path, (MAIL / name).read_bytes(), recipient=return_path)

    event = EmailEvent.objects.get(type=kind)
    send.refresh_from_db()
    assert "delivery report: 1 event recorded" in printed
    assert (event.send_id, event.source, event.bounce_category) == (send.pk, EventSource.BOUNCE_MAIL, category)
    assert (send.status, send.bounce_category) == (status, category)
    suppressed = Suppression.objects.filter(email=send.email, reason=SuppressionReason.HARD_BOUNCE).exists()
    assert suppressed == (status == SendStatus.HARD_BOUNCED)


def test_a_delayed_delivery_warning_is_a_deferral_not_a_bounce(tmp_path, delivered):
    send, return_path = delivered

    printed = pipe(tmp_path, (MAIL / "dsn_delayed_warning.eml").read_bytes(), recipient=return_path)

    send.refresh_from_db()
    assert "delay warning" in printed
    assert EmailEvent.objects.get(source=EventSource.BOUNCE_MAIL).type == EventType.DEFERRED
    assert send.status == SendStatus.DELIVERED
    assert not Suppression.objects.exists()


def test_a_report_is_matched_by_the_returned_message_id_without_a_verp_address(tmp_path, delivered):
    send, _ = delivered
    raw = (MAIL / "dsn_user_unknown.eml").read_bytes()
    returned_id = b"<20100524100650.6265E1AC124@mv-osn-hcb007.ocn.ad.jp>"
    assert returned_id in raw.split(b"Content-Type: message/rfc822")[-1] or b"Message-Id" in raw
    raw = _replace_returned_message_id(raw, send.message_id.encode())

    pipe(tmp_path, raw)

    assert EmailEvent.objects.get(type=EventType.HARD_BOUNCE).send_id == send.pk


def _replace_returned_message_id(raw: bytes, message_id: bytes) -> bytes:
    """The DSN as if it had returned our message: its quoted headers carry our Message-ID."""
    head, separator, returned = raw.partition(b"Content-Type: message/rfc822")
    if not separator:
        head, separator, returned = raw.partition(b"Content-Type: text/rfc822-headers")
    lines = returned.split(b"\n")
    for index, line in enumerate(lines):
        if line.lower().startswith(b"message-id:"):
            lines[index] = b"Message-ID: " + message_id
            break
    else:
        lines.insert(2, b"Message-ID: " + message_id)
    return head + separator + b"\n".join(lines)


def test_the_same_report_delivered_twice_is_recorded_once(tmp_path, delivered):
    _send, return_path = delivered
    raw = (MAIL / "dsn_user_unknown.eml").read_bytes()

    pipe(tmp_path, raw, recipient=return_path)
    printed = pipe(tmp_path, raw, recipient=return_path)

    assert "0 events recorded" in printed
    assert EmailEvent.objects.filter(source=EventSource.BOUNCE_MAIL).count() == 1


def test_a_forged_verp_address_matches_nothing_and_suppresses_nobody(tmp_path, delivered):
    send, return_path = delivered
    forged = return_path.replace(return_path.split("-")[1][:10], "0123456789")

    pipe(tmp_path, (MAIL / "dsn_user_unknown.eml").read_bytes(), recipient=forged)

    event = EmailEvent.objects.get(source=EventSource.BOUNCE_MAIL)
    assert event.orphaned
    send.refresh_from_db()
    assert send.status == SendStatus.DELIVERED
    assert not Suppression.objects.exists()


def test_an_abuse_report_is_a_complaint(tmp_path, delivered):
    send, return_path = delivered
    raw = (MAIL / "arf_abuse_complaint.eml").read_bytes()
    # The feedback loop quotes our message, whose Return-Path is the VERP address.
    raw = raw.replace(b"Return-Path: <support@example.ed.jp>", f"Return-Path: <{return_path}>".encode())

    printed = pipe(tmp_path, raw)

    contact = Contact.objects.get(pk=send.contact_id)
    assert "feedback report (abuse)" in printed
    assert EmailEvent.objects.get(source=EventSource.BOUNCE_MAIL).type == EventType.COMPLAINT
    assert contact.email_status == EmailStatus.COMPLAINED
    assert contact.unsubscribed_from_all_at is not None
    assert Suppression.objects.filter(email=send.email, reason=SuppressionReason.COMPLAINT).exists()


def test_an_opt_out_feedback_report_unsubscribes_from_the_campaigns_type(tmp_path, delivered):
    send, return_path = delivered
    raw = (MAIL / "arf_abuse_complaint.eml").read_bytes()
    raw = raw.replace(b"Feedback-Type: abuse", b"Feedback-Type: opt-out")
    raw = raw.replace(b"Return-Path: <support@example.ed.jp>", f"Return-Path: <{return_path}>".encode())

    pipe(tmp_path, raw)

    subscription = Subscription.objects.get(contact_id=send.contact_id)
    assert subscription.status == SubscriptionStatus.UNSUBSCRIBED
    assert not Suppression.objects.filter(reason=SuppressionReason.COMPLAINT).exists()


def test_an_out_of_office_reply_is_never_a_bounce(tmp_path, delivered):
    send, return_path = delivered

    printed = pipe(tmp_path, (MAIL / "autoreply_vacation_rfc3834.eml").read_bytes(), recipient=return_path)

    send.refresh_from_db()
    assert "automatic reply" in printed
    assert EmailEvent.objects.get(source=EventSource.BOUNCE_MAIL).type == EventType.AUTO_REPLY
    assert send.status == SendStatus.DELIVERED
    assert not Suppression.objects.exists()


def test_a_report_without_a_report_part_is_kept_for_staff(tmp_path, db):
    raw = (
        b"From: MAILER-DAEMON@mx.example.org\r\nTo: bounces@news.example.com\r\nSubject: Undeliverable\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n--b--\r\n"
    )

    printed = pipe(tmp_path, raw)

    assert "kept for staff" in printed
    assert bytes(UnprocessedPayload.objects.get().body) == raw
    assert not EmailEvent.objects.exists()


def test_a_bounce_that_is_not_utf8_is_still_read(tmp_path, delivered):
    send, return_path = delivered
    raw = (
        (MAIL / "dsn_mailbox_full.eml").read_bytes().replace(b"Subject:", b"Subject: Unzustellbar \xe4\xf6\xfc \xff", 1)
    )

    pipe(tmp_path, raw, recipient=return_path)

    send.refresh_from_db()
    assert send.status == SendStatus.SOFT_BOUNCED


def test_mail_that_is_no_report_is_ignored(tmp_path, db):
    printed = pipe(tmp_path, b"From: someone@example.org\r\nSubject: Hello\r\n\r\nBuy cheap watches")

    assert printed.strip() == "not a report: 0 events recorded"
    assert not UnprocessedPayload.objects.exists()


def test_unsubscribe_mail_from_a_list_unsubscribe_mailto_unsubscribes(tmp_path, alice, newsletter):
    token = links.make_unsubscribe_token(alice, newsletter)

    pipe(tmp_path, f"From: alice@example.com\r\nSubject: unsubscribe {token}\r\n\r\n".encode())

    assert Subscription.objects.get(contact=alice).status == SubscriptionStatus.UNSUBSCRIBED


def test_the_command_reads_standard_input(delivered, monkeypatch):
    send, return_path = delivered
    stdin = io.TextIOWrapper(io.BytesIO((MAIL / "dsn_user_unknown.eml").read_bytes()))
    monkeypatch.setattr(sys, "stdin", stdin)

    call_command("process_bounce_mail", recipient=return_path, stdout=io.StringIO())

    send.refresh_from_db()
    assert send.status == SendStatus.HARD_BOUNCED


def test_an_empty_message_is_refused_with_a_clear_error(tmp_path, db):
    with pytest.raises(CommandError, match="empty"):
        pipe(tmp_path, b"  \n")


def test_bounce_mail_arrives_through_an_esps_inbound_webhook(client, delivered, settings):
    send, return_path = delivered
    settings.ANYMAIL = {"WEBHOOK_SECRET": "deliverwell:s3cret"}
    credentials = base64.b64encode(b"deliverwell:s3cret").decode()

    response = client.post(
        "/anymail/sendgrid/inbound/",
        {
            "email": (MAIL / "dsn_user_unknown.eml").read_text(encoding="latin-1"),
            "envelope": json.dumps({"to": [return_path], "from": "MAILER-DAEMON@mx.example.org"}),
            "charsets": json.dumps({"email": "iso-8859-1"}),
        },
        HTTP_AUTHORIZATION=f"Basic {credentials}",
    )

    assert response.status_code == 200
    send.refresh_from_db()
    assert send.status == SendStatus.HARD_BOUNCED
