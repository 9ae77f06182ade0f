from celery import shared_task
from django.utils import timezone

from deliverability import dns_checks
from deliverability.models import SendingDomain


@shared_task(ignore_result=True)
def check_sending_domain(domain_id: int) -> None:
    domain = SendingDomain.objects.filter(pk=domain_id).first()
    if domain is not None:
        dns_checks.check_domain(domain, now=timezone.now())


@shared_task(ignore_result=True)
def check_all_sending_domains() -> None:
    dns_checks.check_all_domains(now=timezone.now())
