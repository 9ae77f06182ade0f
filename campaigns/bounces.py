"""What the receiving side said about a message: one classification table for every path.

Direct SMTP replies, RFC 3464 delivery reports and ESP webhook verdicts all end up as one
`Classification` (outcome + category) through the same ordered table, `_RULES`.

Outcome, from the reply code (RFC 5321), or from the enhanced status class when there is
no code (a DSN carries only a Status):
- 2xx: DELIVERED.
- 4xx: DEFERRED, retried; the category is kept so a deferral says why. When retries run
  out (`expire_deferral`, or a DSN with Action: failed and a 4.x.x status) it becomes a
  SOFT_BOUNCE in category EXPIRED.
- 5xx: a bounce. HARD only when the address itself is bad and must be suppressed:
  UNKNOWN_USER (no such user, mailbox disabled 5.2.1) and DNS_FAILURE (the domain does
  not exist or does not take mail). A 5xx about the message or the sender — mailbox full,
  message too large, policy/authentication, spam/content, reputation, unknown reasons
  (OTHER) — is SOFT: the address is fine, our mail was refused.
- No code and no status: NOT_SENT (no answer, timeout, connection refused) — not a bounce.
- Any other code (1xx, 3xx, smtplib's -1 for an unparsable reply): DEFERRED/OTHER. The
  server answered without a verdict, so we try again, as MTAs do on protocol errors.

Category, first match wins in `_RULES`: enhanced codes precise enough to trust (5.1.1,
5.2.2, RFC 7372 authentication codes, ...), then the reply text — RFC 3463 codes are often
vaguer than the words ("550 5.7.1 ... user unknown") — then the code's subject (X.7.x is
policy, ...), else OTHER. DELIVERED has no category ("").

ESP events (`classify_esp`) take the ESP's own verdict first, then the same table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from typing import NamedTuple

from django.db import models


class Outcome(models.TextChoices):
    DELIVERED = "delivered", "Delivered"
    DEFERRED = "deferred", "Deferred"
    HARD_BOUNCE = "hard_bounce", "Hard bounce"
    SOFT_BOUNCE = "soft_bounce", "Soft bounce"
    NOT_SENT = "not_sent", "Not sent"


class BounceCategory(models.TextChoices):
    UNKNOWN_USER = "unknown_user", "Unknown user"
    MAILBOX_FULL = "mailbox_full", "Mailbox full"
    POLICY = "policy", "Policy / authentication"
    SPAM_CONTENT = "spam_content", "Spam / content"
    REPUTATION = "reputation", "Reputation"
    DNS_FAILURE = "dns_failure", "DNS failure"
    MESSAGE_TOO_LARGE = "message_too_large", "Message too large"
    EXPIRED = "expired", "Expired after retries"
    OTHER = "other", "Other"


# The address itself is bad: a 5xx in these categories suppresses it.
HARD_CATEGORIES = frozenset({BounceCategory.UNKNOWN_USER, BounceCategory.DNS_FAILURE})


@dataclass(frozen=True)
class Classification:
    outcome: str
    category: str  # a BounceCategory, or "" for DELIVERED
    code: int | None
    enhanced: str
    text: str


@dataclass(frozen=True)
class DsnRecipient:
    final_recipient: str
    original_recipient: str
    action: str  # lowercased: failed, delayed, delivered, relayed, expanded
    status: str
    diagnostic_code: str
    classification: Classification
    original_message_id: str  # of the returned message, "" when not returned


_C = BounceCategory

# (enhanced status pattern, text pattern, category); first match wins. In status patterns
# X is the class digit; text patterns are searched case-insensitively.
_RULE_SOURCE: tuple[tuple[str, str, BounceCategory], ...] = (
    # Enhanced codes that mean what they say, whatever the text.
    ("X.1.1", "", _C.UNKNOWN_USER),
    ("X.1.2", "", _C.DNS_FAILURE),
    ("X.2.2", "", _C.MAILBOX_FULL),
    ("X.3.4", "", _C.MESSAGE_TOO_LARGE),
    # RFC 7372 DKIM/SPF/reverse DNS/DMARC codes; Microsoft's DMARC (509) and bulk sender
    # authentication (515) rejections.
    ("X.7.(2[0-7]|509|515)", "", _C.POLICY),
    # The text, most specific wording first.
    ("", r"message expired|retry time ?out exceeded|delivery time expired|too long in (the )?queue", _C.EXPIRED),
    # About our sender address, not the recipient's: must win over "domain not found".
    ("", r"sender address rejected|sender verify failed", _C.POLICY),
    ("", r"greylist|graylist|receiving mail (at a rate|too quickly)", _C.OTHER),
    (
        "",
        r"mailbox (is )?full|over ?quota|quota exceeded|exceeded storage allocation|out of storage"
        r"|insufficient (storage|space)|mailbox size limit|inbox is full|destinataire pleine",
        _C.MAILBOX_FULL,
    ),
    (
        "",
        r"host or domain name not found|domain (name )?not found|host not found|name service error|no mx\b"
        r"|null mx|nxdomain|no such domain|invalid domain|unrouteable mail domain|domain (does not|doesn't) exist",
        _C.DNS_FAILURE,
    ),
    (
        "",
        r"user unknown|unknown (user|recipient)|no such (user|mailbox|recipient)|(user|mailbox|recipient) not found"
        r"|recip(ient)?notfound|invalid (recipient|mailbox)|mailbox (unavailable|not available)|n[o']t exist"
        r"|unrouteable address|recipient address rejected: access denied|doesn't have an? \S+ account"
        r"|(tried to reach|mailbox|account) (is |has been )?(disabled|inactive|deactivated)",
        _C.UNKNOWN_USER,
    ),
    (
        "",
        r"message (size )?(exceeds|exceeded|is too (big|large))|message too (big|large)|size limit"
        r"|exceeds (the )?(maximum|fixed|size)",
        _C.MESSAGE_TOO_LARGE,
    ),
    ("", r"dmarc|\bspf\b|dkim|authenticat|reverse (dns|hostname)|\bptr\b", _C.POLICY),
    (
        "",
        r"reputation|block ?list|black ?list|blocked using|dnsbl|\brbl\b|spamhaus|spamcop|barracuda"
        r"|listed (at|in|on|by)\b|banned send|rate limit|ratelimit|throttl|unexpected volume|user complaints"
        r"|unusual rate|\[tss?\d+\]|traffic not accepted",
        _C.REPUTATION,
    ),
    (
        "",
        r"spam|unsolicited|junk|virus|malware|phish|content filter|message content|security issue|suspicious",
        _C.SPAM_CONTENT,
    ),
    (
        "",
        r"polic(y|ies)|not authori[sz]ed|relay(ing)? (access )?denied|relay not permitted"
        r"|administrative prohibition|restricted|not allowed|access denied",
        _C.POLICY,
    ),
    # The enhanced code's subject and detail, when the text said nothing we know.
    ("X.1.(3|6)", "", _C.UNKNOWN_USER),
    ("X.1.10", "", _C.DNS_FAILURE),  # RFC 7505 null MX
    ("X.1.[78]", "", _C.POLICY),  # bad sender address
    ("X.2.1", "", _C.UNKNOWN_USER),  # mailbox disabled
    ("X.2.3", "", _C.MESSAGE_TOO_LARGE),
    ("X.4.[34]", "", _C.DNS_FAILURE),
    ("X.4.7", "", _C.EXPIRED),
    (r"X.6.\d+", "", _C.SPAM_CONTENT),
    (r"X.7.\d+", "", _C.POLICY),
)


class _Rule(NamedTuple):
    status: re.Pattern[str] | None
    text: re.Pattern[str] | None
    category: BounceCategory


def _compile(status: str, text: str, category: BounceCategory) -> _Rule:
    return _Rule(
        re.compile(status.replace(".", r"\.").replace("X", "[245]")) if status else None,
        re.compile(text, re.IGNORECASE) if text else None,
        category,
    )


_RULES = tuple(_compile(*source) for source in _RULE_SOURCE)

_REPLY_CODE = re.compile(r"(\d{3})(?:[ -]|$)")
_ENHANCED = re.compile(r"([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)")
# RFC 3464 diagnostic-type ("smtp; 550 ...", "X-Postfix; ..."), also in Postmark's Details.
_DIAGNOSTIC_TYPE = re.compile(r"\s*(?:smtp|x-[\w.-]+)\s*;\s*", re.IGNORECASE)


def parse_reply(reply: str | bytes) -> tuple[int | None, str, str]:
    """Split an SMTP reply into (code, enhanced status, text) and never raise.

    Takes multi-line replies ("550-5.1.1 ...\\n550 5.1.1 ..."), smtplib's message without
    codes, a DSN Diagnostic-Code or an ESP's copy of the reply; repeated codes are dropped
    and the text is joined on single spaces. Missing parts come back as None or "".
    """
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", errors="replace")
    if match := _DIAGNOSTIC_TYPE.match(reply):
        reply = reply[match.end() :]
    code: int | None = None
    enhanced = ""
    words: list[str] = []
    for line in reply.splitlines():
        line = line.strip()
        if match := _REPLY_CODE.match(line):
            code = int(match.group(1)) if code is None else code
            line = line[match.end() :].strip()
        if match := _ENHANCED.match(line):
            enhanced = enhanced or match.group(1)
            line = line[match.end() :]
        words.extend(line.split())
    return code, enhanced, " ".join(words)


def _normalize_status(status: str) -> str:
    # Status fields may carry a comment: "4.4.0 (other or undefined network ...)".
    match = re.search(r"[245]\.\d{1,3}\.\d{1,3}", status)
    return match.group(0) if match else ""


def _match_category(enhanced: str, text: str) -> BounceCategory | None:
    for rule in _RULES:
        if rule.status and not rule.status.fullmatch(enhanced):
            continue
        if rule.text and not rule.text.search(text):
            continue
        return rule.category
    return None


def classify(code: int | None, text: str | bytes = "", *, enhanced: str = "") -> Classification:
    """Classify the receiving server's reply; see the module docstring for the rules.

    `code` is None when nothing was answered; `text` may be smtplib's bytes. An enhanced
    code at the start of the text is used when `enhanced` is not given. Never raises.
    """
    _, found, reply_text = parse_reply(text)
    enhanced = _normalize_status(enhanced) or found
    if code is not None:
        reply_class: int | None = code // 100
    else:
        reply_class = int(enhanced[0]) if enhanced else None
    if reply_class == 2:
        return Classification(Outcome.DELIVERED, "", code, enhanced, reply_text)
    category = _match_category(enhanced, reply_text) or BounceCategory.OTHER
    if reply_class == 5:
        outcome = Outcome.HARD_BOUNCE if category in HARD_CATEGORIES else Outcome.SOFT_BOUNCE
    elif reply_class is None:
        outcome = Outcome.NOT_SENT
    else:
        outcome = Outcome.DEFERRED
    return Classification(outcome, category, code, enhanced, reply_text)


def expire_deferral(last: Classification) -> Classification:
    """Return the soft bounce a deferral becomes when retries run out; other outcomes as they are."""
    if last.outcome != Outcome.DEFERRED:
        return last
    return replace(last, outcome=Outcome.SOFT_BOUNCE, category=BounceCategory.EXPIRED)


# "Bounced, hard or soft as the category says" in the verdict tables below.
_BOUNCED = "bounced"


class _Verdict(NamedTuple):
    outcome: str  # an Outcome, or _BOUNCED
    category: str = BounceCategory.OTHER  # when the reply code and text say nothing we know


# The ESP's raw bounce class, lowercased: Postmark `Type`, Mailgun `severity`, SendGrid
# `type`. The names do not collide across these ESPs.
_ESP_BOUNCE_TYPES: dict[str, _Verdict] = {
    "hardbounce": _Verdict(Outcome.HARD_BOUNCE, _C.UNKNOWN_USER),
    "bademailaddress": _Verdict(Outcome.HARD_BOUNCE, _C.UNKNOWN_USER),
    "softbounce": _Verdict(Outcome.SOFT_BOUNCE),
    "transient": _Verdict(Outcome.DEFERRED),
    "dnserror": _Verdict(Outcome.DEFERRED, _C.DNS_FAILURE),  # Postmark: a temporary DNS error
    # Postmark: the ISP blocked the message or filed it as spam; anymail calls it a complaint.
    "spamnotification": _Verdict(Outcome.SOFT_BOUNCE, _C.SPAM_CONTENT),
    "virusnotification": _Verdict(Outcome.SOFT_BOUNCE, _C.SPAM_CONTENT),
    "blocked": _Verdict(Outcome.SOFT_BOUNCE, _C.REPUTATION),  # Postmark and SendGrid: receiver block
    "dmarcpolicy": _Verdict(Outcome.SOFT_BOUNCE, _C.POLICY),
    # Mailgun's severity is only the reply class: permanent is any 5xx, not "bad address".
    "permanent": _Verdict(_BOUNCED),
    "temporary": _Verdict(Outcome.DEFERRED),
    "bounce": _Verdict(_BOUNCED),  # SendGrid's 5xx that is not a block
    "expired": _Verdict(Outcome.SOFT_BOUNCE, _C.EXPIRED),
}

# Anymail's normalized (event_type, reject_reason); ("event", "") is the event's default.
# Other event types (opened, clicked, complained, queued, ...) say nothing about delivery.
_ANYMAIL_VERDICTS: dict[tuple[str, str], _Verdict] = {
    ("delivered", ""): _Verdict(Outcome.DELIVERED, ""),
    ("deferred", ""): _Verdict(Outcome.DEFERRED),
    ("bounced", ""): _Verdict(_BOUNCED),
    ("bounced", "invalid"): _Verdict(Outcome.HARD_BOUNCE, _C.UNKNOWN_USER),
    ("bounced", "timed_out"): _Verdict(Outcome.SOFT_BOUNCE, _C.EXPIRED),
    ("bounced", "blocked"): _Verdict(Outcome.SOFT_BOUNCE, _C.REPUTATION),
    ("bounced", "spam"): _Verdict(Outcome.SOFT_BOUNCE, _C.SPAM_CONTENT),
    # Rejected: the ESP refused before any receiver saw the message.
    ("rejected", ""): _Verdict(Outcome.NOT_SENT),
    ("rejected", "invalid"): _Verdict(Outcome.HARD_BOUNCE, _C.UNKNOWN_USER),
    ("rejected", "bounced"): _Verdict(Outcome.HARD_BOUNCE, _C.UNKNOWN_USER),  # on the ESP's bounce list
    ("rejected", "timed_out"): _Verdict(Outcome.SOFT_BOUNCE, _C.EXPIRED),
    ("rejected", "blocked"): _Verdict(Outcome.NOT_SENT, _C.POLICY),  # the ESP's own policy
    ("failed", ""): _Verdict(Outcome.NOT_SENT),  # e.g. a template error at the ESP
}


def classify_esp(
    *,
    event: str,
    esp_reason: str = "",
    code: int | None = None,
    text: str = "",
    enhanced: str = "",
    esp_bounce_type: str = "",
) -> Classification | None:
    """Classify an ESP event: the ESP's verdict first, then its code and text through `_RULES`.

    `event` and `esp_reason` are anymail's event_type and reject_reason; `esp_bounce_type`
    the ESP's raw bounce class; `text` its copy of the receiver's reply (mta_response).
    Return None for events that say nothing about delivery (opens, clicks, complaints).
    """
    event = event.lower()
    verdict = (
        _ESP_BOUNCE_TYPES.get(esp_bounce_type.lower())
        or _ANYMAIL_VERDICTS.get((event, esp_reason.lower()))
        or _ANYMAIL_VERDICTS.get((event, ""))
    )
    if verdict is None:
        return None
    parsed_code, found, text = parse_reply(text)
    code = code if code is not None else parsed_code
    enhanced = _normalize_status(enhanced) or found
    if verdict.outcome == Outcome.DELIVERED:
        return Classification(Outcome.DELIVERED, "", code, enhanced, text)
    category = _match_category(enhanced, text) or verdict.category
    outcome = verdict.outcome
    if outcome == _BOUNCED:
        outcome = Outcome.HARD_BOUNCE if category in HARD_CATEGORIES else Outcome.SOFT_BOUNCE
    return Classification(outcome, category, code, enhanced, text)


_DSN_DELIVERED_ACTIONS = frozenset({"delivered", "relayed", "expanded"})
# Status is required by RFC 3464; these stand in when a sloppy MTA leaves it out.
_DSN_DEFAULT_STATUS = {"failed": "5.0.0", "delayed": "4.0.0"}


def parse_dsn(message: Message) -> list[DsnRecipient]:
    """Return one record per recipient of an RFC 3464 delivery report; [] for anything else."""
    if message.get_content_type() != "multipart/report":
        return []
    if str(message.get_param("report-type", "")).lower() != "delivery-status":
        return []
    recipient_blocks: list[Message] = []
    original_message_id = ""
    for part in message.get_payload():
        if not isinstance(part, Message):
            continue
        if part.get_content_type() == "message/delivery-status":
            # Header blocks: one about the whole message, then one per recipient.
            blocks = part.get_payload()
            if isinstance(blocks, list):
                recipient_blocks.extend(block for block in blocks if block.get("Final-Recipient"))
        elif (returned := _returned_headers(part)) is not None:
            original_message_id = _header(returned, "Message-ID")
    return [_dsn_recipient(block, original_message_id) for block in recipient_blocks]


def _dsn_recipient(block: Message, original_message_id: str) -> DsnRecipient:
    action = _header(block, "Action").lower()
    status = _normalize_status(_header(block, "Status"))
    diagnostic = _header(block, "Diagnostic-Code")
    code, found, text = parse_reply(diagnostic)
    classification = classify(code, text, enhanced=status or found or _DSN_DEFAULT_STATUS.get(action, ""))
    if action in _DSN_DELIVERED_ACTIONS:
        classification = replace(classification, outcome=Outcome.DELIVERED, category="")
    elif action == "delayed":
        classification = replace(classification, outcome=Outcome.DEFERRED)
    elif action == "failed":
        # An MTA that gave up after retrying reports its last 4.x.x status.
        classification = expire_deferral(classification)
    return DsnRecipient(
        final_recipient=_address(_header(block, "Final-Recipient")),
        original_recipient=_address(_header(block, "Original-Recipient")),
        action=action,
        status=status,
        diagnostic_code=diagnostic,
        classification=classification,
        original_message_id=original_message_id,
    )


def _returned_headers(part: Message) -> Message | None:
    content_type = part.get_content_type()
    if content_type == "message/rfc822":
        payload = part.get_payload()
        return payload[0] if isinstance(payload, list) and payload else None
    if content_type in {"text/rfc822-headers", "message/rfc822-headers"}:
        payload = part.get_payload()
        if isinstance(payload, list):  # parsed as message/*
            return payload[0] if payload else None
        raw = part.get_payload(decode=True)
        return BytesHeaderParser().parsebytes(raw) if isinstance(raw, bytes) else None
    return None


def _header(message: Message, name: str) -> str:
    # Unfolds continuation lines whatever the parsing policy.
    return " ".join(str(message.get(name, "")).split())


def _address(field: str) -> str:
    # "rfc822; user@example.com" -> "user@example.com"
    return field.partition(";")[2].strip() if ";" in field else field


_AUTO_REPLY_HEADERS = ("X-Autoreply", "X-Autorespond")
_BOUNCE_SENDERS = frozenset({"mailer-daemon", "postmaster"})


def is_auto_reply(message: Message) -> bool:
    """Whether an inbound message is an automatic reply (vacation, autoresponder), RFC 3834.

    Delivery reports also carry Auto-Submitted: auto-replied but are bounces, not replies:
    multipart/report messages and mail from MAILER-DAEMON or postmaster are never auto-replies.
    """
    if message.get_content_type() == "multipart/report":
        return False
    sender = parseaddr(str(message.get("From", "")))[1]
    if sender.partition("@")[0].lower() in _BOUNCE_SENDERS:
        return False
    auto_submitted = _header(message, "Auto-Submitted").partition(";")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        return True
    if any(_header(message, name) for name in _AUTO_REPLY_HEADERS):
        return True
    return _header(message, "Precedence").lower() == "auto_reply"


@dataclass(frozen=True)
class FeedbackReport:
    """An RFC 5965 abuse report (a mailbox provider's feedback loop): someone pressed "spam"."""

    feedback_type: str  # lowercased: abuse, fraud, virus, other, not-spam, opt-out, …
    original_mail_from: str
    original_rcpt_to: str
    user_agent: str
    source_ip: str
    original_message_id: str
    original_return_path: str


# Feedback types that mean the recipient does not want the mail (RFC 5965 and RFC 6650 use).
COMPLAINT_FEEDBACK = frozenset({"abuse", "fraud", "virus"})
OPT_OUT_FEEDBACK = frozenset({"opt-out", "optout", "unsubscribe"})


def parse_feedback_report(message: Message) -> FeedbackReport | None:
    """The report in a `multipart/report; report-type=feedback-report` message; None for anything else."""
    if message.get_content_type() != "multipart/report":
        return None
    if str(message.get_param("report-type", "")).lower() != "feedback-report":
        return None
    fields: Message | None = None
    returned: Message | None = None
    for part in message.get_payload():
        if not isinstance(part, Message):
            continue
        if part.get_content_type() == "message/feedback-report":
            fields = _feedback_fields(part)
        elif (headers := _returned_headers(part)) is not None:
            returned = headers
    if fields is None:
        return None
    return FeedbackReport(
        feedback_type=_header(fields, "Feedback-Type").lower(),
        original_mail_from=_address(_header(fields, "Original-Mail-From")).strip("<>"),
        original_rcpt_to=_address(_header(fields, "Original-Rcpt-To")).strip("<>"),
        user_agent=_header(fields, "User-Agent"),
        source_ip=_header(fields, "Source-IP"),
        original_message_id=_header(returned, "Message-ID") if returned is not None else "",
        original_return_path=_header(returned, "Return-Path").strip("<>") if returned is not None else "",
    )


def _feedback_fields(part: Message) -> Message:
    # message/feedback-report is a block of header fields; parsers give it as text or as a message.
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    raw = part.get_payload(decode=True)
    return BytesHeaderParser().parsebytes(raw if isinstance(raw, bytes) else str(payload).encode())
