"""Periodic tasks the product schedules itself (django-celery-beat rows made by migrations)."""

from __future__ import annotations


def ensure_periodic_task(apps, *, name: str, task: str, description: str, **crontab: str) -> None:
    """Create the named periodic task on a crontab once; leave it alone if it exists.

    Called from migrations with their `apps`: staff may change or disable the task in the
    admin, and no later migrate undoes that.
    """
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    if PeriodicTask.objects.filter(name=name).exists():
        return
    fields = {"minute": "*", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"}
    schedule, _ = CrontabSchedule.objects.get_or_create(**{**fields, **crontab}, timezone="UTC")
    PeriodicTask.objects.create(name=name, task=task, crontab=schedule, description=description)


def remove_periodic_task(apps, *, name: str) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=name).delete()
