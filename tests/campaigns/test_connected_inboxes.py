"""Connected inboxes: passwords kept encrypted, and a connection test that says what failed."""

from __future__ import annotations

import socket

from django.urls import reverse

from campaigns import inboxes
from campaigns.models import ConnectedInbox, InboxKind, MailSecurity
from tests.conftest import messages_of
from tests.mailboxes import MAILBOX_PASSWORD, MailboxImapServer

pytest_plugins = ["tests.mailbox_fixtures"]


def inbox_of(user) -> ConnectedInbox:
    return ConnectedInbox.objects.get(user=user)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_working_mailbox_passes_the_connection_test(ann, now):
    result = inboxes.check_connection(inbox_of(ann), now=now)

    assert result.ok, result
    assert "SMTP: connected to 127.0.0.1" in str(result)
    assert "(encrypted), logged in as ann@sales.example.com" in str(result)
    assert "IMAP: logged in to 127.0.0.1 as ann@sales.example.com; INBOX holds 0 message(s)." in str(result)
    inbox = inbox_of(ann)
    assert inbox.last_test_at == now
    assert inbox.last_test_result.startswith("OK.")


def test_a_wrong_password_is_reported_as_refused_credentials(ann, now):
    inbox = inbox_of(ann)
    inbox.set_smtp_password("not the password")
    inbox.save()

    result = inboxes.check_connection(inbox, now=now)

    assert not result.ok
    assert result.lines[0].startswith(
        "SMTP Authentication: 127.0.0.1 refused the user name or password for ann@sales.example.com (535 5.7.8"
    )


def test_a_wrong_imap_password_is_reported_for_imap(ann, now):
    inbox = inbox_of(ann)
    inbox.set_imap_password("nope")
    inbox.save()

    result = inboxes.check_connection(inbox, now=now)

    assert not result.ok
    assert result.lines[0].startswith("SMTP: connected")
    assert result.lines[1] == (
        "IMAP Authentication: 127.0.0.1 refused the IMAP user name or password for ann@sales.example.com "
        "([AUTHENTICATIONFAILED] Authentication failed.)."
    )


def test_an_unreachable_host_is_reported_as_a_connection_failure(ann, now):
    inbox = inbox_of(ann)
    inbox.smtp_port = closed_port()
    inbox.save()

    result = inboxes.check_connection(inbox, now=now)

    assert not result.ok
    assert result.lines[0] == (
        f"SMTP Connection: 127.0.0.1 refused the connection on port {inbox.smtp_port}: nothing listens there. "
        "Check the port."
    )


def test_an_untrusted_certificate_is_reported_as_a_tls_failure(ann, now, settings):
    settings.ONE_TO_ONE_CA_FILE = ""  # the self-signed certificate is no longer trusted

    result = inboxes.check_connection(inbox_of(ann), now=now)

    assert not result.ok
    assert result.lines[0].startswith("SMTP TLS: the certificate of 127.0.0.1 is not trusted (self-signed certificate")
    assert result.lines[1].startswith("IMAP TLS: the certificate of 127.0.0.1 is not trusted (self-signed certificate")


def test_tls_from_the_start_on_a_starttls_port_is_reported_as_a_tls_failure(ann, now):
    inbox = inbox_of(ann)
    inbox.smtp_security = MailSecurity.TLS
    inbox.save()

    result = inboxes.check_connection(inbox, now=now)

    assert not result.ok
    assert result.lines[0] == (
        "SMTP TLS: 127.0.0.1 does not speak TLS from the start on this port. Choose STARTTLS (usually port 587 or 143)."
    )


def test_an_imap_server_without_tls_is_used_through_starttls(ann, now, certificate):
    plain = MailboxImapServer(
        certificate=certificate, username="ann@sales.example.com", password=MAILBOX_PASSWORD, tls=False
    )
    plain.start()
    try:
        inbox = inbox_of(ann)
        inbox.imap_port = plain.port
        inbox.imap_security = MailSecurity.STARTTLS
        inbox.save()

        result = inboxes.check_connection(inbox, now=now)
    finally:
        plain.stop()

    assert result.ok, result
    assert plain.commands[:2] == ["CAPABILITY", "STARTTLS"]


def test_a_missing_imap_folder_is_named(ann, now):
    inbox = inbox_of(ann)
    inbox.imap_folder = "Inbox/Sales"
    inbox.save()

    result = inboxes.check_connection(inbox, now=now)

    assert not result.ok
    assert result.lines[1].startswith("IMAP Folder: the folder 'Inbox/Sales' cannot be opened on 127.0.0.1")


def test_a_hosted_inbox_needs_a_passing_sending_domain(ann, now, november):
    inbox = inbox_of(ann)
    inbox.kind = InboxKind.HOSTED
    inbox.imap_host = ""
    inbox.save()

    result = inboxes.check_connection(inbox, now=now)
    assert not result.ok
    assert result.lines[0].startswith("Sending domain: ")

    inbox.from_email = "ann@news.example.com"
    inbox.save()
    result = inboxes.check_connection(inbox, now=now)
    assert result.ok, result
    assert result.lines == ["Hosted sending: news.example.com is a passing sending domain."]


def test_passwords_are_stored_encrypted_and_never_shown_again(ann, client, now):
    client.force_login(ann)
    inbox = inbox_of(ann)
    assert MAILBOX_PASSWORD not in inbox.smtp_password_encrypted
    assert inbox.smtp_password() == MAILBOX_PASSWORD

    page = client.get(reverse("admin:campaigns_connectedinbox_change", args=[inbox.pk]))

    assert page.status_code == 200
    assert MAILBOX_PASSWORD not in page.content.decode()
    assert inbox.smtp_password_encrypted not in page.content.decode()
    assert "never shown again" in page.content.decode()


def test_saving_the_form_with_a_blank_password_keeps_the_stored_one(ann, client, smtp_mailbox):
    client.force_login(ann)
    inbox = inbox_of(ann)
    stored = inbox.smtp_password_encrypted
    form = {
        "kind": "connected",
        "from_name": "Ann S.",
        "from_email": "ann@sales.example.com",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_mailbox.port,
        "smtp_security": "starttls",
        "smtp_username": "ann@sales.example.com",
        "smtp_password": "",
        "imap_host": "",
        "imap_port": 993,
        "imap_security": "tls",
        "imap_username": "",
        "imap_folder": "INBOX",
        "imap_sent_folder": "",
    }

    response = client.post(reverse("admin:campaigns_connectedinbox_change", args=[inbox.pk]), form)

    assert response.status_code == 302, response.context["adminform"].form.errors
    inbox.refresh_from_db()
    assert inbox.from_name == "Ann S."
    assert inbox.smtp_password_encrypted == stored


def test_staff_see_and_test_only_their_own_inbox(ann, client, marketer, now):
    client.force_login(marketer)
    assert client.get(reverse("admin:campaigns_connectedinbox_change", args=[inbox_of(ann).pk])).status_code == 302
    assert b"ann@sales.example.com" not in client.get(reverse("admin:campaigns_connectedinbox_changelist")).content


def test_the_test_connection_action_says_what_failed(ann, client, now):
    client.force_login(ann)
    inbox = inbox_of(ann)
    inbox.smtp_port = closed_port()
    inbox.save()

    response = client.post(
        reverse("admin:campaigns_connectedinbox_changelist"),
        {"action": "test_connection", "_selected_action": [inbox.pk]},
        follow=True,
    )

    (message,) = messages_of(response)
    assert message.startswith("Ann Sales <ann@sales.example.com>: failed. SMTP Connection: 127.0.0.1 refused")


def test_staff_connect_their_own_inbox_in_the_admin(marketer, client, smtp_mailbox, trusted_certificate, now):
    client.force_login(marketer)
    form = {
        "kind": "connected",
        "from_name": "Mia Marketer",
        "from_email": "mia@sales.example.com",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_mailbox.port,
        "smtp_security": "starttls",
        "smtp_username": "ann@sales.example.com",
        "smtp_password": MAILBOX_PASSWORD,
        "imap_host": "",
        "imap_port": 993,
        "imap_security": "tls",
        "imap_username": "",
        "imap_folder": "INBOX",
        "imap_sent_folder": "",
    }

    response = client.post(reverse("admin:campaigns_connectedinbox_add"), form)

    assert response.status_code == 302, response.context["adminform"].form.errors
    inbox = inbox_of(marketer)
    assert inbox.smtp_password() == MAILBOX_PASSWORD
    assert inboxes.check_connection(inbox, now=now).ok
    # One inbox each: no second one.
    assert client.get(reverse("admin:campaigns_connectedinbox_add")).status_code == 403


def test_a_connected_inbox_needs_its_smtp_password(marketer, client):
    client.force_login(marketer)
    form = {
        "kind": "connected",
        "from_name": "Mia",
        "from_email": "mia@sales.example.com",
        "smtp_host": "smtp.sales.example.com",
        "smtp_port": 587,
        "smtp_security": "starttls",
        "smtp_username": "mia",
        "smtp_password": "",
        "imap_port": 993,
        "imap_security": "tls",
        "imap_folder": "INBOX",
    }

    response = client.post(reverse("admin:campaigns_connectedinbox_add"), form)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"smtp_password": ["Enter the password for the SMTP user."]}
