"""Email addresses: validation, the normalized key, and role-address detection.

The normalized address is what identifies a person across contacts, imports, suppression
and ESP events: the local part lowercased (every mailbox provider we meet treats it
case-insensitively, whatever RFC 5321 allows) and the domain in its ASCII (IDNA) form, so
`Foo@Bücher.DE` and `foo@xn--bcher-kva.de` are one address.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

import email_validator
from django.core.exceptions import ValidationError

# Mailboxes that belong to a function, not a person. Mailing them is allowed but flagged:
# they rarely opted in themselves and often feed abuse desks or ticket systems.
ROLE_LOCAL_PARTS = frozenset(
    {
        "abuse",
        "admin",
        "administrator",
        "billing",
        "compliance",
        "devnull",
        "dns",
        "do-not-reply",
        "donotreply",
        "ftp",
        "help",
        "hostmaster",
        "info",
        "list",
        "list-request",
        "mailer-daemon",
        "marketing",
        "no-reply",
        "noc",
        "noreply",
        "null",
        "office",
        "postmaster",
        "privacy",
        "root",
        "sales",
        "security",
        "spam",
        "support",
        "sysadmin",
        "tech",
        "undisclosed-recipients",
        "unsubscribe",
        "usenet",
        "uucp",
        "webmaster",
        "www",
    }
)


# The shape nearly every real address has: plain ASCII dot-atoms and a letters-only top-level
# domain, matched once lowercased. Such an address is valid by email-validator's rules too, so it
# skips the full parser (about 40 µs per address: most of a million-row import). Anything else gets
# the full check.
_PLAIN_ADDRESS = re.compile(
    r"[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*@"
    r"(?:(?![a-z0-9]{2}--)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
    re.ASCII,
)
_SPECIAL_USE_DOMAINS = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)


class Address(NamedTuple):
    """A validated address: as the person wrote it (trimmed) and its normalized key."""

    given: str
    normalized: str
    is_role: bool


def parse_address(raw: object) -> Address:
    """Validate an address and return it with its normalized key.

    Raises ValidationError with a message a person can act on. No DNS lookups: this runs on
    every form post and every import row.
    """
    if not isinstance(raw, str):
        raise ValidationError("Enter an email address.", code="required")
    given = raw.strip()
    if not given:
        raise ValidationError("Enter an email address.", code="required")
    if len(given) > 254:
        raise ValidationError("This email address is too long (at most 254 characters).", code="too_long")
    lowered = given.lower()
    if _PLAIN_ADDRESS.fullmatch(lowered):
        at = lowered.index("@")
        if at <= 64 and lowered[lowered.rindex(".") + 1 :] not in _SPECIAL_USE_DOMAINS:
            return Address(given, lowered, is_role_local_part(lowered[:at]))
    try:
        info = email_validator.validate_email(given, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValidationError(f"{given!r} is not a valid email address: {exc}", code="invalid") from None
    local = unicodedata.normalize("NFC", info.local_part).lower()
    domain = (info.ascii_domain or info.domain).lower()
    return Address(given=given, normalized=f"{local}@{domain}", is_role=is_role_local_part(local))


def normalize_address(raw: str) -> str:
    """Return the normalized key of a valid address (raises ValidationError otherwise)."""
    return parse_address(raw).normalized


def is_role_local_part(local: str) -> bool:
    # "postmaster+bounces" and "no_reply" are still role mailboxes.
    base = local.split("+", 1)[0].replace("_", "-")
    return base in ROLE_LOCAL_PARTS


# Big mailbox providers: a domain one typing mistake away from one of these (and not one of
# them itself) is probably that mistake.
PROVIDERS = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "ymail.com", "hotmail.com", "outlook.com", "live.com",
        "msn.com", "icloud.com", "me.com", "mac.com", "aol.com", "mail.com", "email.com", "gmx.com", "gmx.net",
        "gmx.de", "web.de", "t-online.de", "yahoo.co.uk", "hotmail.co.uk", "btinternet.com", "hotmail.fr",
        "orange.fr", "free.fr", "laposte.net", "wanadoo.fr", "libero.it", "comcast.net", "verizon.net",
        "protonmail.com", "proton.me", "yandex.ru", "mail.ru", "qq.com", "163.com",
    }
)  # fmt: skip
# Mistakes too far from the provider for one edit, seen often enough to list.
KNOWN_TYPOS = {
    "gmial.com": "gmail.com",
    "gamil.com": "gmail.com",
    "gmaill.com": "gmail.com",
    "gmail.cmo": "gmail.com",
    "hotmial.com": "hotmail.com",
    "hotamil.com": "hotmail.com",
    "hotmail.cmo": "hotmail.com",
    "yahooo.com": "yahoo.com",
    "yaho.com": "yahoo.com",
    "outlok.com": "outlook.com",
    "iclod.com": "icloud.com",
}


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            cost = 0 if char_a == char_b else 1
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                value = min(value, previous2[j - 2] + 1)
            current.append(value)
        previous2, previous = previous, current
    return previous[-1]


def suggest_domain(domain: str) -> str | None:
    """The provider a mistyped domain was meant to be, or None."""
    domain = domain.lower()
    if domain in PROVIDERS:
        return None
    if domain in KNOWN_TYPOS:
        return KNOWN_TYPOS[domain]
    close = sorted(provider for provider in PROVIDERS if edit_distance(domain, provider) == 1)
    return close[0] if len(close) == 1 else None
