"""A campaign written, checked, previewed and sent from the admin in a real browser, to the ISP simulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from campaigns import pipeline, tasks
from campaigns.models import Campaign, CampaignStatus, SendStatus
from tests.browser.conftest import log_in
from tests.conftest import subscriber

pytestmark = pytest.mark.browser


def test_staff_check_preview_and_send_a_campaign_then_read_every_result(
    page: Page, root, november: Campaign, alice, bob, newsletter, isp, artifacts: Path, settings
) -> None:
    settings.CAMPAIGN_SMTP_TIMEOUT_SECONDS = 3
    for name in ["unknown1", "full1", "defer3", "timeout1"]:
        subscriber(f"{name}@example.org", newsletter, november.created_at)
    log_in(page)

    page.goto(f"/admin/campaigns/campaign/{november.pk}/change/?preview_contact=alice@example.com")
    expect(page.locator("#audience")).to_contain_text("5 recipients would get it.")
    expect(page.locator("#audience")).to_contain_text("Unsubscribed from all marketing email")
    expect(page.locator("#checklist")).to_contain_text("There is no plain-text body")
    expect(page.frame_locator("iframe.dw-preview").locator("body")).to_contain_text("Hi Alice, here is our news.")
    page.screenshot(path=artifacts / "campaign-draft.png", full_page=True)
    page.locator("iframe.dw-preview").screenshot(path=artifacts / "campaign-preview.png")

    page.get_by_role("link", name="Send…").click()
    expect(page.locator("#content")).to_contain_text("5 recipients will get")
    page.screenshot(path=artifacts / "campaign-confirm-send.png", full_page=True)
    page.get_by_role("button", name="Send to 5 recipients").click()

    expect(page.locator(".messagelist")).to_contain_text(
        "November news: preparing the sends; it starts once they are built."
    )
    page.reload()
    results = page.locator("#results")
    expect(results).to_contain_text("Delivered")
    expect(results).to_contain_text("Hard bounce")
    expect(results).to_contain_text("Not sent (no answer)")
    page.screenshot(path=artifacts / "campaign-results.png", full_page=True)

    page.get_by_role("link", name="Recipients").click()
    expect(page.locator("#result_list")).to_contain_text(
        "5.1.1 The email account that you tried to reach does not exist."
    )
    page.screenshot(path=artifacts / "campaign-recipients.png", full_page=True)

    november.refresh_from_db()
    assert november.status == CampaignStatus.SENDING
    assert november.sends.filter(status=SendStatus.DEFERRED).count() == 1


def test_a_preparing_campaign_page_refreshes_itself_until_the_sends_are_built(
    page: Page, root, november: Campaign, alice, bob, manager, isp, artifacts: Path
) -> None:
    pipeline.request_start(november, user=manager, now=november.created_at)
    log_in(page)

    page.goto(f"/admin/campaigns/campaign/{november.pk}/change/")
    expect(page.locator("#preparing")).to_contain_text("a worker is building the sends")
    page.screenshot(path=artifacts / "campaign-preparing.png", full_page=True)
    tasks.prepare_campaign(november.pk)

    expect(page.locator("#results")).to_contain_text("Results (2 recipients", timeout=10_000)
    expect(page.locator("#preparing")).to_have_count(0)
