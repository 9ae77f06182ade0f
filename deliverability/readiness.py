"""May mail go out with this From address? The question campaigns ask before sending."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError

from deliverability.domains import normalize_domain
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
