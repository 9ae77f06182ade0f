from celery import shared_task
from django.utils import timezone

from deliverability import dns_checks, health, repair
from deliverability.models import SendingDomain


@shared_task(ignore_result=True)
def check_sending_domain(domain_id: int) -> None:
    domain = SendingDomain.objects.filter(pk=domain_id).first()
    if domain is not None:
        dns_checks.check_domain(domain, now=timezone.now())


@shared_task(ignore_result=True)
def check_all_sending_domains() -> None:
    dns_checks.check_all_domains(now=timezone.now())


@shared_task(ignore_result=True)
def roll_up_daily_metrics() -> None:
    health.roll_up_daily_metrics(now=timezone.now())


@shared_task(ignore_result=True)
def mark_unengaged_contacts() -> None:
    health.mark_unengaged_contacts(now=timezone.now())


@shared_task(ignore_result=True)
def evaluate_open_rates() -> None:
    health.evaluate_open_rates(now=timezone.now())


@shared_task(ignore_result=True)
def progress_repair_plans() -> None:
    repair.progress_repair_plans(now=timezone.now())


@shared_task(ignore_result=True)
def guard_sending_campaigns() -> None:
    health.guard_sending_campaigns(now=timezone.now())
