"""The contact list's substring search: any word in address, name or company, served by one index."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.db import connection

from crm.models import Contact

CHANGELIST = "/admin/crm/contact/"


@pytest.fixture
def staff_client(client, manager):
    client.force_login(manager)
    return client


def searched(client, term: str) -> set[str]:
    page = client.get(CHANGELIST, {"q": term})
    assert page.status_code == 200
    return {contact.email for contact in page.context["cl"].result_list}


def test_each_word_may_be_in_a_different_column(staff_client, alice, bob):
    Contact.objects.create(email="hatter@tea.example", first_name="Mad", company="Liddell Hats")
    assert searched(staff_client, "liddell") == {"Alice@Example.com", "hatter@tea.example"}
    assert searched(staff_client, "tea liddell") == {"hatter@tea.example"}
    assert searched(staff_client, "alice hats") == set()


def test_a_quoted_phrase_may_span_first_and_last_name(staff_client, alice):
    assert searched(staff_client, '"alice liddell"') == {"Alice@Example.com"}
    assert searched(staff_client, '"liddell alice"') == set()


@pytest.mark.postgres
def test_the_substring_search_uses_the_trigram_index(manager, alice, rf):
    request = rf.get(CHANGELIST, {"q": "iddel"})
    request.user = manager
    queryset, _ = admin.site._registry[Contact].get_search_results(request, Contact.objects.all(), "iddel")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = queryset.explain()
    assert "crm_contact_search_trgm" in plan
