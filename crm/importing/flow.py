"""The admin's import flow: upload, preview a bounded sample, confirm, run once in Celery, cancel.

An upload is kept under IMPORT_UPLOAD_DIR until its job ends (done, failed or cancelled).
Until staff confirm, the job is a draft (pending and a dry run) whose counts and problems are
the preview's: a dry run of at most IMPORT_PREVIEW_ROWS data rows of each file, so however
large the file, the request reads a bounded sample and the full run happens once, in a worker.
"""

from __future__ import annotations

import uuid
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db.models import F
from django.utils import timezone
from django.utils.text import get_valid_filename

from crm.exporting import escape_formula
from crm.importing.engine import run_import
from crm.importing.presets import PRESETS, GenericPreset, detect_preset
from crm.importing.reading import SAMPLE_BYTES, UnreadableFile, open_tables
from crm.models import ImportJob, ImportStatus, SubscriptionType

# The generic preset's columns staff can choose on the preview page.
MAPPED_FIELDS = ("email", "first_name", "last_name", "company", "phone")
ACTIVE = (ImportStatus.PENDING, ImportStatus.RUNNING)
ENDED = (ImportStatus.DONE, ImportStatus.FAILED, ImportStatus.CANCELLED)
ERROR_REPORT_COLUMNS = ["file", "line", "column", "value", "reason"]


class Cancelled(Exception):
    """Staff cancelled the job (or deleted it) while it was reading its file."""


@dataclass(frozen=True)
class SourceTable:
    """One CSV of an upload as the import will read it."""

    name: str
    header: list[str]
    preset_label: str
    is_generic: bool
    email_column: str | None


@dataclass(frozen=True)
class Preview:
    """What a draft's dry run found, and how to read the file's columns."""

    counts: dict[str, int]
    sample_rows: int
    # The file may hold more rows than the sample (conservative: true when a file filled it).
    partial: bool
    is_zip: bool
    tables: list[SourceTable]
    # For generic CSVs: the header staff pick from, and the column each field is read from now.
    header: list[str]
    mapping: dict[str, str]

    @property
    def ready(self) -> bool:
        """Whether every file has an email column (without one, nothing can be imported)."""
        return bool(self.tables) and all(table.email_column for table in self.tables)


def is_draft(job: ImportJob) -> bool:
    """True while the job is an upload waiting for staff to confirm its preview."""
    return job.dry_run and job.status == ImportStatus.PENDING


def save_upload(upload: UploadedFile) -> Path:
    """Copy an uploaded file, chunk by chunk, to a new file under IMPORT_UPLOAD_DIR."""
    directory = Path(settings.IMPORT_UPLOAD_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = Path(get_valid_filename(upload.name or "upload")).suffix[:10]
    path = directory / f"{uuid.uuid4().hex}{suffix}"
    with path.open("xb") as target:
        for chunk in upload.chunks():
            target.write(chunk)
    return path


def start_preview(
    upload: UploadedFile,
    *,
    created_by,
    now: datetime,
    preset: str,
    subscription_types: Iterable[SubscriptionType],
    basis: str,
    lawful_basis: str,
    attestation: str,
    field_policy: str,
) -> ImportJob:
    """Keep the upload and preview it as a draft job.

    Raises UnreadableFile, keeping neither file nor job, if the upload is not a table.
    """
    path = save_upload(upload)
    job = ImportJob.objects.create(
        file_name=(upload.name or path.name)[:255],
        file_path=str(path),
        preset=preset,
        basis=basis,
        lawful_basis=lawful_basis,
        attestation=attestation,
        field_policy=field_policy,
        dry_run=True,
        created_by=created_by,
        created_at=now,
    )
    job.subscription_types.set(subscription_types)
    try:
        _preview(job, now=now)
    except UnreadableFile:
        job.delete()
        path.unlink(missing_ok=True)
        raise
    job.refresh_from_db()
    return job


def preview_again(job: ImportJob, *, mapping: dict[str, str], now: datetime) -> None:
    """Preview a draft again with the generic preset's columns chosen by staff."""
    job.column_mapping = {field: column for field, column in mapping.items() if column}
    ImportJob.objects.filter(pk=job.pk).update(column_mapping=job.column_mapping)
    _preview(job, now=now)
    job.refresh_from_db()


def _preview(job: ImportJob, *, now: datetime) -> None:
    try:
        run_import(job, Path(job.file_path), now=now, limit=settings.IMPORT_PREVIEW_ROWS)
    except zipfile.BadZipFile as exc:
        raise UnreadableFile(f"{job.file_name}: the ZIP file is damaged ({exc}).") from None
    finally:
        # The dry run marked the job done (or failed); a draft waits for staff, whatever it found.
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportStatus.PENDING, started_at=None, finished_at=None, rows_read=0
        )


def describe_preview(job: ImportJob) -> Preview:
    """The draft's preview counts, and the tables and columns of its file (headers only are read)."""
    tables: list[SourceTable] = []
    header: list[str] = []
    mapping: dict[str, str] = {}
    path = Path(job.file_path)
    try:
        is_zip = zipfile.is_zipfile(path)
        for table in open_tables(path, display_name=job.file_name):
            preset_class = detect_preset(table.header, table.name) if job.preset == "auto" else PRESETS[job.preset]
            # As the engine reads it.
            is_generic = preset_class is GenericPreset
            preset = (
                GenericPreset(table.header, file_name=table.name, mapping=job.column_mapping)
                if is_generic
                else preset_class(table.header, file_name=table.name)
            )
            tables.append(SourceTable(table.name, table.header, preset_class.label, is_generic, preset.email_column))
            if is_generic and not header:
                header = table.header
                mapping = {field: column for field in MAPPED_FIELDS if (column := preset.column(field))}
    except (OSError, UnreadableFile, zipfile.BadZipFile):
        # Cancelled meanwhile (the file is gone): the counts are all there is to show.
        is_zip = False
    sample_rows = settings.IMPORT_PREVIEW_ROWS
    return Preview(
        counts=job.counts,
        sample_rows=sample_rows,
        partial=job.counts.get("rows", 0) >= sample_rows,
        is_zip=is_zip,
        tables=tables,
        header=header,
        mapping=mapping,
    )


def confirm_import(job: ImportJob, *, user) -> bool:
    """Turn a draft into a job and queue its one full run; False if it is no longer a draft."""
    confirmed = ImportJob.objects.filter(pk=job.pk, status=ImportStatus.PENDING, dry_run=True).update(
        dry_run=False, created_by=user, counts={}, rows_read=0, message=""
    )
    if not confirmed:
        return False
    # The preview's problems are the sample's; the run records the whole file's.
    job.problems.all().delete()
    from crm import tasks  # crm.tasks imports this module: import at call time.

    tasks.run_import_job.delay_on_commit(job.pk)
    return True


def cancel_import(job: ImportJob, *, now: datetime) -> bool:
    """Cancel a draft, waiting or running job and delete its file; False if it had already ended.

    A running job stops at its next progress report, before its apply transaction starts; a
    job already applying its rows finishes (and says so), since that transaction is all or nothing.
    """
    cancelled = ImportJob.objects.filter(pk=job.pk, status__in=ACTIVE).update(
        status=ImportStatus.CANCELLED, finished_at=now
    )
    if cancelled:
        # A worker still reading keeps its open handle; one that has not opened it yet fails
        # to, and the job stays cancelled.
        Path(job.file_path).unlink(missing_ok=True)
    return bool(cancelled)


def run_job(job_id: int, *, now: datetime) -> None:
    """Run a confirmed job's import once, then delete its file.

    Returns quietly if the job is not waiting (another worker has it, it ran, it was cancelled)
    and when it ends cancelled or with an unreadable file (recorded on the job); other errors are
    recorded on the job and raised.
    """
    claimed = ImportJob.objects.filter(pk=job_id, status=ImportStatus.PENDING, dry_run=False).update(
        status=ImportStatus.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1
    )
    if not claimed:
        return
    job = ImportJob.objects.get(pk=job_id)
    path = Path(job.file_path)
    try:
        run_import(job, path, now=now, progress=partial(report_progress, job_id))
    except UnreadableFile:
        pass
    except Exception:
        if ImportJob.objects.filter(pk=job_id).exclude(status=ImportStatus.CANCELLED).exists():
            raise
    finally:
        path.unlink(missing_ok=True)
        # The engine stamps the start time on everything; the end is when it actually ended.
        ImportJob.objects.filter(pk=job_id, status__in=[ImportStatus.DONE, ImportStatus.FAILED]).update(
            finished_at=timezone.now()
        )


def report_progress(job_id: int, rows: int) -> None:
    """Record how many rows a running job has read; raise Cancelled if it is no longer running."""
    running = ImportJob.objects.filter(pk=job_id, status=ImportStatus.RUNNING)
    if not running.update(rows_read=rows, heartbeat_at=timezone.now()):
        raise Cancelled(f"import #{job_id} was cancelled")


def recover_abandoned_imports(*, now: datetime) -> int:
    """Restart jobs whose worker died; drop drafts nobody confirmed. Returns how many jobs it touched.

    A running job that has not reported progress for IMPORT_STALE_MINUTES lost its worker
    (killed, restarted, out of memory). Nothing of it was applied — the apply is one
    transaction — and importing is idempotent, so it is queued again from the start, up to
    IMPORT_MAX_ATTEMPTS times; then it fails and says so. Drafts older than a day are
    cancelled and their uploads deleted.
    """
    stale = ImportJob.objects.filter(
        status=ImportStatus.RUNNING, heartbeat_at__lt=now - timedelta(minutes=settings.IMPORT_STALE_MINUTES)
    )
    given_up = stale.filter(attempts__gte=settings.IMPORT_MAX_ATTEMPTS)
    for job in given_up:
        Path(job.file_path).unlink(missing_ok=True)
    touched = given_up.update(
        status=ImportStatus.FAILED,
        finished_at=now,
        message="The worker stopped during every attempt; nothing was applied. Upload the file again to retry.",
    )
    restarted = list(stale.exclude(attempts__gte=settings.IMPORT_MAX_ATTEMPTS).values_list("pk", flat=True))
    touched += ImportJob.objects.filter(pk__in=restarted, status=ImportStatus.RUNNING).update(
        status=ImportStatus.PENDING,
        rows_read=0,
        message="The worker stopped during the import; nothing was applied, so it was started again.",
    )
    from crm import tasks  # crm.tasks imports this module: import at call time.

    for job_id in restarted:
        tasks.run_import_job.delay_on_commit(job_id)
    drafts = ImportJob.objects.filter(status=ImportStatus.PENDING, dry_run=True, created_at__lt=now - timedelta(days=1))
    for job in drafts:
        Path(job.file_path).unlink(missing_ok=True)
    touched += drafts.update(status=ImportStatus.CANCELLED, finished_at=now, message="Never confirmed.")
    return touched


def estimate_rows(path: Path) -> int | None:
    """A rough count of the rows in an upload, from its size and its first lines; None if unknown."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = [info for info in archive.infolist() if info.filename.lower().endswith((".csv", ".txt"))]
                if not members:
                    return None
                size = sum(info.file_size for info in members)
                with archive.open(members[0]) as stream:
                    head = stream.read(SAMPLE_BYTES)
        else:
            size = path.stat().st_size
            with path.open("rb") as stream:
                head = stream.read(SAMPLE_BYTES)
    except (OSError, zipfile.BadZipFile):
        return None
    lines = head.count(b"\n")
    return max(1, round(size * lines / len(head))) if lines else None


def job_progress(job: ImportJob) -> dict[str, object]:
    """The job's state for the admin's progress bar (percent is None while it cannot be told)."""
    percent: int | None
    if job.status == ImportStatus.DONE:
        percent = 100
    elif job.status == ImportStatus.PENDING:
        percent = 0
    elif job.status == ImportStatus.RUNNING:
        estimate = estimate_rows(Path(job.file_path))
        # Rows are counted while reading; applying them comes after, so stop short of 100.
        percent = min(99, job.rows_read * 100 // estimate) if estimate else None
    else:
        percent = None
    return {
        "status": job.status,
        "status_label": job.get_status_display(),
        "rows_read": job.rows_read,
        "percent": percent,
        "ended": job.status in ENDED,
    }


def error_report_rows(job: ImportJob) -> Iterator[list[str]]:
    """The job's problems as CSV cells (ERROR_REPORT_COLUMNS), formulas neutralised, streamed."""
    problems = job.problems.order_by("file_name", "line", "id").values_list(
        "file_name", "line", "column", "value", "reason"
    )
    for row in problems.iterator(chunk_size=2000):
        yield [escape_formula(cell) for cell in row]
