from celery import shared_task
from django.utils import timezone

from crm import optin
from crm.importing import flow


@shared_task(ignore_result=True)
def send_confirmation_email(contact_id: int, subscription_type_ids: list[int], signup_form_id: int | None) -> None:
    optin.send_confirmation_email(contact_id, subscription_type_ids, signup_form_id)


@shared_task(ignore_result=True)
def clean_up_pending_subscriptions() -> None:
    optin.clean_up_pending_subscriptions(now=timezone.now())


@shared_task(ignore_result=True)
def run_import_job(job_id: int) -> None:
    flow.run_job(job_id, now=timezone.now())


@shared_task(ignore_result=True)
def recover_abandoned_imports() -> None:
    flow.recover_abandoned_imports(now=timezone.now())
