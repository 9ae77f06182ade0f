"""Marketing eligibility: may this contact get marketing email of this subscription type now?

The rule exists twice on purpose, in one module: `marketing_ineligibility()` answers for one
contact (the send gate calls it at hand-off), `eligible_contacts()` and
`annotate_ineligibility()` answer for a whole table in SQL (audience building, the
"who would be skipped and why" count). A test compares them on a generated population;
change them together.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Case, Exists, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce, NullIf

from crm.models import (
    ConsentAction,
    ConsentRecord,
    Contact,
    EmailStatus,
    EngagementStatus,
    Subscription,
    SubscriptionStatus,
    SubscriptionType,
    Suppression,
)


class Ineligibility(models.TextChoices):
    """Why a contact may not get marketing email, in the order the rule checks them."""

    SUBSCRIPTION_TYPE_INACTIVE = "type_inactive", "Subscription type is inactive"
    DO_NOT_CONTACT = "do_not_contact", "Asked not to be contacted at all"
    HARD_BOUNCED = "hard_bounced", "Address hard-bounced"
    COMPLAINED = "complained", "Contact complained (marked as spam)"
    INVALID = "invalid", "Address is invalid"
    UNSUBSCRIBED_FROM_ALL = "unsubscribed_all", "Unsubscribed from all marketing email"
    SUPPRESSED = "suppressed", "Address is suppressed"
    NOT_SUBSCRIBED = "not_subscribed", "Not subscribed to this type"
    PENDING_CONFIRMATION = "pending", "Subscription awaits double opt-in confirmation"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed from this type"
    NO_CONSENT = "no_consent", "No verifiable consent for this type"
    UNENGAGED = "unengaged", "Contact is unengaged"


_EMAIL_STATUS_REASONS = {
    EmailStatus.HARD_BOUNCED: Ineligibility.HARD_BOUNCED,
    EmailStatus.COMPLAINED: Ineligibility.COMPLAINED,
    EmailStatus.INVALID: Ineligibility.INVALID,
}
_SUBSCRIPTION_REASONS = {
    SubscriptionStatus.PENDING: Ineligibility.PENDING_CONFIRMATION,
    SubscriptionStatus.UNSUBSCRIBED: Ineligibility.UNSUBSCRIBED,
}
_CONSENTING_ACTIONS = [ConsentAction.GRANTED, ConsentAction.CONFIRMED]


def _latest_consent_action(contact_ref, subscription_type: SubscriptionType) -> Subquery:
    # Consent is verifiable when the newest record for this type (or for "all") grants it:
    # a later withdrawal, from this type or from everything, cancels earlier grants.
    records = ConsentRecord.objects.filter(contact=contact_ref).filter(
        Q(subscription_type=subscription_type) | Q(subscription_type__isnull=True)
    )
    return Subquery(records.order_by("-created_at", "-id").values("action")[:1])


def marketing_ineligibility(
    contact: Contact, subscription_type: SubscriptionType, *, include_unengaged: bool = False
) -> Ineligibility | None:
    """Return why `contact` may not get marketing email of `subscription_type`, or None if it may."""
    if not subscription_type.active:
        return Ineligibility.SUBSCRIPTION_TYPE_INACTIVE
    if contact.do_not_contact:
        return Ineligibility.DO_NOT_CONTACT
    if contact.email_status in _EMAIL_STATUS_REASONS:
        return _EMAIL_STATUS_REASONS[contact.email_status]
    if contact.is_unsubscribed_from_all():
        return Ineligibility.UNSUBSCRIBED_FROM_ALL
    if contact.is_suppressed():
        return Ineligibility.SUPPRESSED
    status = (
        Subscription.objects.filter(contact=contact, subscription_type=subscription_type)
        .values_list("status", flat=True)
        .first()
    )
    if status is None:
        return Ineligibility.NOT_SUBSCRIBED
    if status in _SUBSCRIPTION_REASONS:
        return _SUBSCRIPTION_REASONS[status]
    latest = (
        Contact.objects.filter(pk=contact.pk)
        .annotate(action=_latest_consent_action(OuterRef("pk"), subscription_type))
        .values_list("action", flat=True)
        .first()
    )
    if latest not in _CONSENTING_ACTIONS:
        return Ineligibility.NO_CONSENT
    if not include_unengaged and contact.engagement_status == EngagementStatus.UNENGAGED:
        return Ineligibility.UNENGAGED
    return None


def eligible_contacts(
    subscription_type: SubscriptionType,
    *,
    include_unengaged: bool = False,
    contacts: models.QuerySet[Contact] | None = None,
) -> models.QuerySet[Contact]:
    """The contacts (of `contacts`, default all) that may get marketing email of this type, in SQL."""
    contacts = Contact.objects.all() if contacts is None else contacts
    if not subscription_type.active:
        return contacts.none()
    eligible = (
        contacts.filter(email_status=EmailStatus.OK, unsubscribed_from_all_at__isnull=True, do_not_contact=False)
        .filter(
            Exists(
                Subscription.objects.filter(
                    contact=OuterRef("pk"),
                    subscription_type=subscription_type,
                    status=SubscriptionStatus.SUBSCRIBED,
                )
            )
        )
        .exclude(Exists(Suppression.objects.filter(email=OuterRef("email_normalized"))))
        .alias(latest_consent=_latest_consent_action(OuterRef("pk"), subscription_type))
        .filter(latest_consent__in=_CONSENTING_ACTIONS)
    )
    if not include_unengaged:
        eligible = eligible.exclude(engagement_status=EngagementStatus.UNENGAGED)
    return eligible


def annotate_ineligibility(
    contacts: models.QuerySet[Contact], subscription_type: SubscriptionType, *, include_unengaged: bool = False
) -> models.QuerySet[Contact]:
    """Annotate each contact with `ineligibility`: the first reason it may not be mailed, or None."""
    if not subscription_type.active:
        return contacts.annotate(ineligibility=Value(Ineligibility.SUBSCRIPTION_TYPE_INACTIVE.value))
    # Each subquery appears once: a database works out every mention of one again, and this runs
    # over whole audiences. Coalesce stops at the first reason, as the rule's order says.
    text = models.CharField()
    whens = [When(do_not_contact=True, then=Value(Ineligibility.DO_NOT_CONTACT.value))]
    whens += [
        When(email_status=email_status, then=Value(reason.value))
        for email_status, reason in _EMAIL_STATUS_REASONS.items()
    ]
    whens.append(When(unsubscribed_from_all_at__isnull=False, then=Value(Ineligibility.UNSUBSCRIBED_FROM_ALL.value)))
    whens.append(
        When(
            Exists(Suppression.objects.filter(email=OuterRef("email_normalized"))),
            then=Value(Ineligibility.SUPPRESSED.value),
        )
    )
    # '' for a subscription that may be mailed, NULL for none at all.
    subscription_reason = Subquery(
        Subscription.objects.filter(contact=OuterRef("pk"), subscription_type=subscription_type)
        .annotate(
            reason=Case(
                *(When(status=status, then=Value(reason.value)) for status, reason in _SUBSCRIPTION_REASONS.items()),
                default=Value(""),
                output_field=text,
            )
        )
        .values("reason")[:1]
    )
    reasons = [
        Case(*whens, default=Value(None), output_field=text),
        NullIf(Coalesce(subscription_reason, Value(Ineligibility.NOT_SUBSCRIBED.value)), Value("")),
        # No record at all is no consent either: NULL is not in the list.
        Case(
            When(latest_consent__in=_CONSENTING_ACTIONS, then=Value(None)),
            default=Value(Ineligibility.NO_CONSENT.value),
            output_field=text,
        ),
    ]
    if not include_unengaged:
        reasons.append(
            Case(
                When(engagement_status=EngagementStatus.UNENGAGED, then=Value(Ineligibility.UNENGAGED.value)),
                default=Value(None),
                output_field=text,
            )
        )
    return contacts.alias(latest_consent=_latest_consent_action(OuterRef("pk"), subscription_type)).annotate(
        ineligibility=Coalesce(*reasons, output_field=text)
    )
