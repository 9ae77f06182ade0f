"""Domain-combination rules, applied when staff save a sending domain in the admin."""

from __future__ import annotations

import pytest

from deliverability.domains import Level, organisational_domain
from deliverability.models import SenderType, SendingDomain

ADD_URL = "/admin/deliverability/sendingdomain/add/"


def form(**fields) -> dict:
    data = {
        "domain": "news.example.com",
        "content_domains": "www.example.com",
        "transport": "smtp",
        "sender_type": SenderType.SHARED,
        "spf_include": "",
        "return_path_domain": "",
        "return_path_target": "",
        "dmarc_report_address": "",
        "bimi_logo_url": "",
        "bimi_certificate_url": "",
        **{f"{prefix}-{name}": value for prefix in ("dkim_keys", "dkim_keys-2") for name, value in _EMPTY.items()},
    }
    data.update(fields)
    return data


_EMPTY = {"TOTAL_FORMS": "0", "INITIAL_FORMS": "0", "MIN_NUM_FORMS": "0", "MAX_NUM_FORMS": "1000"}


@pytest.fixture
def staff_client(client, manager, dns_server):
    client.force_login(manager)
    return client


def levels(domain: SendingDomain) -> list[tuple[str, str]]:
    return [(finding.level, finding.message) for finding in domain.findings()]


def test_a_dedicated_sending_subdomain_is_saved_and_recommended(staff_client):
    response = staff_client.post(ADD_URL, form(), follow=True)

    domain = SendingDomain.objects.get()
    assert response.status_code == 200
    assert [level for level, _ in levels(domain)] == [Level.GOOD]
    assert "dedicated sending subdomain of example.com" in response.content.decode()


def test_sending_from_a_subdomain_that_hosts_content_is_refused(staff_client):
    response = staff_client.post(ADD_URL, form(domain="www.example.com"))

    assert response.status_code == 200
    assert not SendingDomain.objects.exists()
    assert "www.example.com hosts content (website, blog or landing pages) and cannot also send" in (
        response.content.decode()
    )


def test_the_root_domain_may_send_with_a_recommendation_to_use_a_subdomain(staff_client):
    staff_client.post(ADD_URL, form(domain="example.com"))

    [(level, message)] = levels(SendingDomain.objects.get())
    assert level == Level.ADVICE
    assert message.startswith("Sending from the root domain example.com works")
    assert "news.example.com" in message


def test_a_dedicated_ips_return_path_equal_to_the_from_domain_is_refused(staff_client):
    response = staff_client.post(
        ADD_URL,
        form(domain="email.example.com", sender_type=SenderType.DEDICATED, return_path_domain="email.example.com"),
    )

    assert not SendingDomain.objects.exists()
    assert "The return-path domain must not be the From domain email.example.com" in response.content.decode()


def test_a_return_path_on_shared_ips_is_refused(staff_client):
    response = staff_client.post(ADD_URL, form(return_path_domain="bounces.news.example.com"))

    assert not SendingDomain.objects.exists()
    assert "A custom return-path domain needs a dedicated IP" in response.content.decode()


def test_a_dedicated_ip_with_its_own_return_path_subdomain_is_fine(staff_client):
    staff_client.post(
        ADD_URL,
        form(sender_type=SenderType.DEDICATED, return_path_domain="12345m.example.com", return_path_target="x.esp.net"),
    )

    assert [level for level, _ in levels(SendingDomain.objects.get())] == [Level.GOOD]


def test_a_public_suffix_cannot_be_a_from_domain(staff_client):
    response = staff_client.post(ADD_URL, form(domain="co.uk", content_domains=""))

    assert not SendingDomain.objects.exists()
    assert "co.uk is a public suffix" in response.content.decode()


@pytest.mark.parametrize(
    ("name", "root"),
    [
        ("news.example.co.uk", "example.co.uk"),
        ("example.co.uk", "example.co.uk"),
        ("a.b.example.com", "example.com"),
        ("mail.example.github.io", "example.github.io"),
        ("co.uk", None),
    ],
)
def test_the_organisational_domain_comes_from_the_public_suffix_list_offline(name, root):
    assert organisational_domain(name) == root


def test_names_are_normalized_and_garbage_is_refused_with_a_clear_message(staff_client):
    staff_client.post(
        ADD_URL, form(domain=" News.Bücher.example. ", content_domains="WWW.example.com\nblog.example.com")
    )
    garbage = staff_client.post(ADD_URL, form(domain="https://news.example.org/", content_domains="not a domain"))

    domain = SendingDomain.objects.get()
    assert domain.domain == "news.xn--bcher-kva.example"
    assert domain.content_domain_list() == ["www.example.com", "blog.example.com"]
    page = garbage.content.decode()
    assert "Enter a domain name such as news.example.com, not &#x27;https://news.example.org/&#x27;." in page
    assert "&#x27;not a domain&#x27; is not a valid domain name." in page
