"""An import whose worker dies is started again from scratch; drafts nobody confirmed go away."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django_celery_beat.models import PeriodicTask

from crm.importing import flow
from crm.models import Contact, ImportJob, ImportStatus

CSV = "email,first_name\nann@example.com,Ann\n"


@pytest.fixture
def upload(tmp_path, db):
    path = tmp_path / "contacts.csv"
    path.write_text(CSV)
    return path


def make_job(upload, now, **fields) -> ImportJob:
    return ImportJob.objects.create(
        file_name=upload.name, file_path=str(upload), preset="auto", created_at=now, **fields
    )


def test_a_job_whose_worker_died_is_run_again_and_imports_once(
    upload, now, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_STALE_MINUTES = 30
    job = make_job(upload, now, status=ImportStatus.RUNNING, attempts=1, heartbeat_at=now - timedelta(minutes=29))
    assert flow.recover_abandoned_imports(now=now) == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert flow.recover_abandoned_imports(now=now + timedelta(minutes=2)) == 1
    job.refresh_from_db()
    assert (job.status, job.attempts) == (ImportStatus.DONE, 2)
    assert "started again" in job.message
    assert Contact.objects.filter(email_normalized="ann@example.com").count() == 1
    assert not upload.exists()


def test_a_job_that_keeps_dying_fails_and_says_so(upload, now, settings):
    settings.IMPORT_MAX_ATTEMPTS = 3
    job = make_job(upload, now, status=ImportStatus.RUNNING, attempts=3, heartbeat_at=now - timedelta(hours=2))
    flow.recover_abandoned_imports(now=now)
    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED
    assert "nothing was applied" in job.message
    assert not upload.exists()


def test_drafts_nobody_confirmed_are_dropped_after_a_day(upload, now):
    draft = make_job(upload, now - timedelta(days=1, minutes=1), dry_run=True)
    fresh = make_job(upload, now - timedelta(hours=23), dry_run=True)
    flow.recover_abandoned_imports(now=now)
    draft.refresh_from_db()
    fresh.refresh_from_db()
    assert (draft.status, fresh.status) == (ImportStatus.CANCELLED, ImportStatus.PENDING)


def test_the_recovery_is_scheduled_on_migrate(db):
    assert PeriodicTask.objects.get(task="crm.tasks.recover_abandoned_imports").crontab.minute == "*/10"
