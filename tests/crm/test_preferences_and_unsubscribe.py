"""The preference center and one-click unsubscribe."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from crm import links
from crm.models import (
    ConsentRecord,
    Contact,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)


def path_of(url: str) -> str:
    return url.removeprefix("http://127.0.0.1:8000")


def test_the_preference_center_shows_the_persons_subscriptions(client, alice, newsletter, events):
    page = client.get(path_of(links.preferences_url(alice)))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Alice@Example.com" in html
    assert re.search(rf'value="{newsletter.pk}"[^>]* checked', html)
    assert not re.search(rf'value="{events.pk}"[^>]* checked', html)


def test_changing_preferences_writes_consent_for_each_change(client, alice, newsletter, events, now):
    page = client.post(path_of(links.preferences_url(alice)), {"subscription_types": [events.pk]})
    assert "Your preferences are saved." in page.content.decode()
    statuses = dict(Subscription.objects.filter(contact=alice).values_list("subscription_type__name", "status"))
    assert statuses == {"Newsletter": "unsubscribed", "Events": "subscribed"}
    latest = ConsentRecord.objects.filter(contact=alice, method="preference_center")
    assert sorted(latest.values_list("action", "subscription_type__name")) == [
        ("granted", "Events"),
        ("withdrawn", "Newsletter"),
    ]


def test_coming_back_to_a_type_one_left_needs_confirmation(
    client, alice, newsletter, events, django_capture_on_commit_callbacks
):
    url = path_of(links.preferences_url(alice))
    client.post(url, {"subscription_types": []})
    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(url, {"subscription_types": [newsletter.pk]})
    assert "We sent you an email to confirm: Newsletter." in page.content.decode()
    assert Subscription.objects.get(contact=alice, subscription_type=newsletter).status == SubscriptionStatus.PENDING
    assert len(mail.outbox) == 1


def test_unsubscribing_from_all_in_the_preference_center(client, alice, now):
    page = client.post(path_of(links.preferences_url(alice)), {"unsubscribe_all": "1"})
    assert "You are unsubscribed from all our marketing email." in page.content.decode()
    alice.refresh_from_db()
    assert alice.unsubscribed_from_all_at == now
    assert Suppression.objects.filter(email="alice@example.com", reason=SuppressionReason.UNSUBSCRIBE).exists()


def test_the_unsubscribe_link_shows_a_button_on_get_and_changes_nothing(client, alice, newsletter):
    page = client.get(path_of(links.unsubscribe_url(alice, newsletter)))
    assert page.status_code == 200
    assert "Stop receiving <strong>Newsletter</strong>?" in page.content.decode()
    assert Subscription.objects.get(contact=alice).status == SubscriptionStatus.SUBSCRIBED


def test_pressing_unsubscribe_unsubscribes_at_once(client, alice, newsletter, now):
    page = client.post(path_of(links.unsubscribe_url(alice, newsletter)), REMOTE_ADDR="192.0.2.9")
    assert "You will receive no more Newsletter email." in page.content.decode()
    assert Subscription.objects.get(contact=alice).status == SubscriptionStatus.UNSUBSCRIBED
    record = ConsentRecord.objects.get(contact=alice, action="withdrawn")
    assert (record.method, record.ip_address, record.subscription_type) == ("unsubscribe_link", "192.0.2.9", newsletter)


def test_rfc_8058_one_click_post_needs_no_cookie_or_csrf_and_gets_no_redirect(alice, newsletter):
    strict = Client(enforce_csrf_checks=True)
    response = strict.post(
        path_of(links.unsubscribe_url(alice, newsletter, send_id=42)),
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert Subscription.objects.get(contact=alice).status == SubscriptionStatus.UNSUBSCRIBED
    assert ConsentRecord.objects.get(contact=alice, action="withdrawn").source_detail == "unsubscribe link (send 42)"


def test_a_one_click_post_without_a_body_still_unsubscribes(client, alice, newsletter):
    response = client.post(path_of(links.unsubscribe_url(alice, newsletter)))
    assert response.status_code == 200
    assert Subscription.objects.get(contact=alice).status == SubscriptionStatus.UNSUBSCRIBED


def test_unsubscribing_twice_is_harmless(client, alice, newsletter):
    url = path_of(links.unsubscribe_url(alice, newsletter))
    client.post(url)
    assert client.post(url).status_code == 200
    assert ConsentRecord.objects.filter(contact=alice, action="withdrawn").count() == 1


def test_unsubscribing_from_all_from_the_unsubscribe_page(client, alice, newsletter):
    client.post(path_of(links.unsubscribe_url(alice, newsletter)), {"everything": "1"})
    alice.refresh_from_db()
    assert alice.unsubscribed_from_all_at is not None


def test_unsubscribing_a_deleted_contact_suppresses_the_address(client, alice, newsletter):
    url = path_of(links.unsubscribe_url(alice, newsletter))
    Contact.objects.filter(pk=alice.pk).delete()
    page = client.post(url)
    assert page.status_code == 200
    assert "You are unsubscribed" in page.content.decode()
    assert Suppression.objects.filter(email="alice@example.com", reason=SuppressionReason.UNSUBSCRIBE).exists()
    one_click = client.post(url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert one_click.status_code == 200


def test_unsubscribe_tokens_do_not_expire(client, alice, newsletter, time_machine):
    url = path_of(links.unsubscribe_url(alice, newsletter))
    time_machine.shift(60 * 60 * 24 * 3650)
    assert client.post(url).status_code == 200
    assert Subscription.objects.get(contact=alice).status == SubscriptionStatus.UNSUBSCRIBED


@pytest.mark.parametrize("prefix", ["/unsubscribe/", "/preferences/"])
@pytest.mark.parametrize("token", ["garbage", "a" * 2000, "eyJjIjoxfQ:1abc:xyz", "%00", "..%2F..%2Fetc"])
def test_bad_tokens_get_a_friendly_page_that_reveals_nothing(client, alice, prefix, token):
    for method in (client.get, client.post):
        page = method(f"{prefix}{token}/")
        assert page.status_code in {400, 404}
        assert "alice" not in page.content.decode().lower()
    assert Subscription.objects.get(contact=alice).status == SubscriptionStatus.SUBSCRIBED


def test_a_bad_token_one_click_post_gets_a_plain_400(client, alice):
    response = client.post(
        "/unsubscribe/garbage/", "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400


def test_a_preferences_token_cannot_unsubscribe_and_vice_versa(client, alice, newsletter):
    preferences_token = links.make_preferences_token(alice)
    assert client.post(f"/unsubscribe/{preferences_token}/").status_code == 404
    confirm_token = links.make_confirm_token(alice, [newsletter.pk])
    assert client.post(f"/preferences/{confirm_token}/").status_code == 404
    assert Subscription.objects.get(contact=alice).status == SubscriptionStatus.SUBSCRIBED


def test_list_unsubscribe_headers_follow_rfc_8058(alice, newsletter, settings):
    settings.UNSUBSCRIBE_MAILTO = "unsubscribe@news.example.com"
    headers = links.list_unsubscribe_headers(alice, newsletter, send_id=7)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = headers["List-Unsubscribe"].split(", ")
    assert https.startswith("<http://127.0.0.1:8000/unsubscribe/") and https.endswith("/>")
    assert mailto.startswith("<mailto:unsubscribe@news.example.com?subject=unsubscribe%20")
    token = https.removeprefix("<http://127.0.0.1:8000/unsubscribe/").removesuffix("/>")
    assert links.read_unsubscribe_token(token) == links.ContactRef(alice.pk, "alice@example.com", newsletter.pk, 7)


def test_without_a_mailto_setting_only_the_https_target_is_listed(alice, settings):
    settings.UNSUBSCRIBE_MAILTO = ""
    assert links.list_unsubscribe_headers(alice)["List-Unsubscribe"].count("<") == 1


@pytest.fixture
def state_changing_urls(alice, newsletter):
    return [
        path_of(links.unsubscribe_url(alice, newsletter)),
        path_of(links.unsubscribe_url(alice)),
        path_of(links.preferences_url(alice)),
        path_of(links.confirm_url(alice, [newsletter.pk])),
    ]


def test_opening_any_link_with_get_or_head_changes_nothing(client, alice, state_changing_urls):
    before = (ConsentRecord.objects.count(), list(Subscription.objects.values_list("status", flat=True)))
    for url in state_changing_urls:
        assert client.get(url).status_code == 200
        assert client.head(url).status_code == 200
    assert (ConsentRecord.objects.count(), list(Subscription.objects.values_list("status", flat=True))) == before


@pytest.mark.parametrize("method", ["put", "patch", "delete", "options"])
def test_other_methods_on_links_are_refused(client, state_changing_urls, method):
    for url in state_changing_urls:
        assert getattr(client, method)(url).status_code == 405
