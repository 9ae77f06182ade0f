"""Contact export as CSV, streamed so a million rows never sit in memory."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator

from django.db import models
from django.db.models import Prefetch

from crm.models import Contact, Subscription

EXPORT_COLUMNS = [
    "email",
    "first_name",
    "last_name",
    "company",
    "phone",
    "time_zone",
    "language",
    "source",
    "email_status",
    "engagement_status",
    "unsubscribed_from_all_at",
    "subscriptions",
    "last_engaged_at",
    "created_at",
]

# A cell starting with one of these is run as a formula by Excel and LibreOffice
# (CSV injection); prefixing a quote makes it plain text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(value: object) -> str:
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


class _Echo:
    def write(self, value: str) -> str:
        return value


def contact_rows(contacts: models.QuerySet[Contact]) -> Iterator[list[str]]:
    """One list of cells per contact, in EXPORT_COLUMNS order, formulas neutralised."""
    subscriptions = Prefetch(
        "subscriptions", queryset=Subscription.objects.select_related("subscription_type").order_by("pk")
    )
    for contact in (
        contacts.order_by("pk").prefetch_related(None).prefetch_related(subscriptions).iterator(chunk_size=2000)
    ):
        subscribed = "; ".join(f"{s.subscription_type.name}: {s.status}" for s in contact.subscriptions.all())
        yield [
            escape_formula(value)
            for value in (
                contact.email,
                contact.first_name,
                contact.last_name,
                contact.company,
                contact.phone,
                contact.time_zone,
                contact.language,
                contact.source,
                contact.email_status,
                contact.engagement_status,
                contact.unsubscribed_from_all_at and contact.unsubscribed_from_all_at.isoformat(),
                subscribed,
                contact.last_engaged_at and contact.last_engaged_at.isoformat(),
                contact.created_at.isoformat(),
            )
        ]


def stream_csv(rows: Iterable[list[str]], header: list[str]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)
