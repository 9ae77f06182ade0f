"""What an import stores from each row: evidence, properties and source IPs exactly as the file has them."""

from __future__ import annotations

import csv

import pytest

from crm.importing import engine
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
    return [email, "Ann", "2", " 2024-01-02 03:04:05\u00a0", optin_ip, "", confirm_ip, "7", "e\\u", notes, tags]


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


def test_names_with_quotes_and_backslashes_reach_the_evidence_and_properties_intact(tmp_path, newsletter, now):
    path = tmp_path / "export.csv"
    path.write_text(
        "Email Address,MEMBER_RATING,OPTIN_TIME,LEID,EUID,Kunde's \\Notiz\nann@example.com,2,2024-01-02,7,e,hi\n"
    )
    job = ImportJob.objects.create(file_name="o'brien \\ list.csv", file_path=str(path), preset="auto", created_at=now)
    job.subscription_types.set([newsletter])
    run_import(job, path, now=now)
    assert Contact.objects.get().properties == {"Kunde's \\Notiz": "hi"}
    evidence = ConsentRecord.objects.get().evidence
    assert (evidence["file"], evidence["line"], evidence["LEID"]) == ("o'brien \\ list.csv", 2, "7")


def test_cells_that_are_only_whitespace_of_any_kind_are_left_out_and_evidence_is_trimmed(tmp_path, newsletter, now):
    blank = "\u00a0\u2003\t "
    import_rows(tmp_path, newsletter, now, [row(" ann@example.com ", notes=blank, tags="\u3000vip ")])
    contact = Contact.objects.get(email_normalized="ann@example.com")
    assert contact.properties == {"TAGS": "\u3000vip "}
    assert ConsentRecord.objects.get(contact=contact).evidence["OPTIN_TIME"] == "2024-01-02 03:04:05"


def test_the_database_trims_every_character_python_strips():
    assert sorted(engine.WHITESPACE) == [char for char in map(chr, range(0x110000)) if char.isspace()]


def test_a_column_name_the_header_repeats_is_read_from_its_last_column(tmp_path, db, now):
    path = tmp_path / "contacts.csv"
    path.write_text("email,Notes,Notes\nann@example.com,first,second\nben@example.com,first,\n")
    job = ImportJob.objects.create(file_name=path.name, file_path=str(path), preset="auto", created_at=now)
    run_import(job, path, now=now)
    assert dict(Contact.objects.values_list("email_normalized", "properties")) == {
        "ann@example.com": {"Notes": "second"},
        "ben@example.com": {},
    }


def test_a_file_with_many_columns_keeps_every_one_as_a_property(tmp_path, db, now):
    names = [f"Extra {index}" for index in range(70)]
    path = tmp_path / "contacts.csv"
    path.write_text(",".join(["email", *names]) + "\n" + ",".join(["ann@example.com", *names]) + "\n")
    job = ImportJob.objects.create(file_name=path.name, file_path=str(path), preset="auto", created_at=now)
    run_import(job, path, now=now)
    assert Contact.objects.get().properties == {name: name for name in names}


def test_a_row_of_hundreds_of_long_cells_imports(tmp_path, db, now):
    names = [f"Property {index}" for index in range(600)]
    path = tmp_path / "contacts.csv"
    path.write_text(",".join(["email", *names]) + "\n" + ",".join(["ann@example.com", *["x" * 100] * 600]) + "\n")
    job = ImportJob.objects.create(file_name=path.name, file_path=str(path), preset="auto", created_at=now)
    run_import(job, path, now=now)
    assert len(Contact.objects.get().properties) == 600


def test_properties_of_a_file_too_wide_for_the_staging_table_are_built_in_python(tmp_path, db, now, monkeypatch):
    monkeypatch.setattr(engine, "MAX_STAGED_PROPERTIES", 2)
    path = tmp_path / "contacts.csv"
    path.write_text("email,a,b,c\nann@example.com,1, ,3\n")
    job = ImportJob.objects.create(file_name=path.name, file_path=str(path), preset="auto", created_at=now)
    run_import(job, path, now=now)
    assert Contact.objects.get().properties == {"a": "1", "c": "3"}


def test_person_fields_are_trimmed_cut_to_size_and_unknown_time_zones_left_out(tmp_path, db, now):
    path = tmp_path / "contacts.csv"
    path.write_text(
        "email,first_name,last_name,time_zone\n"
        f"ann@example.com,\u00a0Ann\u2003,{'L' * 200},Europe/Berlin\n"
        "ben@example.com,Ben,,Mars/Olympus\n",
        encoding="utf-8",
    )
    job = ImportJob.objects.create(file_name=path.name, file_path=str(path), preset="auto", created_at=now)
    run_import(job, path, now=now)
    people = {c.email_normalized: c for c in Contact.objects.all()}
    assert (people["ann@example.com"].first_name, people["ann@example.com"].last_name) == ("Ann", "L" * 150)
    assert [people[email].time_zone for email in ("ann@example.com", "ben@example.com")] == ["Europe/Berlin", ""]


def test_a_full_name_gives_the_first_word_as_first_name_and_the_rest_as_last_name(tmp_path, db, now):
    path = tmp_path / "subscribers.csv"
    path.write_text(
        "uuid,email,name,attributes,status,created_at,updated_at\n"
        "u1,one@example.com, Ann Marie Lee ,{},enabled,2024-01-01,2024-01-02\n"
        "u2,two@example.com,Cher,{},enabled,2024-01-01,2024-01-02\n"
    )
    job = ImportJob.objects.create(file_name=path.name, file_path=str(path), preset="auto", created_at=now)
    run_import(job, path, now=now)
    assert dict(Contact.objects.values_list("email_normalized", "first_name")) == {
        "one@example.com": "Ann",
        "two@example.com": "Cher",
    }
    assert dict(Contact.objects.values_list("email_normalized", "last_name")) == {
        "one@example.com": "Marie Lee",
        "two@example.com": "",
    }
