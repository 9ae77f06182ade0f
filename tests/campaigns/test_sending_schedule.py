"""When sends go out: tasks and the scheduler's minute, shared rates, and the warm-up of a new IP."""

from __future__ import annotations

import math
from datetime import timedelta

from campaigns import pipeline, tasks
from campaigns.models import CampaignStatus, Send, SendStatus
from campaigns.throttle import Throttle
from tests.conftest import subscriber


class FakeClock:
    """Time that only moves when the throttle sleeps, so the test measures the rule, not the machine."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_global_rate_holds_over_every_second(db):
    clock = FakeClock()
    throttle = Throttle(rate=10, domain_rates={}, clock=clock, sleep=clock.sleep)

    times = []
    for _ in range(50):
        throttle.wait("example.org")
        times.append(clock.now)

    per_second = {}
    for moment in times:
        per_second[math.floor(moment)] = per_second.get(math.floor(moment), 0) + 1
    assert max(per_second.values()) <= 10
    assert times[-1] - times[0] < 5.0


def test_a_receiving_domain_rate_slows_only_that_domain(db):
    clock = FakeClock()
    throttle = Throttle(rate=0, domain_rates={"Gmail.com": 2}, clock=clock, sleep=clock.sleep)

    start = clock.now
    for _ in range(5):
        throttle.wait("example.org")
    others_took = clock.now - start
    for _ in range(5):
        throttle.wait("gmail.com")

    assert others_took == 0
    assert clock.now - start >= 2.0


def test_the_send_task_sends_the_whole_campaign_batch_by_batch(november, newsletter, isp, manager, settings):
    settings.SEND_BATCH_SIZE = 2
    for n in range(5):
        subscriber(f"reader{n}@example.org", newsletter, november.created_at)
    pipeline.start_campaign(november, user=manager, now=november.created_at)

    tasks.send_campaign(november.pk)

    assert set(november.sends.values_list("status", flat=True)) == {SendStatus.DELIVERED}
    assert len(isp.wait_for_messages(5)) == 5


def test_the_scheduler_starts_a_scheduled_campaign_at_its_time(november, alice, isp, now, manager):
    november.scheduled_at = now + timedelta(hours=2)
    november.save()
    pipeline.start_campaign(november, user=manager, now=now)
    enqueued = []

    before = pipeline.dispatch(now=now + timedelta(hours=1), enqueue=enqueued.append)
    at_time = pipeline.dispatch(now=now + timedelta(hours=2), enqueue=enqueued.append)

    november.refresh_from_db()
    assert before == []
    assert at_time == [november.pk]
    assert enqueued == [november.pk, november.pk]
    assert november.status == CampaignStatus.SENDING


def test_the_scheduler_restarts_work_a_dead_worker_left_and_closes_finished_campaigns(
    november, alice, isp, now, manager
):
    pipeline.start_campaign(november, user=manager, now=now)
    pipeline.claim(november.pk, now=now, limit=10)
    enqueued = []

    while_claimed = pipeline.dispatch(now=now + timedelta(minutes=1), enqueue=enqueued.append)
    after_crash = pipeline.dispatch(now=now + timedelta(minutes=20), enqueue=enqueued.append)
    pipeline.send_batch(pipeline.claim(november.pk, now=now + timedelta(minutes=20), limit=10), now=now)
    pipeline.dispatch(now=now + timedelta(minutes=21), enqueue=enqueued.append)

    november.refresh_from_db()
    assert while_claimed == []
    assert after_crash == [november.pk]
    assert november.status == CampaignStatus.SENT


def test_a_warm_up_caps_the_daily_volume_of_a_new_ip(november, newsletter, isp, now, manager, settings):
    settings.SEND_WARMUP_DAILY_CAPS = [2, 3]
    settings.SEND_WARMUP_START = now.date()
    for n in range(6):
        subscriber(f"reader{n}@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)

    first_day = pipeline.claim(november.pk, now=now, limit=50)
    pipeline.send_batch(first_day, now=now)
    more_today = pipeline.claim(november.pk, now=now + timedelta(hours=3), limit=50)
    next_day = pipeline.claim(november.pk, now=now + timedelta(days=1), limit=50)
    pipeline.send_batch(next_day, now=now + timedelta(days=1))
    day_after = pipeline.claim(november.pk, now=now + timedelta(days=2), limit=50)

    assert (len(first_day), len(more_today), len(next_day), len(day_after)) == (2, 0, 3, 1)
    assert Send.objects.filter(status=SendStatus.DELIVERED).count() == 5


def test_local_time_sending_gives_each_recipient_the_clock_time_in_their_zone(november, newsletter, isp, now, manager):
    subscriber("berlin@example.org", newsletter, now, time_zone="Europe/Berlin")
    subscriber("tokyo@example.org", newsletter, now, time_zone="Asia/Tokyo")
    subscriber("nowhere@example.org", newsletter, now)
    november.scheduled_at = now.replace(day=3, hour=9, minute=0)
    november.in_recipient_time_zone = True
    november.save()

    pipeline.start_campaign(november, user=manager, now=now)

    due = {send.email: send.due_at.isoformat() for send in november.sends.all()}
    assert due == {
        "berlin@example.org": "2026-11-03T08:00:00+00:00",
        "tokyo@example.org": "2026-11-03T00:00:00+00:00",
        "nowhere@example.org": "2026-11-03T09:00:00+00:00",
    }
    november.refresh_from_db()
    assert november.status == CampaignStatus.SENDING
    due_by_eight = pipeline.claim(november.pk, now=now.replace(day=3, hour=8, minute=0), limit=10)
    assert set(Send.objects.filter(pk__in=due_by_eight).values_list("email", flat=True)) == {
        "berlin@example.org",
        "tokyo@example.org",
    }
