from django.db import migrations

from crm.schedules import ensure_periodic_task, remove_periodic_task

TASK_NAME = "Clean up unconfirmed subscriptions"


def schedule(apps, schema_editor):
    ensure_periodic_task(
        apps,
        name=TASK_NAME,
        task="crm.tasks.clean_up_pending_subscriptions",
        description="Drops double opt-in requests never confirmed within PENDING_SUBSCRIPTION_CLEANUP_DAYS.",
        minute="17",
        hour="3",
    )


def unschedule(apps, schema_editor):
    remove_periodic_task(apps, name=TASK_NAME)


class Migration(migrations.Migration):
    dependencies = [("crm", "0004_signup_forms"), ("django_celery_beat", "0019_alter_periodictasks_options")]

    operations = [migrations.RunPython(schedule, unschedule)]
