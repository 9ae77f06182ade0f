"""Contact exports: CSV (streamed) and XLSX (written row by row), and one contact's whole record.

Neither list export holds more than a chunk of contacts in memory, so a million rows export
as easily as ten.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from django.db import models
from django.db.models import Prefetch
from openpyxl import Workbook

from crm.models import ConsentAction, ConsentRecord, Contact, Subscription, Suppression

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
    "consent",
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


def consent_summary(records: Iterable[ConsentRecord]) -> str:
    """The latest grant or confirmation per subscription type, with where it came from."""
    latest: dict[str, ConsentRecord] = {}
    for record in records:
        if record.action != ConsentAction.WITHDRAWN:
            latest[record.subscription_type.name if record.subscription_type else "all"] = record
    parts = []
    for name, record in latest.items():
        origin = ", ".join(
            str(value)
            for value in (
                record.evidence.get("source_system"),
                record.evidence.get("file"),
                f"line {record.evidence['line']}" if "line" in record.evidence else None,
                record.source_detail,
                record.ip_address,
            )
            if value
        )
        parts.append(f"{name}: {record.action} {record.created_at:%Y-%m-%d %H:%M} by {record.method} ({origin})")
    return "; ".join(parts)


def contact_rows(contacts: models.QuerySet[Contact]) -> Iterator[list[str]]:
    """One list of cells per contact, in EXPORT_COLUMNS order, formulas neutralised."""
    subscriptions = Prefetch(
        "subscriptions", queryset=Subscription.objects.select_related("subscription_type").order_by("pk")
    )
    consent = Prefetch(
        "consent_records",
        queryset=ConsentRecord.objects.select_related("subscription_type").order_by("created_at", "pk"),
    )
    chunks = contacts.order_by("pk").prefetch_related(None).prefetch_related(subscriptions, consent)
    for contact in chunks.iterator(chunk_size=2000):
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
                consent_summary(contact.consent_records.all()),
                contact.last_engaged_at and contact.last_engaged_at.isoformat(),
                contact.created_at.isoformat(),
            )
        ]


def stream_csv(rows: Iterable[list[str]], header: list[str]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)


def write_xlsx(rows: Iterable[list[str]], header: list[str], path: Path) -> None:
    """Write an XLSX file one row at a time (openpyxl's write-only mode keeps memory flat)."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Contacts")
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    workbook.save(path)


# Other apps add what they hold about a contact (the emails sent, their events): name → callable
# taking the contact and giving JSON-ready data. crm imports neither of them.
CONTACT_RECORD_PARTS: dict[str, Callable[[Contact], object]] = {}


def contact_record(contact: Contact) -> dict:
    """Everything we hold about one contact, for a data-subject access request."""
    fields = {
        field.name: field.value_from_object(contact)
        for field in Contact._meta.concrete_fields
        if field.name not in {"id", "owner"}
    }
    return {
        "contact": fields,
        "subscriptions": list(
            contact.subscriptions.order_by("pk").values(
                "subscription_type__name", "status", "created_at", "requested_at", "subscribed_at", "unsubscribed_at"
            )
        ),
        "consent_records": list(
            ConsentRecord.objects.filter(contact_id=contact.pk)
            .order_by("created_at", "pk")
            .values(
                "created_at",
                "subscription_type__name",
                "action",
                "method",
                "lawful_basis",
                "source_detail",
                "consent_text",
                "ip_address",
                "user_agent",
                "evidence",
            )
        ),
        "suppressions": list(
            Suppression.objects.filter(email=contact.email_normalized).values(
                "reason", "source", "note", "occurred_at", "created_at"
            )
        ),
        **{name: part(contact) for name, part in CONTACT_RECORD_PARTS.items()},
    }
