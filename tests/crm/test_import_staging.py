"""What an import stores from each row: evidence, properties and source IPs exactly as the file has them."""

from __future__ import annotations

import csv

import pytest

from crm.importing.engine import run_import
from crm.models import ConsentRecord, Contact, ImportJob

HEADER = ["Email Address", "First Name", "MEMBER_RATING", "OPTIN_TIME", "OPTIN_IP", "CONFIRM_TIME", "CONFIRM_IP"]
HEADER += ["LEID", "EUID", "NOTES", "TAGS"]


def import_rows(tmp_path, newsletter, now, rows, *, file_name='subscribed_ü "quoted".csv') -> None:
    path = tmp_path / "export.csv"
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
    job = ImportJob.objects.create(file_name=file_name, file_path=str(path), preset="auto", created_at=now)
    job.subscription_types.set([newsletter])
    run_import(job, path, now=now)


def row(email: str, *, optin_ip: str = "", confirm_ip: str = "", notes: str = "", tags: str = "") -> list[str]:
    return [email, "Ann", "2", "2024-01-02 03:04:05", optin_ip, "", confirm_ip, "7", "e\\u", notes, tags]


def test_evidence_and_properties_keep_quotes_backslashes_and_line_breaks(tmp_path, newsletter, now):
    notes = 'She said "yes" \\ twice\nthen\tleft ✓'
    import_rows(tmp_path, newsletter, now, [row("ann@example.com", notes=notes, tags='"customer","vip"')])
    contact = Contact.objects.get(email_normalized="ann@example.com")
    assert contact.properties == {"NOTES": notes, "TAGS": '"customer","vip"'}
    assert ConsentRecord.objects.get(contact=contact).evidence == {
        "source_system": "Mailchimp",
        "file": 'subscribed_ü "quoted".csv',
        "line": 2,
        "OPTIN_TIME": "2024-01-02 03:04:05",
        "LEID": "7",
        "EUID": "e\\u",
        "MEMBER_RATING": "2",
    }


@pytest.mark.parametrize(
    ("optin_ip", "confirm_ip", "stored"),
    [
        ("203.0.113.5", "", "203.0.113.5"),
        ("203.0.113.5", "198.51.100.7", "198.51.100.7"),
        ("", "2001:DB8:0:0::1", "2001:db8::1"),
        ("203.0.113.5", "not an address", "203.0.113.5"),
        ("010.0.0.1", "256.1.1.1", None),
    ],
)
def test_the_consent_keeps_the_confirming_ip_or_else_the_opt_in_ip(
    tmp_path, newsletter, now, optin_ip, confirm_ip, stored
):
    import_rows(tmp_path, newsletter, now, [row("ann@example.com", optin_ip=optin_ip, confirm_ip=confirm_ip)])
    assert ConsentRecord.objects.get(email="ann@example.com").ip_address == stored
