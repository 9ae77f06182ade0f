"""A sent campaign's performance, the campaign list and a contact's timeline, in a real browser."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from campaigns import pipeline, reports
from campaigns.events import Observation, record_events
from campaigns.models import Campaign, EventSource, EventType
from tests.browser.conftest import log_in
from tests.conftest import subscriber

pytestmark = pytest.mark.browser

PEOPLE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"


def test_staff_read_how_a_campaign_did_from_the_list_to_a_contacts_timeline(
    page: Page, root, live_server, november: Campaign, newsletter, isp, manager, artifacts: Path
) -> None:
    november.html_body = (
        "<html><body><p>Hi {{ contact.first_name|default:'there' }}</p>"
        f'<p><a href="{live_server.url}/admin/login/">Our sale</a> · <a href="https://shop.example/new">New</a></p>'
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
    )
    november.save()
    sent_at = timezone.now()
    for number in range(12):
        subscriber(f"reader{number}@example.org", newsletter, sent_at, first_name=f"Reader {number}")
    for name in ["unknown1", "full1", "spam1"]:
        subscriber(f"{name}@example.org", newsletter, sent_at)
    pipeline.start_campaign(november, user=manager, now=sent_at)
    pipeline.send_batch(pipeline.claim(november.pk, now=sent_at, limit=50), now=sent_at)
    messages = isp.wait_for_messages(12)
    reader = next(m for m in messages if "reader0@" in m.rcpts[0])
    html = next(
        part.get_content()
        for part in email.message_from_bytes(reader.data, policy=email.policy.default).walk()
        if part.get_content_type() == "text/html"
    )
    tracked = re.search(r'href="[^"]+(/t/c/[^"]+)"', html).group(1)
    sends = {send.email: send for send in november.sends.all()}
    links = {link.url: link for link in november.links.all()}
    observations = []
    for number in range(9):  # people open over the next hours; some click
        send = sends[f"reader{number}@example.org"]
        at = sent_at + timedelta(hours=1 + number % 5, minutes=number)
        observations.append(Observation(EventType.OPEN, EventSource.TRACKING, at, send_id=send.pk, user_agent=PEOPLE))
        if number % 3 == 0:
            link = links[f"{live_server.url}/admin/login/" if number else "https://shop.example/new"]
            observations.append(
                Observation(
                    EventType.CLICK,
                    EventSource.TRACKING,
                    at + timedelta(minutes=2),
                    send_id=send.pk,
                    link_id=link.pk,
                    url=link.target,
                    user_agent=PEOPLE,
                )
            )
    for number in range(9, 12):  # Apple's proxy fetches the rest
        send = sends[f"reader{number}@example.org"]
        observations.append(
            Observation(
                EventType.OPEN,
                EventSource.TRACKING,
                sent_at + timedelta(minutes=20),
                send_id=send.pk,
                user_agent="Mozilla/5.0",
                ip_address="17.57.144.10",
            )
        )
    observations.append(
        Observation(
            EventType.UNSUBSCRIBE,
            EventSource.WEBHOOK,
            sent_at + timedelta(hours=3),
            send_id=sends["reader4@example.org"].pk,
        )
    )
    record_events(observations, now=sent_at + timedelta(hours=6))
    reports.refresh_stats(now=timezone.now())

    # The browser follows a tracked link like a recipient's mail client: a headless browser is a machine.
    page.goto(tracked)
    expect(page).to_have_url(re.compile(r"/admin/login/"))

    log_in(page)
    page.goto("/admin/campaigns/campaign/")
    row = page.locator("#result_list tr", has_text="November news")
    expect(row).to_contain_text("75.0%")  # opened: 9 of 12 delivered
    page.screenshot(path=artifacts / "campaign-list-figures.png", full_page=True)

    page.goto(f"/admin/campaigns/campaign/{november.pk}/change/")
    page.get_by_role("link", name="Performance").click()
    expect(page.locator("#figures")).to_contain_text("Click-to-open")
    expect(page.locator("#people-and-machines")).to_contain_text("Unique opens")
    expect(page.locator("#over-time svg")).to_be_visible()
    expect(page.locator("#links")).to_contain_text("https://shop.example/new")
    expect(page.locator("#bounces")).to_contain_text("Unknown user")
    page.screenshot(path=artifacts / "campaign-performance.png", full_page=True)

    page.locator("#results").get_by_role("link", name="opened", exact=True).click()
    expect(page.locator("#result_list tbody tr")).to_have_count(9)
    page.screenshot(path=artifacts / "campaign-recipients-opened.png", full_page=True)

    contact_id = sends["reader0@example.org"].contact_id
    page.goto(f"/admin/crm/contact/{contact_id}/change/")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("Click")
    expect(timeline).to_contain_text("automated client (headlesschrome)")
    timeline.scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "contact-timeline.png", full_page=True)
