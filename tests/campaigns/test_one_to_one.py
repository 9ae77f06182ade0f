"""One-to-one email from the contact page: through the staff member's own mailbox, logged, and
kept apart from marketing email."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes
from pathlib import Path

from django.urls import reverse

from campaigns import imap, onetoone, pipeline, timeline
from campaigns.models import (
    ConnectedInbox,
    EmailEvent,
    InboxKind,
    OneToOneEmail,
    OneToOneStatus,
    Send,
    SendStatus,
)
from crm.eligibility import Ineligibility
from crm.models import Contact, EmailStatus, Suppression, SuppressionReason
from tests.conftest import messages_of, subscriber
from tests.mailboxes import MAILBOX_LOGIN, MAILBOX_PASSWORD, MailboxSmtpServer

pytest_plugins = ["tests.mailbox_fixtures"]

DSN = Path(__file__).resolve().parents[1] / "reference" / "mail" / "dsn_user_unknown.eml"


def write(client, contact: Contact, **fields):
    data = {"subject": "Quick question", "body": "Hi {{ contact.first_name }},\n\nDo you have a minute?", **fields}
    return client.post(reverse("admin:campaigns_write", args=[contact.pk]), data)


def test_the_compose_screen_shows_from_and_to(ann, alice, client):
    client.force_login(ann)

    page = client.get(reverse("admin:campaigns_write", args=[alice.pk])).content.decode()

    assert "Ann Sales &lt;ann@sales.example.com&gt;" in page
    assert "Alice Liddell &lt;Alice@Example.com&gt;" in page
    assert 'value="Send now" class="default">' in page


def test_a_message_goes_out_at_once_through_the_staff_members_own_mailbox(ann, alice, client, smtp_mailbox, now):
    client.force_login(ann)

    response = write(client, alice, reply_to="sales-team@sales.example.com")

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:crm_contact_change", args=[alice.pk]) + "#timeline"
    (delivered,) = smtp_mailbox.received
    assert delivered.login == "ann@sales.example.com"  # authenticated as Ann, after STARTTLS
    assert delivered.sender == "ann@sales.example.com"
    assert delivered.recipients == ["Alice@example.com"]
    message = message_from_bytes(delivered.data)
    assert message["From"] == "Ann Sales <ann@sales.example.com>"
    assert message["Reply-To"] == "sales-team@sales.example.com"
    assert message["Subject"] == "Quick question"
    assert message.get_payload(decode=True).decode().replace("\r\n", "\n") == "Hi Alice,\n\nDo you have a minute?\n"
    logged = OneToOneEmail.objects.get()
    assert logged.status == OneToOneStatus.SENT
    assert (logged.smtp_code, logged.smtp_reply) == (250, "2.0.0 Ok: queued as 4XyZ1")
    assert logged.sender == ann and logged.sent_at == now
    assert message["Message-ID"] == logged.message_id
    follow = client.get(response["Location"])
    assert messages_of(follow) == [
        f"Sent to Alice@Example.com through ann@sales.example.com via 127.0.0.1:{smtp_mailbox.port}. "
        "250 2.0.0 Ok: queued as 4XyZ1"
    ]


def test_it_is_not_marketing_email(ann, alice, client, smtp_mailbox):
    client.force_login(ann)

    write(client, alice)

    message = message_from_bytes(smtp_mailbox.received[0].data)
    assert message["List-Unsubscribe"] is None
    assert message["List-Unsubscribe-Post"] is None
    assert message["Feedback-ID"] is None
    assert "unsubscribe" not in message.get_payload(decode=True).decode().lower()
    assert not Send.objects.exists()
    assert not EmailEvent.objects.exists()
    alice.refresh_from_db()
    assert alice.last_sent_at is None and alice.sends_since_engagement == 0


def test_the_message_is_on_the_contacts_timeline(ann, alice, client, smtp_mailbox):
    client.force_login(ann)
    write(client, alice)

    (entry,) = timeline.contact_timeline(alice)

    assert entry.what == "One-to-one sent"
    assert entry.subject == "Quick question"
    assert entry.detail == (
        f"by ann through ann@sales.example.com via 127.0.0.1:{smtp_mailbox.port} · "
        "server: 250 2.0.0 Ok: queued as 4XyZ1"
    )
    page = client.get(reverse("admin:crm_contact_change", args=[alice.pk])).content.decode()
    assert "One-to-one sent" in page
    assert reverse("admin:campaigns_write", args=[alice.pk]) in page


def test_everything_we_hold_includes_one_to_one_email(ann, alice, client, smtp_mailbox):
    client.force_login(ann)
    write(client, alice)

    record = client.get(reverse("admin:crm_contact_data", args=[alice.pk])).json()

    (email,) = record["one_to_one_email"]["emails"]
    assert (email["subject"], email["sender__username"], email["status"]) == ("Quick question", "ann", "sent")
    assert email["body"].startswith("Hi Alice,")


def test_a_copy_goes_to_the_imap_sent_folder(ann, alice, client, imap_mailbox):
    client.force_login(ann)
    write(client, alice)

    (copy,) = imap_mailbox.folders["Sent"]
    assert message_from_bytes(copy.data)["Message-ID"] == OneToOneEmail.objects.get().message_id
    assert "\\Seen" in copy.flags


def test_a_rejection_is_shown_at_once_and_suppresses_an_unknown_address(ann, client, smtp_mailbox, now):
    client.force_login(ann)
    nobody = Contact.objects.create(email="nobody@customer.example")

    response = write(client, nobody)

    assert response.status_code == 200
    assert "The server rejected the message: 550 5.1.1 &lt;nobody@customer.example&gt;: Recipient address" in (
        response.content.decode()
    )
    logged = OneToOneEmail.objects.get()
    assert logged.status == OneToOneStatus.REJECTED
    assert logged.bounce_category == "unknown_user"
    assert Suppression.objects.filter(email="nobody@customer.example", reason=SuppressionReason.HARD_BOUNCE).exists()
    assert Contact.objects.get(pk=nobody.pk).email_status == EmailStatus.HARD_BOUNCED
    assert timeline.contact_timeline(nobody)[0].what == "One-to-one rejected"


def test_a_mailbox_that_cannot_be_reached_is_not_sent_and_says_why(ann, alice, client, settings):
    client.force_login(ann)
    settings.ONE_TO_ONE_CA_FILE = ""

    response = write(client, alice)

    assert response.status_code == 200
    assert "Not sent: SMTP TLS: the certificate of 127.0.0.1 is not trusted" in response.content.decode()
    assert OneToOneEmail.objects.get().status == OneToOneStatus.NOT_SENT


def test_an_internationalized_address_goes_with_smtputf8(ann, smtp_mailbox, now):
    contact = Contact.objects.create(email="mallory.müller@bücher.example")

    logged = onetoone.send_one_to_one(contact=contact, sender=ann, subject="Hallo", body="Hallo!", now=now)

    assert logged.status == OneToOneStatus.SENT
    assert smtp_mailbox.received[0].recipients == ["mallory.müller@xn--bcher-kva.example"]


def test_an_internationalized_address_a_server_without_smtputf8_cannot_take_is_not_sent(
    ann, certificate, trusted_certificate, now
):
    plain = MailboxSmtpServer(
        certificate=certificate, username=MAILBOX_LOGIN, password=MAILBOX_PASSWORD, smtputf8=False
    )
    plain.start()
    ConnectedInbox.objects.filter(user=ann).update(smtp_port=plain.port)
    contact = Contact.objects.create(email="mallory.müller@bücher.example")
    try:
        logged = onetoone.send_one_to_one(contact=contact, sender=ann, subject="Hallo", body="Hallo!", now=now)
    finally:
        plain.stop()

    assert logged.status == OneToOneStatus.NOT_SENT
    assert logged.smtp_reply == "The mailbox's server does not accept internationalized addresses."
    assert not plain.received


def test_a_contact_who_asked_not_to_be_contacted_gets_nothing(ann, alice, client, smtp_mailbox):
    client.force_login(ann)
    Contact.objects.filter(pk=alice.pk).update(do_not_contact=True)

    page = client.get(reverse("admin:campaigns_write", args=[alice.pk])).content.decode()
    response = write(client, alice)

    assert "Cannot send:</strong> Alice@Example.com asked not to be contacted at all." in page
    assert 'value="Send now" class="default" disabled' in page
    assert response.status_code == 200
    assert not smtp_mailbox.received
    assert not OneToOneEmail.objects.exists()


def test_hard_bounced_and_complained_addresses_are_refused(ann, carol, now):
    complainer = Contact.objects.create(email="angry@example.org", email_status=EmailStatus.COMPLAINED)
    for contact, reason in [
        (carol, "Mail to carol@example.net hard-bounced: the mailbox does not accept it."),
        (complainer, "angry@example.org marked our email as spam: no email may go to this address."),
    ]:
        try:
            onetoone.send_one_to_one(contact=contact, sender=ann, subject="Hi", body="Hello", now=now)
        except onetoone.Refused as refused:
            assert str(refused) == reason
        else:
            raise AssertionError(f"{contact} was not refused")


def test_a_contact_unsubscribed_from_marketing_may_still_get_one_to_one_email(ann, bob, smtp_mailbox, now):
    logged = onetoone.send_one_to_one(contact=bob, sender=ann, subject="Your question", body="Here it is.", now=now)

    assert logged.status == OneToOneStatus.SENT
    assert len(smtp_mailbox.received) == 1


def test_the_same_text_to_more_contacts_than_the_limit_within_an_hour_is_refused(ann, settings, smtp_mailbox, now):
    settings.ONE_TO_ONE_BULK_LIMIT = 2
    contacts = [Contact.objects.create(email=f"lead{number}@example.org") for number in range(4)]
    for contact in contacts[:2]:
        onetoone.send_one_to_one(contact=contact, sender=ann, subject="Offer", body="Our  OFFER for you", now=now)

    try:
        onetoone.send_one_to_one(contact=contacts[2], sender=ann, subject="offer", body="Our offer for you", now=now)
    except onetoone.Refused as refused:
        assert refused.bulk
        assert str(refused).startswith("This text already went to 2 other contacts within the last hour.")
        assert "use a campaign" in str(refused)
    else:
        raise AssertionError("the third contact was not refused")
    # The same contact again, another text, or an hour later: not bulk.
    onetoone.send_one_to_one(contact=contacts[0], sender=ann, subject="Offer", body="Our offer for you", now=now)
    onetoone.send_one_to_one(contact=contacts[2], sender=ann, subject="Re: your call", body="Thanks!", now=now)
    later = now + onetoone.BULK_WINDOW
    onetoone.send_one_to_one(contact=contacts[3], sender=ann, subject="Offer", body="Our offer for you", now=later)
    assert len(smtp_mailbox.received) == 5


def test_template_errors_are_refused_with_their_line(ann, alice, client, smtp_mailbox):
    client.force_login(ann)

    response = write(client, alice, body="Hi {{ contact.first_name }},\n{% if %}")

    assert "The message has template errors: body, line 2:" in response.content.decode()
    assert not smtp_mailbox.received


def test_staff_without_a_connected_inbox_are_told_to_connect_one(marketer, alice, client):
    client.force_login(marketer)

    page = client.get(reverse("admin:campaigns_write", args=[alice.pk])).content.decode()

    assert "You have no connected inbox yet." in page
    assert reverse("admin:campaigns_connectedinbox_add") in page


def test_viewers_cannot_write(viewer, alice, client):
    client.force_login(viewer)
    assert client.get(reverse("admin:campaigns_write", args=[alice.pk])).status_code == 403


def test_a_hosted_inbox_sends_through_the_campaign_transport_from_a_passing_domain(ann, alice, november, isp, now):
    inbox = ConnectedInbox.objects.get(user=ann)
    inbox.kind = InboxKind.HOSTED
    inbox.from_email = "ann@news.example.com"
    inbox.imap_sent_folder = ""
    inbox.save()

    logged = onetoone.send_one_to_one(contact=alice, sender=ann, subject="Hello", body="Hi", now=now)

    assert logged.status == OneToOneStatus.SENT, logged.smtp_reply
    (received,) = isp.wait_for_messages(1)
    assert received.dkim == "pass"
    assert logged.inbox_label == "ann@news.example.com (hosted)"


def test_a_hosted_inbox_on_a_failing_domain_is_refused(ann, alice, now, november, isp):
    inbox = ConnectedInbox.objects.get(user=ann)
    inbox.kind = InboxKind.HOSTED
    inbox.save()  # ann@sales.example.com: not a sending domain of ours

    try:
        onetoone.send_one_to_one(contact=alice, sender=ann, subject="Hello", body="Hi", now=now)
    except onetoone.Refused as refused:
        assert str(refused).startswith(
            "The hosted inbox sends from ann@sales.example.com, and sales.example.com is not a passing sending domain"
        )
    else:
        raise AssertionError("not refused")


def test_a_bounce_message_in_the_imap_inbox_records_the_bounce_on_the_contact(ann, imap_mailbox, now):
    lead = Contact.objects.create(email="kijitora@example.co.jp", first_name="Kijitora")
    logged = onetoone.send_one_to_one(contact=lead, sender=ann, subject="Hello", body="Hi", now=now)
    dsn = DSN.read_bytes().replace(b"<A8F82EDD-E518-4F5C-8C70-BC4EFF24AB9F@example.ne.jp>", logged.message_id.encode())
    imap_mailbox.add("INBOX", dsn)

    later = now + timedelta(hours=1)

    result = imap.read_inbox(ConnectedInbox.objects.get(user=ann), now=later)

    assert (result.bounces, result.replies) == (1, 0)
    logged.refresh_from_db()
    assert logged.status == OneToOneStatus.BOUNCED
    assert logged.bounced_at == later
    assert logged.bounce_category == "unknown_user"
    assert logged.bounce_reply == "smtp; 550 5.1.1 Address rejected kijitora@example.co.jp"
    assert Suppression.objects.filter(email="kijitora@example.co.jp", reason=SuppressionReason.HARD_BOUNCE).exists()
    assert Contact.objects.get(pk=lead.pk).email_status == EmailStatus.HARD_BOUNCED
    assert [entry.what for entry in timeline.contact_timeline(lead)] == ["One-to-one bounced", "One-to-one sent"]
    assert not EmailEvent.objects.exists()  # one-to-one bounces are not marketing events


def test_reading_never_marks_mail_read_and_resumes_where_it_stopped(ann, imap_mailbox, alice, now):
    onetoone.send_one_to_one(contact=alice, sender=ann, subject="Hello", body="Hi", now=now)
    imap_mailbox.add("INBOX", b"From: someone@example.org\r\nSubject: Lunch?\r\n\r\nHungry?\r\n")
    inbox = ConnectedInbox.objects.get(user=ann)

    first = imap.read_inbox(inbox, now=now)
    second = imap.read_inbox(inbox, now=now)

    assert (first.other, second.other) == (1, 0)
    assert all(not message.flags for message in imap_mailbox.folders["INBOX"])
    assert not any(command.startswith(("STORE", "UID STORE", "SELECT")) for command in imap_mailbox.commands)
    assert any(command.startswith("EXAMINE") for command in imap_mailbox.commands)


def test_the_marketing_gate_refuses_a_contact_who_asked_not_to_be_contacted(alice, newsletter, november, manager, now):
    subscriber("dave@example.org", newsletter, now)
    Contact.objects.filter(pk=alice.pk).update(do_not_contact=True)

    queued, skipped = pipeline.start_campaign(november, user=manager, now=now)

    assert (queued, skipped) == (1, 1)
    send = Send.objects.get(contact=alice)
    assert (send.status, send.skip_reason) == (SendStatus.SKIPPED, Ineligibility.DO_NOT_CONTACT)
