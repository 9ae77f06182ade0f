"""A real Celery worker, in a thread of this process, against the configured broker."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from celery import Task
from celery.contrib.testing.worker import start_worker
from celery.signals import setup_logging, task_postrun
from kombu import Queue
from kombu.exceptions import OperationalError

from config.celery import app as celery_app
from crm.models import SubscriptionType
from tests.conftest import IN_CI

TIMEOUT = 10  # seconds


@celery_app.task(name="tests.create_subscription_type")
def create_subscription_type(name: str) -> None:
    SubscriptionType.objects.create(name=name)


def _leave_logging_alone(**kwargs) -> None:
    """Answer setup_logging, so the worker leaves the root logger's handlers and level alone."""


def _require_broker() -> None:
    with celery_app.connection_for_write() as connection:
        try:
            connection.ensure_connection(max_retries=1)
        except OperationalError as exc:
            reason = f"needs the Celery broker at {connection.as_uri()}: {exc}"
            if IN_CI:
                pytest.fail(f"{reason} (CI must run this test)")
            pytest.skip(reason)


def _delete_queue(queue: Queue) -> None:
    """Remove the queue and its binding, which the broker would otherwise keep."""
    with celery_app.connection_for_write() as connection:
        bound = queue.bind(connection.default_channel)
        bound.declare()  # a connection deletes only the bindings it has seen declared
        bound.delete()


@pytest.fixture
def worker_queue(transactional_db, monkeypatch: pytest.MonkeyPatch) -> Iterator[Queue]:
    """Start a worker that consumes only a new queue, and yield that queue.

    A queue of its own keeps this worker away from messages that other tests or a local
    `make run` left in the default queue, and keeps their workers away from this test's message.
    """
    _require_broker()
    name = f"test-worker-{uuid.uuid4().hex}"
    queue = Queue(name, celery_app.amqp.default_exchange, routing_key=name)
    # The suite runs tasks inline (tests/conftest.py); this test is about the broker.
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    # A worker consumes every queue in the app's table (a cached property, hence vars()).
    monkeypatch.setitem(vars(celery_app.amqp), "queues", celery_app.amqp.Queues([queue]))
    # Remote control would leave a binding per worker name in the broker.
    monkeypatch.setitem(celery_app.conf, "worker_enable_remote_control", False)
    setup_logging.connect(_leave_logging_alone)
    try:
        with start_worker(celery_app, perform_ping_check=False, shutdown_timeout=TIMEOUT):
            yield queue
    finally:
        setup_logging.disconnect(_leave_logging_alone)
        _delete_queue(queue)


def test_a_task_sent_to_the_broker_runs_on_a_real_worker(worker_queue: Queue) -> None:
    finished = threading.Event()
    runs: dict[str, tuple[str | None, str]] = {}

    def on_postrun(task_id: str, task: Task, state: str, **kwargs) -> None:
        runs[task_id] = (task.request.delivery_info.get("routing_key"), state)
        finished.set()

    # Wait for the worker rather than poll the table: reading while the worker writes makes SQLite's
    # shared in-memory test database fail one of them with "database table is locked".
    task_postrun.connect(on_postrun)
    try:
        result = create_subscription_type.apply_async(["Worker round trip"], queue=worker_queue)
        assert finished.wait(TIMEOUT), f"no worker ran the task within {TIMEOUT}s"
    finally:
        task_postrun.disconnect(on_postrun)

    assert runs == {result.id: (worker_queue.routing_key, "SUCCESS")}
    assert SubscriptionType.objects.filter(name="Worker round trip").exists()
