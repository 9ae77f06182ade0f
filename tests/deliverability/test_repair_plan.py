"""Reputation repair plans: the send gate enforces the step, the daily job moves it, staff steer it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Count

from campaigns import pipeline
from campaigns.gate import annotate_refusal, refusal
from campaigns.models import GateRefusal, Send
from crm.eligibility import Ineligibility
from crm.models import Contact, EngagementStatus
from deliverability import health, repair
from deliverability.models import (
    DailyMetrics,
    PlanStatus,
    ReputationRepairPlan,
    SendingDomain,
    TransitionKind,
)
from tests.conftest import subscriber
from tests.deliverability.health_history import campaign, deliver

T0 = datetime(2026, 9, 1, 3, 0, tzinfo=UTC)


@pytest.fixture
def domain(db) -> SendingDomain:
    return SendingDomain.objects.create(domain="news.example.com")


@pytest.fixture
def plan_settings(settings):
    settings.FREQUENCY_CAP_EMAILS = 1000
    settings.REPAIR_PLAN_MIN_DELIVERED = 20
    settings.REPAIR_PLAN_DAILY_CAPS = [100, 100, 100, 100, 100]


@pytest.fixture
def clickers(newsletter, time_machine, plan_settings) -> list[Contact]:
    """Ten subscribers who clicked yesterday: repair step 1's audience."""
    time_machine.move_to(T0, tick=False)
    contacts = [subscriber(f"clicker{n}@example.org", newsletter, T0) for n in range(10)]
    Contact.objects.filter(pk__in=[c.pk for c in contacts]).update(
        last_click_at=T0 - timedelta(days=1), last_engaged_at=T0 - timedelta(days=1)
    )
    return contacts


def start(domain) -> ReputationRepairPlan:
    return repair.start_plan(domain, now=T0, reason="Open rate below 10 % for 7 days.")


def mail_daily(newsletter, time_machine, days: range, *, open_share: float, clicked=frozenset()) -> None:
    for n in days:
        when = T0 + timedelta(days=n, hours=6)
        time_machine.move_to(when, tick=False)
        deliver(campaign(newsletter, f"Repair day {n}"), when=when, open_share=open_share, clicked=clicked)


def progress_on(day: int, time_machine) -> list:
    when = T0 + timedelta(days=day)
    time_machine.move_to(when, tick=False)
    return repair.progress_repair_plans(now=when)


def skip_reasons(campaign_) -> dict[str, int]:
    return dict(
        Send.objects.filter(campaign=campaign_)
        .values_list("skip_reason")
        .annotate(n=Count("pk"))
        .values_list("skip_reason", "n")
    )


def test_the_gate_keeps_a_campaign_to_the_step_audience_and_says_why_the_rest_is_skipped(
    domain, clickers, newsletter, time_machine
):
    subscriber("opener@example.org", newsletter, T0)
    Contact.objects.filter(email="opener@example.org").update(last_engaged_at=T0 - timedelta(days=2))
    subscriber("quiet@example.org", newsletter, T0)
    start(domain)
    elsewhere = campaign(newsletter, "From another domain", domain="other.example.com")

    sent = deliver(campaign(newsletter, "Under the plan"), when=T0)
    unrestricted = deliver(elsewhere, when=T0)

    assert {s.email for s in sent} == {c.email_normalized for c in clickers}
    assert skip_reasons(sent[0].campaign) == {"": 10, GateRefusal.REPAIR_PLAN: 2}
    assert len(unrestricted) == 12, "only the plan's domain is restricted"


def test_the_daily_cap_goes_to_the_most_recently_engaged_and_counts_every_campaign_of_the_domain(
    domain, clickers, newsletter, settings, time_machine
):
    settings.REPAIR_PLAN_DAILY_CAPS = [6, 100, 100, 100, 100]
    for n, contact in enumerate(clickers):
        Contact.objects.filter(pk=contact.pk).update(last_engaged_at=T0 - timedelta(hours=n + 1))
    start(domain)

    first = deliver(campaign(newsletter, "Morning"), when=T0)
    second = deliver(campaign(newsletter, "Afternoon"), when=T0 + timedelta(hours=6))
    tomorrow = deliver(campaign(newsletter, "Tomorrow"), when=T0 + timedelta(days=1))

    assert sorted(s.email for s in first) == [f"clicker{n}@example.org" for n in range(6)]
    assert skip_reasons(first[0].campaign) == {"": 6, GateRefusal.REPAIR_PLAN_CAP: 4}
    assert second == []
    assert len(tomorrow) == 6


def test_the_cap_is_judged_again_at_hand_off(newsletter, november, isp, now, manager, settings):
    settings.REPAIR_PLAN_DAILY_CAPS = [2, 100, 100, 100, 100]
    readers = [subscriber(f"reader{n}@example.org", newsletter, now) for n in range(2)]
    Contact.objects.filter(pk__in=[r.pk for r in readers]).update(last_click_at=now - timedelta(days=1))
    repair.start_plan(SendingDomain.objects.get(domain="news.example.com"), now=now, reason="test")
    pipeline.start_campaign(november, user=manager, now=now)
    # Another campaign of the domain uses today's volume before November's batch goes out.
    deliver(campaign(newsletter, "Earlier the same day"), when=now)

    ids = pipeline.claim(november.pk, now=now, limit=50)
    pipeline.send_batch(ids, now=now)

    assert skip_reasons(november) == {GateRefusal.REPAIR_PLAN_CAP: 2}
    assert isp.received == []


def test_the_plan_holds_until_the_step_has_lasted_fourteen_days_then_advances_on_its_open_rate(
    domain, clickers, newsletter, time_machine
):
    plan = start(domain)
    mail_daily(newsletter, time_machine, range(14), open_share=0.3, clicked={c.email for c in clickers})

    on_day_13 = progress_on(13, time_machine)
    plan.refresh_from_db()
    held_progress = plan.progress
    on_day_14 = progress_on(14, time_machine)

    plan.refresh_from_db()
    assert on_day_13 == [] and held_progress["open_rate"] == pytest.approx(0.3)
    [advanced] = on_day_14
    assert (advanced.kind, advanced.from_step, advanced.to_step, plan.step) == (TransitionKind.ADVANCED, 1, 2, 2)
    # Deliveries of the last 48 hours are left out: days 0-11, 10 a day.
    assert advanced.metrics["delivered"] == 120 and advanced.metrics["open_rate"] == pytest.approx(0.3)
    assert "reached the 20% target" in advanced.reason
    assert plan.step_started_at == T0 + timedelta(days=14)


def test_a_step_without_enough_deliveries_holds_whatever_its_open_rate(
    domain, clickers, newsletter, time_machine, settings
):
    settings.REPAIR_PLAN_MIN_DELIVERED = 121
    plan = start(domain)
    mail_daily(newsletter, time_machine, range(14), open_share=0.5, clicked={c.email for c in clickers})

    assert progress_on(14, time_machine) == []
    plan.refresh_from_db()
    assert (plan.step, plan.progress["delivered"]) == (1, 120)


def test_a_step_between_the_relapse_rate_and_the_target_holds(domain, clickers, newsletter, time_machine):
    plan = start(domain)
    mail_daily(newsletter, time_machine, range(14), open_share=0.1, clicked={c.email for c in clickers})

    assert progress_on(14, time_machine) == []
    plan.refresh_from_db()
    assert plan.step == 1


def test_a_relapse_steps_back_at_once(domain, clickers, newsletter, manager, time_machine):
    plan = start(domain)
    repair.advance_plan(plan, user=manager, reason="The clickers open well.", now=T0)
    Contact.objects.update(last_engaged_at=T0 - timedelta(days=1))
    mail_daily(newsletter, time_machine, range(4), open_share=0.0)

    [back] = progress_on(5, time_machine)

    plan.refresh_from_db()
    assert (back.kind, back.from_step, back.to_step, plan.step) == (TransitionKind.STEPPED_BACK, 2, 1, 1)
    assert back.by is None and back.metrics["open_rate"] == 0 and back.metrics["delivered"] == 30
    assert back.reason.startswith("Relapse: step 2's human open rate 0.0% over 30 deliveries fell below 10%")


def test_the_last_step_completes_after_the_healthy_period(domain, manager, time_machine, settings):
    settings.OPEN_RATE_MIN_DELIVERED = 100
    plan = start(domain)
    for _ in range(4):
        repair.advance_plan(plan, user=manager, reason="Faster in a test.", now=T0)
    for n in range(60):
        day = (T0 - timedelta(days=40) + timedelta(days=n)).date()
        DailyMetrics.objects.create(domain=domain, day=day, sent=50, delivered=50, human_opens=15, computed_at=T0)

    results = []
    for day in range(15):
        when = T0 + timedelta(days=day)
        time_machine.move_to(when, tick=False)
        health.evaluate_open_rates(now=when)
        results.append(repair.progress_repair_plans(now=when))

    plan.refresh_from_db()
    assert results[:14] == [[]] * 14
    [completed] = results[14]
    assert (completed.kind, plan.status, plan.finished_at) == (
        TransitionKind.COMPLETED,
        PlanStatus.COMPLETED,
        T0 + timedelta(days=14),
    )
    assert completed.metrics["healthy_days"] == 14


def test_the_last_step_lets_a_re_permission_campaign_reach_everyone_and_regular_ones_the_engaged(
    domain, newsletter, manager, time_machine, plan_settings
):
    time_machine.move_to(T0, tick=False)
    recent = subscriber("recent@example.org", newsletter, T0)
    Contact.objects.filter(pk=recent.pk).update(last_engaged_at=T0 - timedelta(days=60))
    lapsed = subscriber("lapsed@example.org", newsletter, T0)
    Contact.objects.filter(pk=lapsed.pk).update(
        last_engaged_at=T0 - timedelta(days=200), engagement_status=EngagementStatus.UNENGAGED
    )
    plan = start(domain)
    for _ in range(4):
        repair.advance_plan(plan, user=manager, reason="Straight to re-permission.", now=T0)

    regular = deliver(campaign(newsletter, "Regular"), when=T0)
    repermission = deliver(campaign(newsletter, "Still want our news?", include_unengaged=True), when=T0)

    assert [s.email for s in regular] == ["recent@example.org"]
    assert skip_reasons(regular[0].campaign) == {"": 1, Ineligibility.UNENGAGED: 1}
    assert sorted(s.email for s in repermission) == ["lapsed@example.org", "recent@example.org"]


def test_staff_pause_resume_and_end_a_plan_with_a_reason_each(domain, clickers, newsletter, manager):
    plan = start(domain)
    subscriber("quiet@example.org", newsletter, T0)

    repair.pause_plan(plan, user=manager, reason="Black Friday: everyone gets the offer.", now=T0)
    paused = deliver(campaign(newsletter, "Offer"), when=T0)
    repair.resume_plan(plan, user=manager, reason="Back to the plan.", now=T0 + timedelta(days=1))
    resumed = deliver(campaign(newsletter, "After"), when=T0 + timedelta(days=1))
    repair.end_plan(plan, user=manager, reason="Moved to a new domain.", now=T0 + timedelta(days=2))
    ended = deliver(campaign(newsletter, "Free again"), when=T0 + timedelta(days=2))

    plan.refresh_from_db()
    assert (len(paused), len(resumed), len(ended)) == (11, 10, 11)
    assert plan.status == PlanStatus.ENDED
    log = [(t.kind, t.reason, t.by) for t in plan.transitions.order_by("at", "id")]
    assert log == [
        (TransitionKind.STARTED, "Open rate below 10 % for 7 days.", None),
        (TransitionKind.PAUSED, "Black Friday: everyone gets the offer.", manager),
        (TransitionKind.RESUMED, "Back to the plan.", manager),
        (TransitionKind.ENDED, "Moved to a new domain.", manager),
    ]


def test_a_staff_action_without_a_reason_is_refused(domain, manager, clickers):
    plan = start(domain)

    with pytest.raises(repair.PlanError, match="Say why"):
        repair.advance_plan(plan, user=manager, reason="  ", now=T0)

    plan.refresh_from_db()
    assert plan.step == 1 and plan.transitions.count() == 1


def test_a_domain_has_one_open_plan_at_most(domain, clickers):
    first = start(domain)

    again = repair.start_plan(domain, now=T0 + timedelta(days=1), reason="Another alert.")

    assert again == first and ReputationRepairPlan.objects.count() == 1


def test_the_gate_gives_one_contact_the_reason_it_gives_the_whole_audience(domain, clickers, newsletter, settings):
    settings.REPAIR_PLAN_DAILY_CAPS = [0, 100, 100, 100, 100]
    quiet = subscriber("quiet@example.org", newsletter, T0)
    start(domain)
    under_plan = campaign(newsletter, "Under the plan")

    one_by_one = {c.pk: refusal(c, under_plan, now=T0) for c in [*clickers, quiet]}
    at_once = dict(annotate_refusal(Contact.objects.all(), under_plan, now=T0).values_list("pk", "refusal"))

    assert one_by_one == at_once
    assert set(one_by_one.values()) == {GateRefusal.REPAIR_PLAN_CAP, GateRefusal.REPAIR_PLAN}
