"""The contact list and change page: the product's main screen."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.models import (
    ConsentAction,
    ConsentRecord,
    Contact,
    Subscription,
    SubscriptionStatus,
    SubscriptionType,
    Suppression,
    SuppressionReason,
)

CHANGELIST = "/admin/crm/contact/"


@pytest.fixture
def staff_client(client, manager):
    client.force_login(manager)
    return client


def listed_emails(response) -> set[str]:
    return {contact.email for contact in response.context["cl"].result_list}


def test_the_list_shows_status_badges(staff_client, alice, bob, carol):
    page = staff_client.get(CHANGELIST)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'class="dw-badge dw-subscribed"' in html
    assert "unsubscribed (all)" in html
    assert "hard-bounced" in html
    assert "suppressed" in html


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"email_status__exact": "hard_bounced"}, {"carol@example.net"}),
        ({"suppressed": "yes"}, {"bob@example.com", "carol@example.net"}),
        ({"suppressed": "no"}, {"Alice@Example.com"}),
        ({"q": "alice@exa"}, {"Alice@Example.com"}),
        ({"q": "EXAMPLE.NET"}, {"carol@example.net"}),
        ({"q": "liddell"}, {"Alice@Example.com"}),
        ({"q": "alice liddell"}, {"Alice@Example.com"}),
        ({"q": " ALICE@example.COM "}, {"Alice@Example.com"}),
        ({"q": "ca"}, {"carol@example.net"}),
        ({"q": "Li"}, set()),
    ],
)
def test_filters_and_search_narrow_the_list(staff_client, alice, bob, carol, params, expected):
    page = staff_client.get(CHANGELIST, params)
    assert page.status_code == 200
    assert listed_emails(page) == expected


def test_the_subscription_filter_combines_type_and_status(staff_client, alice, bob, newsletter):
    subscribed = staff_client.get(CHANGELIST, {"subscription": f"{newsletter.pk}:subscribed"})
    unsubscribed = staff_client.get(CHANGELIST, {"subscription": f"{newsletter.pk}:unsubscribed"})
    assert listed_emails(subscribed) == {"Alice@Example.com"}
    assert listed_emails(unsubscribed) == {"bob@example.com"}
    assert "Newsletter · subscribed" in subscribed.content.decode()


@pytest.mark.parametrize(
    "params",
    [
        {"subscription": "garbage"},
        {"subscription": "1:nope"},
        {"subscription": "99999999999999999999:subscribed"},
        {"suppressed": "perhaps"},
        {"email_status__exact": "weird"},
        {"created_at__gte": "not-a-date"},
        {"created_at__gte": "2026-13-45"},
        {"q": "%_\\'\"; DROP TABLE crm_contact; --"},
        {"q": "\x00"},
        {"q": "x" * 5000},
        {"o": "99"},
        {"p": "-1"},
        {"p": "999999"},
        {"unknown_field__exact": "1"},
    ],
)
def test_garbage_filter_and_search_input_never_causes_a_server_error(staff_client, alice, params):
    page = staff_client.get(CHANGELIST, params)
    assert page.status_code in {200, 302}


def test_the_query_count_does_not_grow_with_the_number_of_contacts(staff_client, newsletter, now):
    def add_contacts(start: int, count: int) -> None:
        for number in range(start, start + count):
            contact = Contact.objects.create(email=f"many{number}@example.com")
            Subscription.objects.create(
                contact=contact, subscription_type=newsletter, status=SubscriptionStatus.SUBSCRIBED
            )

    def queries_for(params: dict) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff_client.get(CHANGELIST, params).status_code == 200
        return len(captured)

    views = [{}, {"p": "2"}, {"q": "many"}, {"suppressed": "no"}, {"subscription": f"{newsletter.pk}:subscribed"}]
    add_contacts(0, 60)
    few = [queries_for(params) for params in views]
    add_contacts(60, 140)
    assert [queries_for(params) for params in views] == few
    assert max(few) <= 12


def test_adding_a_contact_with_an_invalid_address_is_refused_with_a_message(staff_client):
    page = staff_client.post(
        "/admin/crm/contact/add/", {"email": "not an address", "email_status": "ok", "source": "admin"}
    )
    assert page.status_code == 200
    assert "is not a valid email address" in page.content.decode()
    assert not Contact.objects.exists()


def test_adding_the_same_address_in_another_case_points_to_the_existing_contact(staff_client, alice):
    page = staff_client.post(
        "/admin/crm/contact/add/",
        {
            "email": "ALICE@example.COM",
            "email_status": "ok",
            "source": "admin",
            "properties": "{}",
            "subscriptions-TOTAL_FORMS": "0",
            "subscriptions-INITIAL_FORMS": "0",
            "consent_records-TOTAL_FORMS": "0",
            "consent_records-INITIAL_FORMS": "0",
        },
    )
    assert "A contact with the address alice@example.com already exists." in page.content.decode()
    assert Contact.objects.count() == 1


def post_action(client, action: str, contacts, **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [c.pk for c in contacts], "index": "0", **extra}
    return client.post(CHANGELIST, data)


def test_unsubscribing_from_all_asks_for_confirmation_first(staff_client, alice):
    page = post_action(staff_client, "unsubscribe_from_all", [alice])
    assert page.status_code == 200
    assert "Unsubscribe from all marketing email?" in page.content.decode()
    alice.refresh_from_db()
    assert alice.unsubscribed_from_all_at is None


def test_unsubscribing_from_all_withdraws_consent_and_suppresses(staff_client, manager, alice, bob, now):
    page = post_action(staff_client, "unsubscribe_from_all", [alice, bob], confirmed="yes")
    assert page.status_code == 302
    messages = [str(m) for m in page.wsgi_request._messages]
    assert messages == ["Unsubscribed 1 contact(s) from all marketing email; 1 already were."]
    alice.refresh_from_db()
    assert alice.unsubscribed_from_all_at == now
    assert alice.subscriptions.get().status == SubscriptionStatus.UNSUBSCRIBED
    withdrawal = ConsentRecord.objects.get(contact=alice, action=ConsentAction.WITHDRAWN)
    assert withdrawal.subscription_type is None
    assert withdrawal.staff_user == manager
    assert Suppression.objects.filter(email="alice@example.com", reason=SuppressionReason.UNSUBSCRIBE).exists()


def test_suppressing_records_the_note_and_who_did_it(staff_client, manager, alice, carol):
    page = post_action(staff_client, "suppress", [alice, carol], confirmed="yes", note="asked by phone")
    assert page.status_code == 302
    entry = Suppression.objects.get(email="alice@example.com")
    assert (entry.reason, entry.note, entry.created_by) == (SuppressionReason.MANUAL, "asked by phone", manager)
    assert Suppression.objects.filter(email="carol@example.net").count() == 2


def test_export_streams_csv_with_formulas_neutralised(staff_client, alice):
    Contact.objects.filter(pk=alice.pk).update(company='=HYPERLINK("http://evil")')
    response = post_action(staff_client, "export_selected", [alice])
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0]["email"] == "Alice@Example.com"
    assert rows[0]["company"] == '\'=HYPERLINK("http://evil")'
    assert rows[0]["subscriptions"] == "Newsletter: subscribed"


def change_subscriptions(client, contact, subscription: Subscription | None, *, status: str, type_id: int):
    data = {
        "email": contact.email,
        "email_status": contact.email_status,
        "source": contact.source,
        "properties": "{}",
        "subscriptions-TOTAL_FORMS": "1",
        "subscriptions-INITIAL_FORMS": "1" if subscription else "0",
        "subscriptions-0-id": subscription.pk if subscription else "",
        "subscriptions-0-contact": contact.pk,
        "subscriptions-0-subscription_type": type_id,
        "subscriptions-0-status": status,
        "consent_records-TOTAL_FORMS": "0",
        "consent_records-INITIAL_FORMS": "0",
        "_save": "Save",
    }
    return client.post(f"/admin/crm/contact/{contact.pk}/change/", data)


def test_staff_subscribing_a_contact_writes_a_consent_record(staff_client, manager, now):
    events = SubscriptionType.objects.create(name="Events")
    dan = Contact.objects.create(email="dan@example.com")
    page = change_subscriptions(staff_client, dan, None, status="subscribed", type_id=events.pk)
    assert page.status_code == 302, page.content.decode()
    assert dan.subscriptions.get().status == SubscriptionStatus.SUBSCRIBED
    record = ConsentRecord.objects.get(contact=dan)
    assert (record.action, record.method, record.staff_user) == ("granted", "staff", manager)


def test_staff_cannot_resubscribe_someone_who_unsubscribed(staff_client, bob, newsletter):
    subscription = bob.subscriptions.get()
    page = change_subscriptions(staff_client, bob, subscription, status="subscribed", type_id=newsletter.pk)
    assert page.status_code == 200
    assert "only they can opt in again" in page.content.decode()
    assert bob.subscriptions.get().status == SubscriptionStatus.UNSUBSCRIBED


def test_the_change_page_shows_the_consent_history(staff_client, alice):
    page = staff_client.get(f"/admin/crm/contact/{alice.pk}/change/")
    html = page.content.decode()
    assert "Consent history (append-only)" in html
    assert "Double opt-in" in html
    assert "203.0.113.7" in html
