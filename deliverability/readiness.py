"""May mail go out with this From address? The question campaigns ask before sending."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.crypto import constant_time_compare, salted_hmac

from deliverability.domains import normalize_domain
from deliverability.esps import Transport
from deliverability.models import CheckStatus, SendingDomain


@dataclass(frozen=True)
class Readiness:
    allowed: bool
    domain: SendingDomain | None = None
    problems: list[str] = field(default_factory=list)


def check_from_address(address: str) -> Readiness:
    """Whether the address is on a sending domain whose last check passed, and if not, why.

    Failing records are named with their explanation. With REQUIRE_PASSING_SENDING_DOMAIN off
    (staging) the problems are still listed, but sending is allowed.
    """
    _, _, host = address.rpartition("@")
    try:
        name = normalize_domain(host)
    except ValidationError:
        return Readiness(False, problems=[f"{address!r} is not an email address."])
    domain = SendingDomain.objects.filter(domain=name).first()
    if domain is None:
        problems = [f"{name} is not a sending domain: add it under Deliverability → Sending domains."]
    elif domain.status == CheckStatus.NOT_CHECKED:
        problems = [f"{name} has not been checked yet: run 'Check now'."]
    else:
        problems = domain.failing_records()
    return Readiness(not problems or not settings.REQUIRE_PASSING_SENDING_DOMAIN, domain, problems)


_CACHE_SECONDS = 60
# Per From domain: (expires, envelope domain if the return path is ours else "", sends through an ESP)
_sender_cache: dict[str, tuple[float, str, bool]] = {}


def forget_cached_domain(domain_name: str) -> None:
    _sender_cache.pop(domain_name, None)


def _sender(from_address: str) -> tuple[float, str, bool]:
    # Cached for a minute per process: a batch asks once per message.
    name = from_address.rpartition("@")[2].lower()
    cached = _sender_cache.get(name)
    if cached is None or cached[0] < time.monotonic():
        domain = SendingDomain.objects.filter(domain=name).first()
        esp = domain is not None and domain.transport != Transport.SMTP
        ours = domain is not None and (not esp or bool(domain.return_path_domain))
        cached = (time.monotonic() + _CACHE_SECONDS, domain.envelope_domain if ours else "", esp)
        _sender_cache[name] = cached
    return cached


def _verp_mac(send_id: int) -> str:
    # Lowercase hex: MTAs may fold the case of a local part.
    return salted_hmac("deliverability.verp", str(send_id), algorithm="sha256").hexdigest()[:10]


def envelope_from(from_address: str, send_id: int) -> str:
    """The Return-Path for one send: a VERP address on the envelope domain when it is ours.

    `bounces+<send id>-<mac>@<domain>` tells which send an asynchronous bounce belongs to even
    when the bounce quotes nothing of the message; the MAC keeps a stranger from forging a
    bounce for someone else's send. On an ESP's shared return path it is the ESP's business,
    and the From address is returned.
    """
    envelope_domain = _sender(from_address)[1]
    return f"bounces+{send_id}-{_verp_mac(send_id)}@{envelope_domain}" if envelope_domain else from_address


_VERP = re.compile(r"bounces\+(\d{1,18})-([0-9a-f]{10})@", re.IGNORECASE)


def send_id_from_return_path(address: str) -> int | None:
    """The send a VERP return-path address belongs to; None for any other address or a bad MAC."""
    match = _VERP.search(address or "")
    if match is None:
        return None
    send_id = int(match.group(1))
    return send_id if constant_time_compare(match.group(2).lower(), _verp_mac(send_id)) else None


def uses_esp(from_address: str) -> bool:
    """Whether mail from this address goes through an ESP (anymail) rather than direct SMTP."""
    return _sender(from_address)[2]
