"""Sending through an ESP with django-anymail, against a stub of Postmark's API on loopback.

Postmark's HTTP API is the only thing mocked (it is outside this machine); the stub answers
with Postmark's documented response bodies.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from campaigns import pipeline
from campaigns.models import SendStatus
from deliverability.models import SendingDomain
from tests.conftest import subscriber

INACTIVE = (
    "You tried to send to a recipient that has been marked as inactive.\n"
    "Found inactive addresses: {address}.\n"
    "Inactive recipients are ones that have generated a hard bounce, a spam complaint, or a manual suppression."
)


class PostmarkStub(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append({"path": self.path, "token": self.headers.get("X-Postmark-Server-Token"), **body})
        address = body["To"].split("<")[-1].rstrip(">").lower()
        if address.startswith("inactive"):
            status, answer = 422, {"ErrorCode": 406, "Message": INACTIVE.format(address=address)}
        elif address.startswith("outage"):
            status, answer = 500, {"ErrorCode": 500, "Message": "Internal server error"}
        else:
            status = 200
            answer = {
                "To": body["To"],
                "SubmittedAt": "2026-11-02T09:30:00.0000000-05:00",
                "MessageID": f"b7bc2f4a-e38e-4336-af7d-e6c39{len(self.received):07d}",
                "ErrorCode": 0,
                "Message": "OK",
            }
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def postmark(settings, news):
    server = ThreadingHTTPServer(("127.0.0.1", 0), PostmarkStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    PostmarkStub.received = []
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": "server-token",
        "POSTMARK_API_URL": f"http://127.0.0.1:{server.server_port}/",
    }
    SendingDomain.objects.filter(pk=news.pk).update(transport="postmark")
    news.refresh_from_db()
    news.save()  # a save tells the per-process sender cache about the new transport
    yield PostmarkStub.received
    server.shutdown()


def test_an_esp_accepts_and_its_message_id_is_kept_for_its_webhooks(
    november, alice, newsletter, postmark, now, manager
):
    pipeline.start_campaign(november, user=manager, now=now)
    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)

    send = november.sends.get()
    [request] = postmark
    headers = {header["Name"]: header["Value"] for header in request["Headers"]}
    assert (send.status, send.message_id) == (SendStatus.ACCEPTED, "b7bc2f4a-e38e-4336-af7d-e6c390000001")
    assert request["token"] == "server-token"
    assert request["Subject"] == "Hello Alice"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert request["Metadata"] == {"send_id": str(send.pk), "campaign_id": str(november.pk)}


def test_an_address_the_esp_has_marked_inactive_is_not_sent(november, newsletter, postmark, now, manager):
    subscriber("inactive@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)

    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)

    send = november.sends.get()
    assert (send.status, send.bounce_category) == (SendStatus.NOT_SENT, "policy")
    assert "suppression" in send.smtp_reply


def test_an_esp_outage_defers_the_send_for_a_retry(november, newsletter, postmark, now, manager):
    subscriber("outage@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)

    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)

    send = november.sends.get()
    assert send.status == SendStatus.DEFERRED
    assert send.smtp_reply.startswith("4.3.0 The ESP's API failed")
    assert send.due_at > now


def test_anymails_test_backend_hands_over_and_its_numeric_message_id_is_kept_as_text(
    november, alice, postmark, settings, now, manager
):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    pipeline.start_campaign(november, user=manager, now=now)

    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)

    send = november.sends.get()
    assert send.status == SendStatus.ACCEPTED
    assert send.message_id.isdigit()
