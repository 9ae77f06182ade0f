"""A real Celery worker, in a thread of this process, against the configured broker."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import setup_logging, task_postrun
from django.db import connections
from kombu.exceptions import OperationalError

from config.celery import app as celery_app
from crm.models import SubscriptionType
from tests.conftest import IN_CI

TIMEOUT = 10  # seconds


@celery_app.task(name="tests.create_subscription_type")
def create_subscription_type(name: str) -> None:
    SubscriptionType.objects.create(name=name)


def _leave_logging_alone(**kwargs) -> None:
    """Answer setup_logging so the worker keeps its hands off the root logger's handlers and level."""


def _require_broker() -> None:
    with celery_app.connection_for_write() as connection:
        try:
            connection.ensure_connection(max_retries=1)
        except OperationalError as exc:
            reason = f"needs the Celery broker at {connection.as_uri()}: {exc}"
            if IN_CI:
                pytest.fail(f"{reason} (CI must run this test)")
            pytest.skip(reason)


@pytest.fixture
def worker_queue(transactional_db) -> Iterator[str]:
    """Start a worker that consumes a queue of its own and yield the queue's name.

    A fresh queue keeps this worker away from messages that other tests or a local `make run`
    left in the default queue, and keeps their workers away from this test's message.
    """
    _require_broker()
    queue = f"test-worker-{uuid.uuid4().hex}"
    setup_logging.connect(_leave_logging_alone)
    try:
        with start_worker(celery_app, perform_ping_check=False, shutdown_timeout=TIMEOUT, queues=[queue]):
            yield queue
    finally:
        setup_logging.disconnect(_leave_logging_alone)


def test_a_task_sent_to_the_broker_runs_on_a_real_worker(worker_queue: str) -> None:
    finished = threading.Event()
    states: dict[str, str] = {}

    def on_postrun(task_id: str, state: str, **kwargs) -> None:
        # Runs in the worker thread. Its connection must be closed there, or PostgreSQL refuses to
        # drop the test database at the end of the session.
        connections.close_all()
        states[task_id] = state
        finished.set()

    # Waiting for the worker, rather than polling the table, also avoids reading while the worker
    # writes: SQLite's shared in-memory test database answers that with "table is locked".
    task_postrun.connect(on_postrun)
    try:
        result = create_subscription_type.apply_async(["Worker round trip"], queue=worker_queue)
        assert finished.wait(TIMEOUT), f"no worker ran the task within {TIMEOUT}s"
    finally:
        task_postrun.disconnect(on_postrun)

    assert states == {result.id: "SUCCESS"}
    assert SubscriptionType.objects.filter(name="Worker round trip").exists()
