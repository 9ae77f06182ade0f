"""A person's whole way in and out, in a real browser: signup, confirm, preferences, unsubscribe."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from django.core import mail
from playwright.sync_api import Page, expect

from crm import addresses
from crm.models import ConsentRecord, Contact, Subscription, SubscriptionStatus

pytestmark = pytest.mark.browser


def link_in(message, path: str) -> str:
    return re.search(rf"https?://[^\s\"]+{path}[^\s\"]+/", message.body).group(0)


def test_a_person_signs_up_confirms_changes_preferences_and_leaves(
    page: Page, live_server, settings, footer_form, newsletter, events, easy_captcha, artifacts: Path
) -> None:
    settings.SITE_URL = live_server.url

    page.goto("/subscribe/footer/")
    page.get_by_label("Email address").fill("Dora@Example.com")
    page.get_by_label("First name").fill("Dora")
    expect(page.get_by_label("Newsletter")).to_be_checked()
    page.get_by_label("Events").check()
    page.get_by_label("I'm not a robot").click()
    expect(page.locator("altcha-widget [data-state]").first).to_have_attribute("data-state", "verified", timeout=15_000)
    page.screenshot(path=artifacts / "signup-form.png", full_page=True)
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("status")).to_contain_text("a message is on its way")

    assert len(mail.outbox) == 1
    dora = Contact.objects.get(email_normalized="dora@example.com")
    assert set(Subscription.objects.filter(contact=dora).values_list("status", flat=True)) == {"pending"}

    page.goto(link_in(mail.outbox[0], "/confirm/"))
    expect(page.get_by_role("heading", name="Confirm your subscription")).to_be_visible()
    assert set(Subscription.objects.filter(contact=dora).values_list("status", flat=True)) == {"pending"}
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="You're subscribed")).to_be_visible()
    assert set(Subscription.objects.filter(contact=dora).values_list("status", flat=True)) == {"subscribed"}

    page.get_by_role("link", name="Manage your subscriptions").click()
    expect(page.get_by_label("Events")).to_be_checked()
    page.get_by_label("Events").uncheck()
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_role("status")).to_contain_text("Your preferences are saved.")
    statuses = dict(Subscription.objects.filter(contact=dora).values_list("subscription_type__name", "status"))
    assert statuses == {"Newsletter": SubscriptionStatus.SUBSCRIBED, "Events": SubscriptionStatus.UNSUBSCRIBED}

    page.get_by_role("button", name="Unsubscribe from all").click()
    expect(page.get_by_role("status")).to_contain_text("You are unsubscribed from all our marketing email.")
    page.screenshot(path=artifacts / "preferences-after-unsubscribe.png", full_page=True)
    dora.refresh_from_db()
    assert dora.unsubscribed_from_all_at is not None
    assert list(ConsentRecord.objects.filter(contact=dora).order_by("id").values_list("action", "method")) == [
        ("granted", "form"),
        ("granted", "form"),
        ("confirmed", "double_opt_in"),
        ("confirmed", "double_opt_in"),
        ("withdrawn", "preference_center"),
        ("withdrawn", "unsubscribe_link"),
    ]


def test_a_mistyped_provider_is_offered_its_correction_by_the_servers_own_rule(
    page: Page, footer_form, artifacts: Path
) -> None:
    page.goto("/subscribe/footer/")
    email = page.get_by_label("Email address")
    hint = page.locator("#email-suggestion")

    email.fill("ann@gmial.com")
    email.press("Tab")
    expect(hint).to_have_text("Did you mean ann@gmail.com?")
    page.screenshot(path=artifacts / "signup-suggestion.png", full_page=True)
    hint.get_by_role("button", name="ann@gmail.com").click()
    expect(email).to_have_value("ann@gmail.com")
    expect(hint).to_be_hidden()
    email.fill("ann@example.org")
    email.press("Tab")
    expect(hint).to_be_hidden()

    rng = random.Random(3)
    typed = []
    for provider in sorted(addresses.PROVIDERS):
        at = rng.randrange(len(provider))
        typed += [provider, provider[:at] + provider[at + 1 :], provider[:at] + "x" + provider[at:], provider.upper()]
        if at + 1 < len(provider):
            typed.append(provider[:at] + provider[at + 1] + provider[at] + provider[at + 2 :])
    typed += list(addresses.KNOWN_TYPOS)
    in_the_browser = page.evaluate("(domains) => domains.map((d) => window.deliverwell.suggestDomain(d))", typed)

    assert in_the_browser == [addresses.suggest_domain(domain) for domain in typed]
    assert sum(suggestion is not None for suggestion in in_the_browser) > len(addresses.PROVIDERS)
