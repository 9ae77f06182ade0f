"""The send gate (DESIGN invariant 1): may this campaign go to this contact now?

One rule, in two forms kept side by side: `refusal()` for one contact and `annotate_refusal()`
in SQL for a whole audience or batch. It adds the frequency cap and an active repair plan's
audience and daily volume (through `extensions.repair_limit`) to the marketing-eligibility rule
of crm.eligibility. The pipeline asks it when the audience is built and again for each batch at
the moment of hand-off, because someone may have unsubscribed a second ago.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Case, Count, F, OuterRef, Subquery, Value, When, Window
from django.db.models.functions import Coalesce, RowNumber

from campaigns.extensions import extensions
from campaigns.models import HANDED_OVER, Campaign, GateRefusal, Send
from crm.eligibility import annotate_ineligibility, marketing_ineligibility
from crm.models import Contact


def _recent_sends(contact_ref, campaign: Campaign, now: datetime):
    window_start = now - timedelta(days=settings.FREQUENCY_CAP_DAYS)
    recent = (
        Send.objects.filter(contact=contact_ref, status__in=HANDED_OVER, first_attempt_at__gte=window_start)
        .exclude(campaign=campaign)
        .values("contact")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return Coalesce(Subquery(recent[:1]), 0)


def refusal(contact: Contact, campaign: Campaign, *, now: datetime) -> str | None:
    """Why `campaign` may not go to `contact` now, or None if it may."""
    reason = marketing_ineligibility(contact, campaign.subscription_type, include_unengaged=campaign.include_unengaged)
    if reason is not None:
        return reason
    recent = Contact.objects.filter(pk=contact.pk).annotate(recent=_recent_sends(OuterRef("pk"), campaign, now))
    if recent.values_list("recent", flat=True).get() >= settings.FREQUENCY_CAP_EMAILS:
        return GateRefusal.FREQUENCY_CAP
    limit = extensions.repair_limit(campaign, now)
    if limit is not None:
        if not Contact.objects.filter(pk=contact.pk).filter(limit.audience).exists():
            return GateRefusal.REPAIR_PLAN
        if limit.remaining_today <= 0:
            return GateRefusal.REPAIR_PLAN_CAP
    return None


def annotate_refusal(contacts: models.QuerySet[Contact], campaign: Campaign, *, now: datetime):
    """Annotate each contact with `refusal`: the first reason the gate refuses it, or None.

    Under a repair plan's daily cap, the contacts the rest of the rule lets through are ranked
    most recently engaged first, and those past the day's remaining volume are refused.
    """
    contacts = annotate_ineligibility(
        contacts, campaign.subscription_type, include_unengaged=campaign.include_unengaged
    ).alias(recent_sends=_recent_sends(OuterRef("pk"), campaign, now))
    capped = When(recent_sends__gte=settings.FREQUENCY_CAP_EMAILS, then=Value(GateRefusal.FREQUENCY_CAP.value))
    limit = extensions.repair_limit(campaign, now)
    if limit is None:
        return contacts.annotate(
            refusal=Coalesce("ineligibility", Case(capped, default=Value(None), output_field=models.CharField()))
        )
    # An empty audience filter is everyone (a re-permission campaign on the plan's last step).
    outside = [When(~limit.audience, then=Value(GateRefusal.REPAIR_PLAN.value))] if limit.audience else []
    # The ranking below mentions this again: every mention of an annotation repeats its SQL, the
    # gate's subqueries included, so each is written to be mentioned once.
    contacts = contacts.alias(
        uncapped=Coalesce(
            "ineligibility",
            Case(capped, *outside, default=Value(None), output_field=models.CharField()),
            output_field=models.CharField(),
        )
    ).alias(
        place=Window(
            RowNumber(),
            partition_by=[Case(When(uncapped__isnull=True, then=Value(1)), default=Value(0))],
            order_by=[F("last_engaged_at").desc(nulls_last=True), F("pk").asc()],
        )
    )
    return contacts.annotate(
        refusal=Coalesce(
            "uncapped",
            Case(
                When(place__gt=limit.remaining_today, then=Value(GateRefusal.REPAIR_PLAN_CAP.value)),
                default=Value(None),
                output_field=models.CharField(),
            ),
            output_field=models.CharField(),
        )
    )
