"""Starting a campaign from the admin: a worker builds the sends (an audience of millions outlasts a request)."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from django.db import connection

from campaigns import pipeline, tasks
from campaigns.models import CampaignStatus, SendStatus
from deliverability import dns_checks
from tests.campaigns.test_campaign_admin import page_of
from tests.conftest import messages_of


def test_a_started_campaign_is_preparing_until_a_worker_has_built_its_sends(manager_client, november, alice, bob):
    started = manager_client.post(page_of(november, "start"), follow=True)
    november.refresh_from_db()
    preparing_page = manager_client.get(page_of(november)).content.decode()

    assert messages_of(started) == ["November news: preparing the sends; it starts once they are built."]
    assert november.status == CampaignStatus.PREPARING
    assert not november.sends.exists()
    assert "a worker is building the sends" in preparing_page
    assert '<meta http-equiv="refresh" content="3">' in preparing_page

    tasks.prepare_campaign(november.pk)

    november.refresh_from_db()
    assert november.status == CampaignStatus.SENDING
    assert dict(november.sends.values_list("email", "status")) == {
        "alice@example.com": SendStatus.QUEUED,
        "bob@example.com": SendStatus.SKIPPED,
    }
    assert "refresh" not in manager_client.get(page_of(november)).content.decode()


def test_a_preparation_that_finds_nobody_eligible_returns_the_campaign_to_draft_and_says_why(
    manager_client, november, bob, manager, now
):
    pipeline.request_start(november, user=manager, now=now)

    assert pipeline.prepare_campaign(november.pk, now=now) is False

    november.refresh_from_db()
    assert november.status == CampaignStatus.DRAFT
    assert (
        november.status_reason == "Nobody in the audience may receive November news now (1 skipped): nothing was sent."
    )
    assert not november.sends.exists()
    assert "Not started:</strong> Nobody in the audience" in manager_client.get(page_of(november)).content.decode()
    listed = manager_client.get("/admin/campaigns/campaign/").content.decode()
    assert "Not started</span>" in listed

    pipeline.request_start(november, user=manager, now=now)
    november.refresh_from_db()
    assert november.status_reason == ""


def test_a_campaign_whose_domain_fails_before_it_is_prepared_goes_back_to_draft(
    november, alice, manager, news, dns_server, now
):
    pipeline.request_start(november, user=manager, now=now)
    dns_server.remove("news.example.com", "TXT")
    dns_checks.check_domain(news, now=now)

    assert pipeline.prepare_campaign(november.pk, now=now) is False

    november.refresh_from_db()
    assert november.status == CampaignStatus.DRAFT
    assert november.status_reason.startswith("Cannot send: SPF: news.example.com has no SPF record.")
    assert not november.sends.exists()


def test_preparing_twice_builds_the_sends_once(november, alice, manager, now):
    pipeline.request_start(november, user=manager, now=now)

    assert pipeline.prepare_campaign(november.pk, now=now) is True
    assert pipeline.prepare_campaign(november.pk, now=now) is False
    assert november.sends.count() == 1


def test_a_campaign_cannot_be_started_twice(november, alice, manager, now):
    pipeline.request_start(november, user=manager, now=now)

    with pytest.raises(pipeline.CampaignError, match=r"November news is preparing; only a draft can be started\."):
        pipeline.request_start(november, user=manager, now=now)


def test_a_campaign_cancelled_while_preparing_never_starts(november, alice, manager, now):
    pipeline.request_start(november, user=manager, now=now)
    pipeline.cancel_campaign(november, user=manager, now=now)

    assert pipeline.prepare_campaign(november.pk, now=now) is False
    november.refresh_from_db()
    assert november.status == CampaignStatus.CANCELLED
    assert not november.sends.exists()


def test_the_scheduler_asks_again_for_a_preparation_whose_task_was_lost(november, alice, manager, now, time_machine):
    pipeline.request_start(november, user=manager, now=now)

    assert pipeline.unfinished_preparations(now=now + pipeline.PREPARATION_RETRY - timedelta(seconds=1)) == []
    assert pipeline.unfinished_preparations(now=now + pipeline.PREPARATION_RETRY) == [november.pk]

    time_machine.move_to(now + pipeline.PREPARATION_RETRY, tick=False)
    tasks.dispatch_sends()

    november.refresh_from_db()
    assert november.status == CampaignStatus.SENDING
    assert november.sends.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_second_preparation_leaves_the_campaign_to_the_one_building_its_sends(november, alice, manager, now):
    pipeline.request_start(november, user=manager, now=now)

    with psycopg.connect(**connection.get_connection_params()) as building:
        building.execute("SELECT 1 FROM campaigns_campaign WHERE id = %s FOR UPDATE", [november.pk])
        assert pipeline.prepare_campaign(november.pk, now=now) is False
        assert not november.sends.exists()

    assert pipeline.prepare_campaign(november.pk, now=now) is True
    assert november.sends.count() == 1


def test_a_scheduled_campaign_is_prepared_now_and_then_waits_for_its_time(manager_client, november, alice, now):
    november.scheduled_at = now + timedelta(days=1)
    november.save()

    started = manager_client.post(page_of(november, "start"), follow=True)
    tasks.prepare_campaign(november.pk)

    november.refresh_from_db()
    assert messages_of(started) == [
        "November news: preparing the sends; it waits for its scheduled time once they are built."
    ]
    assert november.status == CampaignStatus.SCHEDULED
    assert november.sends.get().due_at == now + timedelta(days=1)
