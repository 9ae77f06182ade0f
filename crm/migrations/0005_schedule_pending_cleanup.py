from django.db import migrations

TASK_NAME = "Clean up unconfirmed subscriptions"


def schedule(apps, schema_editor):
    # Created once: staff may change or disable it in the admin and later migrations keep that.
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    if PeriodicTask.objects.filter(name=TASK_NAME).exists():
        return
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="17", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    PeriodicTask.objects.create(
        name=TASK_NAME,
        task="crm.tasks.clean_up_pending_subscriptions",
        crontab=crontab,
        description="Drops double opt-in requests never confirmed within PENDING_SUBSCRIPTION_CLEANUP_DAYS.",
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("crm", "0004_signup_forms"), ("django_celery_beat", "0019_alter_periodictasks_options")]

    operations = [migrations.RunPython(schedule, unschedule)]
