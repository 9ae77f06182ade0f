"""Importing contacts through the admin in a real browser: upload, preview, confirm, follow the job."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from crm.models import Contact, ImportJob, ImportStatus
from tests.browser.conftest import log_in
from tests.crm.test_import_admin import MAILCHIMP_CSV, MAILCHIMP_HEADER, mailchimp_row

pytestmark = pytest.mark.browser


@pytest.fixture
def uploads(settings, tmp_path) -> Path:
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"
    return settings.IMPORT_UPLOAD_DIR


def test_staff_upload_a_mailchimp_export_preview_it_and_read_the_finished_job(
    page: Page, manager, newsletter, uploads, tmp_path: Path, artifacts: Path
) -> None:
    export = tmp_path / "subscribed_members_export_1.csv"
    export.write_text(MAILCHIMP_CSV)
    log_in(page, "manager")
    page.get_by_role("link", name="Import jobs").click()
    page.get_by_role("link", name="Import contacts").click()

    page.get_by_label("File:", exact=True).set_input_files(export)
    page.get_by_label("Newsletter").check()
    page.screenshot(path=artifacts / "import-upload.png", full_page=True)
    page.get_by_role("button", name="Upload and preview").click()

    expect(page.get_by_role("heading", name="Preview: subscribed_members_export_1.csv")).to_be_visible()
    expect(page.get_by_text("Dry run: nothing has been imported yet.")).to_be_visible()
    expect(page.get_by_role("row", name="New contacts")).to_contain_text("2")
    expect(page.get_by_role("row", name="Subscriptions added")).to_contain_text("1")
    expect(page.get_by_role("row", name="not-an-address")).to_contain_text("4")
    page.screenshot(path=artifacts / "import-preview.png", full_page=True)
    assert not Contact.objects.exists()

    page.get_by_role("button", name="Start the import").click()
    expect(page.locator("#dw-status")).to_have_text("Done")
    expect(page.get_by_role("row", name="New contacts")).to_contain_text("2")
    expect(page.get_by_role("row", name="Subscriptions added")).to_contain_text("1")
    expect(page.get_by_role("row", name="Invalid rows")).to_contain_text("1")
    link = page.get_by_role("link", name="Download error report (CSV)")
    expect(link).to_be_visible()
    page.screenshot(path=artifacts / "import-job.png", full_page=True)

    with page.expect_download() as download:
        link.click()
    report = Path(download.value.path()).read_text()
    assert report.splitlines()[0] == "file,line,column,value,reason"
    assert "not-an-address" in report
    assert Contact.objects.count() == 2


def test_the_job_page_follows_a_running_import_until_it_ends(
    page: Page, manager, uploads, tmp_path: Path, artifacts: Path
) -> None:
    export = tmp_path / "contacts.csv"
    export.write_text(MAILCHIMP_HEADER + "".join(mailchimp_row(f"p{i}@example.com") for i in range(100)))
    job = ImportJob.objects.create(
        file_name="contacts.csv",
        file_path=str(export),
        preset="auto",
        status=ImportStatus.RUNNING,
        created_by=manager,
        created_at=timezone.now(),
        started_at=timezone.now(),
    )
    log_in(page, "manager")
    page.goto(f"/admin/crm/importjob/{job.pk}/change/")
    expect(page.locator("#dw-status")).to_have_text("Running")
    expect(page.get_by_role("link", name="Cancel the import…")).to_be_visible()

    ImportJob.objects.filter(pk=job.pk).update(rows_read=40)
    expect(page.locator(".dw-progress-text")).to_have_text("40 rows read")
    value = page.get_by_role("progressbar").get_attribute("value")
    assert value is not None and 20 < float(value) < 60
    page.screenshot(path=artifacts / "import-job-running.png", full_page=True)

    counts = {"rows": 100, "new": 100, "updated": 0, "subscribed": 0, "suppressed": 0, "invalid": 0, "duplicate": 0}
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportStatus.DONE, rows_read=100, counts=counts, finished_at=timezone.now()
    )
    expect(page.locator("#dw-status")).to_have_text("Done")
    expect(page.get_by_role("progressbar")).to_have_count(0)
    expect(page.get_by_role("row", name="New contacts")).to_contain_text("100")
