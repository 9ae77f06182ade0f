from django.db import migrations

from crm.schedules import ensure_periodic_task, remove_periodic_task

TASK_NAME = "Dispatch campaign sends"


def schedule(apps, schema_editor):
    ensure_periodic_task(
        apps,
        name=TASK_NAME,
        task="campaigns.tasks.dispatch_sends",
        description="Starts scheduled campaigns, retries deferred sends when due, recovers sends of "
        "dead workers and marks finished campaigns sent.",
    )


def unschedule(apps, schema_editor):
    remove_periodic_task(apps, name=TASK_NAME)


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0001_campaigns_and_sends"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
