from django.db import migrations

from crm.schedules import ensure_periodic_task, remove_periodic_task

TASK_NAME = "Refresh campaign figures"


def schedule(apps, schema_editor):
    ensure_periodic_task(
        apps,
        name=TASK_NAME,
        task="campaigns.tasks.refresh_campaign_stats",
        description="Stores the campaign list's figures (sent, delivered, open, click, bounce, unsubscribe and "
        "complaint rates) for campaigns that are sending or were sent within STATS_REFRESH_DAYS.",
        minute="*/5",
    )


def unschedule(apps, schema_editor):
    remove_periodic_task(apps, name=TASK_NAME)


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0006_one_to_one_and_sequences"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
