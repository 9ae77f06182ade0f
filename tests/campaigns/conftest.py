"""A campaign ready to send from a passing sending domain, and the ISP simulator to send it to."""

from __future__ import annotations

import pytest

from campaigns.models import Campaign
from crm import consent
from crm.models import ConsentMethod, Contact, SubscriptionType
from deliverability import dns_checks
from deliverability.isp_simulator import IspSimulator


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
