"""A sending domain set up through the admin in a real browser, checked against a real DNS server."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from deliverability.models import CheckStatus, KeyState, SendingDomain
from tests.browser.conftest import log_in
from tests.conftest import SENDING_IP
from tests.dns_server import LocalDnsServer

pytestmark = pytest.mark.browser


def add_domain(page: Page, domain: str, content: str) -> None:
    page.goto("/admin/deliverability/sendingdomain/add/")
    page.locator("#id_domain").fill(domain)
    page.locator("#id_content_domains").fill(content)
    page.locator("#id_transport").select_option(label="Direct SMTP (our sending IPs)")
    page.get_by_role("button", name="Save and continue editing").first.click()


def check_row(page: Page, record: str) -> Locator:
    """The row of the DNS checks table for one record, e.g. "SPF" (not "SPF alignment")."""
    return page.locator("#checks tbody tr").filter(has=page.get_by_role("rowheader", name=record, exact=True))


def records_to_publish(page: Page) -> list[tuple[str, str, str]]:
    """(name, type, value) of every row under "Records to publish", values as the Copy buttons copy them."""
    rows = page.locator("#publish tbody tr")
    return [
        (
            row.locator("td").nth(0).inner_text(),
            row.locator("td").nth(1).inner_text(),
            row.get_by_role("button", name="Copy").get_attribute("data-copy"),
        )
        for row in rows.all()
    ]


def test_staff_add_a_domain_publish_its_records_and_see_them_pass(
    page: Page, root, dns_server: LocalDnsServer, sending_ips, artifacts: Path
) -> None:
    log_in(page)
    add_domain(page, "news.example.com", "www.example.com")
    expect(page.get_by_role("heading", name="Records to publish")).to_be_visible()
    expect(page.locator("#combination")).to_contain_text("news.example.com is a dedicated sending subdomain")

    page.get_by_role("link", name="New DKIM key…").click()
    page.get_by_role("button", name="Generate key").click()
    expect(page.locator(".messagelist")).to_contain_text("New RSA-2048 key")
    publish = records_to_publish(page)
    assert [(name, rdtype) for name, rdtype, _ in publish] == [
        ("news.example.com", "TXT"),
        (SendingDomain.objects.get().dkim_keys.get().record_name, "TXT"),
        ("_dmarc.news.example.com", "TXT"),
    ]
    spf, dkim, _monitoring = publish
    assert spf[2] == f"v=spf1 ip4:{SENDING_IP} ~all"
    # The last stage of the DMARC path on the page, not the first step the table suggests.
    reject = page.locator("#dmarc-path li").last.locator("code").inner_text()
    assert reject == "v=DMARC1; p=reject; rua=mailto:dmarc-reports@example.com"
    for name, rdtype, value in [spf, dkim, ("_dmarc.news.example.com", "TXT", reject)]:
        dns_server.add(name, rdtype, value)
    # The reverse DNS of the sending IP is left out: it should fail, and say why.

    page.get_by_role("link", name="Switch on…").click()
    page.get_by_role("button", name="Switch on DKIM key").click()
    expect(page.locator(".messagelist")).to_contain_text("signing")
    page.get_by_role("button", name="Check now").click()

    expect(page.locator(".messagelist")).to_contain_text(
        "Checked news.example.com: 1 record(s) fail. Reverse DNS (PTR): 192.0.2.10 has no PTR record."
    )
    for record in ("SPF", "DKIM", "DMARC", "SPF alignment", "DKIM alignment"):
        expect(check_row(page, record).locator("td").first).to_have_text("Pass")
    expect(check_row(page, "DMARC")).to_contain_text("DMARC p=reject at _dmarc.news.example.com, with reports.")
    ptr = check_row(page, "Reverse DNS (PTR)")
    expect(ptr.locator("td").first).to_have_text("Fail")
    expect(ptr).to_contain_text(f"{SENDING_IP} has no PTR record")
    expect(ptr).to_contain_text("Gmail and Outlook refuse or junk mail from IPs without matching forward and reverse")
    expect(check_row(page, "From domain (MX, CNAME)")).to_contain_text("has no MX record")
    expect(page.locator("#dmarc-path")).to_contain_text("published now")
    page.screenshot(path=artifacts / "sending-domain-page.png", full_page=True)
    page.goto("/admin/deliverability/sendingdomain/")
    expect(page.locator("#result_list")).to_contain_text("news.example.com")
    page.screenshot(path=artifacts / "sending-domain-list.png", full_page=True)

    domain = SendingDomain.objects.get()
    assert domain.status == CheckStatus.FAIL
    assert domain.dkim_keys.get().state == KeyState.ACTIVE


def test_a_content_hosting_subdomain_is_refused_as_a_sending_domain(page: Page, root, dns_server, sending_ips) -> None:
    log_in(page)

    add_domain(page, "www.example.com", "www.example.com")

    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".errorlist")).to_contain_text(
        "www.example.com hosts content (website, blog or landing pages) and cannot also send"
    )
    expect(page.locator(".errorlist")).to_contain_text("Send from a dedicated subdomain such as news.example.com")
    assert not SendingDomain.objects.exists()
