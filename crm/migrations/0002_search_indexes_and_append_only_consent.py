from django.db import migrations

# Trigram indexes serve the admin's substring search (Django's icontains compiles to
# UPPER(col::text) LIKE UPPER(%s)), so the expressions here must match it exactly.
SEARCHED_COLUMNS = ("email", "first_name", "last_name", "company")

POSTGRES_FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    *(
        f"CREATE INDEX IF NOT EXISTS crm_contact_{column}_trgm ON crm_contact "
        f"USING gin (UPPER({column}::text) gin_trgm_ops)"
        for column in SEARCHED_COLUMNS
    ),
    """
    CREATE OR REPLACE FUNCTION crm_consent_append_only() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION USING MESSAGE = 'consent records are append-only (' || TG_OP || ' refused)';
    END;
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER crm_consent_append_only BEFORE UPDATE OR DELETE ON crm_consentrecord
    FOR EACH ROW EXECUTE FUNCTION crm_consent_append_only()
    """,
]
POSTGRES_BACKWARD = [
    "DROP TRIGGER IF EXISTS crm_consent_append_only ON crm_consentrecord",
    "DROP FUNCTION IF EXISTS crm_consent_append_only()",
    *(f"DROP INDEX IF EXISTS crm_contact_{column}_trgm" for column in SEARCHED_COLUMNS),
]
# SQLite (local runs) refuses updates only: Django's test flush empties tables with DELETE.
SQLITE_FORWARD = [
    """
    CREATE TRIGGER crm_consent_append_only BEFORE UPDATE ON crm_consentrecord
    BEGIN SELECT RAISE(ABORT, 'consent records are append-only (UPDATE refused)'); END
    """
]
SQLITE_BACKWARD = ["DROP TRIGGER IF EXISTS crm_consent_append_only"]


def run_for_vendor(statements_by_vendor):
    def run(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("crm", "0001_initial")]

    operations = [
        migrations.RunPython(
            run_for_vendor({"postgresql": POSTGRES_FORWARD, "sqlite": SQLITE_FORWARD}),
            run_for_vendor({"postgresql": POSTGRES_BACKWARD, "sqlite": SQLITE_BACKWARD}),
        )
    ]
