"""A contact's email history on their page: each marketing send and every event, newest first.

Other kinds of email (one-to-one) add their entries through SOURCES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import urlencode

from campaigns.models import EmailEvent, EventType, Send, SendStatus
from crm.models import Contact

EVENT_STYLE = {
    EventType.DELIVERED: "subscribed",
    EventType.OPEN: "subscribed",
    EventType.CLICK: "subscribed",
    EventType.HARD_BOUNCE: "danger",
    EventType.COMPLAINT: "danger",
    EventType.SOFT_BOUNCE: "warning",
    EventType.DEFERRED: "warning",
    EventType.UNSUBSCRIBE: "warning",
}


@dataclass(frozen=True)
class Entry:
    at: datetime
    what: str
    subject: str  # the campaign or the message it is about
    detail: str = ""
    style: str = "pending"
    url: str = ""
    machine: bool = False


def _sends(contact: Contact, limit: int) -> list[Entry]:
    entries = []
    for send in Send.objects.filter(contact=contact).select_related("campaign").order_by("-created_at")[:limit]:
        url = reverse("admin:campaigns_campaign_change", args=[send.campaign_id])
        if send.status == SendStatus.SKIPPED:
            entries.append(
                Entry(send.created_at, "Skipped", send.campaign.name, send.get_skip_reason_display(), "muted", url)
            )
        elif send.first_attempt_at is not None:
            entries.append(Entry(send.first_attempt_at, "Sent", send.campaign.name, send.email, "pending", url))
        else:
            entries.append(Entry(send.due_at, send.get_status_display(), send.campaign.name, "", "pending", url))
    return entries


def _events(contact: Contact, limit: int) -> list[Entry]:
    entries = []
    for event in (
        EmailEvent.objects.filter(contact_id=contact.pk).select_related("campaign").order_by("-occurred_at")[:limit]
    ):
        detail = event.url if event.type == EventType.CLICK else event.smtp_reply
        if event.is_machine:
            detail = f"{detail} (machine: {event.machine_reason})".strip()
        entries.append(
            Entry(
                event.occurred_at,
                event.get_type_display(),
                event.campaign.name if event.campaign else "",
                detail[:300],
                "muted" if event.is_machine else EVENT_STYLE.get(event.type, "pending"),
                reverse("admin:campaigns_emailevent_change", args=[event.pk]),
                event.is_machine,
            )
        )
    return entries


# Each source gives a contact's newest entries of its kind (at most `limit`).
SOURCES: list[Callable[[Contact, int], list[Entry]]] = [_sends, _events]


def contact_timeline(contact: Contact, *, limit: int = 100) -> list[Entry]:
    # Newest first; at the same moment an event lists above the send it is about ("delivered"
    # above "sent"): the stable sort keeps the later sources' entries first.
    entries = [entry for source in reversed(SOURCES) for entry in source(contact, limit)]
    return sorted(entries, key=lambda entry: entry.at, reverse=True)[:limit]


def timeline_panel(request, contact: Contact) -> str:
    """The timeline as a section of the contact page."""
    entries = contact_timeline(contact)
    all_events = reverse("admin:campaigns_emailevent_changelist") + "?" + urlencode({"contact": contact.pk})
    return render_to_string(
        "admin/campaigns/timeline.html", {"entries": entries, "all_events": all_events}, request=request
    )


def marketing_record(contact: Contact) -> dict:
    """The contact's marketing emails and their events, for 'Everything we hold (JSON)'."""
    return {
        "sends": list(
            Send.objects.filter(contact=contact)
            .order_by("created_at", "pk")
            .values(
                "campaign__name",
                "email",
                "status",
                "skip_reason",
                "first_attempt_at",
                "last_attempt_at",
                "smtp_code",
                "smtp_reply",
                "bounce_category",
                "opened_at",
                "clicked_at",
                "unsubscribed_at",
                "complained_at",
            )
        ),
        "events": list(
            EmailEvent.objects.filter(contact_id=contact.pk)
            .order_by("occurred_at", "pk")
            .values(
                "occurred_at",
                "type",
                "source",
                "recipient",
                "esp",
                "bounce_category",
                "smtp_code",
                "smtp_reply",
                "url",
                "user_agent",
                "ip_address",
                "is_machine",
                "machine_reason",
            )
        ),
    }
