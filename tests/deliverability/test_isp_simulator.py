"""The local ISP simulator: replies by rule per recipient, DKIM verdicts, and its command."""

from __future__ import annotations

import json
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.utils import timezone

from campaigns import pipeline
from campaigns.models import EmailEvent, EventType
from deliverability import signing
from deliverability.isp_simulator import GARBLED, DkimResult, IspSimulator, Rules, RulesError, tls_context
from deliverability.models import KeyAlgorithm
from tests.conftest import publish_key, subscriber

ROOT = Path(__file__).resolve().parent.parent.parent
SLOW_SECONDS = 0.3
SENDER = "bounces@news.example.com"


@pytest.fixture
def simulator():
    """An ISP on a free loopback port with the default rules and a short 'slow'."""
    server = IspSimulator(port=0, rules=Rules.default(slow_seconds=SLOW_SECONDS), timeout_hold_seconds=30)
    server.start()
    yield server
    server.stop()


def message(to: str = "reader@example.net", *, subject: str = "Hello") -> bytes:
    email = EmailMessage(policy=SMTP)
    email["From"] = "News <news@news.example.com>"
    email["To"] = to
    email["Subject"] = subject
    email["Date"] = "Mon, 02 Nov 2026 09:30:00 +0000"
    email["Message-ID"] = "<campaign-1.send-1@news.example.com>"
    email.set_content("Our autumn news.\n")
    return email.as_bytes()


def send(server: IspSimulator, to: str, data: bytes | None = None, *, timeout: float = 5) -> dict:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=timeout) as client:
        return client.sendmail(SENDER, [to], data or message(to))


def refused(server: IspSimulator, to: str) -> tuple[int, bytes]:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        send(server, to)
    return caught.value.recipients[to]


def test_an_ordinary_recipient_is_accepted_and_the_message_recorded(simulator):
    assert send(simulator, "reader@example.net") == {}
    [received] = simulator.wait_for_messages(1)
    assert received.mail_from == SENDER
    assert received.rcpts == ("reader@example.net",)
    assert b"Our autumn news." in received.data
    assert received.message_id == "<campaign-1.send-1@news.example.com>"
    assert simulator.attempts["reader@example.net"] == 1


def test_an_unknown_user_is_a_550_5_1_1(simulator):
    code, text = refused(simulator, "unknown1@example.net")
    assert code == 550
    assert text == b"5.1.1 The email account that you tried to reach does not exist."


@pytest.mark.parametrize(
    ("to", "code", "text"),
    [
        ("full@example.net", 552, b"5.2.2 Mailbox full"),
        ("spam@example.net", 554, b"5.7.1 Message rejected as spam"),
        ("policy@example.net", 554, b"5.7.1 Message rejected by local policy"),
    ],
)
def test_full_mailboxes_spam_and_policy_are_rejected_with_their_codes(simulator, to, code, text):
    assert refused(simulator, to) == (code, text)
    assert simulator.received == []


def test_defer3_is_deferred_three_times_then_accepted_on_the_fourth_connection(simulator):
    for _attempt in range(3):
        assert refused(simulator, "defer3@example.net") == (451, b"4.7.1 Try again later")
    assert send(simulator, "defer3@example.net") == {}
    assert simulator.attempts["defer3@example.net"] == 4
    assert simulator.wait_for_messages(1)[0].rcpts == ("defer3@example.net",)


def test_a_busy_server_answers_421_and_hangs_up_the_given_number_of_times(simulator):
    assert refused(simulator, "busy1@example.net") == (421, b"4.7.0 Too many connections")
    assert send(simulator, "busy1@example.net") == {}


def test_only_the_refused_recipients_of_a_message_are_left_out(simulator):
    with smtplib.SMTP("127.0.0.1", simulator.port, timeout=5) as client:
        refusals = client.sendmail(SENDER, ["reader@example.net", "full@example.net"], message())
    assert refusals == {"full@example.net": (552, b"5.2.2 Mailbox full")}
    assert simulator.wait_for_messages(1)[0].rcpts == ("reader@example.net",)


def test_a_timeout_recipient_gets_no_answer_while_other_connections_are_served(simulator):
    failure: list[Exception] = []

    def send_to_the_silent_mailbox():
        try:
            send(simulator, "timeout@example.net", timeout=1)
        except (TimeoutError, smtplib.SMTPServerDisconnected) as error:
            failure.append(error)

    held = threading.Thread(target=send_to_the_silent_mailbox)
    held.start()
    simulator.wait_for_attempts("timeout@example.net", 1)
    assert send(simulator, "reader@example.net") == {}
    assert held.is_alive(), "the other connection should have been served while this one waits"
    held.join(timeout=5)
    assert len(failure) == 1
    assert simulator.wait_for_messages(1)[0].rcpts == ("reader@example.net",)


def test_a_garbled_recipient_gets_line_noise_instead_of_a_reply(simulator):
    with socket.create_connection(("127.0.0.1", simulator.port), timeout=5) as raw:
        replies = raw.makefile("rb")
        greeting = replies.readline()
        raw.sendall(b"HELO client.example\r\nMAIL FROM:<bounces@news.example.com>\r\n")
        helo, mail = replies.readline(), replies.readline()
        raw.sendall(b"RCPT TO:<garbled1@example.net>\r\n")

        assert [line[:3] for line in (greeting, helo, mail)] == [b"220", b"250", b"250"]
        assert replies.readline() == GARBLED.encode() + b"\r\n"


def test_a_rules_file_can_garble_the_reply_to_a_recipient(tmp_path):
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps({"rules": [{"prefix": "noise", "garble": True}]}))

    [rule] = [rule for rule in Rules.from_file(rules_file).rules if rule.pattern == "noise"]

    assert rule.reply_for("noise@example.net", 1) == GARBLED


def test_a_slow_recipient_is_accepted_after_the_delay(simulator):
    started = time.monotonic()
    assert send(simulator, "slow@example.net") == {}
    assert time.monotonic() - started >= SLOW_SECONDS


def test_a_rules_file_goes_before_the_defaults(tmp_path):
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(
        json.dumps(
            {
                "rules": [
                    {"prefix": "unknown", "reply": "250 2.1.5 OK"},
                    {"address": "CEO@Example.net", "reply": "550 5.1.1 No such user here"},
                    {"regex": r".*@blocked\.example", "reply": "554 5.7.1 Blocked"},
                    {"prefix": "later", "reply": "450 4.2.0 Greylisted", "times": 1},
                ]
            }
        )
    )
    server = IspSimulator(port=0, rules=Rules.from_file(rules_file))
    server.start()
    try:
        assert send(server, "unknown1@example.net") == {}
        assert refused(server, "ceo@example.net") == (550, b"5.1.1 No such user here")
        assert refused(server, "anyone@blocked.example") == (554, b"5.7.1 Blocked")
        assert refused(server, "later@example.net") == (450, b"4.2.0 Greylisted")
        assert send(server, "later@example.net") == {}
        assert refused(server, "full@example.net")[0] == 552
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json", "cannot read rules file"),
        ('[{"prefix": "x"}]', "expected a JSON object"),
        ('{"rules": [{"prefix": "x", "reply": "ok"}]}', "rule 1: reply must be an SMTP reply"),
        ('{"rules": [{"prefix": "x", "regex": "y"}]}', "rule 1: give exactly one of"),
        ('{"rules": [{"regex": "("}]}', "rule 1: bad regex"),
        ('{"rules": [{"prefix": "x", "times": -1}]}', "rule 1: times must be"),
        ('{"rules": [{"prefix": "x", "garble": true, "reply": "250 OK"}]}', "rule 1: give a reply or garble"),
        ('{"rules": [{"prefix": "x", "garble": "yes"}]}', "rule 1: hold and garble must be true or false"),
    ],
)
def test_a_bad_rules_file_is_refused_with_the_reason(tmp_path, content, problem):
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(content)
    with pytest.raises(RulesError, match=problem):
        Rules.from_file(rules_file)


def test_a_message_signed_by_our_domain_passes_dkim(simulator, news):
    signed = signing.sign_message(message(), "news@news.example.com")
    assert send(simulator, "reader@example.net", signed) == {}
    [received] = simulator.wait_for_messages(1)
    assert received.dkim == DkimResult.PASS
    assert received.verifications[0].domain == "news.example.com"


def test_a_message_signed_with_rsa_and_ed25519_passes_both_signatures(simulator, news, dns_server, now):
    ed_key = signing.create_key(news, algorithm=KeyAlgorithm.ED25519, now=now)
    publish_key(dns_server, ed_key)
    signing.activate_key(ed_key, now=now)

    send(simulator, "reader@example.net", signing.sign_message(message(), "news@news.example.com"))

    [received] = simulator.wait_for_messages(1)
    assert received.dkim == DkimResult.PASS
    assert sorted((v.selector, v.ok) for v in received.verifications) == sorted(
        (selector, True) for selector in news.dkim_keys.values_list("selector", flat=True)
    )


def test_an_unsigned_message_has_no_dkim_result(simulator):
    send(simulator, "reader@example.net")
    assert simulator.wait_for_messages(1)[0].dkim == DkimResult.NONE


def test_a_message_changed_after_signing_fails_dkim(simulator, news):
    signed = signing.sign_message(message(), "news@news.example.com")
    tampered = signed.replace(b"Our autumn news.", b"Buy cheap watches")
    send(simulator, "reader@example.net", tampered)
    assert simulator.wait_for_messages(1)[0].dkim == DkimResult.FAIL


def test_a_silent_dns_server_neither_delays_the_reply_nor_passes_the_message(simulator, news, settings, dns_server):
    signed = signing.sign_message(message(), "news@news.example.com")
    for key in news.dkim_keys.all():
        dns_server.silence(key.record_name)
    settings.DNS_TIMEOUT_SECONDS = 1
    started = time.monotonic()
    assert send(simulator, "reader@example.net", signed) == {}
    assert time.monotonic() - started < settings.DNS_TIMEOUT_SECONDS
    assert simulator.wait_for_messages(1)[0].dkim != DkimResult.PASS
    assert send(simulator, "other@example.net") == {}


def test_starttls_is_offered_when_given_a_certificate(tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    server = IspSimulator(port=0, tls_context=tls_context(cert=cert, key=key))
    server.start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as client:
            client.ehlo()
            assert client.has_extn("starttls")
            client.starttls(context=ssl._create_unverified_context())
            assert client.sendmail(SENDER, ["reader@example.net"], message()) == {}
        assert server.wait_for_messages(1)
    finally:
        server.stop()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "isp-simulator.localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_listening(port: int, process: subprocess.Popen, *, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def test_the_command_serves_until_it_is_stopped(tmp_path):
    port = free_port()
    env = {**os.environ, "DELIVERWELL_VAR_DIR": str(tmp_path), "LOG_LEVEL": "INFO"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "isp_simulator", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_listening(port, process)
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            assert client.sendmail(SENDER, ["reader@example.net"], message()) == {}
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.sendmail(SENDER, ["unknown@example.net"], message())
    finally:
        process.terminate()
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert f"ISP simulator listening on 127.0.0.1:{port}" in out
    assert "unknown…@" in out
    assert "rcpt unknown@example.net (attempt 1): 550 5.1.1" in err
    assert "from bounces@news.example.com to reader@example.net: dkim=none" in err


@pytest.fixture
def reading_isp(settings, live_server):
    """The simulator with its reading mailboxes, five times faster, and tracking links to the live server."""
    simulator = IspSimulator(port=0, readers=True, reading_scale=0.2)
    simulator.start()
    settings.CAMPAIGN_SMTP_HOST = "127.0.0.1"
    settings.CAMPAIGN_SMTP_PORT = simulator.port
    settings.SITE_URL = live_server.url
    # Five times faster: the person opens after 4 s and clicks after 6 s, the windows shrink to
    # match with seconds to spare for a busy machine (they count from the reply to the sender).
    settings.TRACKING_PREFETCH_SECONDS = 1
    settings.TRACKING_SCANNER_SECONDS = 2
    yield simulator
    simulator.stop()


# PostgreSQL: the live server answers the readers' requests side by side, which SQLite's
# in-memory test database refuses (table locked).
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_reading_mailboxes_open_and_click_like_people_proxies_and_scanners(
    reading_isp, november, newsletter, manager, time_machine
):
    time_machine.move_to(timezone.now(), tick=True)  # the readers' seconds must pass
    november.html_body = (
        '<html><body><p>Hi</p><a href="https://shop.example/a">A</a> <a href="https://shop.example/b">B</a>'
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>'
    )
    november.save()
    for name in ["reader1", "apple1", "scanner1"]:
        subscriber(f"{name}@example.org", newsletter, timezone.now())
    now = timezone.now()
    pipeline.start_campaign(november, user=manager, now=now)
    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)

    reads = reading_isp.wait_for_reads(4, timeout=30)

    fetched = {(address, fetch): len(urls) for address, fetch, urls in reads}
    assert fetched == {
        ("reader1@example.org", "open"): 1,
        ("reader1@example.org", "click"): 1,
        ("apple1@example.org", "open"): 1,
        ("scanner1@example.org", "click"): 2,
    }
    events = {
        (event.recipient.split("@")[0], event.type, event.is_machine)
        for event in EmailEvent.objects.filter(type__in=[EventType.OPEN, EventType.CLICK])
    }
    assert events == {
        ("reader1", "open", False),
        ("reader1", "click", False),
        ("apple1", "open", True),
        ("scanner1", "click", True),
    }
