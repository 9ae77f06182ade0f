from collections.abc import Callable

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from campaigns import pipeline, reports, sequences, tracking, webhooks


@shared_task(ignore_result=True)
def send_campaign(campaign_id: int, batch_size: int | None = None) -> None:
    """Send one batch (SEND_BATCH_SIZE, or `batch_size` for a chain's first), then hand over to a
    fresh task while due sends remain.

    One batch per task keeps every task short, so a broker redelivering an unacknowledged
    task (acks_late) never repeats more than a claim, and claims are exclusive.
    """
    now = timezone.now()
    send_ids = pipeline.claim(campaign_id, now=now, limit=batch_size or settings.SEND_BATCH_SIZE)
    if send_ids:
        pipeline.send_batch(send_ids, now=now)
        send_campaign.delay(campaign_id)


def start_chains(campaign_id: int, *, enqueue: Callable[[int, int], object] = send_campaign.delay) -> None:
    """Start the campaign's SEND_PARALLEL_TASKS sending chains, their first batches 1/n, 2/n, … n/n
    of SEND_BATCH_SIZE.

    The number is not capped by the workers Celery reports: a chain waiting in the queue holds
    nothing (its task claims when it runs), and two chains per worker process keep each worker
    busy, the next task already waiting when one ends. Chains that started together would end
    their batches together, and a rate shared by the workers would lose the moments they all
    spend between two batches at once (write-back, claim, gate: 0.6-0.9 s under load, see
    bench/RESULTS.md); uneven first batches keep the chains' batch boundaries apart.
    """
    chains = settings.SEND_PARALLEL_TASKS
    for chain in range(1, chains + 1):
        enqueue(campaign_id, max(1, settings.SEND_BATCH_SIZE * chain // chains))


def enqueue_campaign(campaign_id: int) -> None:
    """Start the campaign's sending chains once the current transaction commits."""
    start_chains(campaign_id, enqueue=send_campaign.delay_on_commit)


@shared_task(ignore_result=True)
def prepare_campaign(campaign_id: int) -> None:
    """Build a started campaign's sends, then start its sending chains."""
    if pipeline.prepare_campaign(campaign_id, now=timezone.now()):
        enqueue_campaign(campaign_id)


@shared_task(ignore_result=True)
def dispatch_sends() -> None:
    now = timezone.now()
    pipeline.dispatch(now=now, enqueue=start_chains)
    for campaign_id in pipeline.unfinished_preparations(now=now):
        prepare_campaign.delay(campaign_id)


@shared_task(ignore_result=True)
def drain_event_buffer() -> None:
    """Record what waits in the event buffer: open and click hits, then ESP webhooks."""
    now = timezone.now()
    tracking.drain(now=now)
    webhooks.drain(now=now)


def schedule_drain() -> None:
    """Record the buffer shortly after it stopped being empty (the minute's beat job is the safety net)."""
    drain_event_buffer.apply_async(countdown=2)


# A database that is down must not lose an ESP's events: retried with backoff for about an hour.
@shared_task(
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_backoff_max=600,
    max_retries=12,
)
def process_webhook(envelope: dict) -> None:
    webhooks.process(envelope, now=timezone.now())


def enqueue_webhook(envelope: dict) -> None:
    """Hand an authenticated webhook, body inside, to a worker (when there is no event buffer)."""
    # Celery would otherwise build a repr of the arguments (the whole body) for its logs.
    process_webhook.apply_async((envelope,), argsrepr=repr(envelope["view"]), kwargsrepr="{}")


@shared_task(ignore_result=True)
def run_sequences() -> None:
    """Read connected inboxes for replies and bounces, then send the due sequence steps."""
    sequences.run(now=timezone.now())


@shared_task(ignore_result=True)
def refresh_campaign_stats() -> None:
    reports.refresh_stats(now=timezone.now())
