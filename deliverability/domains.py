"""Domain names, organisational domains and the domain-combination rules.

The rules follow the ESP industry's guidance (HubSpot's "sending domain" article among
others): a subdomain that hosts content must not send, a dedicated IP's return-path domain
must not be the From domain, and a dedicated sending subdomain protects the root domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from django.core.exceptions import ValidationError
from django.db import models
from publicsuffixlist import PublicSuffixList


class Level(models.TextChoices):
    ERROR = "error", "Refused"
    WARNING = "warning", "Warning"
    ADVICE = "advice", "Recommendation"
    GOOD = "good", "Good"


@dataclass(frozen=True)
class Finding:
    level: str
    message: str


@cache
def _public_suffixes() -> PublicSuffixList:
    # The list ships inside the package: no download, ever.
    return PublicSuffixList()


def normalize_domain(value: str) -> str:
    """Return the lowercase ASCII (IDNA) form; raise ValidationError when it is not a host name."""
    name = value.strip().rstrip(".").lower()
    if name.startswith(("http://", "https://")) or "/" in name or "@" in name:
        raise ValidationError(f"Enter a domain name such as news.example.com, not {value!r}.")
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError(f"{value!r} is not a valid domain name.") from None
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_valid_label(label) for label in labels):
        raise ValidationError(f"{value!r} is not a valid domain name.")
    return name


def _valid_label(label: str) -> bool:
    return (
        0 < len(label) <= 63 and label[0] != "-" and label[-1] != "-" and all(c.isalnum() or c in "-_" for c in label)
    )


def organisational_domain(domain: str) -> str | None:
    """The registrable domain (example.co.uk for news.example.co.uk); None for a public suffix."""
    return _public_suffixes().privatesuffix(domain)


def is_subdomain_of(name: str, parent: str) -> bool:
    return name == parent or name.endswith("." + parent)


def combination_findings(
    *, domain: str, content_domains: list[str], dedicated_ip: bool, return_path_domain: str
) -> list[Finding]:
    """Judge a From domain with the organisation's content domains and its return path.

    An ERROR finding means the combination breaks mail and the domain is refused.
    """
    root = organisational_domain(domain)
    if root is None:
        return [Finding(Level.ERROR, f"{domain} is a public suffix: mail must come from a domain you own.")]
    findings = []
    if domain in content_domains and domain != root:
        findings.append(
            Finding(
                Level.ERROR,
                f"{domain} hosts content (website, blog or landing pages) and cannot also send: its "
                "CNAME for the content conflicts with the TXT and MX records sending needs, and "
                "authentication fails. Send from a dedicated subdomain such as "
                f"{_suggestion(root, content_domains)} instead.",
            )
        )
    elif domain == root:
        findings.append(
            Finding(
                Level.ADVICE,
                f"Sending from the root domain {root} works, but its reputation is the one your "
                "company's own mail relies on. A dedicated sending subdomain such as "
                f"{_suggestion(root, content_domains)} keeps marketing mail's reputation apart.",
            )
        )
    else:
        findings.append(
            Finding(
                Level.GOOD,
                f"{domain} is a dedicated sending subdomain of {root}: its reputation stays apart from "
                "the root domain's and from the content on " + (", ".join(content_domains) or f"www.{root}") + ".",
            )
        )
    findings += _return_path_findings(domain, root, dedicated_ip=dedicated_ip, return_path_domain=return_path_domain)
    for content in content_domains:
        if organisational_domain(content) != root:
            findings.append(
                Finding(
                    Level.WARNING,
                    f"The content domain {content} is not under {root}: links to another domain than "
                    "the From domain look like phishing to some filters.",
                )
            )
    return findings


def _return_path_findings(domain: str, root: str, *, dedicated_ip: bool, return_path_domain: str) -> list[Finding]:
    if not return_path_domain:
        if dedicated_ip:
            return [
                Finding(
                    Level.WARNING,
                    "A dedicated IP should have its own return-path domain (such as "
                    f"bounces.{domain}), so that SPF aligns with the From domain.",
                )
            ]
        return []
    if not dedicated_ip:
        return [
            Finding(
                Level.ERROR,
                "A custom return-path domain needs a dedicated IP: on shared IPs the sending "
                "network's own return path is used.",
            )
        ]
    if return_path_domain == domain:
        return [
            Finding(
                Level.ERROR,
                f"The return-path domain must not be the From domain {domain}: its MX or CNAME for "
                "bounces conflicts with the From domain's own MX, bounces go astray and your "
                f"company's own mail to {domain} breaks. Use a separate name such as bounces.{domain}.",
            )
        ]
    if organisational_domain(return_path_domain) != root:
        return [
            Finding(
                Level.WARNING,
                f"The return-path domain {return_path_domain} is not under {root}: SPF will not align "
                "with the From domain, so DMARC rests on DKIM alone.",
            )
        ]
    return []


def _suggestion(root: str, content_domains: list[str]) -> str:
    for prefix in ("news", "mail", "email", "em"):
        candidate = f"{prefix}.{root}"
        if candidate not in content_domains:
            return candidate
    return f"send.{root}"
