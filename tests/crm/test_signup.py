"""Public signup forms: what people and bots get when they post."""

from __future__ import annotations

import pytest
from django.core import mail

from crm.models import (
    ConsentAction,
    ConsentRecord,
    Contact,
    EmailStatus,
    Subscription,
    SubscriptionStatus,
    SubscriptionType,
    Suppression,
    SuppressionReason,
)
from tests.conftest import solve_captcha

URL = "/subscribe/footer/"
THANKS = "/subscribe/footer/thanks/"


@pytest.fixture
def post(client, footer_form, easy_captcha, django_capture_on_commit_callbacks):
    """Post the footer form as a browser would (fresh CAPTCHA solution unless given)."""

    def post(data: dict | None = None, **headers):
        fields = {
            "email": "dora@example.com",
            "first_name": "Dora",
            "subscription_types": [footer_form.offers.first().subscription_type_id],
        }
        fields.update({"altcha": solve_captcha()} if data is None or "altcha" not in data else {})
        fields.update(data or {})
        fields = {k: v for k, v in fields.items() if v is not None}
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                URL, fields, REMOTE_ADDR=headers.pop("ip", "198.51.100.4"), HTTP_USER_AGENT="Firefox/130", **headers
            )

    return post


def test_the_form_page_shows_the_fields_and_consent_text(client, footer_form, easy_captcha):
    page = client.get(URL)
    html = page.content.decode()
    assert page.status_code == 200
    assert '<label for="id_email">Email address' in html
    assert "First name" in html and "Company" not in html
    assert "Yes, email me the newsletter. I can unsubscribe at any time. (v3)" in html
    assert "<altcha-widget" in html
    assert page.headers.get("X-Frame-Options") is None


def test_other_pages_may_not_be_framed(client, footer_form):
    assert client.get("/admin/login/").headers["X-Frame-Options"] == "DENY"


def test_a_new_address_becomes_pending_with_consent_and_gets_one_confirmation_email(post, newsletter):
    response = post()
    assert response.status_code == 303
    assert response["Location"] == THANKS
    contact = Contact.objects.get(email_normalized="dora@example.com")
    assert (contact.first_name, contact.source) == ("Dora", "form")
    assert Subscription.objects.get(contact=contact).status == SubscriptionStatus.PENDING
    record = ConsentRecord.objects.get(contact=contact)
    assert (record.action, record.method, record.subscription_type) == (ConsentAction.GRANTED, "form", newsletter)
    assert record.consent_text == "Yes, email me the newsletter. I can unsubscribe at any time. (v3)"
    assert (record.ip_address, record.user_agent, record.signup_form.slug) == ("198.51.100.4", "Firefox/130", "footer")
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["dora@example.com"]
    assert "/confirm/" in mail.outbox[0].body


def test_with_double_opt_in_off_the_submit_subscribes_directly(post, footer_form, events):
    footer_form.double_opt_in = False
    footer_form.save()
    post({"subscription_types": [events.pk]})
    contact = Contact.objects.get(email_normalized="dora@example.com")
    assert Subscription.objects.get(contact=contact).status == SubscriptionStatus.SUBSCRIBED
    assert list(ConsentRecord.objects.filter(contact=contact).values_list("action", "method")) == [("granted", "form")]
    assert mail.outbox == []


def test_a_type_that_requires_double_opt_in_needs_confirmation_even_if_the_form_does_not(post, footer_form, newsletter):
    footer_form.double_opt_in = False
    footer_form.save()
    post()
    assert Subscription.objects.get(subscription_type=newsletter).status == SubscriptionStatus.PENDING
    assert len(mail.outbox) == 1


@pytest.mark.parametrize("persona", ["new", "alice", "bob", "carol", "pending"])
def test_the_answer_is_the_same_whoever_the_address_belongs_to(request, post, persona):
    emails = {
        "new": "nobody@example.com",
        "alice": "alice@example.com",
        "bob": "bob@example.com",
        "carol": "carol@example.net",
    }
    if persona == "pending":
        post({"email": "pat@example.com"})
        email = "pat@example.com"
    else:
        if persona != "new":
            request.getfixturevalue(persona)
        email = emails[persona]
    response = post({"email": email})
    assert (response.status_code, response["Location"]) == (303, THANKS)


def test_a_hard_bounced_or_complaining_address_gets_no_mail_and_no_change(post, carol):
    Suppression.objects.create(
        email="erin@example.com", reason=SuppressionReason.COMPLAINT, created_at=carol.created_at
    )
    post({"email": "carol@example.net"})
    post({"email": "erin@example.com"})
    assert mail.outbox == []
    assert not Contact.objects.filter(email_normalized="erin@example.com").exists()
    assert not ConsentRecord.objects.filter(
        email__in=["carol@example.net", "erin@example.com"], signup_form__isnull=False
    ).exists()


def test_someone_who_unsubscribed_may_come_back_only_through_confirmation(post, footer_form, bob, events):
    footer_form.double_opt_in = False
    footer_form.save()
    post({"email": "bob@example.com", "subscription_types": [events.pk]})
    bob.refresh_from_db()
    assert bob.unsubscribed_from_all_at is not None
    assert Subscription.objects.get(contact=bob, subscription_type=events).status == SubscriptionStatus.PENDING
    assert len(mail.outbox) == 1


def test_resubmitting_resends_the_confirmation_at_most_once_per_interval(post, settings, time_machine, now):
    settings.CONFIRMATION_RESEND_MINUTES = 15
    post()
    post()
    time_machine.shift(14 * 60)
    post()
    assert len(mail.outbox) == 1
    time_machine.shift(2 * 60)
    post()
    assert len(mail.outbox) == 2


def test_adding_another_type_sends_a_confirmation_for_it_at_once(post, newsletter, events):
    post({"subscription_types": [newsletter.pk]})
    post({"subscription_types": [events.pk]})
    assert len(mail.outbox) == 2


def test_a_stranger_cannot_change_a_known_contacts_name(post, alice):
    post({"email": "alice@example.com", "first_name": "Mallory"})
    alice.refresh_from_db()
    assert alice.first_name == "Alice"


def test_only_types_the_form_offers_can_be_chosen(post, footer_form):
    secret = SubscriptionType.objects.create(name="Internal", public=False)
    response = post({"subscription_types": [secret.pk]})
    assert response.status_code == 400
    assert not Subscription.objects.filter(subscription_type=secret).exists()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"email": None}, "email", "This field is required."),
        ({"email": "not-an-email"}, "email", "Enter a valid email address"),
        ({"email": "x" * 300 + "@example.com"}, "email", "Ensure this value has at most 254 characters"),
        ({"subscription_types": ["abc"]}, "subscription_types", "Select a valid choice"),
        ({"subscription_types": None}, "subscription_types", "This field is required."),
        ({"altcha": None}, "altcha", "Please wait for the check below to finish"),
        ({"altcha": ""}, "altcha", "Please wait for the check below to finish"),
        ({"altcha": "garbage"}, "altcha", "The robot check failed"),
        ({"altcha": "eyJmb28iOiAiYmFyIn0="}, "altcha", "The robot check failed"),
    ],
)
def test_bad_input_is_refused_next_to_its_field_and_nothing_is_stored(post, data, field, message):
    response = post(data)
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors[field])
    assert message in response.content.decode()
    assert not Contact.objects.exists()
    assert mail.outbox == []


def test_a_replayed_captcha_solution_is_refused(post):
    solution = solve_captcha()
    assert post({"altcha": solution}).status_code == 303
    replay = post({"email": "other@example.com", "altcha": solution})
    assert replay.status_code == 400
    assert "already sent" in replay.content.decode()
    assert not Contact.objects.filter(email_normalized="other@example.com").exists()


def test_a_filled_honeypot_looks_like_success_but_stores_nothing(post):
    response = post({"website": "http://spam.example"})
    assert (response.status_code, response["Location"]) == (303, THANKS)
    assert not Contact.objects.exists()
    assert mail.outbox == []


def test_a_10_mb_field_gets_a_clear_error_not_a_crash(post):
    response = post({"first_name": "x" * 10_000_000})
    assert response.status_code == 400
    assert not Contact.objects.exists()


def test_rapid_posts_from_one_ip_are_answered_with_a_friendly_429(post, settings):
    settings.SIGNUP_RATE_LIMIT = 10
    answers = [post({"email": f"bot{n}@example.com"}).status_code for n in range(100)]
    assert answers[:10] == [303] * 10
    assert set(answers[10:]) == {429}
    assert Contact.objects.count() == 10
    other_ip = post({"email": "human@example.com"}, ip="198.51.100.99")
    assert other_ip.status_code == 303


def test_the_429_page_is_friendly(post, settings):
    settings.SIGNUP_RATE_LIMIT = 1
    post()
    page = post({"email": "again@example.com"})
    assert page.status_code == 429
    assert "Please wait a few minutes" in page.content.decode()
    assert page["Retry-After"]


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_refused(client, footer_form, method):
    assert getattr(client, method)(URL).status_code == 405


def test_an_unknown_or_inactive_form_shows_a_friendly_404(client, footer_form):
    footer_form.active = False
    footer_form.save()
    for url in (URL, "/subscribe/nope/", "/subscribe/nope/thanks/"):
        page = client.get(url)
        assert page.status_code == 404
        assert "This form is not available" in page.content.decode()


def test_invalid_contacts_never_get_mail(post):
    Contact.objects.create(email="ivan@example.com", email_status=EmailStatus.INVALID)
    post({"email": "IVAN@example.com"})
    assert mail.outbox == []
