from django.db import migrations

from crm.append_only import ensure_consent_trigger, remove_consent_trigger

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
]
POSTGRES_BACKWARD = [
    *(f"DROP INDEX IF EXISTS crm_contact_{column}_trgm" for column in SEARCHED_COLUMNS),
]


def forward(apps, schema_editor):
    for statement in POSTGRES_FORWARD if schema_editor.connection.vendor == "postgresql" else []:
        schema_editor.execute(statement)
    ensure_consent_trigger(schema_editor.connection)


def backward(apps, schema_editor):
    remove_consent_trigger(schema_editor.connection)
    for statement in POSTGRES_BACKWARD if schema_editor.connection.vendor == "postgresql" else []:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("crm", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
