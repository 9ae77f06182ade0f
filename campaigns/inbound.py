"""Mail to our return path and unsubscribe address: bounces, complaints, auto-replies, unsubscribes.

It arrives through an anymail inbound webhook or `manage.py process_bounce_mail` (a mail server
pipes each message into it). What it can be:

- an RFC 3464 delivery report: per recipient a hard or soft bounce with its category, a
  delayed-delivery warning (deferred: the remote MTA keeps trying; not a bounce), or a
  success notice;
- an RFC 5965 feedback report: `abuse` (and fraud, virus) is a spam complaint, `opt-out` an
  unsubscribe;
- an automatic reply (RFC 3834: vacation, autoresponder), recorded and never a bounce;
- `unsubscribe <token>` mail from a List-Unsubscribe mailto link.

The message is matched to its send by our VERP return-path address (its MAC refused when
forged), else by the Message-ID of the returned message. A message that looks like a report
but cannot be read is kept as an UnprocessedPayload; other mail (spam to the bounce address)
is logged and dropped.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import parseaddr

from campaigns import bounces
from campaigns.events import EVENT_FOR_OUTCOME, Observation, record_events
from campaigns.extensions import extensions
from campaigns.models import EventSource, EventType, PayloadKind, UnprocessedPayload
from crm import links, optin

logger = logging.getLogger(__name__)

# Where the address a report was sent to shows: the MTA's envelope headers, then To.
_RECIPIENT_HEADERS = ("X-Original-To", "Delivered-To", "Envelope-To", "X-Envelope-To", "To")
_UNSUBSCRIBE_SUBJECT = re.compile(r"^\s*unsubscribe\s+(\S+)\s*$", re.IGNORECASE)
_BOUNCE_SENDERS = re.compile(r"mailer-daemon|postmaster", re.IGNORECASE)


@dataclass(frozen=True)
class Processed:
    """What a message turned out to be, and how many events it gave."""

    kind: str
    recorded: int = 0
    unreadable: bool = False

    def __str__(self) -> str:
        if self.unreadable:
            return f"{self.kind}: kept for staff to look at (Campaigns → Unprocessed payloads)"
        return f"{self.kind}: {self.recorded} event{'s' if self.recorded != 1 else ''} recorded"


def _send_id(message: Message, candidates: list[str]) -> int | None:
    addresses = [*candidates, *(str(message.get(name, "")) for name in _RECIPIENT_HEADERS)]
    for address in addresses:
        if send_id := extensions.send_id_from_return_path(address):
            return send_id
    return None


def _event_id(message: Message, raw: bytes) -> str:
    """The report's own Message-ID (the same report delivered twice is one event), else its hash."""
    message_id = " ".join(str(message.get("Message-ID", "")).split())
    return message_id[:200] or hashlib.sha256(raw).hexdigest()


def process_mail(raw: bytes, *, now: datetime, envelope_recipient: str = "", keep_failures: bool = True) -> Processed:
    """Read one inbound message and record what it says; never raises for what the message holds.

    A report that cannot be read is kept as an UnprocessedPayload, unless `keep_failures` is off
    (staff retrying one that is kept already).
    """
    keep = _keep if keep_failures else _not_kept
    try:
        message = BytesParser(policy=policy.compat32).parsebytes(raw)
    except Exception as exc:  # the email package can still fail on pathological input
        return keep(raw, f"unreadable message: {type(exc).__name__}: {exc}", now=now)
    send_id = _send_id(message, [envelope_recipient])
    if bounces.is_auto_reply(message):
        observation = Observation(
            type=EventType.AUTO_REPLY,
            source=EventSource.BOUNCE_MAIL,
            occurred_at=now,
            send_id=send_id,
            recipient=_sender(message),
            event_id=_event_id(message, raw),
            smtp_reply=" ".join(str(message.get("Subject", "")).split())[:500],
        )
        return Processed("automatic reply", len(record_events([observation], now=now)))
    report_type = str(message.get_param("report-type", "")).lower()
    if message.get_content_type() == "multipart/report" and report_type == "delivery-status":
        return _delivery_report(message, raw, send_id=send_id, now=now, keep=keep)
    if message.get_content_type() == "multipart/report" and report_type == "feedback-report":
        return _feedback_report(message, raw, send_id=send_id, now=now, keep=keep)
    subject = _UNSUBSCRIBE_SUBJECT.match(str(message.get("Subject", "")))
    if subject:
        return _unsubscribe(subject.group(1), now=now)
    if _BOUNCE_SENDERS.search(str(message.get("From", ""))) or message.get_content_type() == "multipart/report":
        return keep(raw, "looks like a bounce, but has no delivery or feedback report to read", now=now)
    logger.info("Ignored inbound mail that is neither a report nor an unsubscribe: %r", message.get("Subject"))
    return Processed("not a report")


def _sender(message: Message) -> str:
    return parseaddr(str(message.get("From", "")))[1].lower()


def _delivery_report(message: Message, raw: bytes, *, send_id: int | None, now: datetime, keep) -> Processed:
    recipients = bounces.parse_dsn(message)
    if not recipients:
        return keep(raw, "a delivery report without a machine-readable delivery-status part", now=now)
    event_id = _event_id(message, raw)
    observations = [
        Observation(
            type=EVENT_FOR_OUTCOME[recipient.classification.outcome],
            source=EventSource.BOUNCE_MAIL,
            occurred_at=now,
            # Our messages have one recipient each: a VERP address names the send.
            send_id=send_id if len(recipients) == 1 else None,
            message_id=recipient.original_message_id,
            recipient=recipient.final_recipient.lower(),
            event_id=event_id,
            bounce_category=recipient.classification.category,
            smtp_code=recipient.classification.code,
            smtp_reply=recipient.diagnostic_code or f"{recipient.action} {recipient.status}".strip(),
            payload={"action": recipient.action, "status": recipient.status, "diagnostic": recipient.diagnostic_code},
        )
        for recipient in recipients
    ]
    kinds = {recipient.action for recipient in recipients}
    kind = "delay warning" if kinds == {"delayed"} else "delivery report"
    return Processed(kind, len(record_events(observations, now=now)))


def _feedback_report(message: Message, raw: bytes, *, send_id: int | None, now: datetime, keep) -> Processed:
    report = bounces.parse_feedback_report(message)
    if report is None:
        return keep(raw, "a feedback report without its machine-readable part", now=now)
    if report.feedback_type in bounces.COMPLAINT_FEEDBACK:
        kind = EventType.COMPLAINT
    elif report.feedback_type in bounces.OPT_OUT_FEEDBACK:
        kind = EventType.UNSUBSCRIBE
    else:
        kind = EventType.OTHER
    send_id = (
        send_id
        or extensions.send_id_from_return_path(report.original_mail_from)
        or extensions.send_id_from_return_path(report.original_return_path)
    )
    observation = Observation(
        type=kind,
        source=EventSource.BOUNCE_MAIL,
        occurred_at=now,
        send_id=send_id,
        message_id=report.original_message_id,
        recipient=report.original_rcpt_to.lower(),
        event_id=_event_id(message, raw),
        user_agent=report.user_agent,
        smtp_reply=f"Feedback-Type: {report.feedback_type}",
        payload={"feedback_type": report.feedback_type, "source_ip": report.source_ip},
    )
    return Processed(
        f"feedback report ({report.feedback_type or 'no type'})", len(record_events([observation], now=now))
    )


def _unsubscribe(token: str, *, now: datetime) -> Processed:
    try:
        ref = links.read_unsubscribe_token(token)
    except links.BadToken:
        logger.info("Ignored unsubscribe mail with a token we did not make")
        return Processed("unsubscribe mail with an unknown token")
    optin.unsubscribe_by_link(ref, visitor=optin.Visitor(user_agent="unsubscribe mail"), now=now)
    return Processed("unsubscribe mail", 1)


def _not_kept(raw: bytes, error: str, *, now: datetime) -> Processed:
    return Processed(error, unreadable=True)


def _keep(raw: bytes, error: str, *, now: datetime) -> Processed:
    logger.warning("Kept inbound mail for staff: %s", error)
    UnprocessedPayload.objects.create(
        kind=PayloadKind.BOUNCE_MAIL, content_type="message/rfc822", body=raw, error=error, received_at=now
    )
    return Processed(error, unreadable=True)
