"""The sends table's indexes: every insert of an audience build writes each one, so none may be redundant."""

from __future__ import annotations

from django.db import connection

from campaigns.models import Send


def send_indexes() -> list[list[str]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Send._meta.db_table)
    return [spec["columns"] for spec in constraints.values() if (spec["index"] or spec["unique"]) and spec["columns"]]


def test_each_key_of_a_send_leads_an_index_so_deleting_a_campaign_or_contact_finds_its_sends_by_index(db):
    leading = {columns[0] for columns in send_indexes()}
    keys = {field.column for field in Send._meta.concrete_fields if field.is_relation}
    assert keys == {"campaign_id", "contact_id"}
    assert keys <= leading


def test_no_index_of_a_send_is_the_prefix_of_another(db):
    indexes = send_indexes()
    redundant = [
        short for short in indexes for long in indexes if len(short) < len(long) and long[: len(short)] == short
    ]
    assert redundant == []
