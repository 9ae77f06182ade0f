import django.db.models.deletion
from django.db import migrations, models

# Django's own indexes of the two keys, named as it names them on every database.
INDEXES = {
    "campaigns_send_campaign_id_95cf5363": "campaign_id",
    "campaigns_send_contact_id_da3cdc0f": "contact_id",
}


def drop(apps, schema_editor):
    # Each is the prefix of a composite index ((campaign, contact) unique, (campaign, status,
    # first attempt) and (contact, first attempt)), which serves every query and the cascades;
    # every send the audience build inserts wrote both. Concurrently on PostgreSQL, as dropping
    # only the index: Django's AlterField would drop and validate the foreign key again.
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX{concurrently} IF EXISTS {name}")


def create(apps, schema_editor):
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    for name, column in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX{concurrently} IF NOT EXISTS {name} ON campaigns_send ({column})")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("campaigns", "0011_send_campaign_status_time")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="send",
                    name="campaign",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="sends",
                        to="campaigns.campaign",
                    ),
                ),
                migrations.AlterField(
                    model_name="send",
                    name="contact",
                    field=models.ForeignKey(
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="sends",
                        to="crm.contact",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop, create)],
        )
    ]
