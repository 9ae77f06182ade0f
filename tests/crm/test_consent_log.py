"""The consent log is append-only (DESIGN invariant 3): these tests try to change it."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from crm.models import ConsentAction, ConsentRecord, Contact


def test_every_step_of_a_double_opt_in_is_in_the_log(alice):
    actions = list(ConsentRecord.objects.filter(contact=alice).order_by("id").values_list("action", "method"))
    assert actions == [("granted", "form"), ("confirmed", "double_opt_in")]
    granted = ConsentRecord.objects.get(contact=alice, action=ConsentAction.GRANTED)
    assert granted.email == "alice@example.com"
    assert granted.consent_text == "Yes, send me the newsletter."
    assert granted.ip_address == "203.0.113.7"


def test_a_saved_record_cannot_be_changed_or_deleted_through_the_orm(alice):
    record = ConsentRecord.objects.filter(contact=alice).first()
    record.consent_text = "something else"
    with pytest.raises(TypeError, match="append-only"):
        record.save()
    with pytest.raises(TypeError, match="append-only"):
        record.delete()
    with pytest.raises(TypeError, match="append-only"):
        ConsentRecord.objects.filter(contact=alice).update(consent_text="x")
    with pytest.raises(TypeError, match="append-only"):
        ConsentRecord.objects.filter(contact=alice).delete()


def test_the_database_refuses_updates_behind_the_orms_back(alice):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE crm_consentrecord SET consent_text = 'forged'")


@pytest.mark.postgres
def test_the_database_refuses_deletes_behind_the_orms_back(alice):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM crm_consentrecord")


def test_deleting_a_contact_keeps_its_consent_records(alice):
    records = ConsentRecord.objects.filter(contact_id=alice.pk).count()
    Contact.objects.filter(pk=alice.pk).delete()
    assert ConsentRecord.objects.filter(email="alice@example.com").count() == records == 2


def test_nobody_can_add_change_or_delete_consent_in_the_admin(client, admin_user, alice):
    client.force_login(admin_user)
    record = ConsentRecord.objects.get(contact=alice, action=ConsentAction.GRANTED)
    assert client.get(reverse("admin:crm_consentrecord_changelist")).status_code == 200
    assert client.get(reverse("admin:crm_consentrecord_add")).status_code == 403
    change_url = reverse("admin:crm_consentrecord_change", args=[record.pk])
    page = client.get(change_url)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert client.post(change_url, {"consent_text": "forged"}).status_code == 403
    assert client.post(reverse("admin:crm_consentrecord_delete", args=[record.pk]), {"post": "yes"}).status_code == 403
    assert ConsentRecord.objects.get(pk=record.pk).consent_text == "Yes, send me the newsletter."


def test_the_consent_list_finds_records_by_address_in_any_case(client, admin_user, alice, bob):
    client.force_login(admin_user)
    page = client.get(reverse("admin:crm_consentrecord_changelist"), {"q": " ALICE@example.com "})
    assert page.status_code == 200
    assert page.context["cl"].result_count == 2
