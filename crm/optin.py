"""How people get in and out: signup, double opt-in, preference changes, unsubscribe links.

Every state change writes the consent log. Nothing here tells a caller whether an address
was already known: the public views answer the same way whatever happened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string

from crm import consent, links, signals, suppression
from crm.addresses import parse_address
from crm.models import (
    ConsentAction,
    ConsentMethod,
    Contact,
    ContactSource,
    EmailStatus,
    SignupForm,
    Subscription,
    SubscriptionStatus,
    SubscriptionType,
    SuppressionReason,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Visitor:
    """Who is acting on a public page, as far as the request tells."""

    ip_address: str | None = None
    user_agent: str = ""

    def evidence(self) -> dict:
        return {"ip_address": self.ip_address, "user_agent": self.user_agent[:1000]}


@dataclass
class Outcome:
    """What changed, for the page shown afterwards (never for telling strangers anything)."""

    subscribed: list[SubscriptionType] = field(default_factory=list)
    pending: list[SubscriptionType] = field(default_factory=list)
    unsubscribed: list[SubscriptionType] = field(default_factory=list)
    unsubscribed_from_all: bool = False


def _may_receive_system_mail(contact: Contact) -> bool:
    return contact.email_status == EmailStatus.OK and not suppression.blocks_signup(contact.email_normalized)


def _request_subscription(
    contact: Contact,
    subscription_type: SubscriptionType,
    subscription: Subscription | None,
    *,
    method: ConsentMethod,
    now: datetime,
    **evidence,
) -> None:
    """Set one subscription (None: not created yet) to pending and log the unconfirmed grant.

    Callers hold the contact's row lock, so nobody else creates the subscription meanwhile.
    """
    if subscription is None:
        subscription = Subscription(contact=contact, subscription_type=subscription_type)
    elif subscription.status == SubscriptionStatus.PENDING and subscription.requested_at is not None:
        return
    subscription.status = SubscriptionStatus.PENDING
    subscription.requested_at = now
    subscription.confirmation_sent_at = None
    subscription.save()
    consent.record_consent(
        contact, action=ConsentAction.GRANTED, method=method, now=now, subscription_type=subscription_type, **evidence
    )


def _needs_confirmation(contact: Contact, subscription: Subscription | None, *, double_opt_in: bool) -> bool:
    # A person who opted out comes back only through confirmation, whatever the form says.
    return (
        double_opt_in
        or contact.is_unsubscribed_from_all()
        or contact.is_suppressed()
        or (subscription is not None and subscription.status == SubscriptionStatus.UNSUBSCRIBED)
    )


@transaction.atomic
def submit_signup(
    signup_form: SignupForm,
    *,
    email: str,
    subscription_type_ids: list[int],
    visitor: Visitor,
    now: datetime,
    first_name: str = "",
    last_name: str = "",
    company: str = "",
) -> None:
    """Handle one valid signup form submission.

    Creates or finds the contact, sets the chosen subscriptions to pending (or subscribed
    when no confirmation is needed) with a consent record each, and queues the confirmation
    email. A suppressed (bounced, complained) address gets no mail and no change.
    """
    address = parse_address(email)
    if suppression.blocks_signup(address.normalized):
        logger.info("signup for a blocked address ignored (form %s)", signup_form.slug)
        return
    contact, _ = Contact.objects.select_for_update().get_or_create(
        email_normalized=address.normalized, defaults={"email": address.given, "source": ContactSource.FORM}
    )
    if contact.email_status != EmailStatus.OK:
        return
    # Strangers can submit any address, so known details are only filled in, never replaced.
    filled = {
        name: value.strip()[:150]
        for name, value in {"first_name": first_name, "last_name": last_name, "company": company}.items()
        if value.strip() and not getattr(contact, name)
    }
    if filled:
        Contact.objects.filter(pk=contact.pk).update(**filled, updated_at=now)
    offered = SubscriptionType.objects.filter(
        pk__in=signup_form.offers.values("subscription_type"), active=True
    ).filter(pk__in=subscription_type_ids)
    current = {s.subscription_type_id: s for s in Subscription.objects.filter(contact=contact)}
    evidence = {
        "signup_form_id": signup_form.pk,
        "source_detail": f"form: {signup_form.slug}",
        "consent_text": signup_form.consent_text,
        **visitor.evidence(),
    }
    wants_confirmation = False
    for subscription_type in offered:
        subscription = current.get(subscription_type.pk)
        if subscription is not None and subscription.status == SubscriptionStatus.SUBSCRIBED:
            continue
        double_opt_in = signup_form.double_opt_in or subscription_type.requires_double_opt_in
        if _needs_confirmation(contact, subscription, double_opt_in=double_opt_in):
            _request_subscription(
                contact, subscription_type, subscription, method=ConsentMethod.FORM, now=now, **evidence
            )
            wants_confirmation = True
        else:
            consent.subscribe_contact(contact, subscription_type, method=ConsentMethod.FORM, now=now, **evidence)
    if wants_confirmation:
        request_confirmation(contact, now=now, signup_form_id=signup_form.pk)


def request_confirmation(contact: Contact, *, now: datetime, signup_form_id: int | None = None) -> bool:
    """Queue a confirmation email for the contact's pending subscriptions.

    At most one per CONFIRMATION_RESEND_MINUTES, unless a subscription was added since the
    last one. Returns whether an email was queued.
    """
    pending = Subscription.objects.filter(contact=contact, status=SubscriptionStatus.PENDING)
    since = now - timedelta(minutes=settings.CONFIRMATION_RESEND_MINUTES)
    never_sent = pending.filter(confirmation_sent_at__isnull=True).exists()
    if not never_sent and pending.filter(confirmation_sent_at__gt=since).exists():
        return False
    type_ids = list(pending.values_list("subscription_type_id", flat=True))
    if not type_ids:
        return False
    pending.update(confirmation_sent_at=now)
    from crm import tasks  # crm.tasks imports this module: import at call time.

    tasks.send_confirmation_email.delay_on_commit(contact.pk, type_ids, signup_form_id)
    return True


def resend_confirmation(email: str, *, now: datetime, contact_id: int | None = None) -> bool:
    """Ask for a new confirmation link for an address (and contact id, from an old link).

    Subject to the same once-per-interval limit as signups. Returns whether one was queued;
    callers must not tell the visitor.
    """
    contacts = Contact.objects.filter(email_normalized=email)
    if contact_id is not None:
        contacts = contacts.filter(pk=contact_id)
    contact = contacts.first()
    if contact is None or not _may_receive_system_mail(contact):
        return False
    return request_confirmation(contact, now=now)


def send_confirmation_email(contact_id: int, subscription_type_ids: list[int], signup_form_id: int | None) -> bool:
    """Send the double opt-in email. Returns False (sending nothing) if there is nothing to confirm."""
    contact = Contact.objects.filter(pk=contact_id).first()
    if contact is None or not _may_receive_system_mail(contact):
        return False
    types = list(
        SubscriptionType.objects.filter(
            pk__in=Subscription.objects.filter(
                contact=contact, subscription_type_id__in=subscription_type_ids, status=SubscriptionStatus.PENDING
            ).values("subscription_type")
        )
    )
    if not types:
        return False
    signup_form = SignupForm.objects.filter(pk=signup_form_id).first() if signup_form_id else None
    context = {
        "contact": contact,
        "subscription_types": types,
        "signup_form": signup_form,
        "confirm_url": links.confirm_url(contact, [t.pk for t in types], signup_form_id=signup_form_id),
        "expiry_days": settings.DOUBLE_OPT_IN_EXPIRY_DAYS,
    }
    message = EmailMultiAlternatives(
        subject="Please confirm your subscription",
        body=render_to_string("crm/email/confirm.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[contact.email],
        headers={"Auto-Submitted": "auto-generated"},
    )
    message.attach_alternative(render_to_string("crm/email/confirm.html", context), "text/html")
    message.send()
    return True


def contact_for(contact_id: int, email: str) -> Contact | None:
    """The contact a link was made for, or None if it was deleted or its address changed since."""
    return Contact.objects.filter(pk=contact_id, email_normalized=email).first()


@transaction.atomic
def confirm_subscriptions(request: links.ConfirmRequest, *, visitor: Visitor, now: datetime) -> Outcome:
    """Confirm the pending subscriptions a confirmation link names. Confirming twice is harmless."""
    outcome = Outcome()
    contact = contact_for(request.contact_id, request.email)
    if contact is None or not _may_receive_system_mail(contact):
        return outcome
    subscriptions = Subscription.objects.select_for_update().filter(
        contact=contact, subscription_type_id__in=request.subscription_type_ids
    )
    for subscription in subscriptions.select_related("subscription_type"):
        if subscription.status == SubscriptionStatus.PENDING:
            subscription.status = SubscriptionStatus.SUBSCRIBED
            subscription.subscribed_at = now
            subscription.unsubscribed_at = None
            subscription.save()
            consent.record_consent(
                contact,
                action=ConsentAction.CONFIRMED,
                method=ConsentMethod.DOUBLE_OPT_IN,
                now=now,
                subscription_type=subscription.subscription_type,
                signup_form_id=request.signup_form_id,
                source_detail="confirmation link",
                **visitor.evidence(),
            )
        if subscription.status == SubscriptionStatus.SUBSCRIBED:
            outcome.subscribed.append(subscription.subscription_type)
    if outcome.subscribed and contact.is_unsubscribed_from_all():
        # A confirmed opt-in is the person coming back: their earlier opt-out no longer applies.
        Contact.objects.filter(pk=contact.pk).update(unsubscribed_from_all_at=None, updated_at=now)
        suppression.lift_opt_out_suppressions(contact.email_normalized)
    return outcome


@transaction.atomic
def update_preferences(ref: links.ContactRef, *, wanted_type_ids: set[int], visitor: Visitor, now: datetime) -> Outcome:
    """Apply a preference-center form: subscribe to what is ticked, unsubscribe from the rest.

    Coming back to a type one left, or after unsubscribing from all, needs a confirmation
    email; so does a type that requires double opt-in.
    """
    outcome = Outcome()
    contact = Contact.objects.select_for_update().filter(pk=ref.contact_id, email_normalized=ref.email).first()
    if contact is None:
        return outcome
    evidence = {"source_detail": "preference center", **visitor.evidence()}
    current = {s.subscription_type_id: s for s in Subscription.objects.filter(contact=contact)}
    for subscription_type in SubscriptionType.objects.filter(public=True, active=True):
        subscription = current.get(subscription_type.pk)
        status = subscription.status if subscription else None
        if subscription_type.pk in wanted_type_ids:
            if status in {SubscriptionStatus.SUBSCRIBED, SubscriptionStatus.PENDING} or not _may_receive_system_mail(
                contact
            ):
                continue
            if _needs_confirmation(contact, subscription, double_opt_in=subscription_type.requires_double_opt_in):
                _request_subscription(
                    contact,
                    subscription_type,
                    subscription,
                    method=ConsentMethod.PREFERENCE_CENTER,
                    now=now,
                    **evidence,
                )
                outcome.pending.append(subscription_type)
            else:
                consent.subscribe_contact(
                    contact, subscription_type, method=ConsentMethod.PREFERENCE_CENTER, now=now, **evidence
                )
                outcome.subscribed.append(subscription_type)
        elif status in {SubscriptionStatus.SUBSCRIBED, SubscriptionStatus.PENDING}:
            consent.unsubscribe_contact(
                contact, subscription_type, method=ConsentMethod.PREFERENCE_CENTER, now=now, **evidence
            )
            outcome.unsubscribed.append(subscription_type)
    if outcome.pending:
        request_confirmation(contact, now=now)
    return outcome


@transaction.atomic
def unsubscribe_by_link(ref: links.ContactRef, *, visitor: Visitor, now: datetime, everything: bool = False) -> Outcome:
    """Unsubscribe whoever a link belongs to, from its subscription type or from everything.

    Never fails: if the contact was deleted, the address is suppressed instead, so a later
    import cannot bring it back. Idempotent.
    """
    outcome = Outcome()
    contact = contact_for(ref.contact_id, ref.email)
    subscription_type = None
    if ref.subscription_type_id is not None and not everything:
        subscription_type = SubscriptionType.objects.filter(pk=ref.subscription_type_id).first()
    evidence = {"source_detail": f"unsubscribe link{f' (send {ref.send_id})' if ref.send_id else ''}"}
    if contact is None:
        suppression.suppress_address(
            ref.email, reason=SuppressionReason.UNSUBSCRIBE, now=now, source=evidence["source_detail"]
        )
        outcome.unsubscribed_from_all = True
    elif subscription_type is None:
        consent.unsubscribe_from_all(
            Contact.objects.filter(pk=contact.pk),
            method=ConsentMethod.UNSUBSCRIBE_LINK,
            now=now,
            **evidence,
            **visitor.evidence(),
        )
        outcome.unsubscribed_from_all = True
    else:
        consent.unsubscribe_contact(
            contact, subscription_type, method=ConsentMethod.UNSUBSCRIBE_LINK, now=now, **evidence, **visitor.evidence()
        )
        outcome.unsubscribed.append(subscription_type)
    # After the commit, and robust: whatever listeners do, the unsubscribe itself stands.
    transaction.on_commit(
        partial(
            signals.unsubscribed_by_link.send,
            sender=unsubscribe_by_link,
            send_id=ref.send_id,
            email=ref.email,
            everything=outcome.unsubscribed_from_all,
            now=now,
        ),
        robust=True,
    )
    return outcome


def clean_up_pending_subscriptions(*, now: datetime) -> int:
    """Drop requests never confirmed within PENDING_SUBSCRIPTION_CLEANUP_DAYS, set-based.

    A request by someone who had unsubscribed returns to unsubscribed; a first-time request is
    removed. The consent log keeps the unconfirmed grant either way. Returns how many expired.
    """
    cutoff = now - timedelta(days=settings.PENDING_SUBSCRIPTION_CLEANUP_DAYS)
    stale = Subscription.objects.filter(status=SubscriptionStatus.PENDING, requested_at__lt=cutoff)
    returned = stale.filter(unsubscribed_at__isnull=False).update(
        status=SubscriptionStatus.UNSUBSCRIBED, requested_at=None, updated_at=now
    )
    removed, _ = stale.filter(unsubscribed_at__isnull=True).delete()
    return returned + removed
