"""Fixtures for one-to-one email tests: Ann's mailbox on loopback (tests.mailboxes).

Test modules load them with `pytest_plugins = ["tests.mailbox_fixtures"]`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group

from campaigns.models import ConnectedInbox, MailSecurity
from crm.roles import MARKETER
from tests.mailboxes import (
    MAILBOX_LOGIN,
    MAILBOX_PASSWORD,
    Certificate,
    MailboxImapServer,
    MailboxSmtpServer,
    make_certificate,
)


@pytest.fixture
def certificate(tmp_path) -> Certificate:
    """The mailbox servers' self-signed certificate (not trusted unless a test says so)."""
    return make_certificate(tmp_path)


@pytest.fixture
def trusted_certificate(certificate, settings) -> Certificate:
    """The certificate, trusted through ONE_TO_ONE_CA_FILE as a private CA would be."""
    settings.ONE_TO_ONE_CA_FILE = str(certificate.cert)
    settings.ONE_TO_ONE_TIMEOUT_SECONDS = 5
    return certificate


@pytest.fixture
def smtp_mailbox(certificate) -> Iterator[MailboxSmtpServer]:
    """Ann's provider's submission server: STARTTLS, then AUTH with her login."""
    server = MailboxSmtpServer(certificate=certificate, username=MAILBOX_LOGIN, password=MAILBOX_PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def imap_mailbox(certificate) -> Iterator[MailboxImapServer]:
    """Ann's IMAP account, TLS from the start, with INBOX and Sent."""
    server = MailboxImapServer(certificate=certificate, username=MAILBOX_LOGIN, password=MAILBOX_PASSWORD)
    server.start()
    yield server
    server.stop()


def connect_inbox(user, *, smtp: MailboxSmtpServer, imap: MailboxImapServer | None) -> ConnectedInbox:
    inbox = ConnectedInbox(
        user=user,
        from_name="Ann Sales",
        from_email="ann@sales.example.com",
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_security=MailSecurity.STARTTLS,
        smtp_username=MAILBOX_LOGIN,
    )
    inbox.set_smtp_password(MAILBOX_PASSWORD)
    if imap is not None:
        inbox.imap_host = "127.0.0.1"
        inbox.imap_port = imap.port
        inbox.imap_security = MailSecurity.TLS
        inbox.imap_username = MAILBOX_LOGIN
        inbox.imap_sent_folder = "Sent"
        inbox.set_imap_password(MAILBOX_PASSWORD)
    inbox.save()
    return inbox


@pytest.fixture
def ann(db, django_user_model, smtp_mailbox, imap_mailbox, trusted_certificate, now):
    """ann: a salesperson (Marketer role) whose own mailbox is connected: SMTP on loopback, IMAP too."""
    user = django_user_model.objects.create_user(username="ann", password="pw-ann", is_staff=True)
    user.groups.add(Group.objects.get(name=MARKETER))
    connect_inbox(user, smtp=smtp_mailbox, imap=imap_mailbox)
    return user
