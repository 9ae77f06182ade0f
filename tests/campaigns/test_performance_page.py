"""The campaign performance page, the list's figures, the results export and the contact timeline."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from campaigns import pipeline, reports
from campaigns.events import Observation, record_events
from campaigns.models import Campaign, CampaignLink, EmailEvent, EventSource, EventType
from campaigns.tasks import refresh_campaign_stats
from tests.conftest import subscriber

HUMAN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"


@pytest.fixture
def sent_campaign(november, newsletter, isp, now, manager, time_machine):
    """November news with a tracked link, sent to four people: two delivered, one bounced, one deferred.

    Two hours later ada opens and clicks, bea opens twice, and Apple's proxy fetches everything.
    """
    november.html_body = '<html><body><p>Hi</p><a href="https://shop.example/sale">Sale</a></body></html>'
    november.save()
    people = {name: subscriber(f"{name}@example.org", newsletter, now) for name in ["ada", "bea", "unknown1", "defer1"]}
    pipeline.start_campaign(november, user=manager, now=now)
    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)
    later = now + timedelta(hours=2)
    time_machine.move_to(later, tick=False)
    sends = {send.email.split("@")[0]: send for send in november.sends.all()}
    link = CampaignLink.objects.get(campaign=november)

    def hit(kind, name, minutes, agent=HUMAN, ip="198.51.100.9"):
        return Observation(
            type=kind,
            source=EventSource.TRACKING,
            occurred_at=later + timedelta(minutes=minutes),
            send_id=sends[name].pk,
            link_id=link.pk if kind == EventType.CLICK else None,
            url=link.target if kind == EventType.CLICK else "",
            user_agent=agent,
            ip_address=ip,
        )

    record_events(
        [
            hit(EventType.OPEN, "ada", 0),
            hit(EventType.CLICK, "ada", 1),
            hit(EventType.OPEN, "bea", 5),
            hit(EventType.OPEN, "bea", 65),
            hit(EventType.OPEN, "ada", 0, agent="Mozilla/5.0", ip="17.1.2.3"),
            hit(EventType.OPEN, "bea", 0, agent="Mozilla/5.0", ip="17.1.2.3"),
        ],
        now=later,
    )
    return november, people


def test_the_performance_page_shows_people_and_machines_side_by_side(manager_client, sent_campaign):
    campaign, _ = sent_campaign

    response = manager_client.get(f"/admin/campaigns/campaign/{campaign.pk}/performance/")

    assert response.status_code == 200
    performance = response.context["performance"]
    assert (performance.results.attempted, performance.delivered, performance.bounced) == (4, 2, 1)
    assert (performance.opened, performance.opens, performance.machine_opened, performance.machine_opens) == (
        2,
        3,
        2,
        2,
    )
    assert (performance.clicked, performance.clicks, performance.machine_clicked) == (1, 1, 0)
    tiles = {label: (figure, note) for label, figure, note in performance.tiles()}
    assert tiles["Opened"] == ("2", "100.0% of delivered")
    assert tiles["Clicked"] == ("1", "50.0% of delivered")
    assert tiles["Click-to-open"][0] == "50.0%"
    assert tiles["Bounced"] == ("1", "25.0% of sent")
    [link] = performance.links
    assert (link.url, link.unique, link.total, link.machine) == ("https://shop.example/sale", 1, 1, 0)
    html = response.content.decode()
    assert "<svg" in html and "Opens (people)" in html
    assert "Unknown user" in html


def test_the_chart_counts_people_by_hour_since_the_first_send(manager_client, sent_campaign):
    campaign, _ = sent_campaign

    performance = reports.campaign_performance(campaign)

    assert [(opens, clicks) for _, opens, clicks in performance.over_time] == [(2, 1), (1, 0)]


def test_a_proxy_fetching_twice_is_one_machine_recipient(sent_campaign, now):
    campaign, _ = sent_campaign
    ada = campaign.sends.get(email="ada@example.org")
    later = now + timedelta(hours=3)
    record_events(
        [
            Observation(
                type=EventType.OPEN,
                source=EventSource.TRACKING,
                occurred_at=later,
                send_id=ada.pk,
                user_agent="Mozilla/5.0",
                ip_address="17.1.2.3",
            )
        ],
        now=later,
    )

    performance = reports.campaign_performance(campaign)

    assert (performance.machine_opens, performance.machine_opened) == (3, 2)
    assert (performance.opens, performance.opened) == (3, 2)


def test_each_result_links_to_its_recipients(manager_client, sent_campaign):
    campaign, _ = sent_campaign
    page = manager_client.get(f"/admin/campaigns/campaign/{campaign.pk}/performance/")
    opened = dict(page.context["by_engagement"])["Opened"]
    hard = next(url for label, _, _, url in page.context["by_result"] if label == "Hard bounce")

    opened_page = manager_client.get(opened)
    hard_page = manager_client.get(hard)

    assert sorted(send.email for send in opened_page.context["cl"].result_list) == [
        "ada@example.org",
        "bea@example.org",
    ]
    assert [send.email for send in hard_page.context["cl"].result_list] == ["unknown1@example.org"]


def test_the_results_export_has_every_recipient_with_formulas_neutralised(
    manager_client, sent_campaign, newsletter, now
):
    campaign, _ = sent_campaign
    sneaky = subscriber("=cmd@example.org", newsletter, now)
    campaign.sends.create(contact=sneaky, email=sneaky.email_normalized, status="skipped", due_at=now, created_at=now)

    response = manager_client.get(f"/admin/campaigns/campaign/{campaign.pk}/export/")

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert response["Content-Disposition"] == f'attachment; filename="campaign-{campaign.pk}-results.csv"'
    assert len(rows) == 5
    ada = next(row for row in rows if row["email"] == "ada@example.org")
    assert ada["result"] == "delivered" and ada["opened_at"] and ada["clicked_at"]
    assert "'=cmd@example.org" in [row["email"] for row in rows]


def test_the_campaign_list_shows_the_stored_figures(manager_client, sent_campaign):
    campaign, _ = sent_campaign
    before = manager_client.get("/admin/campaigns/campaign/")

    refresh_campaign_stats()
    after = manager_client.get("/admin/campaigns/campaign/")

    campaign.refresh_from_db()
    assert campaign.stats == {
        "attempted": 4,
        "delivered": 2,
        "opened": 2,
        "clicked": 1,
        "bounced": 1,
        "unsubscribed": 0,
        "complained": 0,
    }
    row = re.search(r"<tr>.*?November news.*?</tr>", after.content.decode(), re.DOTALL).group(0)
    assert "100.0%" in row and "50.0%" in row and "25.0%" in row
    assert "100.0%" not in re.search(r"<tr>.*?November news.*?</tr>", before.content.decode(), re.DOTALL).group(0)


def test_figures_of_campaigns_long_finished_are_left_alone(sent_campaign, now):
    campaign, _ = sent_campaign
    Campaign.objects.filter(pk=campaign.pk).update(
        status="sent", status_changed_at=now - timedelta(days=40), stats={"attempted": 1}, stats_updated_at=now
    )

    assert reports.refresh_stats(now=now) == 0
    campaign.refresh_from_db()
    assert campaign.stats == {"attempted": 1}


def test_the_contact_page_has_a_timeline_of_sends_and_events(manager_client, sent_campaign):
    _campaign, people = sent_campaign

    response = manager_client.get(f"/admin/crm/contact/{people['ada'].pk}/change/")

    html = response.content.decode()
    timeline = html[html.index('id="timeline"') :]
    assert "Email timeline" in timeline
    assert (
        timeline.index(">Click<") < timeline.index(">Open<") < timeline.index(">Delivered<") < timeline.index(">Sent<")
    )
    assert "Apple Mail Privacy Protection" in timeline
    assert "https://shop.example/sale" in timeline


def test_a_viewer_sees_the_performance_page_but_cannot_start_anything(client, viewer, sent_campaign):
    campaign, _ = sent_campaign
    client.force_login(viewer)

    assert client.get(f"/admin/campaigns/campaign/{campaign.pk}/performance/").status_code == 200
    assert client.post(f"/admin/campaigns/campaign/{campaign.pk}/pause/").status_code == 403


def test_everything_we_hold_includes_the_emails_sent_and_their_events(manager_client, sent_campaign):
    _, people = sent_campaign

    record = manager_client.get(f"/admin/crm/contact/{people['ada'].pk}/data.json").json()

    [send] = record["marketing_email"]["sends"]
    assert (send["campaign__name"], send["status"]) == ("November news", "delivered")
    kinds = [event["type"] for event in record["marketing_email"]["events"]]
    assert kinds == ["delivered", "open", "open", "click"]
    assert {event["is_machine"] for event in record["marketing_email"]["events"] if event["type"] == "open"} == {
        True,
        False,
    }


def test_an_unsubscribe_through_the_emails_link_counts_for_the_campaign(
    client, sent_campaign, isp, django_capture_on_commit_callbacks
):
    campaign, people = sent_campaign
    message = next(m for m in isp.received if m.rcpts == ("ada@example.org",))
    headers = email.message_from_bytes(message.data, policy=email.policy.default)
    one_click = re.search(r"<(https?://[^>]+/unsubscribe/[^>]+)>", headers["List-Unsubscribe"]).group(1)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            urlsplit(one_click).path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
        )

    assert response.status_code == 200
    event = EmailEvent.objects.get(type=EventType.UNSUBSCRIBE)
    assert (event.source, event.contact_id, event.campaign_id) == (
        EventSource.UNSUBSCRIBE_LINK,
        people["ada"].pk,
        campaign.pk,
    )
    assert reports.campaign_performance(campaign).unsubscribed == 1


def test_the_event_list_filters_people_machines_orphans_and_one_contact(manager_client, sent_campaign, now):
    _, people = sent_campaign
    record_events(
        [Observation(EventType.HARD_BOUNCE, EventSource.WEBHOOK, now, recipient="gone@example.org", esp="sendgrid")],
        now=now,
    )

    def shown(query: str) -> list[tuple[str, str]]:
        response = manager_client.get(f"/admin/campaigns/emailevent/?{query}")
        assert response.status_code == 200
        return sorted((event.recipient, event.type) for event in response.context["cl"].result_list)

    assert shown("made_by=machine") == [("ada@example.org", "open"), ("bea@example.org", "open")]
    assert shown("matched=no") == [("gone@example.org", "hard_bounce")]
    assert shown(f"contact={people['ada'].pk}&made_by=person") == [
        ("ada@example.org", "click"),
        ("ada@example.org", "delivered"),
        ("ada@example.org", "open"),
    ]


def test_an_automatic_pause_says_why_until_staff_resume(manager_client, sent_campaign):
    campaign, _ = sent_campaign
    Campaign.objects.filter(pk=campaign.pk).update(
        status="paused", status_reason="Hard bounces 7.1% of 1,400 sent, over the 5% limit."
    )

    page = manager_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    listing = manager_client.get("/admin/campaigns/campaign/").content.decode()
    manager_client.post(f"/admin/campaigns/campaign/{campaign.pk}/resume/")

    assert "Paused automatically:</strong> Hard bounces 7.1% of 1,400 sent" in page
    assert 'title="Hard bounces 7.1% of 1,400 sent, over the 5% limit."' in listing
    campaign.refresh_from_db()
    assert (campaign.status, campaign.status_reason) == ("sending", "")
