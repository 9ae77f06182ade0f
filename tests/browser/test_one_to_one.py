"""One-to-one email written on the contact page in a real browser, through Ann's own mailbox."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from campaigns.models import Sequence
from crm.models import Contact
from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser
pytest_plugins = ["tests.mailbox_fixtures"]


def test_staff_write_from_the_contact_page_and_read_the_timeline(
    page: Page, ann, alice, smtp_mailbox, artifacts: Path
) -> None:
    Sequence.objects.create(name="Follow-up after the demo").steps.create(
        day=3, subject="Any questions?", body="Hi {{ contact.first_name }}, any questions?"
    )
    log_in(page, "ann")

    page.goto(f"/admin/crm/contact/{alice.pk}/change/")
    page.get_by_role("link", name="Write an email").click()
    expect(page.locator("#content")).to_contain_text("Ann Sales <ann@sales.example.com>")
    expect(page.locator("#content")).to_contain_text("Alice Liddell <Alice@Example.com>")
    page.get_by_label("Subject").fill("Our call on Thursday")
    page.get_by_label("Body").fill("Hi {{ contact.first_name }},\n\nThanks for the call. Slides attached.\n\nAnn")
    page.get_by_label("Reply-To").fill("sales-team@sales.example.com")
    page.screenshot(path=artifacts / "one-to-one-compose.png", full_page=True)
    page.get_by_role("button", name="Send now").click()

    expect(page.locator(".messagelist")).to_contain_text("Sent to Alice@Example.com through ann@sales.example.com")
    assert len(smtp_mailbox.received) == 1

    page.get_by_role("link", name="Enroll in a sequence").click()
    page.get_by_label("Sequence").select_option(label="Follow-up after the demo")
    page.get_by_role("button", name="Enroll").click()
    expect(page.locator(".messagelist")).to_contain_text("Enrolled Alice@Example.com in Follow-up after the demo")

    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("One-to-one sent")
    expect(timeline).to_contain_text("Our call on Thursday")
    expect(timeline).to_contain_text("250 2.0.0 Ok: queued as 4XyZ1")
    expect(timeline).to_contain_text("Enrolled in sequence")
    expect(timeline).to_contain_text("next: day 3, 2026-11-05 09:30 UTC")
    timeline.scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "one-to-one-timeline.png", full_page=True)
    timeline.screenshot(path=artifacts / "one-to-one-timeline-panel.png")


def test_a_rejection_is_shown_at_once_in_the_browser(page: Page, ann, smtp_mailbox, artifacts: Path) -> None:
    nobody = Contact.objects.create(email="nobody@customer.example", first_name="No", last_name="Body")
    log_in(page, "ann")

    page.goto(f"/admin/campaigns/onetooneemail/write/{nobody.pk}/")
    page.get_by_label("Subject").fill("Hello")
    page.get_by_label("Body").fill("Are you there?")
    page.get_by_role("button", name="Send now").click()

    expect(page.get_by_role("alert")).to_contain_text("The server rejected the message: 550 5.1.1")
    expect(page.get_by_label("Body")).to_have_value("Are you there?")  # the draft is kept
    # The address is suppressed now: nothing more can go to it.
    expect(page.locator("#content")).to_contain_text("Cannot send: Mail to nobody@customer.example hard-bounced")
    expect(page.get_by_role("button", name="Send now")).to_be_disabled()
    page.screenshot(path=artifacts / "one-to-one-rejected.png", full_page=True)


def test_staff_test_their_inbox_connection_from_the_list(page: Page, ann, artifacts: Path) -> None:
    log_in(page, "ann")

    page.goto("/admin/campaigns/connectedinbox/")
    page.get_by_role("checkbox", name="Select this object for an action").first.check()
    page.get_by_role("combobox", name="Action").select_option(label="Test connection")
    page.get_by_role("button", name="Go").click()

    expect(page.locator(".messagelist")).to_contain_text("Ann Sales <ann@sales.example.com>: OK. SMTP: connected")
    expect(page.locator("#result_list")).to_contain_text("OK")
    page.screenshot(path=artifacts / "connected-inbox-tested.png", full_page=True)
    page.get_by_role("link", name="Ann Sales <ann@sales.example.com>").click()
    expect(page.get_by_label("SMTP password")).to_have_value("")  # never shown again
    page.screenshot(path=artifacts / "connected-inbox-page.png", full_page=True)
