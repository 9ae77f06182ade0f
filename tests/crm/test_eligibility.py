"""Marketing eligibility: one rule, asked per contact and in SQL, with the same answers."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.db import connection

from crm import consent, suppression
from crm.eligibility import Ineligibility, annotate_ineligibility, eligible_contacts, marketing_ineligibility
from crm.models import (
    ConsentAction,
    ConsentMethod,
    Contact,
    EmailStatus,
    EngagementStatus,
    Subscription,
    SubscriptionStatus,
    SubscriptionType,
    SuppressionReason,
)


def test_a_confirmed_subscriber_may_be_mailed(alice, newsletter):
    assert marketing_ineligibility(alice, newsletter) is None
    assert list(eligible_contacts(newsletter)) == [alice]


@pytest.mark.parametrize(
    ("persona", "reason"),
    [("bob", Ineligibility.UNSUBSCRIBED_FROM_ALL), ("carol", Ineligibility.HARD_BOUNCED)],
)
def test_personas_are_refused_with_their_reason(request, newsletter, persona, reason):
    contact = request.getfixturevalue(persona)
    assert marketing_ineligibility(contact, newsletter) == reason
    assert not eligible_contacts(newsletter).filter(pk=contact.pk).exists()


def test_a_subscription_without_a_consent_record_is_not_verifiable(newsletter, now):
    contact = Contact.objects.create(email="quiet@example.com")
    Subscription.objects.create(contact=contact, subscription_type=newsletter, status=SubscriptionStatus.SUBSCRIBED)
    assert marketing_ineligibility(contact, newsletter) == Ineligibility.NO_CONSENT


def test_a_later_withdrawal_cancels_an_earlier_grant(alice, newsletter, now):
    consent.record_consent(
        alice, action=ConsentAction.WITHDRAWN, method=ConsentMethod.API, now=now + timedelta(minutes=1)
    )
    assert marketing_ineligibility(alice, newsletter) == Ineligibility.NO_CONSENT


def test_suppression_follows_the_address_into_a_new_contact_row(carol, newsletter, now):
    Contact.objects.filter(pk=carol.pk).delete()
    again = Contact.objects.create(email="CAROL@example.net")
    consent.subscribe_contact(again, newsletter, method=ConsentMethod.IMPORT, now=now)
    assert again.is_suppressed()
    assert marketing_ineligibility(again, newsletter) == Ineligibility.SUPPRESSED
    assert not eligible_contacts(newsletter).exists()


def test_unengaged_contacts_are_refused_unless_the_campaign_includes_them(alice, newsletter):
    Contact.objects.filter(pk=alice.pk).update(engagement_status=EngagementStatus.UNENGAGED)
    alice.refresh_from_db()
    assert marketing_ineligibility(alice, newsletter) == Ineligibility.UNENGAGED
    assert marketing_ineligibility(alice, newsletter, include_unengaged=True) is None
    assert eligible_contacts(newsletter, include_unengaged=True).get() == alice


def test_a_contact_who_asked_not_to_be_contacted_gets_no_marketing_email(alice, newsletter):
    Contact.objects.filter(pk=alice.pk).update(do_not_contact=True)
    alice.refresh_from_db()
    assert marketing_ineligibility(alice, newsletter) == Ineligibility.DO_NOT_CONTACT
    assert marketing_ineligibility(alice, newsletter, include_unengaged=True) == Ineligibility.DO_NOT_CONTACT
    assert not eligible_contacts(newsletter).exists()
    assert annotate_ineligibility(Contact.objects.all(), newsletter).get().ineligibility == "do_not_contact"


def test_nobody_may_be_mailed_for_an_inactive_type(alice, newsletter):
    SubscriptionType.objects.filter(pk=newsletter.pk).update(active=False)
    newsletter.refresh_from_db()
    assert marketing_ineligibility(alice, newsletter) == Ineligibility.SUBSCRIPTION_TYPE_INACTIVE
    assert not eligible_contacts(newsletter).exists()
    assert annotate_ineligibility(Contact.objects.all(), newsletter).get().ineligibility == "type_inactive"


def build_population(newsletter, other, now, size: int) -> None:
    """A deterministic mix of every state that matters to the rule."""
    rng = random.Random(20261122)
    for number in range(size):
        contact = Contact.objects.create(
            email=f"person{number}@example.org",
            email_status=rng.choice([EmailStatus.OK] * 5 + list(EmailStatus)),
            engagement_status=rng.choice(list(EngagementStatus)),
        )
        at = now - timedelta(days=30)
        for step in rng.sample(["grant", "confirm", "withdraw", "withdraw_all", "other"], rng.randint(0, 4)):
            at += timedelta(hours=1)
            scope = None if step == "withdraw_all" else (other if step == "other" else newsletter)
            action = {"grant": "granted", "confirm": "confirmed", "other": "granted"}.get(step, "withdrawn")
            consent.record_consent(contact, action=action, method=ConsentMethod.IMPORT, now=at, subscription_type=scope)
        status = rng.choice([None, *SubscriptionStatus])
        if status:
            Subscription.objects.create(contact=contact, subscription_type=newsletter, status=status)
        if rng.random() < 0.15:
            Contact.objects.filter(pk=contact.pk).update(unsubscribed_from_all_at=now)
        if rng.random() < 0.1:
            Contact.objects.filter(pk=contact.pk).update(do_not_contact=True)
        if rng.random() < 0.15:
            suppression.suppress_contacts(
                Contact.objects.filter(pk=contact.pk), reason=rng.choice(list(SuppressionReason)), now=now
            )


@pytest.mark.parametrize("include_unengaged", [False, True])
def test_the_per_contact_and_sql_forms_agree_on_every_contact(newsletter, now, include_unengaged):
    other = SubscriptionType.objects.create(name="Events")
    build_population(newsletter, other, now, size=400)

    in_sql = dict(
        annotate_ineligibility(Contact.objects.all(), newsletter, include_unengaged=include_unengaged).values_list(
            "pk", "ineligibility"
        )
    )
    eligible = set(eligible_contacts(newsletter, include_unengaged=include_unengaged).values_list("pk", flat=True))
    for contact in Contact.objects.all():
        reason = marketing_ineligibility(contact, newsletter, include_unengaged=include_unengaged)
        assert in_sql[contact.pk] == reason, contact.email
        assert (contact.pk in eligible) is (reason is None), contact.email
    # The population must exercise the rule, not only one branch of it.
    assert set(in_sql.values()) >= {None, *[r.value for r in Ineligibility if r != "type_inactive"]} - (
        {"unengaged"} if include_unengaged else set()
    )


def test_a_contact_inserted_set_based_without_the_flag_may_be_contacted(db):
    # Imports insert contacts with one INSERT … SELECT that names its columns.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO crm_contact (email, email_normalized, is_role_address, first_name, last_name, company, "
            "phone, time_zone, language, properties, source, created_at, updated_at, sends_since_engagement, "
            "engagement_status, email_status) VALUES ('a@example.org', 'a@example.org', FALSE, '', '', '', '', '', "
            "'', '{}', 'import', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0, 'new', 'ok')"
        )
    assert Contact.objects.get(email_normalized="a@example.org").do_not_contact is False
