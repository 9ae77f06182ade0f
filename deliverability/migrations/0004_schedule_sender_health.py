from django.db import migrations

from crm.schedules import ensure_periodic_task, remove_periodic_task

# (name, task, description, crontab) of the sender-health jobs; see deliverability/health.py.
JOBS = [
    (
        "Roll up daily sending metrics",
        "deliverability.tasks.roll_up_daily_metrics",
        "Recomputes each sending domain's daily outcomes (sent, delivered, bounces by category, human and machine "
        "opens, clicks, complaints, unsubscribes) for the last HEALTH_ROLLUP_DAYS days: the dashboard and the "
        "open-rate evaluation read them.",
        {"minute": "5"},
    ),
    (
        "Mark unengaged contacts",
        "deliverability.tasks.mark_unengaged_contacts",
        "Graymail: contacts who did not engage with their last UNENGAGED_NEVER_ENGAGED_SENDS (never engaged) or "
        "UNENGAGED_ENGAGED_SENDS (engaged before) marketing emails become unengaged.",
        {"minute": "20", "hour": "2"},
    ),
    (
        "Evaluate open rates",
        "deliverability.tasks.evaluate_open_rates",
        "Each sending domain's human open rate over OPEN_RATE_WINDOW_DAYS against the critical threshold and its "
        "baseline: raises and resolves health alerts, and starts a repair plan on a critical one.",
        {"minute": "40", "hour": "2"},
    ),
    (
        "Progress repair plans",
        "deliverability.tasks.progress_repair_plans",
        "Advances, holds, steps back or completes each active reputation repair plan by its step's open rate.",
        {"minute": "50", "hour": "2"},
    ),
    (
        "Guard sending campaigns",
        "deliverability.tasks.guard_sending_campaigns",
        "Pauses a sending campaign whose hard bounces, complaints or unsubscribes pass the BAD_SEND_* limits.",
        {},
    ),
]


def schedule(apps, schema_editor):
    for name, task, description, crontab in JOBS:
        ensure_periodic_task(apps, name=name, task=task, description=description, **crontab)


def unschedule(apps, schema_editor):
    for name, *_ in JOBS:
        remove_periodic_task(apps, name=name)


class Migration(migrations.Migration):
    dependencies = [
        ("deliverability", "0003_sender_health"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
