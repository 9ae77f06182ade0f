"""Double opt-in: links that scanners may open, people confirm, and time expires."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django_celery_beat.models import PeriodicTask

from crm import links, optin
from crm.models import ConsentRecord, Contact, Subscription, SubscriptionStatus, Suppression, SuppressionReason
from tests.conftest import solve_captcha


@pytest.fixture
def dora(footer_form, newsletter, now, django_capture_on_commit_callbacks):
    """dora: signed up through the footer form; her confirmation email is in the outbox."""
    with django_capture_on_commit_callbacks(execute=True):
        optin.submit_signup(
            footer_form,
            email="Dora@Example.com",
            subscription_type_ids=[newsletter.pk],
            visitor=optin.Visitor("198.51.100.4", "Firefox"),
            now=now,
        )
    return Contact.objects.get(email_normalized="dora@example.com")


def confirm_path(message) -> str:
    return re.search(r"http://127\.0\.0\.1:8000(/confirm/[^/\s]+/)", message.body).group(1)


def test_opening_the_link_shows_a_button_and_confirms_nobody(client, dora, newsletter):
    page = client.get(confirm_path(mail.outbox[0]))
    assert page.status_code == 200
    assert '<button type="submit">Confirm</button>' in page.content.decode()
    assert "Newsletter" in page.content.decode()
    assert Subscription.objects.get(contact=dora).status == SubscriptionStatus.PENDING


def test_pressing_confirm_subscribes_and_writes_a_confirmation_record(client, dora, newsletter, now):
    page = client.post(confirm_path(mail.outbox[0]), REMOTE_ADDR="198.51.100.8", HTTP_USER_AGENT="Safari")
    assert page.status_code == 200
    assert "You're subscribed" in page.content.decode()
    subscription = Subscription.objects.get(contact=dora)
    assert (subscription.status, subscription.subscribed_at) == (SubscriptionStatus.SUBSCRIBED, now)
    record = ConsentRecord.objects.get(contact=dora, action="confirmed")
    assert (record.method, record.ip_address, record.user_agent) == ("double_opt_in", "198.51.100.8", "Safari")
    assert record.signup_form.slug == "footer"


def test_confirming_twice_is_harmless(client, dora):
    path = confirm_path(mail.outbox[0])
    client.post(path)
    again = client.post(path)
    assert again.status_code == 200
    assert ConsentRecord.objects.filter(contact=dora, action="confirmed").count() == 1


def test_confirmation_redirects_where_the_form_says(client, dora, footer_form):
    footer_form.confirmed_redirect_url = "https://www.example.com/welcome"
    footer_form.save()
    response = client.post(confirm_path(mail.outbox[0]))
    assert (response.status_code, response["Location"]) == (302, "https://www.example.com/welcome")


def test_an_expired_link_offers_a_new_one(client, dora, time_machine, settings, django_capture_on_commit_callbacks):
    settings.DOUBLE_OPT_IN_EXPIRY_DAYS = 7
    path = confirm_path(mail.outbox[0])
    time_machine.shift(timedelta(days=7, minutes=1))
    page = client.post(path)
    assert page.status_code == 410
    assert "This confirmation link has expired" in page.content.decode()
    assert Subscription.objects.get(contact=dora).status == SubscriptionStatus.PENDING
    with django_capture_on_commit_callbacks(execute=True):
        resent = client.post(path + "resend/")
    assert "Check your inbox" in resent.content.decode()
    assert len(mail.outbox) == 2
    assert client.post(confirm_path(mail.outbox[1])).status_code == 200
    assert Subscription.objects.get(contact=dora).status == SubscriptionStatus.SUBSCRIBED


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-3],
        lambda token: token[:10],
        lambda token: token.replace(token[5], "A" if token[5] != "A" else "B", 1),
        lambda token: "garbage",
        lambda token: "..:::..",
        lambda token: token + "x",
    ],
)
def test_a_tampered_or_truncated_link_shows_a_friendly_page(client, dora, mangle):
    token = confirm_path(mail.outbox[0]).split("/")[2]
    for method in (client.get, client.post):
        page = method(f"/confirm/{mangle(token)}/")
        assert page.status_code == 404
        assert "This link does not work" in page.content.decode()
    assert Subscription.objects.get(contact=dora).status == SubscriptionStatus.PENDING


def test_a_token_of_another_kind_is_not_a_confirmation(client, dora):
    unsubscribe_token = links.make_unsubscribe_token(dora)
    assert client.post(f"/confirm/{unsubscribe_token}/").status_code == 404


def test_a_link_for_an_address_that_changed_does_nothing(client, dora):
    path = confirm_path(mail.outbox[0])
    Contact.objects.filter(pk=dora.pk).update(email="dora@other.example", email_normalized="dora@other.example")
    page = client.post(path)
    assert "Nothing left to confirm" in page.content.decode()
    assert Subscription.objects.get(contact=dora).status == SubscriptionStatus.PENDING


def test_a_hard_bounce_after_signup_blocks_the_confirmation(client, dora, now):
    Suppression.objects.create(email="dora@example.com", reason=SuppressionReason.HARD_BOUNCE, created_at=now)
    client.post(confirm_path(mail.outbox[0]))
    assert Subscription.objects.get(contact=dora).status == SubscriptionStatus.PENDING


def test_confirming_brings_back_someone_who_had_unsubscribed_from_all(
    client, bob, footer_form, newsletter, now, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        optin.submit_signup(
            footer_form,
            email="bob@example.com",
            subscription_type_ids=[newsletter.pk],
            visitor=optin.Visitor(),
            now=now,
        )
    assert Suppression.objects.filter(email="bob@example.com", reason=SuppressionReason.UNSUBSCRIBE).exists()
    client.post(confirm_path(mail.outbox[0]))
    bob.refresh_from_db()
    assert bob.unsubscribed_from_all_at is None
    assert not Suppression.objects.filter(email="bob@example.com").exists()
    assert Subscription.objects.get(contact=bob).status == SubscriptionStatus.SUBSCRIBED


def test_asking_for_a_new_link_by_address_answers_the_same_for_anyone(
    client, dora, easy_captcha, django_capture_on_commit_callbacks, time_machine
):
    time_machine.shift(timedelta(hours=1))
    answers = []
    for email in ("dora@example.com", "nobody@example.com"):
        with django_capture_on_commit_callbacks(execute=True):
            page = client.post("/confirm/new/", {"email": email, "altcha": solve_captcha()})
        answers.append((page.status_code, page.content))
    assert answers[0] == answers[1]
    assert len(mail.outbox) == 2
    assert client.post("/confirm/new/", {"email": "dora@example.com"}).status_code == 400


def test_unconfirmed_requests_are_cleaned_up_and_the_consent_trail_stays(dora, bob, newsletter, now, settings):
    settings.PENDING_SUBSCRIPTION_CLEANUP_DAYS = 30
    Subscription.objects.filter(contact=bob).update(status=SubscriptionStatus.PENDING, requested_at=now)
    records = ConsentRecord.objects.count()
    assert optin.clean_up_pending_subscriptions(now=now + timedelta(days=29)) == 0
    assert optin.clean_up_pending_subscriptions(now=now + timedelta(days=30, seconds=1)) == 2
    assert not Subscription.objects.filter(contact=dora).exists()
    assert Subscription.objects.get(contact=bob).status == SubscriptionStatus.UNSUBSCRIBED
    assert ConsentRecord.objects.count() == records


def test_the_cleanup_is_scheduled_on_migrate(db):
    task = PeriodicTask.objects.get(task="crm.tasks.clean_up_pending_subscriptions")
    assert task.enabled
