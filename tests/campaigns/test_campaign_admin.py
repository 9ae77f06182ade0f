"""Campaigns in the admin: write, check, preview, test, send, pause, cancel, read the results."""

from __future__ import annotations

from campaigns import pipeline
from campaigns.models import Campaign, CampaignStatus, SendStatus
from deliverability import dns_checks
from tests.conftest import messages_of, subscriber

ADD_URL = "/admin/campaigns/campaign/add/"


def page_of(campaign: Campaign, action: str = "change") -> str:
    return f"/admin/campaigns/campaign/{campaign.pk}/{action}/"


def campaign_form(newsletter, **fields) -> dict:
    return {
        "name": "December news",
        "subscription_type": newsletter.pk,
        "from_name": "Example News",
        "from_email": "news@news.example.com",
        "reply_to": "",
        "subject": "December",
        "preheader": "",
        "html_body": "<p>Hello</p>",
        "text_body": "",
        "scheduled_at_0": "",
        "scheduled_at_1": "",
        **fields,
    }


def test_a_template_error_is_refused_on_save_with_its_line(manager_client, newsletter):
    response = manager_client.post(
        ADD_URL, campaign_form(newsletter, html_body="<p>Hi</p>\n<p>{{ contact.first_name|shout }}</p>")
    )

    assert response.status_code == 200
    assert not Campaign.objects.exists()
    assert "Line 2: Invalid filter: &#x27;shout&#x27;" in response.content.decode()


def test_an_unknown_variable_is_refused_on_save(manager_client, newsletter):
    response = manager_client.post(ADD_URL, campaign_form(newsletter, subject="Hi {{ contact.nickname }}"))

    assert "unknown variable {{ contact.nickname }}" in response.content.decode()
    assert not Campaign.objects.exists()


def test_the_draft_page_loads_who_would_get_it_and_who_would_be_skipped(manager_client, november, alice, bob):
    page = manager_client.get(page_of(november)).content.decode()
    counted = manager_client.get(page_of(november, "audience")).content.decode()

    assert f'data-url="{page_of(november, "audience")}"' in page
    assert 'name="_save"' in page
    assert "<strong>1</strong> recipient would get it." in counted
    assert "Unsubscribed from all marketing email" in counted
    assert "Pre-send checklist" in page
    assert "Warning:</strong> There is no plain-text body: one will be generated from the HTML." in page


def test_the_preview_renders_the_campaign_as_a_chosen_contact(manager_client, november, alice):
    as_alice = manager_client.get(page_of(november, "preview") + "?contact=ALICE@example.com")
    anonymous = manager_client.get(page_of(november, "preview"))

    assert "Hi Alice, here is our news." in as_alice.content.decode()
    assert "Hi there, here is our news." in anonymous.content.decode()
    assert as_alice["X-Frame-Options"] == "SAMEORIGIN"


def test_a_test_send_goes_to_the_staff_address_through_the_real_transport(manager_client, november, alice, isp):
    response = manager_client.post(
        page_of(november, "test"), {"to": "editor@example.org", "contact": "alice@example.com"}, follow=True
    )

    [received] = isp.wait_for_messages(1)
    assert list(received.rcpts) == ["editor@example.org"]
    assert b"Subject: [Test] Hello Alice" in received.data
    assert messages_of(response)[0].startswith("Test sent to editor@example.org as Alice@Example.com: 250")
    assert not november.sends.exists()


def test_a_test_send_to_garbage_sends_nothing(manager_client, november, isp):
    response = manager_client.post(page_of(november, "test"), {"to": "not an address"}, follow=True)

    assert messages_of(response) == ["'not an address' is not an email address; nothing was sent."]


def test_sending_asks_for_confirmation_then_sends_and_reports(
    manager_client, november, alice, bob, isp, django_capture_on_commit_callbacks
):
    confirm = manager_client.get(page_of(november, "start"))
    with django_capture_on_commit_callbacks(execute=True):
        response = manager_client.post(page_of(november, "start"), follow=True)

    november.refresh_from_db()
    assert "<strong>1</strong> recipient will get" in confirm.content.decode()
    assert november.status == CampaignStatus.SENDING
    assert messages_of(response) == ["November news: preparing the sends; it starts once they are built."]
    assert november.sends.get(email="alice@example.com").status == SendStatus.DELIVERED
    page = manager_client.get(page_of(november)).content.decode()
    assert "Results (2 recipients, 1 attempted)" in page
    assert "Unsubscribed from all marketing email" in page


def test_a_campaign_with_a_failing_domain_cannot_be_sent(manager_client, november, alice, news, dns_server, now):
    dns_server.remove("news.example.com", "TXT")
    dns_checks.check_domain(news, now=now)

    confirm = manager_client.get(page_of(november, "start")).content.decode()
    refused = manager_client.post(page_of(november, "start"), follow=True)

    assert "Blocks sending:</strong> SPF: news.example.com has no SPF record." in confirm
    assert "Fix what blocks sending first." in confirm
    assert messages_of(refused)[0].startswith("Cannot send: SPF: news.example.com has no SPF record.")
    november.refresh_from_db()
    assert november.status == CampaignStatus.DRAFT


def test_pause_resume_and_cancel_need_a_post_and_say_what_happened(manager_client, november, alice, now, manager):
    november.scheduled_at = now.replace(year=2027)
    november.save()
    pipeline.start_campaign(november, user=manager, now=now)

    on_get = manager_client.get(page_of(november, "pause"))
    paused = manager_client.post(page_of(november, "pause"), follow=True)
    twice = manager_client.post(page_of(november, "pause"), follow=True)
    cancel_page = manager_client.get(page_of(november, "cancel"))
    cancelled = manager_client.post(page_of(november, "cancel"), follow=True)

    assert on_get.status_code == 403
    assert messages_of(paused) == ["November news: paused; nothing more goes out."]
    assert messages_of(twice) == ["November news is paused; only a sending campaign pauses."]
    assert "the 1 message not yet handed over will not be sent" in cancel_page.content.decode()
    assert 'name="_save"' not in paused.content.decode()
    assert messages_of(cancelled) == ["November news: cancelled; 1 sends not yet handed over will not go."]


def test_recipients_and_the_contact_page_show_each_servers_reply(
    manager_client, november, newsletter, isp, now, manager
):
    subscriber("unknown1@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)
    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)
    send = november.sends.get()

    recipients = manager_client.get(f"/admin/campaigns/send/?campaign__id__exact={november.pk}&status=hard_bounced")
    contact_page = manager_client.get(f"/admin/crm/contact/{send.contact_id}/change/")

    assert "5.1.1 The email account that you tried to reach does not exist." in recipients.content.decode()
    assert "Hard bounce" in contact_page.content.decode() and "November news" in contact_page.content.decode()


def test_viewers_cannot_send(client, viewer, november):
    client.force_login(viewer)

    assert client.get(page_of(november)).status_code == 200
    assert client.get(page_of(november, "audience")).status_code == 200
    assert client.post(page_of(november, "start")).status_code == 403
    november.refresh_from_db()
    assert november.status == CampaignStatus.DRAFT


def test_the_audience_count_is_for_staff_only(client, november, alice):
    response = client.get(page_of(november, "audience"))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
