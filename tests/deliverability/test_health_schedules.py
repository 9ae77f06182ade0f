"""Every sender-health job runs from Celery beat's database schedule, created by migrations, kept as staff change it."""

from __future__ import annotations

import importlib

from django.apps import apps
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from config.celery import app as celery_app
from deliverability import tasks

SCHEDULE = importlib.import_module("deliverability.migrations.0004_schedule_sender_health")

HEALTH_JOBS = {
    "Roll up daily sending metrics": ("deliverability.tasks.roll_up_daily_metrics", "5 * * * *"),
    "Mark unengaged contacts": ("deliverability.tasks.mark_unengaged_contacts", "20 2 * * *"),
    "Evaluate open rates": ("deliverability.tasks.evaluate_open_rates", "40 2 * * *"),
    "Progress repair plans": ("deliverability.tasks.progress_repair_plans", "50 2 * * *"),
    "Guard sending campaigns": ("deliverability.tasks.guard_sending_campaigns", "* * * * *"),
    # From the domains and campaigns issues, on the same scheduler.
    "Re-check sending domains": ("deliverability.tasks.check_all_sending_domains", "41 5 * * *"),
    "Dispatch campaign sends": ("campaigns.tasks.dispatch_sends", "* * * * *"),
}


def crontab(task: PeriodicTask) -> str:
    c = task.crontab
    return f"{c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}"


def test_migrations_schedule_every_health_job_and_the_domain_and_retry_jobs(db):
    scheduled = {task.name: (task.task, crontab(task)) for task in PeriodicTask.objects.select_related("crontab")}

    assert {name: scheduled.get(name) for name in HEALTH_JOBS} == HEALTH_JOBS
    assert all(task.enabled for task in PeriodicTask.objects.filter(name__in=HEALTH_JOBS))


def test_every_scheduled_task_is_registered_with_celery(db):
    names = set(PeriodicTask.objects.filter(name__in=HEALTH_JOBS).values_list("task", flat=True))

    assert names <= set(celery_app.tasks)


def test_scheduling_again_keeps_what_staff_changed(db):
    evaluation = PeriodicTask.objects.get(name="Evaluate open rates")
    evaluation.enabled = False
    evaluation.save()
    guard = PeriodicTask.objects.get(name="Guard sending campaigns")
    guard.crontab = CrontabSchedule.objects.create(minute="*/5")
    guard.save()

    SCHEDULE.schedule(apps, None)

    assert PeriodicTask.objects.get(name="Evaluate open rates").enabled is False
    assert crontab(PeriodicTask.objects.get(name="Guard sending campaigns")) == "*/5 * * * *"
    assert PeriodicTask.objects.filter(name__in=HEALTH_JOBS).count() == len(HEALTH_JOBS)


def test_the_tasks_run_on_an_empty_database(db):
    for task in [
        tasks.roll_up_daily_metrics,
        tasks.mark_unengaged_contacts,
        tasks.evaluate_open_rates,
        tasks.progress_repair_plans,
        tasks.guard_sending_campaigns,
    ]:
        task.delay()
