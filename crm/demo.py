"""Demo data for a fresh local install: a few hundred contacts with believable histories."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction

from crm import consent, suppression
from crm.models import (
    ConsentAction,
    ConsentMethod,
    Contact,
    ContactSource,
    EmailStatus,
    EngagementStatus,
    LawfulBasis,
    Subscription,
    SubscriptionStatus,
    SubscriptionType,
    SuppressionReason,
)

FIRST_NAMES = ["Alice", "Bob", "Carol", "Dan", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Niaj"]
LAST_NAMES = ["Smith", "Jones", "Müller", "García", "Rossi", "Dubois", "Kowalski", "Nakamura", "Silva", "Okafor"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", ""]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example", "bücher.example"]
TIME_ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "Europe/London", "America/Sao_Paulo", ""]
SUBSCRIPTION_TYPES = [
    ("Newsletter", "The monthly newsletter."),
    ("Product updates", "New features and release notes."),
    ("Events & webinars", "Invitations to events and webinars."),
]
CONSENT_TEXT = "Yes, send me {name}. I can unsubscribe at any time. (consent text v1)"


@transaction.atomic
def load_demo_data(*, contacts: int, now: datetime, seed: int = 8) -> int:
    """Create subscription types and `contacts` demo contacts. Return how many were created."""
    rng = random.Random(seed)
    types = [
        SubscriptionType.objects.get_or_create(name=name, defaults={"description": description})[0]
        for name, description in SUBSCRIPTION_TYPES
    ]
    staff = get_user_model().objects.filter(is_superuser=True).first()
    created = 0
    for number in range(contacts):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{first}.{last}{number}@{rng.choice(DOMAINS)}".lower()
        if Contact.objects.filter(email_normalized=email).exists():
            continue
        joined = now - timedelta(days=rng.randint(1, 700), minutes=rng.randint(0, 1440))
        contact = Contact.objects.create(
            email=email,
            first_name=first,
            last_name=last,
            company=rng.choice(COMPANIES),
            time_zone=rng.choice(TIME_ZONES),
            language=rng.choice(["en", "de", "fr", "pt-BR"]),
            source=rng.choice([ContactSource.FORM, ContactSource.IMPORT, ContactSource.ADMIN]),
            properties={"plan": rng.choice(["free", "pro", "enterprise"])},
            engagement_status=rng.choices(list(EngagementStatus), weights=[2, 6, 2])[0],
        )
        Contact.objects.filter(pk=contact.pk).update(created_at=joined)
        created += 1
        for subscription_type in rng.sample(types, rng.randint(0, len(types))):
            _give_history(rng, contact, subscription_type, joined, staff)
        roll = rng.random()
        if roll < 0.04:
            consent.unsubscribe_from_all(
                Contact.objects.filter(pk=contact.pk),
                method=ConsentMethod.UNSUBSCRIBE_LINK,
                now=joined + timedelta(days=90),
            )
        elif roll < 0.07:
            Contact.objects.filter(pk=contact.pk).update(email_status=EmailStatus.HARD_BOUNCED)
            suppression.suppress_contacts(
                Contact.objects.filter(pk=contact.pk),
                reason=SuppressionReason.HARD_BOUNCE,
                now=joined + timedelta(days=30),
                source="demo: 550 5.1.1 user unknown",
            )
    return created


def _give_history(rng, contact, subscription_type, joined, staff) -> None:
    ip = f"203.0.113.{rng.randint(1, 254)}"
    agent = "Mozilla/5.0 (demo browser)"
    text = CONSENT_TEXT.format(name=subscription_type.name.lower())
    path = rng.random()
    if path < 0.55:
        # A signup form with double opt-in: granted, then confirmed a few minutes later.
        Subscription.objects.create(contact=contact, subscription_type=subscription_type)
        consent.record_consent(
            contact,
            action=ConsentAction.GRANTED,
            method=ConsentMethod.FORM,
            now=joined,
            subscription_type=subscription_type,
            consent_text=text,
            ip_address=ip,
            user_agent=agent,
            source_detail="form: website footer",
        )
        if rng.random() < 0.15:
            return
        confirmed = joined + timedelta(minutes=rng.randint(1, 600))
        Subscription.objects.filter(contact=contact, subscription_type=subscription_type).update(
            status=SubscriptionStatus.SUBSCRIBED, subscribed_at=confirmed
        )
        consent.record_consent(
            contact,
            action=ConsentAction.CONFIRMED,
            method=ConsentMethod.DOUBLE_OPT_IN,
            now=confirmed,
            subscription_type=subscription_type,
            ip_address=ip,
            user_agent=agent,
        )
    elif path < 0.85:
        consent.subscribe_contact(
            contact,
            subscription_type,
            method=ConsentMethod.IMPORT,
            now=joined,
            source_detail="import: mailchimp-subscribed.csv",
            evidence={"source_system": "Mailchimp", "OPTIN_TIME": joined.isoformat(), "OPTIN_IP": ip},
        )
    else:
        consent.subscribe_contact(
            contact,
            subscription_type,
            method=ConsentMethod.STAFF,
            now=joined,
            staff_user=staff,
            lawful_basis=LawfulBasis.LEGITIMATE_INTEREST,
            source_detail="admin: demo",
            consent_text="Met at a trade fair; asked to receive updates.",
        )
    if rng.random() < 0.1:
        consent.unsubscribe_contact(
            contact, subscription_type, method=ConsentMethod.PREFERENCE_CENTER, now=joined + timedelta(days=60)
        )
