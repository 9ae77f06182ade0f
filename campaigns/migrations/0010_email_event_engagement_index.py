from django.db import migrations

INDEX = "email_event_engagement"


def create(apps, schema_editor):
    # The performance page counts a campaign's opens and clicks by type, person or machine, hour,
    # link and send: with those columns in one index over opens and clicks only, PostgreSQL
    # answers from the index without reading the events (a third of the time at 1M sends, see
    # bench/RESULTS.md). Concurrently: the table takes webhooks all the time. PostgreSQL only
    # (local SQLite tables are small).
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON campaigns_emailevent "
            "(campaign_id, type, is_machine, occurred_at) INCLUDE (send_id, link_id) "
            "WHERE type IN ('open', 'click')"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("campaigns", "0009_email_event_time_brin")]

    operations = [migrations.RunPython(create, drop)]
