"""Exports: the list as CSV or XLSX with consent evidence, and one contact's whole record."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from openpyxl import load_workbook

from crm.models import Contact

CHANGELIST = "/admin/crm/contact/"


def export(client, action: str, contacts):
    data = {"action": action, ACTION_CHECKBOX_NAME: [c.pk for c in contacts], "index": "0"}
    return client.post(CHANGELIST, data)


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


def test_the_csv_export_carries_subscriptions_and_consent_evidence(manager_client, alice, bob):
    response = export(manager_client, "export_selected", [alice, bob])
    rows = {row["email"]: row for row in csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))}
    assert rows["Alice@Example.com"]["subscriptions"] == "Newsletter: subscribed"
    consent = rows["Alice@Example.com"]["consent"]
    assert consent.startswith("Newsletter: confirmed 2026-11-02 09:30 by double_opt_in")
    assert rows["bob@example.com"]["unsubscribed_from_all_at"] == "2026-11-02T09:30:00+00:00"


def test_the_xlsx_export_has_the_same_columns_and_neutralised_formulas(manager_client, alice):
    Contact.objects.filter(pk=alice.pk).update(first_name="=cmd|' /C calc'!A0")
    response = export(manager_client, "export_selected_xlsx", [alice])
    assert response["Content-Disposition"].startswith('attachment; filename="contacts-')
    sheet = load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
    header, row = [cell.value for cell in sheet[1]], [cell.value for cell in sheet[2]]
    record = dict(zip(header, row, strict=True))
    assert record["email"] == "Alice@Example.com"
    assert record["first_name"] == "'=cmd|' /C calc'!A0"
    assert record["subscriptions"] == "Newsletter: subscribed"


def test_everything_we_hold_about_a_contact_downloads_as_json(manager_client, carol):
    page = manager_client.get(f"/admin/crm/contact/{carol.pk}/change/")
    assert f"/admin/crm/contact/{carol.pk}/data.json" in page.content.decode()
    response = manager_client.get(f"/admin/crm/contact/{carol.pk}/data.json")
    assert response["Content-Disposition"] == f'attachment; filename="contact-{carol.pk}.json"'
    record = json.loads(response.content)
    assert record["contact"]["email_normalized"] == "carol@example.net"
    assert record["subscriptions"][0]["status"] == "subscribed"
    assert [r["action"] for r in record["consent_records"]] == ["granted"]
    assert record["suppressions"][0]["reason"] == "hard_bounce"


def test_the_record_download_needs_view_permission(client, django_user_model, alice):
    outsider = django_user_model.objects.create_user(username="outsider", password="x", is_staff=True)
    client.force_login(outsider)
    assert client.get(f"/admin/crm/contact/{alice.pk}/data.json").status_code == 403
    assert client.get("/admin/crm/contact/999999/data.json").status_code == 403
