"""What to do about a sending domain, from what its recent mail shows.

- Many "unknown user" bounces: the list is old or was not collected with consent; name the
  import the bounced contacts came from.
- "Policy / authentication" bounces: name the domain's failing DNS records (or, when all pass,
  quote what the receivers said).
- "Spam / content" or "reputation" bounces, or spam complaints: content and volume.
- Bounced addresses at a typing mistake of a big mailbox provider (gmial.com): the correction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min, Q, Value
from django.db.models.functions import Lower, StrIndex, Substr

from campaigns.bounces import BounceCategory
from campaigns.models import Send, SendStatus
from crm.addresses import suggest_domain
from crm.models import ConsentMethod, ConsentRecord, Contact, ContactSource
from deliverability.models import CheckStatus, DailyMetrics, SendingDomain

DAYS = 30
# A category is worth a recommendation from this many bounces and this share of what was handed over.
MIN_BOUNCES = 5
MIN_SHARE = 0.01


class Level:
    CRITICAL = "error"
    WARNING = "warning"
    ADVICE = "advice"


@dataclass(frozen=True)
class Recommendation:
    level: str  # a Level, also the finding's style on the dashboard
    title: str
    detail: str


def _recent_sends(domain: SendingDomain, now: datetime, days: int = DAYS):
    return Send.objects.filter(
        campaign__from_email__iendswith=f"@{domain.domain}", first_attempt_at__gte=now - timedelta(days=days)
    )


def _totals(domain: SendingDomain, now: datetime) -> tuple[int, int, Counter[str]]:
    """(handed over, complaints, bounces by category) of the last DAYS days, from the daily rollup.

    Counting them from the sends would read every message of the month (seconds at millions);
    the rollup holds one row a day.
    """
    handed_over, complaints, by_category = 0, 0, Counter()
    for sent, not_sent, complained, categories in DailyMetrics.objects.filter(
        domain=domain, day__gt=(now - timedelta(days=DAYS)).date(), day__lte=now.date()
    ).values_list("sent", "not_sent", "complaints", "bounce_categories"):
        handed_over += sent - not_sent
        complaints += complained
        for category, counts in categories.items():
            by_category[category] += sum(counts.values())
    return handed_over, complaints, by_category


def recommend(domain: SendingDomain, *, now: datetime) -> list[Recommendation]:
    """What the last DAYS days of the domain's mail call for, most urgent first."""
    handed_over, complaints, by_category = _totals(domain, now)
    bounced = _recent_sends(domain, now).filter(status__in=[SendStatus.HARD_BOUNCED, SendStatus.SOFT_BOUNCED])

    def notable(*categories: str) -> int:
        count = sum(by_category.get(category, 0) for category in categories)
        return count if count >= MIN_BOUNCES and handed_over and count / handed_over >= MIN_SHARE else 0

    found = []
    if count := notable(BounceCategory.UNKNOWN_USER):
        found.append(_unknown_users(bounced, count, handed_over))
    if count := notable(BounceCategory.POLICY):
        found.append(_policy(domain, bounced, count))
    spam = notable(BounceCategory.SPAM_CONTENT, BounceCategory.REPUTATION)
    complaint_limit = settings.BAD_SEND_COMPLAINT_WARNING_PERCENT / 100
    if spam or (handed_over and complaints / handed_over > complaint_limit):
        found.append(_content_and_volume(spam, complaints, handed_over))
    found.extend(_typos(domain, now))
    order = [Level.CRITICAL, Level.WARNING, Level.ADVICE]
    return sorted(found, key=lambda item: order.index(item.level))


def _unknown_users(bounced, count: int, handed_over: int) -> Recommendation:
    contacts = bounced.filter(bounce_category=BounceCategory.UNKNOWN_USER).values("contact_id")
    imports = list(
        ConsentRecord.objects.filter(contact_id__in=contacts, method=ConsentMethod.IMPORT)
        .values("source_detail")
        .annotate(n=Count("contact_id", distinct=True))
        .order_by("-n")
        .values_list("source_detail", "n")[:3]
    )
    detail = (
        f"{count:,} of {handed_over:,} messages handed over in the last {DAYS} days ({count / handed_over:.1%}) "
        "went to addresses that do not exist. "
    )
    if imports:
        named = "; ".join(f"{n:,} from {source}" for source, n in imports)
        detail += (
            f"Where those contacts came from: {named}. Check where that list was collected and how old it is; "
            "remove it, or ask its contacts to confirm before mailing them again."
        )
    elif Contact.objects.filter(pk__in=contacts, source=ContactSource.IMPORT).exists():
        detail += (
            "They came from an import without consent records: check where that list was collected; "
            "remove it, or ask its contacts to confirm."
        )
    else:
        detail += "They did not come from an import: make sure every signup form uses double opt-in and the CAPTCHA."
    return Recommendation(Level.CRITICAL, "Many unknown-user bounces: a list source problem", detail)


def _policy(domain: SendingDomain, bounced, count: int) -> Recommendation:
    failing = domain.failing_records()
    if failing:
        detail = (
            f"{count:,} messages were refused for policy or authentication reasons. These DNS records of "
            f"{domain.domain} fail: " + "; ".join(failing) + ". Fix them (see the domain's 'Records to publish')."
        )
        return Recommendation(Level.CRITICAL, "Refused for authentication: fix the failing DNS records", detail)
    reply = bounced.filter(bounce_category=BounceCategory.POLICY).aggregate(reply=Min("smtp_reply"))["reply"] or ""
    checked = "" if domain.status != CheckStatus.NOT_CHECKED else " (never checked: use Check now)"
    detail = (
        f"{count:,} messages were refused for policy or authentication reasons, yet every DNS record of "
        f"{domain.domain} passes{checked}. One receiver said: “{reply[:200]}”. Check that the From address is on "
        "this domain and that DKIM signs with it (alignment), and allowlisting for company recipients."
    )
    return Recommendation(Level.WARNING, "Refused for policy reasons", detail)


def _content_and_volume(spam: int, complaints: int, handed_over: int) -> Recommendation:
    parts = []
    if spam:
        parts.append(f"{spam:,} messages were refused as spam or for the sender's reputation")
    if complaints:
        parts.append(f"{complaints:,} recipients reported spam ({complaints / handed_over:.2%} of {handed_over:,})")
    detail = (
        "; ".join(parts) + ". Review the content (link domains and URL shorteners, image-only mail, a plain-text part, "
        "a visible unsubscribe link) and lower the volume: send to recently engaged contacts first — a "
        "repair plan does that step by step."
    )
    return Recommendation(Level.WARNING, "Content and volume", detail)


def _typos(domain: SendingDomain, now: datetime) -> list[Recommendation]:
    at = StrIndex("email", Value("@"))
    rows = (
        _recent_sends(domain, now, days=90)
        .filter(Q(status__in=[SendStatus.HARD_BOUNCED, SendStatus.SOFT_BOUNCED]))
        .annotate(recipient_domain=Lower(Substr("email", at + 1)))
        .values("recipient_domain")
        .annotate(n=Count("pk"))
        .values_list("recipient_domain", "n")
    )
    typos = sorted(
        ((name, suggestion, n) for name, n in rows if (suggestion := suggest_domain(name))), key=lambda row: -row[2]
    )
    if not typos:
        return []
    listed = "; ".join(f"{name} → {suggestion} ({n:,} bounced)" for name, suggestion, n in typos[:10])
    detail = (
        f"Addresses at typing mistakes of big providers: {listed}. Correct these contacts' addresses (search the "
        "contacts for the domain), ideally after asking them; new signups with the mistake show up here too."
    )
    return [Recommendation(Level.ADVICE, "Typing mistakes in addresses", detail)]
