from django.db import migrations

from crm.schedules import ensure_periodic_task, remove_periodic_task

TASK_NAME = "Recover abandoned imports"


def schedule(apps, schema_editor):
    ensure_periodic_task(
        apps,
        name=TASK_NAME,
        task="crm.tasks.recover_abandoned_imports",
        description="Restarts imports whose worker died (IMPORT_STALE_MINUTES) and drops unconfirmed drafts.",
        minute="*/10",
    )


def unschedule(apps, schema_editor):
    remove_periodic_task(apps, name=TASK_NAME)


class Migration(migrations.Migration):
    dependencies = [("crm", "0007_import_heartbeat"), ("django_celery_beat", "0019_alter_periodictasks_options")]

    operations = [migrations.RunPython(schedule, unschedule)]
