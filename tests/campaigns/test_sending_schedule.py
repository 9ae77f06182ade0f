"""When sends go out: tasks and the scheduler's minute, shared rates, and the warm-up of a new IP."""

from __future__ import annotations

import bisect
from datetime import timedelta

import pytest

from campaigns import pipeline, tasks
from campaigns.models import CampaignStatus, Send, SendStatus
from campaigns.throttle import BURST_SECONDS, LocalStore, RedisStore, Throttle
from tests.conftest import subscriber


class FakeClock:
    """Time that only moves when the throttle sleeps, so the test measures the rule, not the machine."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["local", "redis"])
def store(request, settings):
    """Where workers share their schedule: one process's cache, or Redis as in production."""
    if request.param == "local":
        return LocalStore()
    if not settings.REDIS_URL:
        pytest.skip("needs Redis: set REDIS_URL")
    return RedisStore(settings.REDIS_URL)


def most_in_any_window(times: list[float], seconds: float) -> int:
    return max(bisect.bisect_left(times, start + seconds) - n for n, start in enumerate(times))


def test_a_global_rate_holds_over_every_window_and_loses_nothing(db, store):
    clock = FakeClock()
    throttle = Throttle(rate=10, domain_rates={}, clock=clock, sleep=clock.sleep, store=store)

    times = []
    for _ in range(200):
        throttle.wait("example.org")
        times.append(clock.now)

    assert most_in_any_window(times, 1) <= 10 * (1 + BURST_SECONDS) + 1
    assert most_in_any_window(times, 10) <= 10 * (10 + BURST_SECONDS) + 1
    assert times[-1] - times[0] == pytest.approx(199 / 10 - BURST_SECONDS)


def test_a_fractional_rate_is_kept_not_rounded_down(db, store):
    clock = FakeClock()
    throttle = Throttle(rate=2.5, domain_rates={}, clock=clock, sleep=clock.sleep, store=store)

    start = clock.now
    for _ in range(26):
        throttle.wait("example.org")

    assert clock.now - start == pytest.approx(25 / 2.5 - BURST_SECONDS)


def test_workers_share_one_rate(db, store):
    clock = FakeClock()
    workers = [Throttle(rate=10, domain_rates={}, clock=clock, sleep=clock.sleep, store=store) for _ in range(2)]

    start = clock.now
    for _ in range(50):
        for worker in workers:
            worker.wait("example.org")

    assert clock.now - start == pytest.approx(99 / 10 - BURST_SECONDS)


@pytest.mark.parametrize("pause", [0.2, 0.1 + BURST_SECONDS, 2.0])
def test_moments_missed_between_batches_are_made_up_but_never_more_than_the_burst(db, store, pause):
    # The worker is idle `pause` seconds after a message; its next one was due 0.1 s (1/R) later.
    late_by = max(0.0, pause - 0.1 - BURST_SECONDS)

    def seconds_for_100_messages(pause: float, start: float) -> float:
        clock = FakeClock(start)
        throttle = Throttle(rate=10, domain_rates={}, clock=clock, sleep=clock.sleep, store=store)
        for n in range(100):
            if n == 50:
                clock.now += pause  # the worker between two batches
            throttle.wait("example.org")
        return clock.now - start

    assert seconds_for_100_messages(pause, 1_800_000_000) == pytest.approx(
        seconds_for_100_messages(0, 1_800_100_000) + late_by
    )


def test_a_receiving_domain_rate_slows_only_that_domain(db, store):
    clock = FakeClock()
    throttle = Throttle(rate=0, domain_rates={"Gmail.com": 2}, clock=clock, sleep=clock.sleep, store=store)

    start = clock.now
    for _ in range(5):
        throttle.wait("example.org")
    others_took = clock.now - start
    for _ in range(5):
        throttle.wait("gmail.com")

    assert others_took == 0
    assert clock.now - start == pytest.approx(4 / 2 - BURST_SECONDS)


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
    assert enqueued == [november.pk]
    assert november.status == CampaignStatus.SENDING


def test_a_campaigns_chains_start_with_uneven_first_batches_so_their_boundaries_stay_apart(settings):
    settings.SEND_BATCH_SIZE, settings.SEND_PARALLEL_TASKS = 500, 4
    started = []

    tasks.start_chains(7, enqueue=lambda campaign_id, batch_size: started.append((campaign_id, batch_size)))

    assert started == [(7, 125), (7, 250), (7, 375), (7, 500)]


def test_a_chains_first_task_sends_its_smaller_batch_and_the_rest_go_in_full_batches(
    november, newsletter, isp, manager, settings, monkeypatch
):
    settings.SEND_BATCH_SIZE = 3
    for n in range(7):
        subscriber(f"reader{n}@example.org", newsletter, november.created_at)
    pipeline.start_campaign(november, user=manager, now=november.created_at)
    batches = []
    send_batch = pipeline.send_batch
    monkeypatch.setattr(pipeline, "send_batch", lambda ids, now: batches.append(len(ids)) or send_batch(ids, now=now))

    tasks.send_campaign(november.pk, 1)

    assert batches == [1, 3, 3]
    assert set(november.sends.values_list("status", flat=True)) == {SendStatus.DELIVERED}


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
