"""Reading a connected inbox's IMAP account: replies and bounce messages to one-to-one email.

One-to-one email goes out through the staff member's own mailbox, so its bounces come back
there as delivery reports (RFC 3464), read with the same parser as marketing bounce mail
(campaigns.bounces.parse_dsn) — but recorded on the one-to-one log, never as EmailEvents. A
failed delivery marks the message bounced and stops the contact's sequences; a hard bounce
also suppresses the address. A reply (matched by In-Reply-To/References, else by its
sender) stops the contact's sequences. Automatic replies (out of office) change nothing.

The folder is opened read-only and messages are fetched with BODY.PEEK, so reading never
marks the staff member's mail as read. Reading resumes after the highest UID already read
(while the folder's UIDVALIDITY holds); the first read looks at mail since the inbox was
connected. Recording is idempotent, so a message read twice changes nothing.
"""

from __future__ import annotations

import imaplib
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr

from django.core.exceptions import ValidationError

from campaigns import bounces, inboxes, onetoone
from campaigns.models import ConnectedInbox, OneToOneEmail, OneToOneStatus, SequenceEnrollment, StopReason
from crm.addresses import normalize_address

logger = logging.getLogger(__name__)

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_FAILED = frozenset({bounces.Outcome.HARD_BOUNCE, bounces.Outcome.SOFT_BOUNCE})
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class ReadResult:
    replies: int = 0
    bounces: int = 0
    other: int = 0
    problem: str = ""
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.problem:
            return self.problem
        return f"{self.replies} reply(ies), {self.bounces} bounce(s), {self.other} other message(s)"


def read_inboxes(*, now: datetime) -> dict[int, ReadResult]:
    """Read every inbox that has an IMAP account; one that fails does not hold up the others."""
    results = {}
    for inbox in ConnectedInbox.objects.exclude(imap_host="").exclude(imap_password_encrypted=""):
        results[inbox.pk] = read_inbox(inbox, now=now)
    return results


def read_inbox(inbox: ConnectedInbox, *, now: datetime) -> ReadResult:
    """Read the inbox's new messages and record the replies and bounces among them."""
    try:
        client = inboxes.open_imap(inbox)
    except inboxes.ConnectionProblem as problem:
        return _failed(inbox, f"IMAP {problem}", now=now)
    try:
        return _read(client, inbox, now=now)
    except inboxes.ConnectionProblem as problem:
        return _failed(inbox, f"IMAP {problem}", now=now)
    except (imaplib.IMAP4.error, OSError) as exc:
        return _failed(inbox, f"IMAP: reading {inbox.imap_folder} on {inbox.imap_host} failed: {exc}", now=now)
    finally:
        inboxes.close_imap(client)


def _failed(inbox: ConnectedInbox, problem: str, *, now: datetime) -> ReadResult:
    logger.warning("Inbox %s not read: %s", inbox.pk, problem)
    inbox.imap_problem = problem
    inbox.imap_read_at = now
    inbox.save(update_fields=["imap_problem", "imap_read_at"])
    return ReadResult(problem=problem)


def _read(client: imaplib.IMAP4, inbox: ConnectedInbox, *, now: datetime) -> ReadResult:
    inboxes.select_folder(client, inbox, inbox.imap_folder)
    _, validity = client.response("UIDVALIDITY")
    uid_validity = int(validity[0]) if validity and validity[0] else None
    last_uid = inbox.imap_last_uid if uid_validity == inbox.imap_uid_validity else 0
    if last_uid:
        status, data = client.uid("SEARCH", f"UID {last_uid + 1}:*")
    else:
        # A first read (or a folder made anew) looks at mail since the inbox was connected; the
        # day before, as the server may date its mail in another time zone.
        since = inbox.created_at - timedelta(days=1)
        status, data = client.uid("SEARCH", f"SINCE {since.day}-{_MONTHS[since.month - 1]}-{since.year}")
    if status != "OK":
        raise inboxes.ConnectionProblem(inboxes.Step.FOLDER, f"the server refused to search: {data!r}.")
    # "UID n:*" always matches the newest message, even when it is older than n.
    uids = sorted(uid for uid in (int(part) for part in (data[0] or b"").split()) if uid > last_uid)
    result = ReadResult()
    for uid in uids:
        raw = _fetch(client, uid)
        if raw is not None:
            _record(BytesParser(policy=policy.compat32).parsebytes(raw), inbox, result, now=now)
        last_uid = uid
    inbox.imap_uid_validity = uid_validity
    inbox.imap_last_uid = last_uid
    inbox.imap_read_at = now
    inbox.imap_problem = ""
    inbox.save(update_fields=["imap_uid_validity", "imap_last_uid", "imap_read_at", "imap_problem"])
    return result


def _fetch(client: imaplib.IMAP4, uid: int) -> bytes | None:
    status, data = client.uid("FETCH", str(uid), "(BODY.PEEK[])")
    if status != "OK":
        return None
    for part in data:
        if isinstance(part, tuple) and len(part) == 2:
            return part[1]
    return None


def _record(message: Message, inbox: ConnectedInbox, result: ReadResult, *, now: datetime) -> None:
    recipients = bounces.parse_dsn(message)
    if recipients:
        result.bounces += sum(_record_bounce(recipient, inbox, now=now) for recipient in recipients)
        return
    if bounces.is_auto_reply(message):
        result.other += 1
        return
    if _record_reply(message, inbox, now=now):
        result.replies += 1
    else:
        result.other += 1


def _message_ids(message: Message, *names: str) -> list[str]:
    found = []
    for name in names:
        found += _MESSAGE_ID.findall(" ".join(str(value) for value in message.get_all(name, [])))
    return found


def _record_bounce(recipient: bounces.DsnRecipient, inbox: ConnectedInbox, *, now: datetime) -> bool:
    if recipient.classification.outcome not in _FAILED:
        return False  # a delay warning or a success notice: nothing failed
    sent = OneToOneEmail.objects.filter(inbox=inbox)
    logged = None
    if recipient.original_message_id:
        logged = sent.filter(message_id=recipient.original_message_id.strip()).first()
    if logged is None and recipient.final_recipient:
        try:
            address = normalize_address(recipient.final_recipient)
        except ValidationError:
            address = recipient.final_recipient.lower()
        logged = sent.filter(email=address).order_by("-sent_at").first()
    if logged is None:
        return False
    if logged.bounced_at is None:
        logged.status = OneToOneStatus.BOUNCED
        logged.bounced_at = now
        logged.bounce_category = recipient.classification.category
        logged.bounce_reply = (recipient.diagnostic_code or f"{recipient.action} {recipient.status}")[:2000]
        logged.save(update_fields=["status", "bounced_at", "bounce_category", "bounce_reply"])
    if logged.contact_id is not None:
        SequenceEnrollment.objects.filter(contact_id=logged.contact_id).stop(reason=StopReason.BOUNCED, now=now)
    if recipient.classification.outcome == bounces.Outcome.HARD_BOUNCE:
        onetoone.record_hard_bounce(logged, now=now)
    return True


def _record_reply(message: Message, inbox: ConnectedInbox, *, now: datetime) -> bool:
    sent = OneToOneEmail.objects.filter(inbox=inbox)
    logged = None
    thread = _message_ids(message, "In-Reply-To", "References")
    if thread:
        logged = sent.filter(message_id__in=thread).order_by("-sent_at").first()
    if logged is None:
        sender = parseaddr(str(message.get("From", "")))[1]
        try:
            address = normalize_address(sender)
        except ValidationError:
            return False
        # Some mail clients drop the threading headers; the sender still replied to us.
        logged = sent.filter(email=address).order_by("-sent_at").first()
    if logged is None or _is_from_inbox(message, inbox):
        return False
    if logged.replied_at is None:
        logged.replied_at = now
        logged.reply_subject = " ".join(str(message.get("Subject", "")).split())[:250]
        logged.save(update_fields=["replied_at", "reply_subject"])
    if logged.contact_id is not None:
        SequenceEnrollment.objects.filter(contact_id=logged.contact_id).stop(reason=StopReason.REPLIED, now=now)
    return True


def _is_from_inbox(message: Message, inbox: ConnectedInbox) -> bool:
    """Our own message (a copy in the inbox, or sent to ourselves) is no reply."""
    senders = [address.lower() for _, address in getaddresses([str(message.get("From", ""))])]
    return inbox.from_email.lower() in senders
