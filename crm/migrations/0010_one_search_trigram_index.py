from django.db import migrations

# One trigram index over everything the contact admin's substring search looks at, instead of
# one per column (0002): an import maintains one GIN index per contact instead of four, and
# trigrams a name shares with the address are stored once. ContactAdmin.get_search_results
# filters on this exact expression, so PostgreSQL can match it to the index.
SEARCH_INDEX = (
    "CREATE INDEX IF NOT EXISTS crm_contact_search_trgm ON crm_contact USING gin "
    "(UPPER(email || ' ' || first_name || ' ' || last_name || ' ' || company) gin_trgm_ops)"
)
SEARCHED_COLUMNS = ("email", "first_name", "last_name", "company")


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(SEARCH_INDEX)
    for column in SEARCHED_COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS crm_contact_{column}_trgm")


def backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in SEARCHED_COLUMNS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS crm_contact_{column}_trgm ON crm_contact "
            f"USING gin (UPPER({column}::text) gin_trgm_ops)"
        )
    schema_editor.execute("DROP INDEX IF EXISTS crm_contact_search_trgm")


class Migration(migrations.Migration):
    dependencies = [("crm", "0009_drop_redundant_indexes")]

    operations = [migrations.RunPython(forward, backward)]
