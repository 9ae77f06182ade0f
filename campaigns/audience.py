"""Who a campaign goes to, and the per-recipient Send rows, built set-based.

The audience is the members of the campaign's lists and the contacts matching its segments
(with neither, every contact with a subscription row of its type), minus the members of its
exclusion lists and segments. Each gets one Send
row in one INSERT … SELECT: queued, or skipped with the gate's reason, so the admin can show
who would be skipped and why before anything is sent.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import models
from django.db.models import Case, Count, Exists, F, OuterRef, Q, Value, When
from django.db.models.functions import Coalesce

from campaigns.gate import annotate_refusal
from campaigns.models import Campaign, ListMembership, Send, SendStatus
from crm.bulk import insert_from_select
from crm.models import Contact, Subscription


def audience(campaign: Campaign, *, now: datetime) -> models.QuerySet[Contact]:
    lists = list(campaign.lists.values_list("pk", flat=True))
    segments = list(campaign.segments.prefetch_related("in_lists"))
    if lists or segments:
        included = Q(pk__in=[])
        if lists:
            included |= Exists(ListMembership.objects.filter(contact=OuterRef("pk"), contact_list_id__in=lists))
        for segment in segments:
            included |= segment.conditions(now=now)
        contacts = Contact.objects.filter(included)
    else:
        contacts = Contact.objects.filter(
            Exists(Subscription.objects.filter(contact=OuterRef("pk"), subscription_type=campaign.subscription_type))
        )
    excluded_lists = list(campaign.exclude_lists.values_list("pk", flat=True))
    if excluded_lists:
        contacts = contacts.exclude(
            Exists(ListMembership.objects.filter(contact=OuterRef("pk"), contact_list_id__in=excluded_lists))
        )
    for segment in campaign.exclude_segments.prefetch_related("in_lists"):
        contacts = contacts.exclude(segment.conditions(now=now))
    return contacts


def preview(campaign: Campaign, *, now: datetime) -> tuple[int, dict[str, int]]:
    """(recipients who would get it now, {skip reason: count}) — what the admin shows before sending."""
    counts = dict(
        annotate_refusal(audience(campaign, now=now), campaign, now=now)
        .order_by()
        .values_list("refusal")
        .annotate(n=Count("pk"))
        .values_list("refusal", "n")
    )
    return counts.pop(None, 0), counts


def spread_over_time_zones(campaign: Campaign, *, now: datetime) -> int:
    """Move each queued send to the campaign's clock time in its contact's time zone.

    One UPDATE per time zone present in the audience (a few hundred at most), never per contact.
    Returns how many time zones were scheduled.
    """
    wall_clock = campaign.scheduled_at.astimezone(ZoneInfo(settings.TIME_ZONE)).replace(tzinfo=None)
    queued = Send.objects.filter(campaign=campaign, status=SendStatus.QUEUED)
    zones = set(queued.values_list("contact__time_zone", flat=True).distinct())
    for zone in zones:
        due_at = max(wall_clock.replace(tzinfo=_zone(zone)), now)
        in_zone = queued.filter(contact__time_zone=zone) if zone else queued.filter(contact__time_zone="")
        in_zone.update(due_at=due_at)
    return len(zones)


def _zone(name: str) -> ZoneInfo:
    # Contacts' zones are validated on entry, but a stale or imported name must not stop a send.
    try:
        return ZoneInfo(name) if name else ZoneInfo(settings.CAMPAIGN_DEFAULT_TIME_ZONE)
    except (ValueError, ZoneInfoNotFoundError):
        return ZoneInfo(settings.CAMPAIGN_DEFAULT_TIME_ZONE)


def build_sends(campaign: Campaign, *, now: datetime, due_at: datetime) -> tuple[int, int]:
    """Insert one Send per audience member; return (queued, skipped). Safe to run twice."""
    insert_from_select(
        Send,
        annotate_refusal(audience(campaign, now=now), campaign, now=now).annotate(
            s_campaign=Value(campaign.pk),
            s_contact=F("pk"),
            s_email=F("email_normalized"),
            s_status=Case(
                When(refusal__isnull=True, then=Value(SendStatus.QUEUED.value)),
                default=Value(SendStatus.SKIPPED.value),
            ),
            s_reason=Coalesce("refusal", Value("")),
            s_due=Value(due_at, output_field=models.DateTimeField()),
            s_zero=Value(0),
            s_blank=Value(""),
            s_created=Value(now, output_field=models.DateTimeField()),
        ),
        {
            "campaign": "s_campaign",
            "contact": "s_contact",
            "email": "s_email",
            "status": "s_status",
            "skip_reason": "s_reason",
            "due_at": "s_due",
            "attempts": "s_zero",
            "message_id": "s_blank",
            "smtp_reply": "s_blank",
            "bounce_category": "s_blank",
            "claim_token": "s_blank",
            "created_at": "s_created",
        },
    )
    counts = dict(
        Send.objects.filter(campaign=campaign)
        .order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return counts.get(SendStatus.QUEUED, 0), counts.get(SendStatus.SKIPPED, 0)
