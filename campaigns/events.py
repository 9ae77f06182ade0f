"""One event path: every outcome of a sent message enters the database here (DESIGN invariant 5).

The pipeline's SMTP replies and ESP hand-overs (`record_attempts`), ESP webhooks, bounce and
complaint mail, our open and click links and unsubscribe links (`record_events`) all become
append-only EmailEvent rows. Recording an event:

- matches it to a send by the send id its source carries (tracking token, VERP address, ESP
  metadata), else by our Message-ID or the ESP's message id; an event that matches nothing
  is kept as orphaned and changes nothing else;
- is idempotent: an event id its reporter already gave is dropped (ESPs replay webhooks);
- moves the send's status forward only, by the precedence below, so a late "delivered"
  never overwrites a bounce and an open after a bounce is kept without un-bouncing;
- applies the actions on the contact: a hard bounce suppresses the address; a complaint
  suppresses it and unsubscribes from all; an unsubscribe unsubscribes from the campaign's
  subscription type (or from all when the ESP says so); repeated soft bounces escalate to a
  hard bounce; human opens and clicks (never machine ones) are engagement.

Precedence of a send's status, lowest first: sending < accepted by the ESP < deferred < not
sent < delivered < soft bounce < hard bounce. An open, click, complaint or unsubscribe proves
delivery. Only the pipeline's own attempt defers a send: a deferral reported by an ESP or a
remote MTA is theirs to retry, so it is recorded without touching the status (our pipeline
must not send again). Queued, skipped and cancelled sends were never sent: events about them
are recorded and change nothing.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, OuterRef
from django.db.models.functions import Coalesce, Greatest

from campaigns import machines
from campaigns.bounces import Outcome
from campaigns.models import Campaign, EmailEvent, EventSource, EventType, Send, SendStatus
from crm import consent
from crm.bulk import in_values, insert_rows, update_rows
from crm.models import (
    ConsentMethod,
    Contact,
    EmailStatus,
    EngagementStatus,
    SubscriptionType,
    Suppression,
    SuppressionReason,
)

logger = logging.getLogger(__name__)

_RANK = {
    SendStatus.SENDING: 0,
    SendStatus.ACCEPTED: 1,
    SendStatus.DEFERRED: 2,
    SendStatus.NOT_SENT: 3,
    SendStatus.DELIVERED: 4,
    SendStatus.SOFT_BOUNCED: 5,
    SendStatus.HARD_BOUNCED: 6,
}
# The status an event asks for; events that prove delivery ask for delivered.
_STATUS_FOR = {
    EventType.ACCEPTED: SendStatus.ACCEPTED,
    EventType.DELIVERED: SendStatus.DELIVERED,
    EventType.DEFERRED: SendStatus.DEFERRED,
    EventType.NOT_SENT: SendStatus.NOT_SENT,
    EventType.SOFT_BOUNCE: SendStatus.SOFT_BOUNCED,
    EventType.HARD_BOUNCE: SendStatus.HARD_BOUNCED,
    EventType.OPEN: SendStatus.DELIVERED,
    EventType.CLICK: SendStatus.DELIVERED,
    EventType.COMPLAINT: SendStatus.DELIVERED,
    EventType.UNSUBSCRIBE: SendStatus.DELIVERED,
}
# The event a pipeline result is recorded as.
EVENT_FOR_STATUS = {
    SendStatus.ACCEPTED: EventType.ACCEPTED,
    SendStatus.DELIVERED: EventType.DELIVERED,
    SendStatus.DEFERRED: EventType.DEFERRED,
    SendStatus.NOT_SENT: EventType.NOT_SENT,
    SendStatus.SOFT_BOUNCED: EventType.SOFT_BOUNCE,
    SendStatus.HARD_BOUNCED: EventType.HARD_BOUNCE,
}
# The event a receiver's verdict (campaigns.bounces.Outcome) is recorded as.
EVENT_FOR_OUTCOME = {
    Outcome.DELIVERED: EventType.DELIVERED,
    Outcome.DEFERRED: EventType.DEFERRED,
    Outcome.HARD_BOUNCE: EventType.HARD_BOUNCE,
    Outcome.SOFT_BOUNCE: EventType.SOFT_BOUNCE,
    Outcome.NOT_SENT: EventType.NOT_SENT,
}
# Handed over and not failed: the send counts towards the contact's sends since engagement.
_SENT = frozenset({SendStatus.ACCEPTED, SendStatus.DELIVERED})
# What a send's delivery result is made of; written together with its status.
STATUS_FIELDS = ["status", "smtp_code", "smtp_reply", "bounce_category"]
ENGAGEMENT_FIELDS = ["opened_at", "clicked_at", "complained_at", "unsubscribed_at"]


@dataclass
class Observation:
    """An outcome as a source reported it, before it is matched and recorded."""

    type: str
    source: str
    occurred_at: datetime
    send_id: int | None = None
    message_id: str = ""
    recipient: str = ""
    esp: str = ""
    event_id: str = ""
    bounce_category: str = ""
    smtp_code: int | None = None
    smtp_reply: str = ""
    link_id: int | None = None
    url: str = ""
    user_agent: str = ""
    ip_address: str | None = None
    machine_reason: str = ""
    # An unsubscribe from everything, not only from the campaign's subscription type.
    unsubscribe_all: bool = False
    payload: dict = field(default_factory=dict)


def record_event(observation: Observation, *, now: datetime) -> EmailEvent | None:
    """Record one observation; None if its reporter gave the same event before."""
    recorded = record_events([observation], now=now)
    return recorded[0] if recorded else None


def record_events(observations: Iterable[Observation], *, now: datetime) -> list[EmailEvent]:
    """Record outcomes from outside the pipeline, set-based; return the events stored.

    Events whose (reporter, event id) is already stored, or repeated in the batch, are dropped.
    """
    observations = list(observations)
    try:
        return _record(observations, now=now)
    except IntegrityError:
        # The same event arrived twice at once (an ESP retrying a slow webhook) and the other
        # copy committed first: the unique constraint refused this batch. Again, it is left out.
        return _record(observations, now=now)


def _record(observations: list[Observation], *, now: datetime) -> list[EmailEvent]:
    fresh = _unseen([replace(observation) for observation in observations])
    if not fresh:
        return []
    with transaction.atomic():
        sends = _locked_sends(_send_ids(fresh))
        machines.classify(fresh, sends, _recent_clicks(fresh, sends))
        recorder = _Recorder(now, _subscription_types(sends.values()))
        for observation in fresh:
            recorder.add(observation, sends.get(observation.send_id))
        update_rows(Send, list(recorder.changed.values()), STATUS_FIELDS + ENGAGEMENT_FIELDS)
        recorder.save()
    return recorder.events


def record_attempts(sends: list[Send], results: dict[int, Observation], *, fields: list[str], now: datetime) -> None:
    """Write the pipeline's batch back and record each attempt's result as an event.

    `sends` are the batch's claimed sends with the pipeline's own `fields` set (a send the gate
    refused carries its skipped status); `results` holds the attempted ones' outcomes by send
    id. An ESP's webhook may report on a send while the batch is still handing the rest over;
    precedence keeps whichever result is further on.
    """
    with transaction.atomic():
        current = _locked_sends(set(results))
        # The pipeline's sends come with their campaign: no query for the types.
        recorder = _Recorder(now, {send.campaign_id: send.campaign.subscription_type_id for send in sends})
        for send in sends:
            earlier = current.get(send.pk)
            if earlier is None:
                continue
            for name in STATUS_FIELDS + ENGAGEMENT_FIELDS:
                setattr(send, name, getattr(earlier, name))
            recorder.add(results[send.pk], send, own_attempt=True)
        update_rows(Send, sends, list(dict.fromkeys([*fields, *STATUS_FIELDS, *ENGAGEMENT_FIELDS])))
        recorder.save()


def _unseen(observations: list[Observation]) -> list[Observation]:
    """Drop observations their reporter gave before (or twice in the list): same event id and type,
    for the same recipient when the reporter names one (our own hits name none; one Amazon SES
    notification names several recipients under one id)."""
    event_ids = {o.event_id[:255] for o in observations if o.event_id}
    known: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    if event_ids:
        for esp, event_id, kind, recipient in EmailEvent.objects.filter(
            esp_event_id__in=in_values(event_ids, "text")
        ).values_list("esp", "esp_event_id", "type", "recipient"):
            known[(esp, event_id, kind)].add(recipient)
    fresh = []
    for observation in observations:
        if observation.event_id:
            key = (_reporter(observation), observation.event_id[:255], observation.type)
            recipient = observation.recipient[:254]
            if known.get(key) and (not recipient or recipient in known[key]):
                continue
            known[key].add(recipient)
        fresh.append(observation)
    return fresh


def _reporter(observation: Observation) -> str:
    """Who gave the event id: the ESP, or our own source (bounce mail, tracking)."""
    return (observation.esp or observation.source)[:32]


def _send_ids(observations: list[Observation]) -> set[int]:
    """Fill in each observation's send id from its message id where the source gave none."""
    unmatched = {o.message_id for o in observations if o.send_id is None and o.message_id}
    by_message_id: dict[str, int] = {}
    if unmatched:
        by_message_id = dict(
            Send.objects.filter(message_id__in=in_values(unmatched, "text"))
            .order_by("pk")
            .values_list("message_id", "pk")
        )
    for observation in observations:
        if observation.send_id is None:
            observation.send_id = by_message_id.get(observation.message_id)
    return {o.send_id for o in observations if o.send_id is not None}


def _locked_sends(send_ids: set[int]) -> dict[int, Send]:
    """The sends, locked in id order (two batches about the same sends wait, never deadlock)."""
    if not send_ids:
        return {}
    sends = Send.objects.select_for_update().filter(pk__in=in_values(send_ids, "bigint")).order_by("pk")
    return {send.pk: send for send in sends}


def _subscription_types(sends) -> dict[int, int]:
    """Campaign id → its subscription type (what an unsubscribe from one of its messages leaves)."""
    campaign_ids = {send.campaign_id for send in sends}
    return dict(Campaign.objects.filter(pk__in=campaign_ids).values_list("pk", "subscription_type_id"))


def _recent_clicks(observations: list[Observation], sends: dict[int, Send]) -> list[tuple[int, int | None, datetime]]:
    """(send, link, time) of clicks already recorded around this batch's, for the burst rule."""
    clicks = [o for o in observations if o.type == EventType.CLICK and o.send_id in sends]
    if not clicks:
        return []
    window = timedelta(seconds=settings.TRACKING_BURST_SECONDS)
    return list(
        EmailEvent.objects.filter(
            send_id__in={o.send_id for o in clicks},
            type=EventType.CLICK,
            occurred_at__gte=min(o.occurred_at for o in clicks) - window,
            occurred_at__lte=max(o.occurred_at for o in clicks) + window,
        ).values_list("send_id", "link_id", "occurred_at")
    )


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current


class _Recorder:
    """Builds a batch's events and the actions they call for; `save` writes them."""

    def __init__(self, now: datetime, subscription_types: dict[int, int]) -> None:
        self.now = now
        self.subscription_types = subscription_types
        self.events: list[EmailEvent] = []
        self.changed: dict[int, Send] = {}
        self.newly_sent: list[int] = []
        self.hard_bounced: dict[str, Send] = {}
        self.soft_bounced: set[int] = set()
        # address → contact id (None when the contact was deleted since)
        self.complained: dict[str, int | None] = {}
        # (address, contact id, subscription type id or None for all) → reporter
        self.unsubscribed: dict[tuple[str, int | None, int | None], str] = {}
        # contact id → (latest human open, latest human click)
        self.engaged: dict[int, list[datetime | None]] = {}

    def add(self, observation: Observation, send: Send | None, *, own_attempt: bool = False) -> None:
        # Every field given: a foreign key left out costs a default lookup per event.
        event = EmailEvent(
            send_id=send.pk if send else None,
            campaign_id=send.campaign_id if send else None,
            contact_id=send.contact_id if send else None,
            effect="",
            type=observation.type,
            source=observation.source,
            occurred_at=observation.occurred_at,
            recorded_at=self.now,
            recipient=observation.recipient[:254],
            esp=_reporter(observation) if observation.event_id else observation.esp[:32],
            esp_event_id=observation.event_id[:255],
            message_id=observation.message_id[:255],
            bounce_category=observation.bounce_category,
            smtp_code=observation.smtp_code if observation.smtp_code and 0 < observation.smtp_code < 1000 else None,
            smtp_reply=observation.smtp_reply[:2000],
            link_id=observation.link_id,
            url=observation.url[:2000],
            user_agent=observation.user_agent[:1000],
            ip_address=observation.ip_address,
            is_machine=bool(observation.machine_reason),
            machine_reason=observation.machine_reason[:100],
            payload=observation.payload,
        )
        self.events.append(event)
        if send is None:
            event.effect = "matched no message we sent"
            return
        event.recipient = event.recipient or send.email
        if send.status not in _RANK:
            event.effect = f"ignored: the send was {send.get_status_display().lower()}"
            return
        effects = [self._advance(send, observation, own_attempt=own_attempt), self._act(send, observation)]
        event.effect = "; ".join(effect for effect in effects if effect)[:255]

    def _advance(self, send: Send, observation: Observation, *, own_attempt: bool) -> str:
        wanted = _STATUS_FOR.get(observation.type)
        if wanted is None:
            return ""
        if wanted == SendStatus.DEFERRED and not own_attempt:
            return ""
        if _RANK[wanted] <= _RANK[send.status]:
            return ""
        before = send.status
        send.status = wanted
        if observation.type in {
            EventType.DELIVERED,
            EventType.DEFERRED,
            EventType.NOT_SENT,
            EventType.SOFT_BOUNCE,
            EventType.HARD_BOUNCE,
        } or (own_attempt and observation.type == EventType.ACCEPTED):
            send.smtp_code = observation.smtp_code if observation.smtp_code and observation.smtp_code > 0 else None
            send.smtp_reply = observation.smtp_reply[:2000]
            send.bounce_category = observation.bounce_category
        self.changed[send.pk] = send
        if send.contact_id is not None and wanted in _SENT and before not in _SENT:
            self.newly_sent.append(send.contact_id)
        if wanted == SendStatus.HARD_BOUNCED:
            self.hard_bounced[send.email] = send
        elif wanted == SendStatus.SOFT_BOUNCED and send.contact_id is not None:
            self.soft_bounced.add(send.contact_id)
        return f"{SendStatus(before).label} → {SendStatus(wanted).label.lower()}"

    def _act(self, send: Send, observation: Observation) -> str:
        kind, when = observation.type, observation.occurred_at
        if kind in {EventType.OPEN, EventType.CLICK}:
            if observation.machine_reason:
                return f"machine: {observation.machine_reason}"
            if send.contact_id is None:
                return ""
            name = "opened_at" if kind == EventType.OPEN else "clicked_at"
            setattr(send, name, _earliest(getattr(send, name), when))
            latest = self.engaged.setdefault(send.contact_id, [None, None])
            slot = 0 if kind == EventType.OPEN else 1
            latest[slot] = max(latest[slot] or when, when)
            self.changed[send.pk] = send
            return "engagement"
        if kind == EventType.COMPLAINT:
            send.complained_at = _earliest(send.complained_at, when)
            self.changed[send.pk] = send
            self.complained[send.email] = send.contact_id
            return "address suppressed; unsubscribed from all"
        if kind == EventType.UNSUBSCRIBE:
            send.unsubscribed_at = _earliest(send.unsubscribed_at, when)
            self.changed[send.pk] = send
            if observation.source == EventSource.UNSUBSCRIBE_LINK:
                return ""  # the link's own view did the unsubscribing
            type_id = (
                None
                if observation.unsubscribe_all or send.contact_id is None
                else self.subscription_types.get(send.campaign_id)
            )
            self.unsubscribed[(send.email, send.contact_id, type_id)] = _reporter(observation)
            return "unsubscribed from all" if type_id is None else "unsubscribed"
        if kind == EventType.HARD_BOUNCE and send.status == SendStatus.HARD_BOUNCED:
            self.hard_bounced[send.email] = send
            return "address suppressed"
        return ""

    def save(self) -> None:
        insert_rows(EmailEvent, self.events)
        _count_sent(self.newly_sent, now=self.now)
        _mark_engaged(self.engaged)
        _suppress_hard_bounces(list(self.hard_bounced.values()), now=self.now)
        _escalate_soft_bounces(self.soft_bounced, now=self.now)
        _apply_complaints(self.complained, now=self.now)
        _apply_unsubscribes(self.unsubscribed, now=self.now)


def _count_sent(contact_ids: list[int], *, now: datetime) -> None:
    """One more marketing email for each contact (twice for a contact listed twice)."""
    times: dict[int, int] = defaultdict(int)
    for contact_id in contact_ids:
        times[contact_id] += 1
    by_count: dict[int, list[int]] = defaultdict(list)
    for contact_id, count in times.items():
        by_count[count].append(contact_id)
    for count, ids in by_count.items():
        Contact.objects.filter(pk__in=in_values(ids, "bigint")).update(
            sends_since_engagement=F("sends_since_engagement") + count,
            last_sent_at=Greatest(Coalesce("last_sent_at", now), now),
        )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _mark_engaged(latest: dict[int, list[datetime | None]]) -> None:
    """Human opens and clicks: the contact engaged (later times only move dates forward)."""
    if not latest:
        return
    if connection.vendor == "postgresql":
        # One statement for the batch, its rows as one JSON parameter (see crm.bulk), in id order
        # as every writer of contacts here; GREATEST skips NULLs on PostgreSQL.
        rows = json.dumps(
            [
                {"id": contact_id, "opened": _iso(opened), "clicked": _iso(clicked)}
                for contact_id, (opened, clicked) in sorted(latest.items())
            ]
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE crm_contact AS c SET last_open_at = GREATEST(c.last_open_at, v.opened), "
                "last_click_at = GREATEST(c.last_click_at, v.clicked), "
                "last_engaged_at = GREATEST(c.last_engaged_at, v.opened, v.clicked), "
                "sends_since_engagement = 0, engagement_status = %s "
                "FROM jsonb_to_recordset(%s::jsonb) AS v (id bigint, opened timestamptz, clicked timestamptz) "
                "WHERE c.id = v.id",
                [EngagementStatus.ENGAGED.value, rows],
            )
        return
    for contact_id, (opened, clicked) in latest.items():
        changes = {"sends_since_engagement": 0, "engagement_status": EngagementStatus.ENGAGED}
        for name, when in (("last_open_at", opened), ("last_click_at", clicked)):
            if when is not None:
                changes[name] = Greatest(Coalesce(name, when), when)
        engaged = max(when for when in (opened, clicked) if when is not None)
        changes["last_engaged_at"] = Greatest(Coalesce("last_engaged_at", engaged), engaged)
        Contact.objects.filter(pk=contact_id).update(**changes)


def _suppress_hard_bounces(sends: list[Send], *, now: datetime, note: str = "") -> None:
    if not sends:
        return
    Suppression.objects.bulk_create(
        [
            Suppression(
                email=send.email,
                reason=SuppressionReason.HARD_BOUNCE,
                created_at=now,
                occurred_at=now,
                source=f"campaign {send.campaign_id}",
                note=(note or send.smtp_reply)[:500],
            )
            for send in sends
        ],
        ignore_conflicts=True,
    )
    Contact.objects.filter(pk__in=[s.contact_id for s in sends], email_status=EmailStatus.OK).update(
        email_status=EmailStatus.HARD_BOUNCED
    )


def _escalate_soft_bounces(contact_ids: set[int], *, now: datetime) -> None:
    """Soft bounces from several campaigns with no delivery since are treated as a hard bounce.

    Default: 3 campaigns within 60 days (SOFT_BOUNCE_ESCALATION_COUNT and _DAYS). A delivery,
    human open or click after a soft bounce means the mailbox works, so that bounce no longer counts.
    """
    if not contact_ids:
        return
    since = now - timedelta(days=settings.SOFT_BOUNCE_ESCALATION_DAYS)
    delivered_after = EmailEvent.objects.filter(
        contact_id=OuterRef("contact_id"),
        occurred_at__gt=OuterRef("occurred_at"),
        type__in=[EventType.DELIVERED, EventType.OPEN, EventType.CLICK],
        is_machine=False,
    )
    escalated = list(
        EmailEvent.objects.filter(contact_id__in=contact_ids, type=EventType.SOFT_BOUNCE, occurred_at__gte=since)
        .exclude(Exists(delivered_after))
        .values("contact_id")
        .annotate(campaigns=Count("campaign_id", distinct=True))
        .filter(campaigns__gte=settings.SOFT_BOUNCE_ESCALATION_COUNT)
        .values_list("contact_id", flat=True)
    )
    if not escalated:
        return
    # The newest soft bounce of each contact stands for the escalated bounce.
    sends = Send.objects.filter(contact_id__in=escalated, status=SendStatus.SOFT_BOUNCED).order_by("last_attempt_at")
    latest = {send.contact_id: send for send in sends}
    _suppress_hard_bounces(
        list(latest.values()),
        now=now,
        note=f"Soft bounces from {settings.SOFT_BOUNCE_ESCALATION_COUNT} or more campaigns within "
        f"{settings.SOFT_BOUNCE_ESCALATION_DAYS} days with no delivery in between: treated as a hard bounce.",
    )
    logger.info("Soft bounces escalated to hard for %d contacts", len(latest))


def _apply_complaints(complained: dict[str, int | None], *, now: datetime) -> None:
    """Suppress the addresses and unsubscribe their contacts from all marketing email."""
    if not complained:
        return
    Suppression.objects.bulk_create(
        [
            Suppression(
                email=email,
                reason=SuppressionReason.COMPLAINT,
                created_at=now,
                occurred_at=now,
                source="spam complaint",
            )
            for email in complained
        ],
        ignore_conflicts=True,
    )
    contacts = Contact.objects.filter(pk__in=[pk for pk in complained.values() if pk is not None])
    contacts.update(email_status=EmailStatus.COMPLAINED)
    consent.unsubscribe_from_all(contacts, method=ConsentMethod.ESP_EVENT, now=now, source_detail="spam complaint")


def _apply_unsubscribes(unsubscribed: dict[tuple[str, int | None, int | None], str], *, now: datetime) -> None:
    """Unsubscribe from the campaign's type, or from all; a deleted contact's address is suppressed."""
    gone = [email for (email, contact_id, _) in unsubscribed if contact_id is None]
    Suppression.objects.bulk_create(
        [
            Suppression(
                email=email, reason=SuppressionReason.UNSUBSCRIBE, created_at=now, occurred_at=now, source="unsubscribe"
            )
            for email in gone
        ],
        ignore_conflicts=True,
    )
    everything = [contact_id for (_, contact_id, type_id) in unsubscribed if contact_id and type_id is None]
    if everything:
        consent.unsubscribe_from_all(
            Contact.objects.filter(pk__in=everything),
            method=ConsentMethod.ESP_EVENT,
            now=now,
            source_detail="unsubscribe from all reported by the ESP",
        )
    per_type = [(contact_id, type_id) for (_, contact_id, type_id) in unsubscribed if contact_id and type_id]
    if not per_type:
        return
    contacts = Contact.objects.in_bulk([contact_id for contact_id, _ in per_type])
    types = SubscriptionType.objects.in_bulk([type_id for _, type_id in per_type])
    for (_, contact_id, type_id), reporter in unsubscribed.items():
        contact = contacts.get(contact_id)
        if contact is None or type_id is None or contact.is_unsubscribed_from_all():
            continue
        consent.unsubscribe_contact(
            contact,
            types[type_id],
            method=ConsentMethod.ESP_EVENT,
            now=now,
            source_detail=f"unsubscribe reported by {reporter}",
        )


def on_link_unsubscribe(sender, *, send_id: int | None, email: str, everything: bool, now: datetime, **kwargs) -> None:
    """crm's unsubscribe link did the unsubscribing; the campaign's results learn of it here."""
    if send_id is None:
        return
    record_events(
        [
            Observation(
                type=EventType.UNSUBSCRIBE,
                source=EventSource.UNSUBSCRIBE_LINK,
                occurred_at=now,
                send_id=send_id,
                recipient=email,
                unsubscribe_all=everything,
            )
        ],
        now=now,
    )
