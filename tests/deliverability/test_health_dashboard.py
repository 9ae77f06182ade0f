"""The deliverability dashboard and the repair plan's admin pages."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from campaigns.models import Send, SendStatus
from deliverability import health, repair
from deliverability.models import (
    DailyMetrics,
    HealthAlert,
    HealthAlertKind,
    PlanStatus,
    ReputationRepairPlan,
    SendingDomain,
    Severity,
    TransitionKind,
)
from tests.conftest import messages_of
from tests.deliverability.health_history import campaign


@pytest.fixture
def domain(db) -> SendingDomain:
    return SendingDomain.objects.create(domain="news.example.com")


def days_of_mail(domain, now: datetime, days: int) -> None:
    today = now.date()
    DailyMetrics.objects.bulk_create(
        DailyMetrics(
            domain=domain,
            day=today - timedelta(days=n),
            sent=1000,
            delivered=980,
            hard_bounces=12,
            soft_bounces=8,
            bounce_categories={"unknown_user": {"hard": 12, "soft": 0}, "mailbox_full": {"hard": 0, "soft": 8}},
            human_opens=60 + n,
            machine_opens=300,
            clicks=20,
            complaints=1,
            unsubscribes=4,
            computed_at=now,
        )
        for n in range(days)
    )


def dashboard_url(domain) -> str:
    return reverse("admin:deliverability_sendingdomain_health", args=[domain.pk])


def test_the_dashboard_draws_six_charts_with_their_thresholds(domain, manager_client, now):
    days_of_mail(domain, now, 120)
    health.evaluate_open_rates(now=now)

    page = manager_client.get(dashboard_url(domain)).content.decode()

    assert page.count('<figure class="dw-chart"') == page.count('<svg viewBox="0 0 560 170"') == 6
    for title in ["Delivered", "Human opens", "Clicks", "Hard bounces", "Spam complaints", "Unsubscribes"]:
        assert f"<strong>{title}</strong>" in page
    assert "critical 10%" in page and "repair target 20%" in page
    assert "warning 0.10%" in page and "critical 0.30%" in page and "limit 5%" in page
    assert 'class="dw-rolling"' in page, "the evaluated 30-day open rate is drawn"
    assert "<title>Nov 02: 6.1% (60 of 980)</title>" in page
    assert "cdn" not in page.lower() and "<script" not in page.split('id="content-main"')[1]


def test_the_dashboard_shows_alerts_the_plan_bounce_reasons_and_recommendations(
    domain, newsletter, manager_client, now
):
    days_of_mail(domain, now, 60)
    HealthAlert.objects.create(
        domain=domain,
        kind=HealthAlertKind.OPEN_RATE_LOW,
        severity=Severity.CRITICAL,
        summary="Human open rate 6.5% over 29,400 deliveries",
        raised_at=now,
    )
    repair.start_plan(domain, now=now, reason="Open rate below 10 %.")
    october = campaign(newsletter, "October")
    Send.objects.bulk_create(
        Send(
            campaign=october,
            email=f"gone{n}@example.org",
            status=SendStatus.HARD_BOUNCED,
            bounce_category="unknown_user",
            smtp_code=550,
            smtp_reply="5.1.1 The email account that you tried to reach does not exist.",
            due_at=now,
            created_at=now,
            first_attempt_at=now,
        )
        for n in range(10)
    )

    page = manager_client.get(dashboard_url(domain)).content.decode()

    assert "Human open rate 6.5% over 29,400 deliveries" in page
    assert "Reputation repair plan: step 1" in page
    assert "Contacts who clicked within 14 days" in page
    assert "0 of the 200 needed to judge" in page
    assert "5.1.1 The email account that you tried to reach does not exist." in page
    assert "Many unknown-user bounces" in page


def test_the_dashboard_makes_as_many_queries_with_four_months_of_data_as_with_a_week(domain, manager_client, now):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert manager_client.get(dashboard_url(domain)).status_code == 200
        return len(captured)

    days_of_mail(domain, now, 7)
    week = queries()
    DailyMetrics.objects.all().delete()
    days_of_mail(domain, now, 120)

    assert queries() == week


def test_the_domain_list_links_the_dashboard_and_shows_health_alerts_and_the_plan(domain, manager_client, now):
    HealthAlert.objects.create(
        domain=domain, kind=HealthAlertKind.OPEN_RATE_DROP, severity=Severity.WARNING, summary="Fell.", raised_at=now
    )
    repair.start_plan(domain, now=now, reason="Test.")

    response = manager_client.get(reverse("admin:deliverability_sendingdomain_changelist"))

    page = response.content.decode()
    assert dashboard_url(domain) in page
    assert "Open rate dropped against its baseline" in page and "Repair plan: step 1" in page
    assert "Open rate dropped against its baseline: Fell." in messages_of(response)


def test_staff_start_a_plan_from_the_dashboard_with_a_reason(domain, manager_client, manager):
    url = reverse("admin:deliverability_sendingdomain_start_plan", args=[domain.pk])

    refused = manager_client.post(url, {"reason": ""})
    manager_client.post(url, {"reason": "Gmail moved us to spam, say our seed tests."})

    plan = ReputationRepairPlan.objects.get()
    assert refused.status_code == 200 and b"This field is required" in refused.content
    assert (plan.started_by, plan.reason) == (manager, "Gmail moved us to spam, say our seed tests.")


def test_staff_pause_a_plan_from_its_page_and_the_log_says_why(domain, manager_client, manager, now):
    plan = repair.start_plan(domain, now=now, reason="Test.")
    page = manager_client.get(reverse("admin:deliverability_reputationrepairplan_change", args=[plan.pk]))
    url = reverse("admin:deliverability_plan_action", args=[plan.pk, "pause"])

    manager_client.post(url, {"reason": "Product launch goes to everyone."})

    plan.refresh_from_db()
    assert url in page.content.decode()
    assert plan.status == PlanStatus.PAUSED
    assert plan.transitions.first().kind == TransitionKind.PAUSED
    assert plan.transitions.first().reason == "Product launch goes to everyone."


def test_a_marketer_sees_the_dashboard_but_cannot_start_or_steer_a_plan(domain, client, marketer, now):
    plan = repair.start_plan(domain, now=now, reason="Test.")
    client.force_login(marketer)

    seen = client.get(dashboard_url(domain))
    start = client.post(reverse("admin:deliverability_sendingdomain_start_plan", args=[domain.pk]), {"reason": "x"})
    pause = client.post(reverse("admin:deliverability_plan_action", args=[plan.pk, "pause"]), {"reason": "x"})

    assert (seen.status_code, start.status_code, pause.status_code) == (200, 403, 403)
    plan.refresh_from_db()
    assert plan.status == PlanStatus.ACTIVE


def test_acknowledged_alerts_stop_warning_but_stay_until_resolved(domain, manager_client, manager, now):
    alert = HealthAlert.objects.create(
        domain=domain, kind=HealthAlertKind.OPEN_RATE_DROP, severity=Severity.WARNING, summary="Fell.", raised_at=now
    )
    url = reverse("admin:deliverability_healthalert_changelist")

    manager_client.post(url, {"action": "acknowledge", "_selected_action": [alert.pk]}, follow=True)
    after = manager_client.get(url)

    alert.refresh_from_db()
    assert (alert.acknowledged_by, alert.resolved_at) == (manager, None)
    assert messages_of(after) == []
    assert "Fell." in manager_client.get(dashboard_url(domain)).content.decode()
