"""The contact admin in a real browser."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def test_staff_find_a_contact_by_part_of_its_address_and_read_its_consent_history(
    page: Page, manager, alice, bob, artifacts: Path
) -> None:
    page.goto("/admin/")
    page.get_by_label("Username").fill("manager")
    page.get_by_label("Password").fill("pw-manager")
    page.get_by_role("button", name="Log in").click()

    page.get_by_role("link", name="Contacts", exact=True).click()
    page.get_by_role("textbox", name="Search").fill("alice@exa")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="bob@example.com")).to_have_count(0)
    page.get_by_role("link", name="Alice@Example.com").click()

    expect(page.get_by_role("heading", name="Change contact")).to_be_visible()
    history = page.get_by_role("group", name="Consent history (append-only)")
    expect(history.locator("td.field-action")).to_have_text(["Confirmed", "Granted"])
    expect(history.locator("td.field-method")).to_have_text(["Double opt-in", "Signup form"])
    page.screenshot(path=artifacts / "contact-change-page.png", full_page=True)
