"""The deliverability dashboard in a real browser: four months where engagement falls, the alert, the plan."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from campaigns.models import Send, SendStatus
from deliverability import health
from deliverability.models import DailyMetrics, SendingDomain
from tests.browser.conftest import log_in
from tests.deliverability.health_history import at, campaign

pytestmark = pytest.mark.browser

BOUNCES = [
    ("unknown_user", SendStatus.HARD_BOUNCED, 550, "5.1.1 The email account that you tried to reach does not exist."),
    ("mailbox_full", SendStatus.SOFT_BOUNCED, 552, "5.2.2 The recipient's mailbox is full."),
    ("spam_content", SendStatus.SOFT_BOUNCED, 554, "5.7.1 Message rejected as spam by content filtering."),
    ("dns_failure", SendStatus.HARD_BOUNCED, 550, "5.1.2 Domain gmial.com does not exist."),
]


def fading_history(domain: SendingDomain, newsletter, today) -> None:
    """120 days of mail whose human open rate slides from about 28 % to about 5 %, each night evaluated."""
    rows = []
    for n in range(120, 0, -1):
        day = today - timedelta(days=n)
        delivered = 1800 + int(300 * math.sin(n / 5))
        rate = 0.28 if n > 60 else max(0.05, 0.28 - (60 - n) * 0.006)
        rows.append(
            DailyMetrics(
                domain=domain,
                day=day,
                sent=delivered + 40,
                delivered=delivered,
                hard_bounces=18 + n % 7,
                soft_bounces=12,
                human_opens=int(delivered * rate),
                machine_opens=delivered // 3,
                clicks=int(delivered * rate / 6),
                complaints=1 + (n % 5 == 0) + 3 * (n == 9),
                unsubscribes=int(delivered * 0.004),
                computed_at=at(day),
            )
        )
    DailyMetrics.objects.bulk_create(rows)
    for n in range(90, -1, -1):
        health.evaluate_open_rates(now=at(today - timedelta(days=n), 3))
    october = campaign(newsletter, "October news")
    Send.objects.bulk_create(
        Send(
            campaign=october,
            email=f"r{category}{n}@{'gmial.com' if category == 'dns_failure' else 'example.org'}",
            status=status,
            bounce_category=category,
            smtp_code=code,
            smtp_reply=reply,
            due_at=at(today),
            created_at=at(today),
            first_attempt_at=at(today - timedelta(days=3)),
        )
        for category, status, code, reply in BOUNCES
        for n in range({"unknown_user": 60, "mailbox_full": 14, "spam_content": 9, "dns_failure": 3}[category])
    )
    Send.objects.bulk_create(
        Send(
            campaign=october,
            email=f"ok{n}@example.org",
            status=SendStatus.DELIVERED,
            due_at=at(today),
            created_at=at(today),
            first_attempt_at=at(today - timedelta(days=3)),
        )
        for n in range(900)
    )


def test_staff_read_a_domain_going_to_spam_on_its_dashboard(
    page: Page, root, newsletter, now, artifacts: Path, live_server
) -> None:
    domain = SendingDomain.objects.create(domain="news.example.com")
    fading_history(domain, newsletter, now.date())
    log_in(page)

    page.goto("/admin/deliverability/sendingdomain/")
    page.get_by_role("link", name="Dashboard").click()

    expect(page.locator("h1")).to_have_text("Deliverability of news.example.com")
    expect(page.locator("#alerts")).to_contain_text("Open rate below the critical threshold")
    expect(page.locator("#plan")).to_contain_text("Reputation repair plan: step 1")
    expect(page.locator("#plan .dw-current")).to_contain_text("Contacts who clicked within 14 days")
    charts = page.locator(".dw-chart svg")
    expect(charts).to_have_count(6)
    for index in range(6):
        box = charts.nth(index).bounding_box()
        assert box is not None and box["width"] > 400 and box["height"] > 100
    expect(page.locator("#chart-opens")).to_contain_text("30-day rate")
    expect(page.locator("#bounces tbody tr").first).to_contain_text("Unknown user")
    expect(page.locator("#recommendations")).to_contain_text("gmial.com → gmail.com")
    page.screenshot(path=artifacts / "health-dashboard.png", full_page=True)
    page.locator("#chart-opens").screenshot(path=artifacts / "health-dashboard-opens.png")
