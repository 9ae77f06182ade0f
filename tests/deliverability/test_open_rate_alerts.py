"""The daily open-rate evaluation: a 120-day history where engagement falls, alerts on the right day, repair plans."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from campaigns.models import GateRefusal, SendStatus
from deliverability import health, repair
from deliverability.models import (
    DailyMetrics,
    EvaluationStatus,
    HealthAlert,
    HealthAlertKind,
    HealthEvaluation,
    PlanStatus,
    ReputationRepairPlan,
    SendingDomain,
    Severity,
    TransitionKind,
)
from tests.conftest import subscriber
from tests.deliverability.health_history import at, campaign, deliver, run_daily_jobs

START = date(2026, 6, 1)
# From this day on nobody opens: 30 % of 20 deliveries a day were opened before.
DROP = START + timedelta(days=90)
# The 30-day window ends three days before the evaluation (the last 48 hours and the partial day
# before them are left out), so it holds k days from before the drop on day DROP + 32 - k, and its
# rate 30 % * k / 30 falls below 10 % at k = 9: DROP + 23 is the first low evaluation and the
# seventh in a row, the alert's day, is DROP + 29 = START + 119.
FIRST_LOW_DAY = DROP + timedelta(days=23)
ALERT_DAY = DROP + timedelta(days=29)
READERS = 20
# Four readers who keep clicking (images off, so no opens): the repair plan's first audience.
CLICKERS = {f"reader{n:02d}@example.org" for n in range(4)}


@pytest.fixture
def domain(db) -> SendingDomain:
    """news.example.com, a sending domain (its DNS is not what these tests are about)."""
    return SendingDomain.objects.create(domain="news.example.com")


@pytest.fixture
def history_settings(settings):
    settings.FREQUENCY_CAP_EMAILS = 1000
    settings.REPAIR_PLAN_DAILY_CAPS = [3, 10, 20, 30, 40]


@pytest.fixture
def readers(newsletter, time_machine, history_settings):
    time_machine.move_to(at(START - timedelta(days=1)), tick=False)
    return [subscriber(f"reader{n:02d}@example.org", newsletter, at(START - timedelta(days=1))) for n in range(READERS)]


def live_through(days: range, newsletter, time_machine, *, daily=None) -> None:
    """Each day: the night's jobs at 02:40, then the day's newsletter at 09:00."""
    for offset in days:
        day = START + timedelta(days=offset)
        time_machine.move_to(at(day, 2).replace(minute=40), tick=False)
        run_daily_jobs(at(day, 2).replace(minute=40))
        if daily is not None:
            daily(day)
        time_machine.move_to(at(day), tick=False)
        deliver(
            campaign(newsletter, f"News {day}"),
            when=at(day),
            open_share=0.3 if day < DROP else 0.0,
            clicked=CLICKERS,
        )


def evaluate_on(day: date, time_machine) -> None:
    time_machine.move_to(at(day, 2).replace(minute=40), tick=False)
    run_daily_jobs(at(day, 2).replace(minute=40))


def low_alerts():
    return HealthAlert.objects.filter(kind=HealthAlertKind.OPEN_RATE_LOW)


def test_the_alert_comes_on_the_seventh_low_evaluation_not_before_and_only_once(
    domain, readers, newsletter, time_machine
):
    live_through(range((ALERT_DAY - START).days), newsletter, time_machine)
    day_before = HealthEvaluation.objects.get(domain=domain, day=ALERT_DAY - timedelta(days=1))

    evaluate_on(ALERT_DAY, time_machine)
    on_the_day = list(low_alerts())
    evaluate_on(ALERT_DAY + timedelta(days=1), time_machine)

    assert (day_before.status, day_before.low_streak) == (EvaluationStatus.LOW, 6)
    assert HealthEvaluation.objects.get(domain=domain, day=FIRST_LOW_DAY).low_streak == 1
    assert HealthEvaluation.objects.get(domain=domain, day=FIRST_LOW_DAY - timedelta(days=1)).status == (
        EvaluationStatus.DROPPED
    )
    [alert] = on_the_day
    assert alert.raised_at == at(ALERT_DAY, 2).replace(minute=40)
    assert (alert.domain, alert.severity, alert.resolved_at) == (domain, Severity.CRITICAL, None)
    assert alert.metrics["low_streak"] == 7
    assert alert.metrics["open_rate"] == pytest.approx(0.3 * 3 / 30)
    assert "below 10 % for 7 days in a row" in alert.summary
    assert list(low_alerts()) == [alert], "the day after: still the one alert"


def test_a_critical_alert_starts_a_plan_that_restricts_the_next_campaign_to_step_one_and_its_cap(
    domain, readers, newsletter, time_machine
):
    live_through(range((ALERT_DAY - START).days + 1), newsletter, time_machine)
    next_day = ALERT_DAY + timedelta(days=1)
    evaluate_on(next_day, time_machine)
    time_machine.move_to(at(next_day), tick=False)

    delivered = deliver(campaign(newsletter, "After the alert"), when=at(next_day), clicked=CLICKERS)

    [plan] = ReputationRepairPlan.objects.all()
    assert (plan.domain, plan.status, plan.step, plan.started_by) == (domain, PlanStatus.ACTIVE, 1, None)
    assert plan.alert == low_alerts().get()
    assert [t.kind for t in plan.transitions.all()] == [TransitionKind.STARTED]
    # The four clickers are step 1's audience; the cap of 3 a day goes to the most recently engaged.
    assert len(delivered) == 3 and {s.email for s in delivered} < CLICKERS
    sends = delivered[0].campaign.sends
    assert sends.filter(skip_reason=GateRefusal.REPAIR_PLAN_CAP).count() == 1
    assert sends.filter(skip_reason=GateRefusal.REPAIR_PLAN).count() == READERS - 4
    assert sends.filter(status=SendStatus.SKIPPED).count() == READERS - 3


def test_a_fall_by_half_against_the_baseline_warns_before_the_rate_is_critical(
    domain, readers, newsletter, time_machine
):
    # The window rate 30 % * k / 30 falls under half the 30 % baseline at k = 14: DROP + 18.
    warning_day = DROP + timedelta(days=18)
    live_through(range((warning_day - START).days), newsletter, time_machine)
    before = HealthAlert.objects.filter(kind=HealthAlertKind.OPEN_RATE_DROP).count()

    evaluate_on(warning_day, time_machine)

    [warning] = HealthAlert.objects.filter(kind=HealthAlertKind.OPEN_RATE_DROP)
    assert before == 0
    assert warning.severity == Severity.WARNING
    assert warning.metrics["open_rate"] == pytest.approx(0.14) and warning.metrics["baseline_open_rate"] == 0.3
    assert not low_alerts().exists() and not ReputationRepairPlan.objects.exists()


# The evaluation alone, on daily figures written as the rollup would.


def day_of_mail(domain, day: date, *, delivered: int, opens: int) -> None:
    DailyMetrics.objects.update_or_create(
        domain=domain,
        day=day,
        defaults={"sent": delivered, "delivered": delivered, "human_opens": opens, "computed_at": at(day)},
    )


def forty_days_of_mail(domain, until: date, *, opens: int) -> None:
    """100 deliveries a day for the 40 days up to `until`, `opens` of them opened each day."""
    for n in range(40):
        day_of_mail(domain, until - timedelta(days=n), delivered=100, opens=opens)


def test_fewer_than_400_deliveries_in_the_window_are_not_judged(domain, time_machine):
    today = date(2026, 11, 2)
    for n in range(3, 33):
        day_of_mail(domain, today - timedelta(days=n), delivered=13, opens=0)
    time_machine.move_to(at(today, 3), tick=False)

    [evaluation] = health.evaluate_open_rates(now=at(today, 3))

    assert (evaluation.delivered, evaluation.status, evaluation.low_streak) == (390, EvaluationStatus.INSUFFICIENT, 0)


def test_the_last_48_hours_and_the_day_they_start_in_are_left_out(domain, time_machine):
    today = date(2026, 11, 2)
    for n in range(40):
        day_of_mail(domain, today - timedelta(days=n), delivered=100, opens=30 if n < 3 else 1)
    time_machine.move_to(at(today, 3), tick=False)

    [evaluation] = health.evaluate_open_rates(now=at(today, 3))

    assert (evaluation.window_start, evaluation.window_end) == (date(2026, 10, 1), date(2026, 10, 31))
    assert (evaluation.delivered, evaluation.human_opens) == (3000, 30)


def test_a_missed_night_is_evaluated_the_next_night_so_the_streak_holds(domain, time_machine, settings):
    settings.OPEN_RATE_CRITICAL_DAYS = 2
    today = date(2026, 11, 2)
    forty_days_of_mail(domain, today, opens=25)
    time_machine.move_to(at(today - timedelta(days=2), 3), tick=False)
    health.evaluate_open_rates(now=at(today - timedelta(days=2), 3))
    forty_days_of_mail(domain, today, opens=5)
    time_machine.move_to(at(today, 3), tick=False)

    # Yesterday's run never happened: today's run evaluates yesterday first.
    [evaluation] = health.evaluate_open_rates(now=at(today, 3))

    yesterday = HealthEvaluation.objects.get(day=today - timedelta(days=1))
    assert (yesterday.status, yesterday.low_streak, evaluation.low_streak) == (EvaluationStatus.LOW, 1, 2)
    assert low_alerts().get().metrics["low_streak"] == 2


def test_the_first_evaluation_ever_judges_the_days_before_so_a_long_low_rate_alerts_at_once(
    domain, time_machine, settings
):
    settings.OPEN_RATE_CRITICAL_DAYS = 3
    quiet = SendingDomain.objects.create(domain="quiet.example.com")
    today = date(2026, 11, 2)
    forty_days_of_mail(domain, today, opens=5)
    time_machine.move_to(at(today, 3), tick=False)

    evaluations = health.evaluate_open_rates(now=at(today, 3))

    assert [(e.domain, e.day, e.status, e.low_streak) for e in evaluations] == [
        (domain, today, EvaluationStatus.LOW, 3),
        (quiet, today, EvaluationStatus.INSUFFICIENT, 0),
    ]
    assert list(HealthEvaluation.objects.filter(domain=domain).values_list("day", flat=True)) == [
        today - timedelta(days=2),
        today - timedelta(days=1),
        today,
    ]
    assert low_alerts().get().domain == domain


def test_the_alert_resolves_when_the_rate_recovers(domain, time_machine, settings):
    settings.OPEN_RATE_CRITICAL_DAYS = 1
    today = date(2026, 11, 2)
    forty_days_of_mail(domain, today, opens=5)
    time_machine.move_to(at(today, 3), tick=False)
    health.evaluate_open_rates(now=at(today, 3))
    tomorrow = today + timedelta(days=1)
    forty_days_of_mail(domain, tomorrow, opens=25)
    time_machine.move_to(at(tomorrow, 3), tick=False)

    health.evaluate_open_rates(now=at(tomorrow, 3))

    assert low_alerts().get().resolved_at == at(tomorrow, 3)
    assert ReputationRepairPlan.objects.get().status == PlanStatus.ACTIVE, "a plan ends by its own rules"


def test_running_the_evaluation_twice_raises_one_alert_and_one_plan(domain, time_machine, settings):
    settings.OPEN_RATE_CRITICAL_DAYS = 1
    today = date(2026, 11, 2)
    forty_days_of_mail(domain, today, opens=5)
    time_machine.move_to(at(today, 3), tick=False)

    health.evaluate_open_rates(now=at(today, 3))
    health.evaluate_open_rates(now=at(today, 3))

    assert low_alerts().count() == 1
    assert ReputationRepairPlan.objects.count() == 1
    assert HealthEvaluation.objects.filter(day=today).count() == 1


def test_after_the_alert_the_plan_advances_on_recovery_steps_back_on_a_relapse_and_completes(
    domain, readers, newsletter, time_machine, settings, manager
):
    settings.REPAIR_PLAN_MIN_DELIVERED = 30
    # The plan's daily caps keep this small list's windows under the default 400 deliveries.
    settings.OPEN_RATE_MIN_DELIVERED = 100
    live_through(range((ALERT_DAY - START).days), newsletter, time_machine)

    def days(first: int, last: int, *, opened: int | None = None, open_share: float = 0.0) -> list:
        """Nights and newsletters from ALERT_DAY + first to ALERT_DAY + last; the transitions of those nights."""
        transitions = []
        for offset in range(first, last + 1):
            day = ALERT_DAY + timedelta(days=offset)
            night = at(day, 2).replace(minute=40)
            time_machine.move_to(night, tick=False)
            health.roll_up_daily_metrics(now=night)
            health.evaluate_open_rates(now=night)
            transitions += [(offset, t.kind, t.to_step) for t in repair.progress_repair_plans(now=night)]
            time_machine.move_to(at(day), tick=False)
            deliver(
                campaign(newsletter, f"News {day}"),
                when=at(day),
                opened=opened,
                open_share=open_share,
                clicked=CLICKERS,
            )
        return transitions

    # Step 1: the three clickers the cap allows, two of them opening (67 %), for two weeks.
    recovery = days(0, 14, opened=2)
    # Step 2 (engaged within 30 days: the four clickers): nobody opens any more.
    relapse = days(15, 24)
    plan = ReputationRepairPlan.objects.get()
    for _ in range(4):
        repair.advance_plan(
            plan, user=manager, reason="Seed tests show the inbox again.", now=at(ALERT_DAY + timedelta(days=25))
        )
    # Step 5: everyone engaged within 90 days, half of them opening.
    completion = days(25, 60, open_share=0.5)

    plan.refresh_from_db()
    assert recovery == [(14, TransitionKind.ADVANCED, 2)]
    # Judged from 30 deliveries: 4 a day from day 14, the last 48 hours left out.
    assert relapse == [(24, TransitionKind.STEPPED_BACK, 1)]
    [(completed_on, kind, _)] = completion
    assert kind == TransitionKind.COMPLETED and completed_on >= 25 + 14
    assert plan.status == PlanStatus.COMPLETED
    assert plan.transitions.get(kind=TransitionKind.COMPLETED).metrics["healthy_days"] == 14
    assert [t.kind for t in plan.transitions.order_by("at", "id")] == [
        TransitionKind.STARTED,
        TransitionKind.ADVANCED,
        TransitionKind.STEPPED_BACK,
        *[TransitionKind.ADVANCED] * 4,
        TransitionKind.COMPLETED,
    ]
