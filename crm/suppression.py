"""Suppression: addresses that must never get marketing email, keyed by normalized address."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import models
from django.db.models import F, Value
from django.db.models.functions import Cast

from crm.bulk import insert_from_select
from crm.models import Contact, Suppression, SuppressionReason

# Reasons that keep an address out even when its owner signs up again: the mailbox does
# not work, or the person (or staff) said never. The other reasons are opt-outs a confirmed
# opt-in undoes.
BLOCKING_REASONS = frozenset(
    {
        SuppressionReason.HARD_BOUNCE,
        SuppressionReason.COMPLAINT,
        SuppressionReason.IMPORTED_CLEANED,
        SuppressionReason.MANUAL,
    }
)
OPT_OUT_REASONS = frozenset(set(SuppressionReason) - BLOCKING_REASONS)


def blocks_signup(email: str) -> bool:
    """Whether the normalized address is suppressed for a reason a signup cannot undo."""
    return Suppression.objects.filter(email=email, reason__in=BLOCKING_REASONS).exists()


def lift_opt_out_suppressions(email: str) -> int:
    """Remove the opt-out suppressions of an address after its owner confirmed a new opt-in."""
    deleted, _ = Suppression.objects.filter(email=email, reason__in=OPT_OUT_REASONS).delete()
    return deleted


def suppress_address(email: str, *, reason: SuppressionReason, now: datetime, source: str = "") -> Suppression:
    """Suppress one normalized address for `reason` (kept as is if already suppressed for it)."""
    entry, _ = Suppression.objects.get_or_create(
        email=email, reason=reason, defaults={"created_at": now, "source": source[:255]}
    )
    return entry


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
