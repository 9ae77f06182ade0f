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
from django.core.exceptions import EmptyResultSet
from django.db import connection, models
from django.db.models import Count, Exists, F, OuterRef, Q

from campaigns.gate import annotate_refusal
from campaigns.models import Campaign, ListMembership, Send, SendStatus
from crm.bulk import insert_from_sql
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
    decided = (
        annotate_refusal(audience(campaign, now=now), campaign, now=now)
        .annotate(d_contact=F("pk"), d_email=F("email_normalized"))
        .order_by()
        .values_list("d_contact", "d_email", "refusal")
    )
    try:
        decided_sql, decided_params = decided.query.sql_with_params()
    except EmptyResultSet:
        return 0, 0
    # The status and the skip reason both read the refusal. OFFSET keeps the database from
    # merging the two queries, which would work the refusal out (every subquery of the gate)
    # once for each: SQLite merges no subquery with an OFFSET, and wants a LIMIT with it.
    fence = "OFFSET 0" if connection.vendor == "postgresql" else "LIMIT -1 OFFSET 0"
    adapt = connection.ops.adapt_datetimefield_value
    insert_from_sql(
        Send,
        [
            "campaign",
            "contact",
            "email",
            "status",
            "skip_reason",
            "due_at",
            "attempts",
            "message_id",
            "smtp_reply",
            "bounce_category",
            "claim_token",
            "created_at",
        ],
        "SELECT %s, d_contact, d_email, CASE WHEN refusal IS NULL THEN %s ELSE %s END, COALESCE(refusal, ''), %s, 0, "
        f"'', '', '', '', %s FROM ({decided_sql} {fence}) AS decided",
        [campaign.pk, SendStatus.QUEUED.value, SendStatus.SKIPPED.value, adapt(due_at), adapt(now), *decided_params],
    )
    counts = dict(
        Send.objects.filter(campaign=campaign)
        .order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return counts.get(SendStatus.QUEUED, 0), counts.get(SendStatus.SKIPPED, 0)
