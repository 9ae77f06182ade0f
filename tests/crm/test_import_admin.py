"""Imports through the admin: upload → preview (a dry run of a sample) → confirm → a Celery job."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from crm.importing import engine, flow
from crm.models import Contact, ImportJob, ImportProblem, ImportStatus, Subscription
from crm.tasks import run_import_job
from tests.crm.test_import_rules import MAILCHIMP_CLEANED, MAILCHIMP_SUBSCRIBED, MAILCHIMP_UNSUBSCRIBED

ADD = "/admin/crm/importjob/add/"
CHANGELIST = "/admin/crm/importjob/"
MAILCHIMP_HEADER = (
    '"Email Address","First Name","Last Name","MEMBER_RATING","OPTIN_TIME","OPTIN_IP","CONFIRM_TIME","CONFIRM_IP",'
    '"LEID","EUID"\r\n'
)


def mailchimp_row(email: str, first_name: str = "", optin_time: str = "2023-01-05 10:00:00") -> str:
    return f'"{email}","{first_name}","","2","{optin_time}","","","","1","a"\r\n'


# ann: opted in; ben: no evidence; line 4: not an address; line 5: ann again.
MAILCHIMP_CSV = (
    MAILCHIMP_HEADER
    + mailchimp_row("ann@example.com", "Ann")
    + mailchimp_row("ben@example.com", "Ben", optin_time="")
    + mailchimp_row("not-an-address")
    + mailchimp_row("ANN@example.com", "Ann")
)


@pytest.fixture
def uploads(settings, tmp_path) -> Path:
    """Where uploads wait for their job (empty at the start of each test)."""
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"
    return settings.IMPORT_UPLOAD_DIR


@pytest.fixture
def staff(client, manager):
    client.force_login(manager)
    return client


def upload(client, content: str | bytes, *, name: str = "subscribed_members.csv", types=(), **fields):
    data = content.encode() if isinstance(content, str) else content
    form = {
        "file": SimpleUploadedFile(name, data, content_type="text/csv"),
        "preset": "auto",
        "subscription_types": [t.pk for t in types],
        "basis": "evidence",
        "lawful_basis": "consent",
        "attestation": "",
        "field_policy": "fill",
        **fields,
    }
    return client.post(ADD, {k: v for k, v in form.items() if v is not None})


def preview_of(client, content: str | bytes = MAILCHIMP_CSV, **options) -> ImportJob:
    response = upload(client, content, **options)
    assert response.status_code == 302, response.content.decode()[:2000]
    job = ImportJob.objects.get()
    assert response["Location"] == f"/admin/crm/importjob/{job.pk}/preview/"
    return job


def confirm(client, job: ImportJob, capture) -> None:
    with capture(execute=True):
        response = client.post(f"/admin/crm/importjob/{job.pk}/preview/", {"_confirm": "1"})
    assert response.status_code == 302
    assert response["Location"] == f"/admin/crm/importjob/{job.pk}/change/"
    job.refresh_from_db()


def test_the_preview_shows_counts_per_outcome_and_the_first_bad_rows(staff, uploads, newsletter, now):
    job = preview_of(staff, types=[newsletter])
    page = staff.get(f"/admin/crm/importjob/{job.pk}/preview/")
    assert page.status_code == 200
    counts = dict(page.context["counts"])
    assert counts["New contacts"] == 2
    assert counts["Subscriptions added"] == 1
    assert counts["Not subscribed: no consent"] == 1
    assert counts["Invalid rows"] == 1
    assert counts["Duplicates in the file"] == 1
    assert [(p.line, p.value) for p in page.context["problems"]] == [(4, "not-an-address")]
    html = page.content.decode()
    assert "Dry run: nothing has been imported yet." in html
    assert "Counts are for the whole file." in html
    assert "Mailchimp audience export" in html


def test_the_preview_imports_nothing(staff, uploads, newsletter, now):
    job = preview_of(staff, types=[newsletter])
    assert not Contact.objects.exists()
    assert not Subscription.objects.exists()
    assert flow.is_draft(job)
    assert Path(job.file_path).exists()


def test_a_confirmed_import_runs_as_a_job_and_its_page_shows_the_counts(
    staff, manager, uploads, newsletter, now, django_capture_on_commit_callbacks
):
    job = preview_of(staff, types=[newsletter])
    confirm(staff, job, django_capture_on_commit_callbacks)

    assert (job.status, job.dry_run, job.created_by) == (ImportStatus.DONE, False, manager)
    assert job.counts["new"] == 2
    assert job.counts["subscribed"] == 1
    assert set(Contact.objects.values_list("email_normalized", flat=True)) == {"ann@example.com", "ben@example.com"}
    assert not Path(job.file_path).exists()
    page = staff.get(f"/admin/crm/importjob/{job.pk}/change/")
    assert page.status_code == 200
    assert ("New contacts", 2) in page.context["counts"]
    html = page.content.decode()
    assert "Download error report (CSV)" in html
    assert "not-an-address" in html
    assert "started by <strong>manager</strong>" in html


def test_a_long_file_is_previewed_from_its_first_rows_and_imported_whole(
    staff, uploads, settings, newsletter, now, django_capture_on_commit_callbacks
):
    settings.IMPORT_PREVIEW_ROWS = 3
    rows = "".join(mailchimp_row(f"person{i}@example.com") for i in range(10))
    job = preview_of(staff, MAILCHIMP_HEADER + rows, types=[newsletter])
    assert job.counts["rows"] == 3
    page = staff.get(f"/admin/crm/importjob/{job.pk}/preview/")
    assert "What the import would do in the first 3 rows" in page.content.decode()

    confirm(staff, job, django_capture_on_commit_callbacks)
    assert (job.counts["rows"], job.counts["new"]) == (10, 10)


def test_a_mailchimp_zip_is_previewed_from_the_first_rows_of_each_file(
    staff, uploads, settings, newsletter, now, django_capture_on_commit_callbacks
):
    settings.IMPORT_PREVIEW_ROWS = 1
    export = io.BytesIO()
    with zipfile.ZipFile(export, "w") as archive:
        archive.writestr("subscribed_email_audience_export_1.csv", MAILCHIMP_SUBSCRIBED)
        archive.writestr("unsubscribed_email_audience_export_1.csv", MAILCHIMP_UNSUBSCRIBED)
        archive.writestr("cleaned_email_audience_export_1.csv", MAILCHIMP_CLEANED)
    job = preview_of(staff, export.getvalue(), name="members_export_1.zip", types=[newsletter])
    assert (job.counts["rows"], job.counts["new"], job.counts["suppressed"]) == (3, 3, 2)
    page = staff.get(f"/admin/crm/importjob/{job.pk}/preview/")
    assert "What the import would do in the first 1 row of each file" in page.content.decode()
    assert [table.name for table in page.context["preview"].tables] == [
        "cleaned_email_audience_export_1.csv",
        "subscribed_email_audience_export_1.csv",
        "unsubscribed_email_audience_export_1.csv",
    ]

    confirm(staff, job, django_capture_on_commit_callbacks)
    assert (job.counts["rows"], job.counts["new"], job.counts["suppressed"]) == (4, 4, 2)


@pytest.mark.parametrize(
    ("content", "fields", "field", "message"),
    [
        (None, {}, "file", "This field is required."),
        (b"", {}, "file", "The submitted file is empty."),
        (bytes(range(256)) * 64, {}, "file", "this is not a text file"),
        ("\r\n\r\n", {}, "file", "the file is empty"),
        (MAILCHIMP_CSV, {"basis": "attested", "attestation": "  "}, "attestation", "needs the basis you attest to"),
        (MAILCHIMP_CSV, {"basis": "evidence", "subscription_types": []}, "subscription_types", "Choose the"),
    ],
)
def test_bad_uploads_get_a_clear_message_on_the_form(staff, uploads, newsletter, now, content, fields, field, message):
    options = {"types": [newsletter], **fields}
    if content is None:
        options["file"] = None
    response = upload(staff, content or b"", **options)
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert not ImportJob.objects.exists()
    assert not any(uploads.glob("*")) if uploads.exists() else True


def test_a_damaged_zip_gets_a_clear_message(staff, uploads, newsletter, now):
    damaged = b"PK\x03\x04" + b"\x00" * 40 + b"PK\x05\x06" + b"\x00" * 18
    response = upload(staff, damaged, name="export.zip", types=[newsletter])
    assert response.status_code == 200
    assert response.context["form"].errors["file"]
    assert not ImportJob.objects.exists()


def test_the_error_report_lists_each_bad_row_with_formulas_neutralised(
    staff, uploads, newsletter, now, django_capture_on_commit_callbacks
):
    content = MAILCHIMP_HEADER + mailchimp_row("=HYPERLINK(A1)") + mailchimp_row("a@example.com")
    job = preview_of(staff, content, types=[newsletter])
    confirm(staff, job, django_capture_on_commit_callbacks)

    response = staff.get(f"/admin/crm/importjob/{job.pk}/errors.csv")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="import-{job.pk}-errors.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["file", "line", "column", "value", "reason"]
    assert len(rows) == 2
    file_name, line, column, value, reason = rows[1]
    assert (file_name, line, column) == ("subscribed_members.csv", "2", "Email Address")
    assert value == "'=HYPERLINK(A1)"
    assert reason


def test_generic_csv_columns_are_chosen_on_the_preview_page(
    staff, uploads, newsletter, now, django_capture_on_commit_callbacks
):
    content = "Kontakt;Vorname;Firma\r\ndora@example.com;Dora;Acme\r\n"
    job = preview_of(staff, content, name="kontakte.csv", basis="none", preset="generic")
    page = staff.get(f"/admin/crm/importjob/{job.pk}/preview/")
    assert page.context["preview"].header == ["Kontakt", "Vorname", "Firma"]
    assert [p.reason for p in page.context["problems"]] == ["no email column found; map one in the import settings"]
    assert "Start the import" not in page.content.decode()

    response = staff.post(
        f"/admin/crm/importjob/{job.pk}/preview/",
        {"_remap": "1", "email": "Kontakt", "first_name": "Vorname", "company": "Firma"},
    )
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.column_mapping == {"email": "Kontakt", "first_name": "Vorname", "company": "Firma"}
    assert (job.counts["new"], job.counts["invalid"]) == (1, 0)
    assert not Contact.objects.exists()
    assert "Start the import" in staff.get(f"/admin/crm/importjob/{job.pk}/preview/").content.decode()

    confirm(staff, job, django_capture_on_commit_callbacks)
    dora = Contact.objects.get()
    assert (dora.email, dora.first_name, dora.company) == ("dora@example.com", "Dora", "Acme")


def test_a_column_that_is_not_in_the_file_is_refused(staff, uploads, now):
    job = preview_of(staff, "Kontakt\r\ndora@example.com\r\n", basis="none", preset="generic")
    response = staff.post(f"/admin/crm/importjob/{job.pk}/preview/", {"_remap": "1", "email": "Nope"})
    assert response.status_code == 200
    assert response.context["mapping_form"].errors["email"]


def test_cancelling_a_waiting_job_deletes_its_file_and_it_never_runs(
    staff, uploads, newsletter, now, django_capture_on_commit_callbacks
):
    job = preview_of(staff, types=[newsletter])
    with django_capture_on_commit_callbacks() as queued:
        staff.post(f"/admin/crm/importjob/{job.pk}/preview/", {"_confirm": "1"})
    assert len(queued) == 1

    confirmation = staff.get(f"/admin/crm/importjob/{job.pk}/cancel/")
    assert "Yes, cancel the import" in confirmation.content.decode()
    job.refresh_from_db()
    assert job.status == ImportStatus.PENDING  # GET changes nothing

    response = staff.post(f"/admin/crm/importjob/{job.pk}/cancel/")
    assert response.status_code == 302
    job.refresh_from_db()
    assert (job.status, job.finished_at) == (ImportStatus.CANCELLED, now)
    assert not Path(job.file_path).exists()
    history = staff.get(f"/admin/crm/importjob/{job.pk}/history/").content.decode()
    assert "Started the import." in history
    assert "Cancelled the import." in history

    queued[0]()  # the worker gets the message anyway
    job.refresh_from_db()
    assert job.status == ImportStatus.CANCELLED
    assert not Contact.objects.exists()


def test_a_job_cancelled_while_it_reads_imports_nothing(staff, uploads, newsletter, now, monkeypatch):
    rows = "".join(mailchimp_row(f"person{i}@example.com") for i in range(10))
    job = preview_of(staff, MAILCHIMP_HEADER + rows, types=[newsletter])
    ImportJob.objects.filter(pk=job.pk).update(dry_run=False)
    monkeypatch.setattr(engine, "PROGRESS_EVERY", 4)
    report = flow.report_progress

    def staff_cancel_after_the_first_report(job_id: int, read: int) -> None:
        report(job_id, read)
        flow.cancel_import(job, now=now)

    monkeypatch.setattr(flow, "report_progress", staff_cancel_after_the_first_report)
    run_import_job(job.pk)

    job.refresh_from_db()
    assert (job.status, job.rows_read) == (ImportStatus.CANCELLED, 4)
    assert not Contact.objects.exists()
    assert not Path(job.file_path).exists()


def test_progress_and_problems_are_recorded_while_a_file_is_read(staff, uploads, newsletter, now, monkeypatch):
    # Small batches, so progress reports and problem flushes fall between the staging
    # writes (on PostgreSQL: between COPYs on the same connection).
    monkeypatch.setattr(engine, "PROGRESS_EVERY", 3)
    monkeypatch.setattr(engine, "PROBLEM_BATCH", 2)
    monkeypatch.setattr(engine, "STAGE_BATCH", 4)
    rows = "".join(mailchimp_row(f"p{i}@example.com" if i % 4 else f"bad {i}") for i in range(20))
    job = preview_of(staff, MAILCHIMP_HEADER + rows, types=[newsletter])
    ImportJob.objects.filter(pk=job.pk).update(dry_run=False)
    report = flow.report_progress
    seen = []

    def record(job_id: int, read: int) -> None:
        report(job_id, read)
        seen.append(ImportJob.objects.get(pk=job_id).rows_read)

    monkeypatch.setattr(flow, "report_progress", record)
    run_import_job(job.pk)

    job.refresh_from_db()
    assert seen == [3, 6, 9, 12, 15, 18]
    assert (job.status, job.rows_read, job.counts["new"], job.counts["invalid"]) == ("done", 20, 15, 5)
    assert job.problems.count() == 5


def test_the_status_view_reports_a_running_jobs_progress(staff, uploads, newsletter, now):
    rows = "".join(mailchimp_row(f"person{i}@example.com") for i in range(100))
    job = preview_of(staff, MAILCHIMP_HEADER + rows, types=[newsletter])
    ImportJob.objects.filter(pk=job.pk).update(dry_run=False, status=ImportStatus.RUNNING, rows_read=50)

    state = json.loads(staff.get(f"/admin/crm/importjob/{job.pk}/status/").content)
    assert state["status"] == "running"
    assert state["rows_read"] == 50
    assert not state["ended"]
    assert 30 < state["percent"] < 70  # an estimate from the file's size

    page = staff.get(f"/admin/crm/importjob/{job.pk}/change/")
    assert 'id="dw-progress"' in page.content.decode()
    assert "Cancel the import" in page.content.decode()


def test_running_the_task_twice_imports_once(staff, uploads, newsletter, now, django_capture_on_commit_callbacks):
    job = preview_of(staff, types=[newsletter])
    confirm(staff, job, django_capture_on_commit_callbacks)
    finished = job.finished_at
    run_import_job(job.pk)
    job.refresh_from_db()
    assert (job.status, job.finished_at, job.counts["new"]) == (ImportStatus.DONE, finished, 2)


def test_a_preview_is_never_run_by_a_worker(staff, uploads, newsletter, now):
    job = preview_of(staff, types=[newsletter])
    run_import_job(job.pk)
    job.refresh_from_db()
    assert flow.is_draft(job)
    assert not Contact.objects.exists()


def test_a_job_whose_file_cannot_be_read_fails_with_the_reason_and_keeps_no_file(staff, uploads, newsletter, now):
    job = preview_of(staff, types=[newsletter])
    Path(job.file_path).write_bytes(bytes(range(256)) * 64)
    ImportJob.objects.filter(pk=job.pk).update(dry_run=False)
    run_import_job(job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED
    assert "not a text file" in job.message
    assert job.finished_at is not None
    assert not Path(job.file_path).exists()
    assert "not a text file" in staff.get(f"/admin/crm/importjob/{job.pk}/change/").content.decode()


def test_discarding_a_preview_deletes_the_upload(staff, uploads, newsletter, now):
    job = preview_of(staff, types=[newsletter])
    response = staff.post(f"/admin/crm/importjob/{job.pk}/preview/", {"_discard": "1"})
    assert response["Location"] == CHANGELIST
    job.refresh_from_db()
    assert job.status == ImportStatus.CANCELLED
    assert not Path(job.file_path).exists()


def test_the_list_shows_each_jobs_status_owner_and_counts(
    staff, uploads, newsletter, now, django_capture_on_commit_callbacks
):
    job = preview_of(staff, types=[newsletter])
    confirm(staff, job, django_capture_on_commit_callbacks)
    page = staff.get(CHANGELIST, {"status__exact": "done"})
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [job]
    html = page.content.decode()
    assert 'class="dw-badge dw-subscribed">Done<' in html
    assert "Import contacts" in html
    assert staff.get(CHANGELIST, {"status__exact": "failed"}).context["cl"].result_list.count() == 0


def test_a_viewer_can_read_jobs_but_not_start_or_cancel_them(
    client, viewer, manager, uploads, newsletter, now, django_capture_on_commit_callbacks
):
    client.force_login(manager)
    draft = preview_of(client, types=[newsletter])
    client.force_login(viewer)

    assert client.get(ADD).status_code == 403
    assert upload(client, MAILCHIMP_CSV, types=[newsletter]).status_code == 403
    assert client.get(f"/admin/crm/importjob/{draft.pk}/preview/").status_code == 403
    assert client.post(f"/admin/crm/importjob/{draft.pk}/preview/", {"_confirm": "1"}).status_code == 403
    assert client.post(f"/admin/crm/importjob/{draft.pk}/cancel/").status_code == 403
    draft.refresh_from_db()
    assert flow.is_draft(draft)
    assert ImportJob.objects.count() == 1

    assert "Import contacts" not in client.get(CHANGELIST).content.decode()
    client.force_login(manager)
    confirm(client, draft, django_capture_on_commit_callbacks)
    client.force_login(viewer)
    page = client.get(f"/admin/crm/importjob/{draft.pk}/change/")
    assert page.status_code == 200
    assert "Cancel the import" not in page.content.decode()
    assert client.get(f"/admin/crm/importjob/{draft.pk}/errors.csv").status_code == 200


def test_a_marketer_starts_imports_but_never_deletes_the_record_of_them(
    client, marketer, manager, uploads, newsletter, now, django_capture_on_commit_callbacks
):
    client.force_login(marketer)
    job = preview_of(client, types=[newsletter])
    confirm(client, job, django_capture_on_commit_callbacks)
    assert job.created_by == marketer
    assert client.get(f"/admin/crm/importjob/{job.pk}/delete/").status_code == 403
    assert not marketer.has_perm("crm.delete_importjob")
    assert manager.has_perm("crm.delete_importjob")


def test_an_unfinished_job_cannot_be_deleted(staff, uploads, newsletter, now):
    job = preview_of(staff, types=[newsletter])
    assert staff.get(f"/admin/crm/importjob/{job.pk}/delete/").status_code == 403


def test_the_job_page_says_how_many_bad_rows_it_leaves_out(staff, uploads, now):
    job = ImportJob.objects.create(
        file_name="big.csv",
        file_path="/nonexistent",
        preset="auto",
        created_at=now,
        status=ImportStatus.DONE,
        counts={"rows": 80, "invalid": 60},
    )
    ImportProblem.objects.bulk_create(
        ImportProblem(job=job, file_name="big.csv", line=n, reason="bad address") for n in range(2, 62)
    )
    html = staff.get(f"/admin/crm/importjob/{job.pk}/change/").content.decode()
    assert "Rows that could not be imported (the first 50 of 60)" in html
    assert html.count("bad address") == 50
