from django.db import migrations

INDEX = "email_event_occurred_brin"


def create(apps, schema_editor):
    # The daily rollup reads events by day: on a table that only grows in time order a BRIN
    # index is a few pages where a B-tree would be gigabytes. PostgreSQL only (local SQLite
    # tables are small).
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON campaigns_emailevent USING brin (occurred_at)")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0008_drain_event_buffer")]

    operations = [migrations.RunPython(create, drop)]
