"""Big lists never count a whole table: exact up to a limit, the planner's estimate beyond."""

from __future__ import annotations

import pytest

from crm import pagination
from crm.models import Contact


@pytest.fixture
def contacts(db):
    Contact.objects.bulk_create(
        Contact(email=f"p{n}@example.com", email_normalized=f"p{n}@example.com") for n in range(30)
    )


def test_small_results_are_counted_exactly(contacts):
    paginator = pagination.EstimatedCountPaginator(Contact.objects.order_by("pk"), 10)
    assert (paginator.count, paginator.is_estimate) == (30, False)


@pytest.mark.postgres
def test_results_past_the_limit_are_estimated_by_postgresql(contacts, monkeypatch, client, admin_user):
    monkeypatch.setattr(pagination, "EXACT_COUNT_LIMIT", 10)
    paginator = pagination.EstimatedCountPaginator(Contact.objects.order_by("pk"), 10)
    assert paginator.is_estimate is False
    assert paginator.count >= 11
    assert paginator.is_estimate is True
    client.force_login(admin_user)
    assert "about " in client.get("/admin/crm/contact/").content.decode()
