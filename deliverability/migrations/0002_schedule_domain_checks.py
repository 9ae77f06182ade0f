from django.db import migrations

from crm.schedules import ensure_periodic_task, remove_periodic_task

TASK_NAME = "Re-check sending domains"


def schedule(apps, schema_editor):
    ensure_periodic_task(
        apps,
        name=TASK_NAME,
        task="deliverability.tasks.check_all_sending_domains",
        description="Checks every sending domain's DNS records; a record that goes from pass to fail raises an alert.",
        minute="41",
        hour="5",
    )


def unschedule(apps, schema_editor):
    remove_periodic_task(apps, name=TASK_NAME)


class Migration(migrations.Migration):
    dependencies = [
        ("deliverability", "0001_sending_domains"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
