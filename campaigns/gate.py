"""The send gate (DESIGN invariant 1): may this campaign go to this contact now?

One rule, in two forms kept side by side: `refusal()` for one contact and `annotate_refusal()`
in SQL for a whole audience or batch. It adds the frequency cap to the marketing-eligibility
rule of crm.eligibility. The pipeline asks it when the audience is built and again for each
batch at the moment of hand-off, because someone may have unsubscribed a second ago.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Case, Count, OuterRef, Subquery, Value, When
from django.db.models.functions import Coalesce

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
    return None


def annotate_refusal(contacts: models.QuerySet[Contact], campaign: Campaign, *, now: datetime):
    """Annotate each contact with `refusal`: the first reason the gate refuses it, or None."""
    return (
        annotate_ineligibility(contacts, campaign.subscription_type, include_unengaged=campaign.include_unengaged)
        .alias(recent_sends=_recent_sends(OuterRef("pk"), campaign, now))
        .annotate(
            refusal=Case(
                When(ineligibility__isnull=False, then="ineligibility"),
                When(recent_sends__gte=settings.FREQUENCY_CAP_EMAILS, then=Value(GateRefusal.FREQUENCY_CAP.value)),
                default=Value(None),
                output_field=models.CharField(),
            )
        )
    )
