"""Import files as people have them: encodings, delimiters, presets and broken input."""

from __future__ import annotations

import csv
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from crm.importing.presets import detect_preset
from crm.models import Contact, ImportProblem, Subscription, Suppression

GERMAN_SUBSCRIBED = (
    'Emailadresse;Vorname;Nachname;"Erlaubnis zum Marketing";MEMBER_RATING;OPTIN_TIME;OPTIN_IP;CONFIRM_TIME;'
    "CONFIRM_IP;LEID;EUID;LAST_CHANGED\r\n"
    "jörg@example.de;Jörg;Müller;Ja;3;2024-02-03 04:05:06;;2024-02-03 04:06:00;;1;a;2024-02-03 04:06:00\r\n"
)


def run_command(*args: str) -> str:
    out = StringIO()
    call_command("import_contacts", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp1252"])
def test_a_localized_mailchimp_file_is_read_by_header_name_in_any_encoding(tmp_path, newsletter, now, encoding):
    path = tmp_path / "subscribed_members_export_1.csv"
    path.write_bytes(GERMAN_SUBSCRIBED.replace("jörg@", "joerg@").encode(encoding))
    run_command(str(path), "--subscription-type", "Newsletter")
    contact = Contact.objects.get(email_normalized="joerg@example.de")
    assert (contact.first_name, contact.last_name) == ("Jörg", "Müller")
    assert contact.properties == {"Erlaubnis zum Marketing": "Ja"}
    assert Subscription.objects.get(contact=contact).status == "subscribed"


def test_column_order_does_not_matter(tmp_path, newsletter, now):
    path = tmp_path / "subscribed.csv"
    path.write_text(
        "CONFIRM_TIME,LEID,Last Name,EUID,OPTIN_TIME,MEMBER_RATING,Email Address,First Name\n"
        "2024-01-01 00:00:00,1,Lee,x,2024-01-01 00:00:00,2,ann@example.com,Ann\n"
    )
    run_command(str(path), "--subscription-type", "Newsletter")
    assert Contact.objects.filter(email_normalized="ann@example.com", first_name="Ann", last_name="Lee").exists()


@pytest.mark.parametrize(
    ("header", "preset"),
    [
        (["Email Address", "First Name", "MEMBER_RATING", "OPTIN_TIME", "CONFIRM_TIME", "LEID", "EUID"], "mailchimp"),
        (["uuid", "email", "name", "attributes", "status", "created_at", "updated_at"], "listmonk"),
        (["id", "title", "firstname", "lastname", "company", "email"], "mautic"),
        (["Record ID", "First Name", "Last Name", "Email", "Phone Number"], "hubspot"),
        (["E-mail", "Name"], "generic"),
    ],
)
def test_each_export_is_recognised_by_its_columns(header, preset):
    assert detect_preset(header, "export.csv").name == preset


def test_listmonk_attributes_become_properties_and_blocklisted_becomes_a_suppression(tmp_path, db, now):
    path = tmp_path / "subscribers.csv"
    path.write_text(
        "uuid,email,name,attributes,status,created_at,updated_at\n"
        'u1,one@example.com,"User One","{""age"": 42, ""planet"": ""Mars""}",enabled,2024-01-01,2024-01-02\n'
        "u2,two@example.com,User Two,{},blocklisted,2024-01-01,2024-06-01 10:00:00\n"
    )
    run_command(str(path))
    one = Contact.objects.get(email_normalized="one@example.com")
    assert (one.first_name, one.last_name, one.properties) == ("User", "One", {"age": 42, "planet": "Mars"})
    assert Suppression.objects.get(email="two@example.com").reason == "imported_unsubscribe"


def test_a_generic_csv_uses_the_column_mapping(tmp_path, db, now):
    path = tmp_path / "crm.csv"
    path.write_text("Mail;Given;Org\nx@example.com;Xena;Warriors\n")
    run_command(
        str(path), "--preset", "generic", "--map", "email=Mail", "--map", "first_name=Given", "--map", "company=Org"
    )
    assert Contact.objects.filter(email_normalized="x@example.com", first_name="Xena", company="Warriors").exists()


def test_bad_rows_are_reported_with_line_and_reason_while_the_rest_imports(tmp_path, db, now):
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        b"email,first_name\n"
        b"good@example.com,Good\n"
        b"not an email,Bad\n"
        b"too,many,fields\n"
        b'"multi@example.com","Line\nbreak"\n'
        b"GOOD@example.com,Again\n" + b"x" * 1_100_000 + b"\nlast@example.com,Last\n"
        b"nul@example.com,Bi\x00nary\n"
    )
    report = tmp_path / "errors.csv"
    output = run_command(str(path), "--errors", str(report))
    assert set(Contact.objects.values_list("email_normalized", flat=True)) == {
        "good@example.com",
        "multi@example.com",
        "last@example.com",
    }
    problems = list(ImportProblem.objects.values_list("line", "reason"))
    assert (3, "'not an email' is not a valid email address: An email address must have an @-sign.") in problems
    assert (4, "line 4 has 3 fields, the header has 2") in problems
    assert (8, "line 8 line longer than 1,048,576 characters") in problems
    assert (10, "line 10 holds a NUL character (binary data, not text)") in problems
    assert "duplicate" in output
    rows = list(csv.DictReader(report.open()))
    assert [row["line"] for row in rows] == ["3", "4", "8", "10"]
    assert rows[0]["value"] == "not an email"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"   \n\n", "the file is empty"),
        (b"\x00\x01\x02\x03\x04\xff\xfe\x00\x01\x89PNG\r\n\x1a\n" * 200, "this is not a text file"),
    ],
)
def test_unreadable_files_get_a_clear_error(tmp_path, db, content, message):
    path = tmp_path / "broken.csv"
    path.write_bytes(content)
    with pytest.raises(CommandError, match=message):
        run_command(str(path))
    assert not Contact.objects.exists()


def test_a_header_only_file_imports_nothing_and_says_so(tmp_path, db):
    path = tmp_path / "header.csv"
    path.write_text("email,first_name\n")
    assert "rows                  0" in run_command(str(path))


def test_a_file_without_an_email_column_is_reported(tmp_path, db):
    path = tmp_path / "names.csv"
    path.write_text("first,last\nAnn,Lee\n")
    run_command(str(path))
    assert ImportProblem.objects.get().reason == "no email column found; map one in the import settings"
    assert not Contact.objects.exists()


def test_the_command_refuses_unknown_types_and_attestation_without_text(tmp_path, db):
    path = tmp_path / "x.csv"
    path.write_text("email\na@example.com\n")
    with pytest.raises(CommandError, match="Unknown subscription type"):
        run_command(str(path), "--subscription-type", "Nope")
    with pytest.raises(CommandError, match="--attestation"):
        run_command(str(path), "--basis", "attested")
    with pytest.raises(CommandError, match="no such file"):
        run_command(str(Path(tmp_path / "missing.csv")))
