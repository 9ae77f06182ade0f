"""The send pipeline: start, claim, gate, render, sign, send, record.

States of a Send: queued → sending (claimed by one worker's batch) → delivered / deferred /
hard or soft bounce / not sent; or skipped with the gate's reason. Deferred sends carry
their next attempt in `due_at` (the database, never a Celery countdown: a broker's
visibility timeout would redeliver long countdowns and send twice).

Crash rule for in-flight rows: a worker that dies leaves its batch in `sending`.
`recover_stale_claims` returns sends claimed more than 15 minutes ago to `queued`, unless
another send of the same claim was claimed or renewed since; a live worker renews the claim of
the sends it has still to hand over every few seconds while it works through a slow batch, so
only a dead worker's batch goes stale. A message that went out just before the crash is then sent
again: the duplicates a crash can cause are at most one batch (SEND_BATCH_SIZE) per dead
worker, never more (measured: tests/campaigns/test_crash_safety.py).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import connection, transaction
from django.utils import timezone

from campaigns import audience, bounces, checklist, events, rendering, tracking
from campaigns import links as campaign_links
from campaigns.extensions import extensions
from campaigns.gate import annotate_refusal
from campaigns.models import Campaign, CampaignStatus, EventSource, Send, SendStatus
from campaigns.throttle import ConnectionLeases, Throttle
from campaigns.transports import EspTransport, Handoff, Outgoing, Reply, SmtpTransport
from crm import links
from crm.bulk import in_values
from crm.eligibility import Ineligibility
from crm.models import Contact

logger = logging.getLogger(__name__)

CLAIMABLE = [SendStatus.QUEUED, SendStatus.DEFERRED]
STALE_CLAIM = timedelta(minutes=15)
# A slow batch renews the claim of the sends it has still to go this often: far inside STALE_CLAIM,
# and close enough to each send's hand-over for the machine rules to judge a hit that comes
# before the batch writes its results back (campaigns.machines: within the scanner window).
CLAIM_RENEWAL_SECONDS = 5
FIRST_RETRY = timedelta(minutes=15)
LONGEST_RETRY = timedelta(hours=6)
# A campaign still preparing this long after staff started it lost its task (a worker died or the
# broker dropped it): the scheduler asks for the preparation again.
PREPARATION_RETRY = timedelta(minutes=2)


class CampaignError(Exception):
    """The campaign cannot do that now; the message says why in plain words."""


def _set_status(campaign: Campaign, status: str, *, user, now: datetime) -> None:
    """A change staff made: any automatic pause's reason no longer applies."""
    campaign.status = status
    campaign.status_changed_at = now
    campaign.status_changed_by = user
    campaign.status_reason = ""
    campaign.save(update_fields=["status", "status_changed_at", "status_changed_by", "status_reason"])


def start_campaign(campaign: Campaign, *, user, now: datetime) -> tuple[int, int]:
    """Build the sends and start sending (or wait for `scheduled_at`). Returns (queued, skipped)."""
    _check_startable(campaign)
    return _build_and_start(campaign, user=user, now=now)


def request_start(campaign: Campaign, *, user, now: datetime) -> None:
    """Check the campaign may start, and mark it preparing: `prepare_campaign` builds its sends in a worker.

    An audience of millions takes longer to build than a web request may last.
    """
    _check_startable(campaign)
    marked = Campaign.objects.filter(pk=campaign.pk, status=CampaignStatus.DRAFT).update(
        status=CampaignStatus.PREPARING, status_changed_at=now, status_changed_by=user, status_reason=""
    )
    if not marked:
        raise CampaignError(f"{campaign} was started a moment ago.")
    campaign.refresh_from_db()


def prepare_campaign(campaign_id: int, *, now: datetime) -> bool:
    """Build a preparing campaign's sends and start it; True if it started.

    Safe to run twice and side by side: the campaign's row stays locked while its sends are built,
    and another run finds it locked or no longer preparing and does nothing. A campaign that may
    not start after all (nobody eligible now, something blocks sending) goes back to draft with
    the reason.
    """
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update(skip_locked=True)
            .filter(pk=campaign_id, status=CampaignStatus.PREPARING)
            .first()
        )
        if campaign is None:
            return False
        try:
            _check_sendable(campaign)
            _build_and_start(campaign, user=campaign.status_changed_by, now=now)
        except CampaignError as exc:
            campaign.status = CampaignStatus.DRAFT
            campaign.status_changed_at = now
            campaign.status_reason = str(exc)
            campaign.save(update_fields=["status", "status_changed_at", "status_reason"])
            return False
    return True


def unfinished_preparations(*, now: datetime) -> list[int]:
    """Campaigns preparing for longer than a build should wait for a worker: their task was lost."""
    return list(
        Campaign.objects.filter(
            status=CampaignStatus.PREPARING, status_changed_at__lte=now - PREPARATION_RETRY
        ).values_list("pk", flat=True)
    )


def _check_startable(campaign: Campaign) -> None:
    if campaign.status != CampaignStatus.DRAFT:
        raise CampaignError(f"{campaign} is {campaign.get_status_display().lower()}; only a draft can be started.")
    _check_sendable(campaign)


def _check_sendable(campaign: Campaign) -> None:
    problems = checklist.blocking(checklist.check_campaign(campaign))
    if problems:
        raise CampaignError("Cannot send: " + " ".join(str(problem) for problem in problems))


def _build_and_start(campaign: Campaign, *, user, now: datetime) -> tuple[int, int]:
    local = campaign.in_recipient_time_zone and campaign.scheduled_at is not None
    due_at = now if local else max(campaign.scheduled_at or now, now)
    with transaction.atomic():
        queued, skipped = audience.build_sends(campaign, now=now, due_at=due_at)
        if not queued:
            transaction.set_rollback(True)
            raise CampaignError(
                f"Nobody in the audience may receive {campaign} now ({skipped} skipped): nothing was sent."
            )
        if local:
            # Every send carries its own time; the campaign sends from now on as they fall due.
            audience.spread_over_time_zones(campaign, now=now)
        scheduled = not local and campaign.scheduled_at is not None and campaign.scheduled_at > now
        _set_status(campaign, CampaignStatus.SCHEDULED if scheduled else CampaignStatus.SENDING, user=user, now=now)
    return queued, skipped


def pause_campaign(campaign: Campaign, *, user, now: datetime) -> None:
    if campaign.status not in {CampaignStatus.SENDING, CampaignStatus.SCHEDULED}:
        raise CampaignError(f"{campaign} is {campaign.get_status_display().lower()}; only a sending campaign pauses.")
    _set_status(campaign, CampaignStatus.PAUSED, user=user, now=now)


def resume_campaign(campaign: Campaign, *, user, now: datetime) -> None:
    if campaign.status != CampaignStatus.PAUSED:
        raise CampaignError(f"{campaign} is {campaign.get_status_display().lower()}, not paused.")
    _set_status(campaign, CampaignStatus.SENDING, user=user, now=now)


def cancel_campaign(campaign: Campaign, *, user, now: datetime) -> int:
    """Stop for good; sends not yet handed over are cancelled. Returns how many."""
    if campaign.status in {CampaignStatus.SENT, CampaignStatus.CANCELLED}:
        raise CampaignError(f"{campaign} is already {campaign.get_status_display().lower()}.")
    with transaction.atomic():
        # Waits for a preparation building the sends, so that none of them is left queued.
        Campaign.objects.select_for_update().get(pk=campaign.pk)
        cancelled = Send.objects.filter(campaign=campaign, status__in=CLAIMABLE).update(status=SendStatus.CANCELLED)
        _set_status(campaign, CampaignStatus.CANCELLED, user=user, now=now)
    return cancelled


def start_due_campaigns(*, now: datetime) -> int:
    """Scheduled campaigns whose time has come start sending."""
    return Campaign.objects.filter(status=CampaignStatus.SCHEDULED, scheduled_at__lte=now).update(
        status=CampaignStatus.SENDING, status_changed_at=now
    )


def claim(campaign_id: int, *, now: datetime, limit: int) -> list[int]:
    """Claim up to `limit` due sends of a sending campaign for this worker; return their ids.

    On PostgreSQL, `SKIP LOCKED` lets workers claim side by side without waiting; the token
    makes the claim exact on every database (a row another worker took is not returned).
    """
    limit = min(limit, warmup_allowance(now=now))
    if limit <= 0:
        return []
    token = secrets.token_hex(16)
    if connection.vendor == "postgresql":
        return _claim_returning(campaign_id, now=now, limit=limit, token=token)
    due = (
        Send.objects.filter(
            campaign_id=campaign_id, campaign__status=CampaignStatus.SENDING, status__in=CLAIMABLE, due_at__lte=now
        )
        .order_by("due_at", "pk")
        .values("pk")[:limit]
    )
    Send.objects.filter(pk__in=due, status__in=CLAIMABLE).update(
        status=SendStatus.SENDING, claimed_at=now, claim_token=token
    )
    return list(Send.objects.filter(claim_token=token, status=SendStatus.SENDING).values_list("pk", flat=True))


def _claim_returning(campaign_id: int, *, now: datetime, limit: int, token: str) -> list[int]:
    """The claim as one statement: UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING id.

    One statement is its own transaction (Django's ORM refuses FOR UPDATE without an explicit
    one, which cost a BEGIN, a COMMIT and a SELECT of the claimed ids per batch). `OF s` locks
    only the sends: locking the joined campaign row would make every other worker skip everything.
    """
    claimable = [status.value for status in CLAIMABLE]
    with connection.cursor() as cursor:
        cursor.execute(
            'UPDATE campaigns_send SET "status" = %s, "claimed_at" = %s, "claim_token" = %s '
            "WHERE id IN (SELECT s.id FROM campaigns_send s JOIN campaigns_campaign c ON c.id = s.campaign_id "
            "WHERE s.campaign_id = %s AND c.status = %s AND s.status = ANY(%s) AND s.due_at <= %s "
            "ORDER BY s.due_at, s.id LIMIT %s FOR UPDATE OF s SKIP LOCKED) AND status = ANY(%s) RETURNING id",
            [
                SendStatus.SENDING.value,
                now,
                token,
                campaign_id,
                CampaignStatus.SENDING.value,
                claimable,
                now,
                limit,
                claimable,
            ],
        )
        return [row[0] for row in cursor.fetchall()]


def render_for(campaign: Campaign, contact: Contact, *, send_id: int | None = None) -> rendering.Rendered:
    """The campaign as this recipient gets it (and sees it in the browser); a preview has no send."""
    context = rendering.recipient_context(
        contact=rendering.contact_values(contact),
        campaign_name=campaign.name,
        subject=campaign.subject,
        unsubscribe_url=links.unsubscribe_url(contact, campaign.subscription_type, send_id=send_id),
        preferences_url=links.preferences_url(contact),
        view_in_browser_url=campaign_links.view_url(send_id) if send_id else "",
    )
    return rendering.render(subject=campaign.subject, html=campaign.html_body, text=campaign.text_body, context=context)


def warmup_allowance(*, now: datetime) -> int:
    """How many more messages today's warm-up cap allows (unlimited without a warm-up schedule).

    A new dedicated IP has no reputation; mailbox providers throttle or junk a sudden volume
    from it, so the daily volume ramps up over the first weeks.
    """
    caps = settings.SEND_WARMUP_DAILY_CAPS
    if not caps:
        return 1 << 30
    day = max((now.date() - settings.SEND_WARMUP_START).days, 0)
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    sent_today = Send.objects.filter(first_attempt_at__gte=start_of_day).count()
    return max(caps[min(day, len(caps) - 1)] - sent_today, 0)


def _message(
    campaign: Campaign,
    contact: Contact,
    *,
    send_id: int | None,
    now: datetime | None,
    to: str = "",
    subject_prefix: str = "",
) -> tuple[EmailMultiAlternatives, str]:
    rendered = render_for(campaign, contact, send_id=send_id)
    html = rendered.html
    if send_id is not None and now is not None:
        html = tracking.track(html, campaign=campaign, send_id=send_id, links=tracking.LINKS, now=now)
    domain = campaign.from_email.rpartition("@")[2]
    # Events (bounces, webhooks) find the send by this id: "<send id>.<random>@<From domain>".
    message_id = f"<{send_id or 'test'}.{secrets.token_hex(6)}@{domain}>"
    headers = {
        **links.list_unsubscribe_headers(contact, campaign.subscription_type, send_id=send_id),
        "Message-ID": message_id,
        "Feedback-ID": f"{campaign.pk}:{campaign.subscription_type_id}:deliverwell",
    }
    if campaign.reply_to:
        headers["Reply-To"] = campaign.reply_to
    message = EmailMultiAlternatives(
        subject=subject_prefix + rendered.subject,
        body=rendered.text,
        from_email=f"{campaign.from_name} <{campaign.from_email}>",
        to=[to or contact.email],
        headers=headers,
    )
    message.attach_alternative(html, "text/html")
    return message, message_id


def _retry_at(send: Send, now: datetime) -> datetime:
    delay = min(FIRST_RETRY * 2 ** max(send.attempts - 1, 0), LONGEST_RETRY)
    return now + delay


def _mailbox(contact: Contact) -> str:
    """The address as the person gave its mailbox name, with the domain in its ASCII (IDNA) form."""
    return f"{contact.email.rpartition('@')[0]}@{contact.email_normalized.rpartition('@')[2]}"


def _apply(send: Send, reply: Reply, *, now: datetime) -> events.Observation:
    """The receiving server's reply as the send's result; a deferral gets its next attempt."""
    verdict = bounces.classify(reply.code, reply.text)
    if verdict.outcome == bounces.Outcome.DEFERRED and now - send.first_attempt_at >= timedelta(
        hours=settings.SEND_RETRY_HOURS
    ):
        verdict = bounces.expire_deferral(verdict)
    if verdict.outcome == bounces.Outcome.DEFERRED:
        send.due_at = _retry_at(send, now)
    status = {
        bounces.Outcome.DELIVERED: SendStatus.DELIVERED,
        bounces.Outcome.DEFERRED: SendStatus.DEFERRED,
        bounces.Outcome.HARD_BOUNCE: SendStatus.HARD_BOUNCED,
        bounces.Outcome.SOFT_BOUNCE: SendStatus.SOFT_BOUNCED,
        bounces.Outcome.NOT_SENT: SendStatus.NOT_SENT,
    }[verdict.outcome]
    # smtplib reports an unreadable reply as -1: the server said nothing we can keep as a code.
    return _result(send, status, reply.text, code=reply.code, category=verdict.category, now=now)


def _result(
    send: Send,
    status: str,
    reply: str,
    *,
    now: datetime,
    code: int | None = None,
    category: str = "",
    source: str = EventSource.SMTP,
) -> events.Observation:
    return events.Observation(
        type=events.EVENT_FOR_STATUS[status],
        source=source,
        occurred_at=now,
        send_id=send.pk,
        message_id=send.message_id,
        recipient=send.email,
        smtp_code=code if code and code > 0 else None,
        smtp_reply=reply[:2000],
        bounce_category=category,
    )


# The pipeline's own fields; the result (status, reply) is written by events.record_attempts.
_BOOKKEEPING_FIELDS = [
    "skip_reason",
    "attempts",
    "first_attempt_at",
    "last_attempt_at",
    "due_at",
    "message_id",
    "claim_token",
]


def throttle() -> Throttle | None:
    if not settings.SEND_RATE_PER_SECOND and not settings.SEND_DOMAIN_RATES:
        return None
    return Throttle(rate=settings.SEND_RATE_PER_SECOND, domain_rates=settings.SEND_DOMAIN_RATES)


def send_batch(send_ids: list[int], *, now: datetime, transport: SmtpTransport | None = None) -> dict[str, int]:
    """Gate, render, sign and send claimed sends; record every result. Returns counts by status."""
    # In claim order: the oldest due first (and a crash repeats exactly the batch's sent head).
    sends = list(
        Send.objects.filter(pk__in=send_ids, status=SendStatus.SENDING)
        .select_related("campaign__subscription_type")
        .order_by("due_at", "pk")
    )
    if not sends:
        return {}
    by_campaign: dict[int, list[Send]] = {}
    for send in sends:
        by_campaign.setdefault(send.campaign_id, []).append(send)
    results: dict[int, events.Observation] = {}
    with contextlib.ExitStack() as stack:
        transports = _Transports(stack, smtp=transport)
        for campaign_sends in by_campaign.values():
            _send_campaign_batch(
                campaign_sends[0].campaign,
                campaign_sends,
                now=now,
                transports=transports,
                throttle=throttle(),
                results=results,
            )
    events.record_attempts(sends, results, fields=_BOOKKEEPING_FIELDS, now=now)
    counts: dict[str, int] = {}
    for send in sends:
        counts[send.status] = counts.get(send.status, 0) + 1
    return counts


class _Transports:
    """A batch's transports, opened on first use and closed with the batch."""

    def __init__(self, stack: contextlib.ExitStack, *, smtp: SmtpTransport | None) -> None:
        self.stack = stack
        self._smtp = smtp
        self._esp: EspTransport | None = None

    @property
    def smtp(self) -> SmtpTransport:
        if self._smtp is None:
            self._smtp = self.stack.enter_context(smtp_transport())
        return self._smtp

    @property
    def esp(self) -> EspTransport:
        if self._esp is None:
            self._esp = self.stack.enter_context(EspTransport())
        return self._esp


def _send_campaign_batch(
    campaign: Campaign,
    sends: list[Send],
    *,
    now: datetime,
    transports: _Transports,
    throttle: Throttle | None,
    results: dict[int, events.Observation],
) -> None:
    """Hand the campaign's sends over; each attempted send's result goes into `results`."""
    # The gate again, for this batch, now: someone may have unsubscribed since the audience was built.
    contacts = {
        contact.pk: contact
        for contact in annotate_refusal(Contact.objects.filter(pk__in=[s.contact_id for s in sends]), campaign, now=now)
    }
    esp = extensions.uses_esp(campaign.from_email)
    tokens = {send.claim_token for send in sends}
    started = renewed = time.monotonic()
    for position, send in enumerate(sends):
        if time.monotonic() - renewed > CLAIM_RENEWAL_SECONDS:
            # A slow batch (receiving servers that take their time) must not look abandoned. Only
            # the sends still to go move: a handed-over send keeps a claim time before its hand-over,
            # which tells a scanner's click before the batch is written back (campaigns.machines);
            # those still to go keep the batch's claim alive for all of it (recover_stale_claims).
            renewed = time.monotonic()
            Send.objects.filter(
                pk__in=in_values((waiting.pk for waiting in sends[position:]), "bigint"),
                claim_token__in=tokens,
                status=SendStatus.SENDING,
            ).update(claimed_at=now + timedelta(seconds=renewed - started))
        send.claim_token = ""
        contact = contacts.get(send.contact_id)
        if contact is None or contact.refusal:
            send.status = SendStatus.SKIPPED
            send.skip_reason = contact.refusal if contact else Ineligibility.NOT_SUBSCRIBED
            continue
        try:
            message, send.message_id = _message(campaign, contact, send_id=send.pk, now=now)
        except Exception as exc:
            # One contact whose data breaks rendering must not hold up, or endlessly retry, the batch.
            logger.exception("Rendering send %s of campaign %s failed", send.pk, campaign.pk)
            reason = f"Not sent: the message could not be rendered ({type(exc).__name__}: {exc})"
            results[send.pk] = _result(send, SendStatus.NOT_SENT, reason, now=now)
            continue
        if throttle is not None:
            throttle.wait(contact.email_normalized.rpartition("@")[2])
        send.attempts += 1
        if esp:
            metadata = {"send_id": str(send.pk), "campaign_id": str(campaign.pk)}
            handoff = transports.esp.hand_over(message, contact.email, metadata=metadata)
            results[send.pk] = _apply_handoff(send, handoff, now=_handed_over(send, now))
            continue
        signed = extensions.sign(message.message().as_bytes(linesep="\r\n"), campaign.from_email)
        outgoing = Outgoing(extensions.envelope_from(campaign.from_email, send.pk), _mailbox(contact), signed)
        reply = transports.smtp.deliver(outgoing)
        results[send.pk] = _apply(send, reply, now=_handed_over(send, now))


def _handed_over(send: Send, now: datetime) -> datetime:
    """Stamp the attempt with the moment the server answered, and return it.

    Not the batch's `now`: a batch of slow servers takes minutes, and the tracking's machine
    rules measure opens and clicks from this moment (a scanner clicks seconds after delivery).
    """
    at = max(now, timezone.now())
    send.first_attempt_at = send.first_attempt_at or at
    send.last_attempt_at = at
    return at


# anymail's send statuses: accepted for delivery (its webhooks tell the rest), refused, or failed.
_ACCEPTED_BY_ESP = {"sent", "queued", "scheduled", "unknown"}


def _apply_handoff(send: Send, handoff: Handoff, *, now: datetime) -> events.Observation:
    via_esp = {"now": now, "source": EventSource.ESP_API}
    if handoff.status in _ACCEPTED_BY_ESP:
        send.message_id = handoff.message_id or send.message_id
        return _result(send, SendStatus.ACCEPTED, f"Accepted by the ESP ({handoff.status}).", **via_esp)
    if handoff.status == "invalid":
        reply = "The ESP refused the address as invalid."
        return _result(send, SendStatus.HARD_BOUNCED, reply, category=bounces.BounceCategory.UNKNOWN_USER, **via_esp)
    if handoff.status == "rejected":
        reply = "The ESP refused to send to this address (its own suppression or policy)."
        return _result(send, SendStatus.NOT_SENT, reply, category=bounces.BounceCategory.POLICY, **via_esp)
    deferral = _apply(send, Reply(451, f"4.3.0 The ESP's API failed: {handoff.text or handoff.status}"), now=now)
    deferral.source = EventSource.ESP_API
    return deferral


def send_test(campaign: Campaign, *, contact: Contact, to: str) -> Reply:
    """Send the campaign as `contact` would get it to a staff address, through the real transport.

    Nothing is recorded as a send and no gate applies: the recipient is staff, not the contact.
    """
    message, _ = _message(campaign, contact, send_id=None, now=None, to=to, subject_prefix="[Test] ")
    if extensions.uses_esp(campaign.from_email):
        with EspTransport() as esp:
            handoff = esp.hand_over(message, to, metadata={"test": "yes"})
        accepted = handoff.status in _ACCEPTED_BY_ESP
        return Reply(250 if accepted else None, f"the ESP said {handoff.status} {handoff.text}".strip())
    signed = extensions.sign(message.message().as_bytes(linesep="\r\n"), campaign.from_email)
    with smtp_transport() as transport:
        return transport.deliver(Outgoing(campaign.from_email, to, signed))


def smtp_transport() -> SmtpTransport:
    smarthost = (settings.CAMPAIGN_SMTP_HOST, settings.CAMPAIGN_SMTP_PORT) if settings.CAMPAIGN_SMTP_HOST else None
    leases = ConnectionLeases(
        default=settings.SEND_CONNECTIONS_PER_DOMAIN,
        per_domain=settings.SEND_DOMAIN_CONNECTIONS,
        # Longer than one message can take (connect, EHLO, STARTTLS, EHLO, MAIL, RCPT, DATA: up to
        # nine replies): a live worker renews its leases before they lapse, a dead one's lapse.
        seconds=10 * settings.CAMPAIGN_SMTP_TIMEOUT_SECONDS,
    )
    return SmtpTransport(
        timeout=settings.CAMPAIGN_SMTP_TIMEOUT_SECONDS,
        mx_hosts=extensions.mx_hosts,
        smarthost=smarthost,
        port=settings.CAMPAIGN_SMTP_PORT,
        leases=leases,
    )


def recover_stale_claims(*, now: datetime) -> int:
    """Sends a dead worker held for too long go back to the queue (see the module's crash rule).

    A claim is alive while any of its sends was claimed or renewed recently: a slow batch renews
    only the sends it has yet to hand over.
    """
    cutoff = now - STALE_CLAIM
    alive = Send.objects.filter(status=SendStatus.SENDING, claimed_at__gte=cutoff).values("claim_token")
    return (
        Send.objects.filter(status=SendStatus.SENDING, claimed_at__lt=cutoff)
        .exclude(claim_token__in=alive)
        .update(status=SendStatus.QUEUED, claim_token="")
    )


def dispatch(*, now: datetime, enqueue) -> list[int]:
    """The scheduler's minute: start due campaigns, recover dead workers' sends, start the sending
    chains (`enqueue(campaign_id)`) of each campaign with due sends and none running, and close
    finished campaigns.

    Returns the campaigns it started chains for.
    """
    start_due_campaigns(now=now)
    recover_stale_claims(now=now)
    running = Send.objects.filter(status=SendStatus.SENDING).values("campaign_id")
    idle = list(
        Campaign.objects.filter(status=CampaignStatus.SENDING)
        .filter(sends__status__in=CLAIMABLE, sends__due_at__lte=now)
        .exclude(pk__in=running)
        .values_list("pk", flat=True)
        .distinct()
    )
    for campaign_id in idle:
        enqueue(campaign_id)
    finish_campaigns(now=now)
    return idle


def finish_campaigns(*, now: datetime) -> int:
    """Sending campaigns with nothing left to send or retry are sent."""
    pending = Send.objects.filter(status__in=[*CLAIMABLE, SendStatus.SENDING])
    done = Campaign.objects.filter(status=CampaignStatus.SENDING).exclude(pk__in=pending.values("campaign_id"))
    return done.update(status=CampaignStatus.SENT, status_changed_at=now)
