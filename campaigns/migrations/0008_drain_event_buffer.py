from django.db import migrations

OLD_NAME, NEW_NAME = "Record tracking hits", "Record buffered events"
OLD_TASK, NEW_TASK = "campaigns.tasks.drain_tracking_hits", "campaigns.tasks.drain_event_buffer"
DESCRIPTION = (
    "Writes buffered open and click hits and queued ESP webhooks to the database (a drain also starts "
    "within seconds of the first; this is the safety net, e.g. after the database was down)."
)


def rename(apps, schema_editor):
    # The task now drains webhooks too; the row keeps whatever schedule staff gave it.
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=OLD_NAME, task=OLD_TASK).update(
        name=NEW_NAME, task=NEW_TASK, description=DESCRIPTION
    )


def rename_back(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=NEW_NAME, task=NEW_TASK).update(name=OLD_NAME, task=OLD_TASK)


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0007_schedule_stats_refresh"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(rename, rename_back)]
