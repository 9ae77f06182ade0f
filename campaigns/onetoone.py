"""One-to-one email: a staff member writes to one contact, and it goes out at once through
their own mailbox (or the hosted inbox), logged on the contact's timeline.

It is not marketing email: no unsubscribe header or footer, no tracking, not a Send, not
counted in marketing rates or the frequency cap. Still refused for contacts who asked not to
be contacted at all and for addresses that hard-bounced or complained — and for the same
text going to more than ONE_TO_ONE_BULK_LIMIT contacts within an hour, which is bulk email
and belongs in a campaign.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction

from campaigns import bounces, inboxes, rendering
from campaigns.extensions import extensions
from campaigns.models import (
    ConnectedInbox,
    InboxKind,
    OneToOneEmail,
    OneToOneStatus,
    SequenceEnrollment,
    SequenceStep,
    StopReason,
)
from campaigns.pipeline import smtp_transport
from campaigns.transports import EspTransport, Outgoing
from crm import suppression
from crm.models import Contact, EmailStatus, Suppression, SuppressionReason

logger = logging.getLogger(__name__)

BULK_WINDOW = timedelta(hours=1)
# Suppressions that stop one-to-one email too: the mailbox does not work, or the person said spam.
# (An unsubscribe from marketing email does not: a salesperson may still answer a question.)
REFUSING_SUPPRESSIONS = (SuppressionReason.HARD_BOUNCE, SuppressionReason.COMPLAINT)
_ACCEPTED_BY_ESP = {"sent", "queued", "scheduled", "unknown"}


class Refused(Exception):
    """The message may not go; the text says why in plain words. `bulk` marks the bulk guard."""

    def __init__(self, message: str, *, bulk: bool = False) -> None:
        super().__init__(message)
        self.bulk = bulk


def contact_refusal(contact: Contact) -> str | None:
    """Why no one-to-one email may go to `contact`, or None if it may."""
    if contact.do_not_contact:
        return f"{contact.email} asked not to be contacted at all."
    reasons = set(
        Suppression.objects.filter(email=contact.email_normalized, reason__in=REFUSING_SUPPRESSIONS).values_list(
            "reason", flat=True
        )
    )
    if contact.email_status == EmailStatus.COMPLAINED or SuppressionReason.COMPLAINT in reasons:
        return f"{contact.email} marked our email as spam: no email may go to this address."
    if contact.email_status == EmailStatus.HARD_BOUNCED or SuppressionReason.HARD_BOUNCE in reasons:
        return f"Mail to {contact.email} hard-bounced: the mailbox does not accept it."
    if contact.email_status == EmailStatus.INVALID:
        return f"{contact.email} is marked as an invalid address."
    return None


def fingerprint(subject: str, body: str) -> str:
    """The text as written, before personalization, with case and spacing ignored."""
    text = " ".join(subject.lower().split()) + "\n" + " ".join(body.lower().split())
    return hashlib.sha256(text.encode()).hexdigest()


def bulk_refusal(text_fingerprint: str, contact: Contact, *, now: datetime) -> str | None:
    """Why this text may not go to one more contact this hour, or None if it may."""
    others = (
        OneToOneEmail.objects.filter(fingerprint=text_fingerprint, sent_at__gt=now - BULK_WINDOW)
        .exclude(status=OneToOneStatus.NOT_SENT)
        .exclude(email=contact.email_normalized)
        .values("email")
        .distinct()
        .count()
    )
    limit = settings.ONE_TO_ONE_BULK_LIMIT
    if others < limit:
        return None
    return (
        f"This text already went to {others} other contacts within the last hour. The same message to more "
        f"than {limit} contacts an hour is bulk email: use a campaign, which checks consent and carries an "
        "unsubscribe link."
    )


def template_problems(subject: str, body: str) -> list[str]:
    problems = rendering.check_templates(subject=subject, html="", text=body)
    return [str(problem).replace("text body", "body", 1) for problem in problems]


def render_message(contact: Contact, *, subject: str, body: str) -> rendering.Rendered:
    """The subject and body as `contact` gets them (the campaigns' personalization, no links)."""
    context = rendering.recipient_context(
        contact=rendering.contact_values(contact),
        campaign_name="",
        subject=subject,
        unsubscribe_url="",
        preferences_url="",
        view_in_browser_url="",
    )
    return rendering.render(subject=subject, html="", text=body, context=context)


def inbox_of(user) -> ConnectedInbox | None:
    return ConnectedInbox.objects.filter(user=user).first()


def from_address_refusal(inbox: ConnectedInbox) -> str | None:
    """For a hosted inbox: why its From address may not send through our transport, or None."""
    if inbox.kind != InboxKind.HOSTED:
        return None
    check = extensions.check_from_address(inbox.from_email)
    if check.allowed:
        return None
    domain = inbox.from_email.rpartition("@")[2]
    return f"The hosted inbox sends from {inbox.from_email}, and {domain} is not a passing sending domain: " + " ".join(
        check.problems
    )


@dataclass(frozen=True)
class Delivery:
    status: str  # a OneToOneStatus
    code: int | None
    text: str
    category: str = ""


def send_one_to_one(
    *,
    contact: Contact,
    sender,
    subject: str,
    body: str,
    now: datetime,
    reply_to: str = "",
    enrollment: SequenceEnrollment | None = None,
    step: SequenceStep | None = None,
) -> OneToOneEmail | None:
    """Send one message from `sender`'s inbox to `contact` now and log it; raises Refused.

    The result (sent, rejected with the server's reply, not sent and why) is on the returned
    row. For a sequence step, None means the step was already sent to this enrollment.
    """
    inbox = inbox_of(sender)
    if inbox is None:
        raise Refused("You have no connected inbox: set one up under Campaigns → Connected inboxes.")
    refusal = contact_refusal(contact)
    if refusal:
        raise Refused(refusal)
    problems = template_problems(subject, body)
    if problems:
        raise Refused("The message has template errors: " + "; ".join(problems))
    text_fingerprint = fingerprint(subject, body)
    refusal = bulk_refusal(text_fingerprint, contact, now=now)
    if refusal:
        raise Refused(refusal, bulk=True)
    refusal = from_address_refusal(inbox)
    if refusal:
        raise Refused(refusal)
    rendered = render_message(contact, subject=subject, body=body)
    domain = inbox.from_email.rpartition("@")[2]
    logged = OneToOneEmail(
        contact=contact,
        email=contact.email_normalized,
        sender=sender,
        inbox=inbox,
        inbox_label=inbox.label[:300],
        subject=rendered.subject[:250],
        body=rendered.text,
        reply_to=reply_to,
        fingerprint=text_fingerprint,
        enrollment=enrollment,
        step=step,
        message_id=f"<{secrets.token_hex(12)}.1to1@{domain}>",
        sent_at=now,
    )
    try:
        # The row is the claim on a sequence step: a second run of the job stops here.
        with transaction.atomic():
            logged.save()
    except IntegrityError:
        if step is None:
            raise
        return None
    message = _message(inbox, logged, to=contact.email)
    delivery = _deliver(inbox, message, recipient=_mailbox(contact))
    logged.status = delivery.status
    logged.smtp_code = delivery.code
    logged.smtp_reply = delivery.text[:2000]
    logged.bounce_category = delivery.category
    logged.save(update_fields=["status", "smtp_code", "smtp_reply", "bounce_category"])
    if delivery.status == OneToOneStatus.REJECTED and delivery.category in bounces.HARD_CATEGORIES:
        record_hard_bounce(logged, now=now)
    if delivery.status == OneToOneStatus.SENT and inbox.imap_sent_folder and inbox.has_imap():
        _save_sent_copy(inbox, message, now=now)
    return logged


def _message(inbox: ConnectedInbox, logged: OneToOneEmail, *, to: str) -> EmailMessage:
    return EmailMessage(
        subject=logged.subject,
        body=logged.body,
        from_email=inbox.from_header,
        to=[to],
        reply_to=[logged.reply_to] if logged.reply_to else None,
        headers={"Message-ID": logged.message_id},
    )


def _mailbox(contact: Contact) -> str:
    """The mailbox name as the person gave it, the domain in its ASCII (IDNA) form."""
    return f"{contact.email.rpartition('@')[0]}@{contact.email_normalized.rpartition('@')[2]}"


def _verdict(code: int | None, text: str) -> Delivery:
    classification = bounces.classify(code, text)
    if code is not None and 200 <= code < 300:
        return Delivery(OneToOneStatus.SENT, code, text)
    if code is not None and 500 <= code < 600:
        return Delivery(OneToOneStatus.REJECTED, code, text, classification.category)
    if code is not None and 400 <= code < 500:
        return Delivery(OneToOneStatus.NOT_SENT, code, f"{text} (refused for now: try again later)")
    return Delivery(OneToOneStatus.NOT_SENT, None, text)


def _deliver(inbox: ConnectedInbox, message: EmailMessage, *, recipient: str) -> Delivery:
    raw = message.message().as_bytes(linesep="\r\n")
    if inbox.kind == InboxKind.HOSTED:
        return _deliver_hosted(inbox, message, raw, recipient=recipient)
    try:
        client = inboxes.open_smtp(inbox)
    except inboxes.ConnectionProblem as problem:
        return Delivery(OneToOneStatus.NOT_SENT, None, f"SMTP {problem}")
    try:
        return _transaction(client, inbox.from_email, recipient, raw)
    except (smtplib.SMTPException, OSError) as exc:
        return Delivery(OneToOneStatus.NOT_SENT, None, f"{inbox.smtp_host} broke off the conversation: {exc}")
    finally:
        inboxes.close_smtp(client)


def _transaction(client: smtplib.SMTP, sender: str, recipient: str, raw: bytes) -> Delivery:
    # Step by step, not sendmail(): the reply to RCPT or DATA is what the sender must see.
    options = []
    if not recipient.isascii():
        # A non-ASCII mailbox name needs SMTPUTF8 (RFC 6531); without it the server cannot take it.
        if not client.has_extn("smtputf8"):
            return Delivery(
                OneToOneStatus.NOT_SENT, None, "The mailbox's server does not accept internationalized addresses."
            )
        options.append("SMTPUTF8")
    code, text = client.mail(sender, options)
    if code == 250:
        code, text = client.rcpt(recipient)
        if code in {250, 251}:
            code, text = client.data(raw)
    return _verdict(code, " ".join(text.decode("utf-8", "replace").split()))


def _deliver_hosted(inbox: ConnectedInbox, message: EmailMessage, raw: bytes, *, recipient: str) -> Delivery:
    if extensions.uses_esp(inbox.from_email):
        with EspTransport() as esp:
            handoff = esp.hand_over(message, recipient, metadata={"one_to_one": "yes"})
        if handoff.status in _ACCEPTED_BY_ESP:
            return Delivery(OneToOneStatus.SENT, None, f"Accepted by the ESP ({handoff.status}).")
        if handoff.status in {"invalid", "rejected"}:
            return Delivery(OneToOneStatus.REJECTED, None, f"The ESP refused the address ({handoff.status}).")
        return Delivery(OneToOneStatus.NOT_SENT, None, f"The ESP's API failed: {handoff.text or handoff.status}")
    signed = extensions.sign(raw, inbox.from_email)
    with smtp_transport() as transport:
        reply = transport.deliver(Outgoing(inbox.from_email, recipient, signed))
    return _verdict(reply.code, reply.text)


def _save_sent_copy(inbox: ConnectedInbox, message: EmailMessage, *, now: datetime) -> None:
    """Put a copy in the IMAP account's sent folder, as a mail client would; a failure only logs."""
    try:
        client = inboxes.open_imap(inbox)
    except inboxes.ConnectionProblem as problem:
        logger.warning("No sent copy for inbox %s: IMAP %s", inbox.pk, problem)
        return
    try:
        folder = '"' + inbox.imap_sent_folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
        status, data = client.append(folder, r"(\Seen)", now, message.message().as_bytes(linesep="\r\n"))
        if status != "OK":
            logger.warning("No sent copy for inbox %s: the server said %r", inbox.pk, data)
    except Exception:
        logger.exception("No sent copy for inbox %s", inbox.pk)
    finally:
        inboxes.close_imap(client)


def record_hard_bounce(logged: OneToOneEmail, *, now: datetime) -> None:
    """The address does not work: suppress it, mark the contact and stop their sequences."""
    suppression.suppress_address(
        logged.email, reason=SuppressionReason.HARD_BOUNCE, now=now, source=f"one-to-one email {logged.pk}"
    )
    if logged.contact_id is not None:
        Contact.objects.filter(pk=logged.contact_id, email_status=EmailStatus.OK).update(
            email_status=EmailStatus.HARD_BOUNCED
        )
        SequenceEnrollment.objects.filter(contact_id=logged.contact_id).stop(reason=StopReason.BOUNCED, now=now)
