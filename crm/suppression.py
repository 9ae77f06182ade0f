"""Suppression: addresses that must never get marketing email, keyed by normalized address."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import models
from django.db.models import F, Value
from django.db.models.functions import Cast

from crm.bulk import insert_from_select
from crm.models import Contact, Suppression, SuppressionReason


def suppress_contacts(
    contacts: models.QuerySet[Contact],
    *,
    reason: SuppressionReason,
    now: datetime,
    source: str = "",
    note: str = "",
    created_by: AbstractBaseUser | None = None,
) -> int:
    """Suppress the addresses of `contacts` for `reason`, set-based.

    An address already suppressed for the same reason keeps its original entry.
    Returns how many new suppressions were written.
    """
    return insert_from_select(
        Suppression,
        contacts.annotate(
            s_email=F("email_normalized"),
            s_reason=Value(reason.value),
            s_source=Value(source[:255]),
            s_note=Value(note),
            # A bare NULL in a sub-SELECT is typed text on PostgreSQL; the cast keeps it an integer.
            s_by=Cast(Value(created_by.pk if created_by else None), models.IntegerField()),
            s_created=Value(now, output_field=models.DateTimeField()),
        ),
        {
            "email": "s_email",
            "reason": "s_reason",
            "source": "s_source",
            "note": "s_note",
            "created_by": "s_by",
            "created_at": "s_created",
        },
    )
