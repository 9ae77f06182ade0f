"""Personas and the rules for tests that need real parts.

Tests marked `postgres` need PostgreSQL semantics and skip on SQLite with the reason; tests
marked `browser` need Debian's Chromium. In CI (CI=true) a missing part fails instead of
skipping, so nothing quietly stops running there.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import altcha
import pytest
import redis
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from django_altcha import get_altcha_challenge

from campaigns import tracking
from campaigns.models import Campaign
from config.celery import app as celery_app
from crm import consent, suppression
from crm.models import (
    ConsentAction,
    ConsentMethod,
    Contact,
    EmailStatus,
    SignupForm,
    SignupFormOffer,
    Subscription,
    SubscriptionStatus,
    SubscriptionType,
    SuppressionReason,
)
from crm.roles import MARKETER, MARKETING_MANAGER, VIEWER
from deliverability import dns_checks, signing
from deliverability.isp_simulator import IspSimulator
from deliverability.models import DkimKey, KeyAlgorithm, SendingDomain
from tests.dns_server import LocalDnsServer

CURRENT_TIME = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _missing_part(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI must run this test)")
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres") and connection.vendor != "postgresql":
        _missing_part("needs PostgreSQL: set DATABASE_URL=postgres://…")
    if item.get_closest_marker("browser") and not CHROMIUM.exists():
        _missing_part("needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")


@pytest.fixture(autouse=True)
def tasks_run_inline(monkeypatch):
    """Celery tasks run in the test's own process, unless a test starts a real worker."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    # An inline task that fails must fail the test, not vanish into an unread EagerResult.
    monkeypatch.setitem(celery_app.conf, "task_eager_propagates", True)


@pytest.fixture(autouse=True)
def sending_domains_must_pass(settings):
    """Tests run with production's rule: local runs (DEBUG) only warn about failing domains."""
    settings.REQUIRE_PASSING_SENDING_DOMAIN = True


@pytest.fixture(autouse=True)
def empty_cache():
    """Rate-limit counters and used CAPTCHA challenges never leak from one test to the next."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def tracking_hits_written_at_once(settings):
    """Opens and clicks are recorded in the request; the buffer's own tests turn it on."""
    settings.EVENT_BUFFER_URL = ""
    tracking.forget_links()


BUFFER_URL = os.environ.get("EVENT_BUFFER_TEST_URL", "redis://127.0.0.1:6379/14")


@pytest.fixture
def event_buffer(settings):
    """The event buffer in a Redis database of the tests' own, emptied before and after."""
    client = redis.Redis.from_url(BUFFER_URL)
    try:
        client.ping()
    except redis.RedisError:
        _missing_part(f"needs Redis at {BUFFER_URL}")
    client.flushdb()
    settings.EVENT_BUFFER_URL = BUFFER_URL
    settings.TRACKING_FLUSH_MS = 0  # each hit pushed in its request; the outbox's own tests turn it on
    yield client
    client.flushdb()


@pytest.fixture
def easy_captcha(settings):
    """A small proof-of-work range, so tests solve challenges in milliseconds."""
    settings.ALTCHA_MAX_NUMBER = 2000


def solve_captcha() -> str:
    """A fresh ALTCHA challenge from our server, solved as the browser widget would."""
    challenge = get_altcha_challenge(max_number=2000)
    solution = altcha.solve_challenge(challenge.challenge, challenge.salt, challenge.algorithm, challenge.max_number)
    payload = {
        "algorithm": challenge.algorithm,
        "challenge": challenge.challenge,
        "number": solution.number,
        "salt": challenge.salt,
        "signature": challenge.signature,
    }
    return base64.b64encode(json.dumps(payload).encode()).decode()


@pytest.fixture
def now(time_machine) -> datetime:
    """Time stands still at CURRENT_TIME."""
    time_machine.move_to(CURRENT_TIME, tick=False)
    return CURRENT_TIME


@pytest.fixture
def newsletter(db) -> SubscriptionType:
    """newsletter: the public, double opt-in subscription type."""
    return SubscriptionType.objects.create(name="Newsletter", description="Monthly news.")


@pytest.fixture
def alice(newsletter, now) -> Contact:
    """alice: confirmed newsletter subscriber (signup form, then double opt-in)."""
    contact = Contact.objects.create(email="Alice@Example.com", first_name="Alice", last_name="Liddell")
    Subscription.objects.create(contact=contact, subscription_type=newsletter)
    consent.record_consent(
        contact,
        action=ConsentAction.GRANTED,
        method=ConsentMethod.FORM,
        now=now,
        subscription_type=newsletter,
        consent_text="Yes, send me the newsletter.",
        ip_address="203.0.113.7",
        user_agent="Mozilla/5.0",
    )
    Subscription.objects.filter(contact=contact).update(status=SubscriptionStatus.SUBSCRIBED, subscribed_at=now)
    consent.record_consent(
        contact,
        action=ConsentAction.CONFIRMED,
        method=ConsentMethod.DOUBLE_OPT_IN,
        now=now,
        subscription_type=newsletter,
    )
    return contact


@pytest.fixture
def bob(newsletter, now) -> Contact:
    """bob: was subscribed to the newsletter, then unsubscribed from all."""
    contact = Contact.objects.create(email="bob@example.com", first_name="Bob")
    consent.subscribe_contact(contact, newsletter, method=ConsentMethod.STAFF, now=now)
    consent.unsubscribe_from_all(Contact.objects.filter(pk=contact.pk), method=ConsentMethod.UNSUBSCRIBE_LINK, now=now)
    contact.refresh_from_db()
    return contact


@pytest.fixture
def carol(newsletter, now) -> Contact:
    """carol: subscribed, then hard-bounced (status set, address suppressed)."""
    contact = Contact.objects.create(
        email="carol@example.net", first_name="Carol", email_status=EmailStatus.HARD_BOUNCED
    )
    consent.subscribe_contact(contact, newsletter, method=ConsentMethod.IMPORT, now=now)
    suppression.suppress_contacts(
        Contact.objects.filter(pk=contact.pk), reason=SuppressionReason.HARD_BOUNCE, now=now, source="550 5.1.1"
    )
    return contact


@pytest.fixture
def events(db) -> SubscriptionType:
    """events: a second public type that needs no double opt-in."""
    return SubscriptionType.objects.create(name="Events", requires_double_opt_in=False)


@pytest.fixture
def footer_form(newsletter, events) -> SignupForm:
    """footer_form: the website footer form; double opt-in; offers the newsletter (ticked) and events."""
    signup_form = SignupForm.objects.create(
        slug="footer",
        title="Get our newsletter",
        consent_text="Yes, email me the newsletter. I can unsubscribe at any time. (v3)",
        ask_first_name=True,
    )
    SignupFormOffer.objects.create(signup_form=signup_form, subscription_type=newsletter, pre_ticked=True)
    SignupFormOffer.objects.create(signup_form=signup_form, subscription_type=events, position=1)
    return signup_form


def _staff(django_user_model, username: str, role: str):
    user = django_user_model.objects.create_user(username=username, password="pw-" + username, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def manager(db, django_user_model):
    """manager: staff in the Marketing manager role."""
    return _staff(django_user_model, "manager", MARKETING_MANAGER)


@pytest.fixture
def marketer(db, django_user_model):
    """marketer: staff in the Marketer role."""
    return _staff(django_user_model, "marketer", MARKETER)


@pytest.fixture
def viewer(db, django_user_model):
    """viewer: staff in the read-only Viewer role."""
    return _staff(django_user_model, "viewer", VIEWER)


# Sending domains: a real DNS server on loopback and a domain whose records it serves.

SENDING_IP = "192.0.2.10"


@pytest.fixture
def dns_server(settings):
    """A DNS server on 127.0.0.1 that the checks ask, and nothing else."""
    server = LocalDnsServer()
    server.start()
    settings.DNS_NAMESERVERS = ["127.0.0.1"]
    settings.DNS_PORT = server.port
    # Long enough for a loaded CI machine; the tests of a silent server shorten it.
    settings.DNS_TIMEOUT_SECONDS = 3
    yield server
    server.stop()


@pytest.fixture
def sending_ips(settings):
    settings.SENDING_IPS = [SENDING_IP]
    return [SENDING_IP]


def publish_key(dns_server: LocalDnsServer, key: DkimKey) -> None:
    dns_server.add(key.record_name, "TXT", key.record_value())


@pytest.fixture
def news(db, dns_server, sending_ips) -> SendingDomain:
    """news.example.com: direct SMTP from our IP, every record published correctly, RSA key signing."""
    domain = SendingDomain(domain="news.example.com", content_domains="www.example.com")
    domain.full_clean()
    domain.save()
    dns_server.add("news.example.com", "MX", "10 mx.example.com")
    dns_server.add("news.example.com", "TXT", f"v=spf1 ip4:{SENDING_IP} -all")
    dns_server.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject; rua=mailto:dmarc@example.com")
    dns_server.add("10.2.0.192.in-addr.arpa", "PTR", "mta1.example.com")
    dns_server.add("mta1.example.com", "A", SENDING_IP)
    key = signing.create_key(domain, algorithm=KeyAlgorithm.RSA, now=timezone.now())
    publish_key(dns_server, key)
    signing.activate_key(key, now=timezone.now())
    return domain


# Campaigns: a draft ready to send from a passing sending domain, and the ISP simulator to send it to.


@pytest.fixture
def isp(settings):
    """The ISP simulator on loopback, as the campaigns' smarthost."""
    simulator = IspSimulator(port=0, timeout_hold_seconds=30)
    simulator.start()
    settings.CAMPAIGN_SMTP_HOST = "127.0.0.1"
    settings.CAMPAIGN_SMTP_PORT = simulator.port
    settings.CAMPAIGN_SMTP_TIMEOUT_SECONDS = 1
    yield simulator
    simulator.stop()


def subscriber(email: str, subscription_type: SubscriptionType, now, **fields) -> Contact:
    contact = Contact.objects.create(email=email, **fields)
    consent.subscribe_contact(contact, subscription_type, method=ConsentMethod.FORM, now=now)
    return contact


@pytest.fixture
def november(db, newsletter, news, now, manager) -> Campaign:
    """november: a draft newsletter from news.example.com, whose DNS checks pass."""
    dns_checks.check_domain(news, now=now)
    return Campaign.objects.create(
        name="November news",
        subscription_type=newsletter,
        from_name="Example News",
        from_email="news@news.example.com",
        subject="Hello {{ contact.first_name|default:'there' }}",
        html_body=(
            "<html><head><style>p { color: #333 }</style></head><body>"
            "<p>Hi {{ contact.first_name|default:'there' }}, here is our news.</p>"
            '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
        ),
        created_by=manager,
    )


@pytest.fixture
def spring_sale(newsletter, manager) -> Campaign:
    """spring_sale: a newsletter campaign that is sending; tests make its sends by hand."""
    return Campaign.objects.create(
        name="Spring sale",
        subscription_type=newsletter,
        from_name="Shop",
        from_email="news@shop.example",
        subject="Sale",
        html_body="<p>Sale</p>",
        status="sending",
        created_by=manager,
    )


@pytest.fixture
def manager_client(client, manager):
    """A test client logged in as the marketing manager."""
    client.force_login(manager)
    return client


def messages_of(response) -> list[str]:
    """The admin messages a response left for its request."""
    return [str(message) for message in get_messages(response.wsgi_request)]
