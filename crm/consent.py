"""Consent: every change to who may be mailed writes the consent log in the same transaction."""

from __future__ import annotations

from datetime import datetime
from ipaddress import ip_address as parse_ip

from django.contrib.auth.models import AbstractBaseUser
from django.db import models, transaction
from django.db.models import F, Value
from django.db.models.functions import Cast

from crm import suppression
from crm.bulk import insert_from_select
from crm.models import (
    ConsentAction,
    ConsentMethod,
    ConsentRecord,
    Contact,
    LawfulBasis,
    Subscription,
    SubscriptionStatus,
    SubscriptionType,
    SuppressionReason,
)


def clean_ip(value: str | None) -> str | None:
    """The address in canonical form, or None if it is missing or not an IP address."""
    try:
        return str(parse_ip((value or "").strip()))
    except ValueError:
        return None


def record_consent(
    contact: Contact,
    *,
    action: ConsentAction,
    method: ConsentMethod,
    now: datetime,
    subscription_type: SubscriptionType | None = None,
    lawful_basis: LawfulBasis = LawfulBasis.CONSENT,
    source_detail: str = "",
    staff_user: AbstractBaseUser | None = None,
    signup_form_id: int | None = None,
    consent_text: str = "",
    ip_address: str | None = None,
    user_agent: str = "",
    evidence: dict | None = None,
) -> ConsentRecord:
    """Append one entry to the consent log. An unparseable IP is stored as None, not refused."""
    return ConsentRecord.objects.create(
        contact=contact,
        email=contact.email_normalized,
        subscription_type=subscription_type,
        action=action,
        method=method,
        lawful_basis=lawful_basis,
        source_detail=source_detail[:255],
        staff_user=staff_user,
        signup_form_id=signup_form_id,
        consent_text=consent_text,
        ip_address=clean_ip(ip_address),
        user_agent=user_agent,
        evidence=evidence or {},
        created_at=now,
    )


def staff_subscribe_refusal(contact: Contact, subscription_type: SubscriptionType) -> str | None:
    """Why staff may not subscribe `contact` to `subscription_type`, or None if they may.

    Only the person can undo their own opt-out (through a signup form and confirmation), and
    a suppressed address stays out of marketing email whatever staff choose.
    """
    if contact.is_unsubscribed_from_all():
        return "This contact unsubscribed from all marketing email; only they can opt in again."
    if contact.is_suppressed():
        return "This address is suppressed; it cannot be subscribed."
    if (
        contact.pk
        and Subscription.objects.filter(
            contact=contact, subscription_type=subscription_type, status=SubscriptionStatus.UNSUBSCRIBED
        ).exists()
    ):
        return f"This contact unsubscribed from {subscription_type}; only they can opt in again."
    return None


@transaction.atomic
def subscribe_contact(
    contact: Contact, subscription_type: SubscriptionType, *, method: ConsentMethod, now: datetime, **evidence
) -> Subscription:
    """Subscribe `contact` to `subscription_type` and log the granted consent.

    `evidence` takes record_consent's keyword options (consent_text, ip_address, …).
    """
    subscription, _ = Subscription.objects.select_for_update().get_or_create(
        contact=contact, subscription_type=subscription_type
    )
    subscription.status = SubscriptionStatus.SUBSCRIBED
    subscription.subscribed_at = now
    subscription.unsubscribed_at = None
    subscription.save()
    record_consent(
        contact, action=ConsentAction.GRANTED, method=method, now=now, subscription_type=subscription_type, **evidence
    )
    return subscription


@transaction.atomic
def unsubscribe_contact(
    contact: Contact, subscription_type: SubscriptionType, *, method: ConsentMethod, now: datetime, **evidence
) -> Subscription:
    """Unsubscribe `contact` from one type and log the withdrawal. Idempotent: a second call logs nothing."""
    subscription, created = Subscription.objects.select_for_update().get_or_create(
        contact=contact,
        subscription_type=subscription_type,
        defaults={"status": SubscriptionStatus.UNSUBSCRIBED, "unsubscribed_at": now},
    )
    if not created and subscription.status == SubscriptionStatus.UNSUBSCRIBED:
        return subscription
    subscription.status = SubscriptionStatus.UNSUBSCRIBED
    subscription.unsubscribed_at = now
    subscription.save()
    record_consent(
        contact, action=ConsentAction.WITHDRAWN, method=method, now=now, subscription_type=subscription_type, **evidence
    )
    return subscription


@transaction.atomic
def unsubscribe_from_all(
    contacts: models.QuerySet[Contact],
    *,
    method: ConsentMethod,
    now: datetime,
    staff_user: AbstractBaseUser | None = None,
    source_detail: str = "",
    ip_address: str | None = None,
    user_agent: str = "",
) -> int:
    """Unsubscribe every contact in `contacts` from all marketing email, set-based.

    Writes one withdrawal per contact to the consent log and suppresses the addresses so a
    re-import cannot bring them back. Contacts already unsubscribed from all are left alone.
    Returns how many contacts changed.
    """
    targets = Contact.objects.filter(pk__in=contacts.values("pk"), unsubscribed_from_all_at__isnull=True)
    changed = insert_from_select(
        ConsentRecord,
        targets.annotate(
            c_contact=F("pk"),
            c_email=F("email_normalized"),
            c_action=Value(ConsentAction.WITHDRAWN.value),
            c_method=Value(method.value),
            c_basis=Value(LawfulBasis.NOT_APPLICABLE.value),
            c_source=Value(source_detail[:255]),
            # A bare NULL in a sub-SELECT is typed text on PostgreSQL; the cast keeps it an integer.
            c_staff=Cast(Value(staff_user.pk if staff_user else None), models.IntegerField()),
            c_text=Value(""),
            # Cast for the same reason as c_staff: the IP is often NULL.
            c_ip=Cast(Value(clean_ip(ip_address)), models.GenericIPAddressField()),
            c_agent=Value(user_agent),
            c_evidence=Value({}, output_field=models.JSONField()),
            c_created=Value(now, output_field=models.DateTimeField()),
        ),
        {
            "contact": "c_contact",
            "email": "c_email",
            "action": "c_action",
            "method": "c_method",
            "lawful_basis": "c_basis",
            "source_detail": "c_source",
            "staff_user": "c_staff",
            "consent_text": "c_text",
            "ip_address": "c_ip",
            "user_agent": "c_agent",
            "evidence": "c_evidence",
            "created_at": "c_created",
        },
    )
    suppression.suppress_contacts(
        targets,
        reason=SuppressionReason.UNSUBSCRIBE,
        now=now,
        source=source_detail or method.label,
        created_by=staff_user,
    )
    Subscription.objects.filter(contact__in=targets.values("pk")).exclude(
        status=SubscriptionStatus.UNSUBSCRIBED
    ).update(status=SubscriptionStatus.UNSUBSCRIBED, unsubscribed_at=now, updated_at=now)
    targets.update(unsubscribed_from_all_at=now, updated_at=now)
    return changed
