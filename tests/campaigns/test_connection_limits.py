"""Connections to each receiving domain, limited across workers by leases that lapse when a worker dies."""

from __future__ import annotations

import pytest

from campaigns import pipeline
from campaigns.models import SendStatus
from campaigns.throttle import ConnectionLeases, LocalStore, RedisStore
from campaigns.transports import Outgoing, SmtpTransport
from tests.campaigns.test_sending_schedule import FakeClock
from tests.conftest import subscriber


@pytest.fixture(params=["local", "redis"])
def store(request, settings):
    """Where workers share their leases: one process's cache, or Redis as in production."""
    if request.param == "local":
        return LocalStore()
    if not settings.REDIS_URL:
        pytest.skip("needs Redis: set REDIS_URL")
    return RedisStore(settings.REDIS_URL)


def worker(isp, store, *, limits: dict[str, int], clock=None) -> SmtpTransport:
    """One worker's transport delivering to each domain's MX, which is the ISP simulator."""
    clock = clock or FakeClock()
    leases = ConnectionLeases(default=5, per_domain=limits, seconds=300, clock=clock, sleep=clock.sleep, store=store)
    return SmtpTransport(timeout=1, mx_hosts=lambda domain: ["127.0.0.1"], port=isp.port, leases=leases)


def to(address: str) -> Outgoing:
    return Outgoing("bounces@news.example.com", address, b"Subject: hi\r\n\r\nHello.\r\n")


def test_a_worker_waits_for_a_connection_another_worker_holds_and_gets_it_when_returned(isp, store):
    first, second = worker(isp, store, limits={"example.org": 1}), worker(isp, store, limits={"example.org": 1})

    by_first = first.deliver(to("ada@example.org"))
    while_held = second.deliver(to("bea@example.org"))
    other_domain = second.deliver(to("cy@example.net"))
    first.close()
    after_close = second.deliver(to("bea@example.org"))
    second.close()

    assert by_first.code == 250 and other_domain.code == 250 and after_close.code == 250
    assert while_held.code == 451
    assert while_held.text == (
        "4.4.5 Not tried: all 1 connections to example.org allowed to our workers stayed in use for 1 s;"
        " trying again later"
    )
    assert sorted(r.rcpts[0] for r in isp.wait_for_messages(3)) == [
        "ada@example.org",
        "bea@example.org",
        "cy@example.net",
    ]


def test_the_default_limit_applies_to_domains_without_their_own(isp, store):
    clock = FakeClock()
    workers = [worker(isp, store, limits={}, clock=clock) for _ in range(6)]

    replies = [w.deliver(to(f"reader{n}@example.org")).code for n, w in enumerate(workers)]
    for w in workers:
        w.close()

    assert replies == [250, 250, 250, 250, 250, 451]


def test_a_dead_workers_connections_lapse_and_another_worker_takes_them(isp, store):
    clock = FakeClock()
    dead = ConnectionLeases(default=1, per_domain={}, seconds=300, clock=clock, sleep=clock.sleep, store=store)
    assert dead.take("example.org")
    live = ConnectionLeases(default=1, per_domain={}, seconds=300, clock=clock, sleep=clock.sleep, store=store)

    before = live.take("example.org")
    clock.now += 301  # the dead worker never renews
    after = live.take("example.org")

    assert (before, after) == (False, True)


def test_a_live_worker_keeps_its_connections_by_renewing_them(store):
    clock = FakeClock()
    holder = ConnectionLeases(default=1, per_domain={}, seconds=300, clock=clock, sleep=clock.sleep, store=store)
    other = ConnectionLeases(default=1, per_domain={}, seconds=300, clock=clock, sleep=clock.sleep, store=store)
    holder.take("example.org")

    for _ in range(10):
        clock.now += 100
        holder.renew()

    assert not other.take("example.org")
    assert holder.held == {"example.org"}


def test_a_smarthost_takes_no_connection_leases(isp, store):
    clock = FakeClock()
    leases = ConnectionLeases(default=1, per_domain={}, seconds=300, clock=clock, sleep=clock.sleep, store=store)
    others = ConnectionLeases(default=1, per_domain={}, seconds=300, clock=clock, sleep=clock.sleep, store=store)
    smarthost = SmtpTransport(timeout=1, mx_hosts=lambda domain: [], smarthost=("127.0.0.1", isp.port), leases=leases)

    reply = smarthost.deliver(to("ada@example.org"))

    assert reply.code == 250
    assert others.take("example.org")
    smarthost.close()


def test_sends_to_a_domain_at_its_limit_are_deferred_and_retried_while_others_go_out(
    november, newsletter, isp, dns_server, settings, now, manager
):
    settings.CAMPAIGN_SMTP_HOST = ""  # deliver to each domain's MX, which is the simulator
    settings.SEND_DOMAIN_CONNECTIONS = {"example.org": 1}
    for domain in ("example.org", "example.net"):
        dns_server.add(domain, "MX", "10 localhost")
    subscriber("ada@example.org", newsletter, now)
    subscriber("bea@example.net", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)
    other_worker = pipeline.smtp_transport()
    assert other_worker.deliver(to("cy@example.org")).code == 250

    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)
    held = {s.email: (s.status, s.smtp_reply[:9]) for s in november.sends.all()}
    other_worker.close()
    retry_at = november.sends.get(email="ada@example.org").due_at
    pipeline.send_batch(pipeline.claim(november.pk, now=retry_at, limit=10), now=retry_at)

    assert held == {
        "ada@example.org": (SendStatus.DEFERRED, "4.4.5 Not"),
        "bea@example.net": (SendStatus.DELIVERED, "2.0.0 OK:"),
    }
    assert november.sends.get(email="ada@example.org").status == SendStatus.DELIVERED
