"""The database's own guard on the consent log: a trigger that refuses changes in place.

Created by migration 0002 and checked again after every `migrate`: on SQLite, a migration that
alters the consent table rebuilds it (new table, copy, rename), which drops its triggers.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

_POSTGRES = [
    """
    CREATE OR REPLACE FUNCTION crm_consent_append_only() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION USING MESSAGE = 'consent records are append-only (' || TG_OP || ' refused)';
    END;
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE OR REPLACE TRIGGER crm_consent_append_only BEFORE UPDATE OR DELETE ON crm_consentrecord
    FOR EACH ROW EXECUTE FUNCTION crm_consent_append_only()
    """,
]
# SQLite (local runs) refuses updates only: Django's test flush empties tables with DELETE.
_SQLITE = [
    """
    CREATE TRIGGER IF NOT EXISTS crm_consent_append_only BEFORE UPDATE ON crm_consentrecord
    BEGIN SELECT RAISE(ABORT, 'consent records are append-only (UPDATE refused)'); END
    """
]
_REMOVE = {
    "postgresql": [
        "DROP TRIGGER IF EXISTS crm_consent_append_only ON crm_consentrecord",
        "DROP FUNCTION IF EXISTS crm_consent_append_only()",
    ],
    "sqlite": ["DROP TRIGGER IF EXISTS crm_consent_append_only"],
}


def ensure_consent_trigger(connection: BaseDatabaseWrapper) -> None:
    """Create the trigger if it is missing; safe to run any number of times."""
    statements = {"postgresql": _POSTGRES, "sqlite": _SQLITE}.get(connection.vendor, [])
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def remove_consent_trigger(connection: BaseDatabaseWrapper) -> None:
    with connection.cursor() as cursor:
        for statement in _REMOVE.get(connection.vendor, []):
            cursor.execute(statement)


def ensure_consent_trigger_after_migrate(sender, using="default", **kwargs) -> None:
    from django.db import connections

    if sender.label == "crm":
        ensure_consent_trigger(connections[using])
