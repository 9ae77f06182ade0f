"""Signup forms and pending confirmations in the admin."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core import mail

from crm import links, optin
from crm.models import ConsentRecord, PendingSubscription, SignupForm


@pytest.fixture
def signups(footer_form, newsletter, now, django_capture_on_commit_callbacks):
    """Three people signed up through the footer form; one of them confirmed."""
    with django_capture_on_commit_callbacks(execute=True):
        for name in ("ann", "ben", "cat"):
            optin.submit_signup(
                footer_form,
                email=f"{name}@example.com",
                subscription_type_ids=[newsletter.pk],
                visitor=optin.Visitor(),
                now=now,
            )
    request = links.read_confirm_token(mail.outbox[0].body.split("/confirm/")[1].split("/")[0])
    optin.confirm_subscriptions(request, visitor=optin.Visitor(), now=now)


def test_the_form_list_shows_submissions_confirmations_and_rate(admin_client, signups):
    page = admin_client.get("/admin/crm/signupform/")
    html = page.content.decode()
    assert page.status_code == 200
    row = html[html.index("Get our newsletter") :]
    assert '<td class="field-submissions">3</td>' in row
    assert '<td class="field-confirmations">1</td>' in row
    assert '<td class="field-confirmation_rate">33%</td>' in row


def test_the_change_page_offers_an_embed_snippet_of_the_public_page(admin_client, footer_form):
    page = admin_client.get(f"/admin/crm/signupform/{footer_form.pk}/change/")
    html = page.content.decode()
    assert "&lt;iframe src=&quot;http://127.0.0.1:8000/subscribe/footer/?embed=1&quot;" in html
    assert "Copy embed code" in html


def test_staff_create_a_form_with_offers(admin_client, newsletter):
    response = admin_client.post(
        "/admin/crm/signupform/add/",
        {
            "title": "Webinar signup",
            "slug": "webinar",
            "active": "on",
            "consent_text": "Send me webinar invitations.",
            "double_opt_in": "on",
            "success_text": "Thanks!",
            "ask_first_name": "on",
            "offers-TOTAL_FORMS": "1",
            "offers-INITIAL_FORMS": "0",
            "offers-0-subscription_type": newsletter.pk,
            "offers-0-pre_ticked": "on",
            "offers-0-position": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()
    signup_form = SignupForm.objects.get(slug="webinar")
    assert list(signup_form.offers.values_list("subscription_type__name", "pre_ticked")) == [("Newsletter", True)]


def test_pending_confirmations_list_only_pending_requests(admin_client, signups):
    page = admin_client.get("/admin/crm/pendingsubscription/")
    assert page.status_code == 200
    assert {str(s.contact) for s in page.context["cl"].result_list} == {"ben@example.com", "cat@example.com"}


def test_resending_confirmation_respects_the_interval(
    admin_client, signups, time_machine, django_capture_on_commit_callbacks
):
    pending = list(PendingSubscription.objects.filter(status="pending").values_list("pk", flat=True))
    data = {"action": "resend_confirmation", ACTION_CHECKBOX_NAME: pending}
    with django_capture_on_commit_callbacks(execute=True):
        first = admin_client.post("/admin/crm/pendingsubscription/", data, follow=True)
    assert "Queued 0 confirmation email(s); 2 skipped" in first.content.decode()
    time_machine.shift(60 * 60)
    with django_capture_on_commit_callbacks(execute=True):
        later = admin_client.post("/admin/crm/pendingsubscription/", data, follow=True)
    assert "Queued 2 confirmation email(s)." in later.content.decode()
    assert len(mail.outbox) == 5


def test_the_contact_page_shows_signup_and_confirmation_in_the_consent_history(admin_client, signups):
    record = ConsentRecord.objects.filter(action="confirmed").get()
    page = admin_client.get(f"/admin/crm/contact/{record.contact_id}/change/")
    html = page.content.decode()
    assert "Signup form" in html and "Double opt-in" in html
    assert "Yes, email me the newsletter." in html
