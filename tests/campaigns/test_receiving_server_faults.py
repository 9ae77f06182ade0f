"""Receiving servers that answer garbage or nothing: a clear result for that send, and the batch goes on."""

from __future__ import annotations

import socket
import socketserver
import threading

import pytest

from campaigns import pipeline
from campaigns.models import Send, SendStatus
from crm.models import Contact, EmailStatus, Suppression
from deliverability.isp_simulator import GARBLED
from tests.conftest import subscriber


class RawServer(socketserver.ThreadingTCPServer):
    """Something listening where an SMTP server should be: it greets with `greeting` (or says
    nothing when it is empty) and then reads until the client hangs up."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, greeting: bytes) -> None:
        self.greeting = greeting
        super().__init__(("127.0.0.1", 0), _Greet)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Greet(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        if self.server.greeting:
            self.request.sendall(self.server.greeting)
        try:
            while self.request.recv(4096):
                pass
        except OSError:
            pass


@pytest.fixture
def raw_server(settings):
    servers = []

    def start(greeting: bytes) -> RawServer:
        server = RawServer(greeting)
        servers.append(server)
        settings.CAMPAIGN_SMTP_HOST = "127.0.0.1"
        settings.CAMPAIGN_SMTP_PORT = server.port
        settings.CAMPAIGN_SMTP_TIMEOUT_SECONDS = 1
        return server

    yield start
    for server in servers:
        server.stop()


def results(campaign) -> dict[str, tuple[str, int | None, str]]:
    return {s.email.split("@")[0]: (s.status, s.smtp_code, s.smtp_reply) for s in campaign.sends.all()}


def test_a_garbled_reply_mid_batch_is_not_sent_and_the_rest_of_the_batch_is_delivered(
    november, newsletter, isp, now, manager
):
    for name in ["ada", "garbled1", "bea", "timeout1", "cy"]:
        subscriber(f"{name}@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)

    counts = pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)

    found = results(november)
    assert counts == {SendStatus.DELIVERED: 3, SendStatus.NOT_SENT: 2}
    assert found["garbled1"] == (
        SendStatus.NOT_SENT,
        None,
        f"127.0.0.1 answered something that is not SMTP: {GARBLED!r}",
    )
    assert found["timeout1"] == (SendStatus.NOT_SENT, None, "127.0.0.1 did not answer within 1 s")
    assert {found[name][0] for name in ["ada", "bea", "cy"]} == {SendStatus.DELIVERED}
    assert sorted(r.rcpts[0] for r in isp.wait_for_messages(3)) == [
        "ada@example.org",
        "bea@example.org",
        "cy@example.org",
    ]


def test_a_server_that_is_not_smtp_leaves_every_send_not_sent_and_nobody_suppressed(
    november, newsletter, raw_server, now, manager
):
    raw_server(b"+OK POP3 server ready <1896.697170952@mail.example.org>\r\n")
    for name in ["ada", "bea"]:
        subscriber(f"{name}@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)

    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)

    reply = "127.0.0.1 answered something that is not SMTP: '+OK POP3 server ready <1896.697170952@mail.example.org>'"
    assert results(november) == {name: (SendStatus.NOT_SENT, None, reply) for name in ["ada", "bea"]}
    assert not Suppression.objects.exists()
    assert set(Contact.objects.values_list("email_status", flat=True)) == {EmailStatus.OK}


def test_an_overlong_reply_line_is_garbage_not_a_bounce(november, newsletter, raw_server, now, manager):
    raw_server(b"220-" + b"x" * 9000 + b"\r\n220 ready\r\n")
    subscriber("ada@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)

    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)

    send = Send.objects.get(campaign=november)
    assert (send.status, send.smtp_code, send.bounce_category) == (SendStatus.NOT_SENT, None, "other")
    assert send.smtp_reply.startswith("127.0.0.1 answered something that is not SMTP: '220-xxxx")
    assert not Suppression.objects.exists()


def test_a_server_that_accepts_the_connection_and_never_greets_leaves_the_sends_not_sent(
    november, newsletter, raw_server, now, manager
):
    raw_server(b"")
    for name in ["ada", "bea"]:
        subscriber(f"{name}@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)

    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)

    reply = "127.0.0.1 did not answer within 1 s"
    assert results(november) == {name: (SendStatus.NOT_SENT, None, reply) for name in ["ada", "bea"]}
    assert not november.sends.filter(status=SendStatus.SENDING).exists()


def test_a_server_that_is_gone_leaves_the_sends_not_sent(november, newsletter, settings, now, manager):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        settings.CAMPAIGN_SMTP_HOST, settings.CAMPAIGN_SMTP_PORT = closed.getsockname()
    subscriber("ada@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)

    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)

    send = Send.objects.get(campaign=november)
    assert (send.status, send.smtp_code) == (SendStatus.NOT_SENT, None)
    assert send.smtp_reply.startswith("127.0.0.1: [Errno 111] Connection refused")
