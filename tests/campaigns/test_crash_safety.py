"""A worker killed mid-batch loses no message; the duplicates it causes stay within its batch.

Real parts: a Celery worker *process* on PostgreSQL + Redis, `kill -9`ed while it waits for
the receiving server's answer in the middle of a batch, then a second worker that finishes
the campaign after the stale claims were recovered (campaigns/pipeline.py, "Crash rule").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from kombu import Queue

from campaigns import pipeline
from campaigns.models import CampaignStatus, Send, SendStatus
from campaigns.tasks import send_campaign
from config.celery import app as celery_app
from crm.models import ConsentAction, ConsentMethod, ConsentRecord, Contact, Subscription, SubscriptionStatus
from deliverability.isp_simulator import IspSimulator, MatchKind, Rule, Rules
from tests.conftest import IN_CI

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SUBSCRIBERS = 300
BATCH_SIZE = 20
CONCURRENCY = 1
# The kill lands while the worker waits on this recipient: 8th batch, 13th message, so the 12
# messages before it in the batch were accepted but their results never reached the database.
TRIPWIRE_INDEX = 7 * BATCH_SIZE + 12
REDIS_DB = 5  # The broker's db 0 and the cache's db 1 belong to the rest of the suite.
DEADLINE = 45.0  # seconds, for each wait on the worker
WORKER_COMMAND = [
    *(sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO"),
    *("--without-gossip", "--without-mingle", "--without-heartbeat"),
]
THROTTLES = {"SEND_RATE_PER_SECOND", "SEND_DOMAIN_RATES", "SEND_WARMUP_DAILY_CAPS", "SEND_WARMUP_START"}


@pytest.fixture
def now() -> datetime:
    """The real clock, unfrozen: the worker process claims and sends on it, so the test does too."""
    return timezone.now()


@pytest.fixture
def broker_url() -> Iterator[str]:
    """A Redis database of this test's own as the broker, emptied before and after."""
    parts = urlsplit(settings.CELERY_BROKER_URL)
    if parts.scheme not in {"redis", "rediss"}:
        reason = f"needs a Redis broker (CELERY_BROKER_URL=redis://…), not {parts.scheme}://"
        if IN_CI:
            pytest.fail(f"{reason} (CI must run this test)")
        pytest.skip(reason)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{REDIS_DB}", "", ""))
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def isp() -> Iterator[IspSimulator]:
    simulator = IspSimulator(port=0, rules=Rules([]))
    simulator.start()
    yield simulator
    simulator.stop()


class Workers:
    """Celery worker processes, each in a process group of its own so one kill takes its pool too."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        number = len(self.processes) + 1
        log = (self.log_dir / f"worker{number}.log").open("wb")
        process = subprocess.Popen(
            [*WORKER_COMMAND, f"--concurrency={CONCURRENCY}", f"--hostname=crash{number}@%h"],
            cwd=settings.BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def kill_all(self) -> None:
        for process in self.processes:
            self.kill(process)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name} (last lines)\n" + "\n".join(path.read_text(errors="replace").splitlines()[-30:])
            for path in sorted(self.log_dir.glob("worker*.log"))
        )


def _database_url() -> str:
    db = connection.settings_dict
    credentials = quote(db["USER"] or "postgres") + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def workers(broker_url, isp, dns_server, tmp_path) -> Iterator[Workers]:
    """Starts workers against the test database, this test's broker and the ISP simulator; kills them after."""
    # Rates and warm-up caps of the environment would slow the worker or stop it at its cap.
    inherited = {name: value for name, value in os.environ.items() if name not in THROTTLES}
    env = {
        **inherited,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": broker_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        # The DKIM private keys are encrypted with these; the worker must read the test's.
        "SECRET_KEY": settings.SECRET_KEY,
        "ENCRYPTION_KEYS": ",".join(settings.ENCRYPTION_KEYS),
        "CAMPAIGN_SMTP_HOST": "127.0.0.1",
        "CAMPAIGN_SMTP_PORT": str(isp.port),
        "CAMPAIGN_SMTP_TIMEOUT_SECONDS": "30",
        "SEND_BATCH_SIZE": str(BATCH_SIZE),
        # The worker only signs; should anything ask DNS, it asks the test's server, never the internet.
        "DNS_NAMESERVERS": "127.0.0.1",
        "DNS_PORT": str(dns_server.port),
        "LOG_LEVEL": "WARNING",
    }
    started = Workers(env, tmp_path)
    try:
        yield started
    finally:
        started.kill_all()


@pytest.fixture
def enqueue(broker_url, monkeypatch) -> Iterator[Callable[[int], None]]:
    """Send `send_campaign` tasks to this test's broker, as beat's dispatch_sends does."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    with celery_app.connection_for_write(broker_url) as broker:
        # Declared before any worker is up: Redis drops a message for a queue nobody declared yet.
        name = celery_app.conf.task_default_queue
        Queue(name, celery_app.amqp.default_exchange, routing_key=name).bind(broker.default_channel).declare()

        def send(campaign_id: int) -> None:
            send_campaign.apply_async([campaign_id], connection=broker)

        yield send


def subscribers(count: int, subscription_type, now) -> list[Contact]:
    """`count` confirmed subscribers with consent, inserted in bulk."""
    contacts = []
    for n in range(count):
        contact = Contact(first_name=f"Reader {n}")
        contact.set_address(f"reader{n:04}@example.org")
        contacts.append(contact)
    contacts = Contact.objects.bulk_create(contacts)
    Subscription.objects.bulk_create(
        Subscription(contact=c, subscription_type=subscription_type, status=SubscriptionStatus.SUBSCRIBED)
        for c in contacts
    )
    ConsentRecord.objects.bulk_create(
        ConsentRecord(
            contact=c,
            email=c.email_normalized,
            subscription_type=subscription_type,
            action=ConsentAction.GRANTED,
            method=ConsentMethod.FORM,
            created_at=now,
        )
        for c in contacts
    )
    return contacts


def wait_until(condition: Callable[[], bool], what: str, workers: Workers, worker: subprocess.Popen) -> None:
    """Poll until `condition` holds; fail with the workers' logs if the worker exits or time runs out."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if worker.poll() is not None:
            pytest.fail(f"{what}: the worker exited with {worker.returncode}\n{workers.logs()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {DEADLINE:g} s\n{workers.logs()}")
        time.sleep(0.05)


def test_a_worker_killed_mid_batch_loses_no_message_and_repeats_at_most_its_batch(
    november, newsletter, isp, workers, enqueue, now, manager, record_property
):
    subscribers(SUBSCRIBERS, newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)
    in_claim_order = list(
        Send.objects.filter(campaign=november, status=SendStatus.QUEUED)
        .order_by("due_at", "pk")
        .values_list("email", flat=True)
    )
    tripwire = in_claim_order[TRIPWIRE_INDEX]
    # This recipient's server answers only after a minute: the worker is surely mid-batch when it asks.
    isp.rules = Rules([Rule(MatchKind.ADDRESS, tripwire, delay=60)])

    first = workers.start()
    assert pipeline.dispatch(now=timezone.now(), enqueue=enqueue) == [november.pk]
    wait_until(lambda: isp.attempts[tripwire] > 0, "the first worker reaches the tripwire", workers, first)
    workers.kill(first)

    in_flight = set(Send.objects.filter(status=SendStatus.SENDING).values_list("email", flat=True))
    assert len(in_flight) == BATCH_SIZE and tripwire in in_flight
    isp.rules = Rules([])
    assert pipeline.recover_stale_claims(now=timezone.now() + timedelta(minutes=5)) == 0, "a slow worker is not dead"
    later = timezone.now() + timedelta(minutes=16)
    assert pipeline.recover_stale_claims(now=later) == BATCH_SIZE
    assert pipeline.dispatch(now=later, enqueue=enqueue) == [november.pk]
    second = workers.start()
    wait_until(
        lambda: not Send.objects.filter(status__in=[*pipeline.CLAIMABLE, SendStatus.SENDING]).exists(),
        "the second worker finishes the campaign",
        workers,
        second,
    )
    # Every RCPT but the tripwire's first one ended in an accepted message; wait for their DKIM checks.
    isp.wait_for_messages(sum(isp.attempts.values()) - 1, timeout=DEADLINE)

    received = Counter(rcpt.lower() for message in isp.received for rcpt in message.rcpts)
    duplicated = {address for address, times in received.items() if times > 1}
    duplicates = sum(received[address] - 1 for address in duplicated)
    print(f"\ncrash mid-batch: {duplicates} duplicate messages (batch size {BATCH_SIZE}, concurrency {CONCURRENCY})")
    record_property("duplicates_after_kill", duplicates)
    statuses = Counter(Send.objects.filter(campaign=november).values_list("status", flat=True))
    assert statuses == {SendStatus.DELIVERED: SUBSCRIBERS}
    assert set(received) == set(in_claim_order), "every subscriber got the message"
    assert duplicated <= in_flight, "only the dead worker's batch can be sent twice"
    assert duplicates <= BATCH_SIZE * CONCURRENCY
    assert duplicates == TRIPWIRE_INDEX % BATCH_SIZE, "the messages of the batch accepted before the kill"
    assert pipeline.finish_campaigns(now=timezone.now()) == 1
    november.refresh_from_db()
    assert november.status == CampaignStatus.SENT
