from celery import shared_task
from django.conf import settings
from django.utils import timezone

from campaigns import pipeline


@shared_task(ignore_result=True)
def send_campaign(campaign_id: int) -> None:
    """Send one batch, then hand over to a fresh task while due sends remain.

    One batch per task keeps every task short, so a broker redelivering an unacknowledged
    task (acks_late) never repeats more than a claim, and claims are exclusive.
    """
    now = timezone.now()
    send_ids = pipeline.claim(campaign_id, now=now, limit=settings.SEND_BATCH_SIZE)
    if send_ids:
        pipeline.send_batch(send_ids, now=now)
        send_campaign.delay(campaign_id)


def enqueue_campaign(campaign_id: int) -> None:
    """Start the campaign's sending chains once the current transaction commits."""
    for _ in range(settings.SEND_PARALLEL_TASKS):
        send_campaign.delay_on_commit(campaign_id)


@shared_task(ignore_result=True)
def dispatch_sends() -> None:
    pipeline.dispatch(now=timezone.now(), enqueue=send_campaign.delay)
