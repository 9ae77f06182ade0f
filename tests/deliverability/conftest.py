"""A real DNS server on loopback, and a sending domain whose records it serves."""

from __future__ import annotations

import pytest
from django.utils import timezone

from deliverability import signing
from deliverability.models import DkimKey, KeyAlgorithm, SendingDomain
from tests.dns_server import LocalDnsServer

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
