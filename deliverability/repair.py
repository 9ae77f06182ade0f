"""Reputation repair plans: a sending domain earns its way back to the inbox, step by step.

Mailbox providers judge a sender by how its recipients react. When a domain's open rate stays
below the critical threshold (deliverability/health.py raises the alert), the plan mails only
the people most likely to open, then widens the audience as they do:

1. contacts who clicked within REPAIR_PLAN_CLICKED_DAYS (default 14);
2-4. contacts who engaged (human open or click) within each of REPAIR_PLAN_ENGAGED_DAYS
   (30, 60, 90);
5. re-permission: campaigns that include unengaged contacts (a re-permission campaign) may go
   to everyone else too, regular ones still to the last step's engaged contacts; those who do
   not respond show up in the sunset review.

Each step lasts at least REPAIR_PLAN_STEP_DAYS and caps the domain's daily volume. Once a day
`progress_repair_plans` judges the current step by the human open rate of what its regular
campaigns delivered since the step began (leaving out the last OPEN_RATE_EXCLUDE_HOURS): at the
target over at least REPAIR_PLAN_MIN_DELIVERED deliveries it advances; below the relapse rate it
steps back; otherwise it holds. On the last step the plan completes once the domain's daily
evaluations were healthy for REPAIR_PLAN_HEALTHY_DAYS in a row. Staff may pause, resume, advance
or end a plan, with a reason. Every transition is logged with the figures behind it.

While a plan is active, the send gate (campaigns/gate.py, through `gate_limit`) keeps the
domain's campaigns to the step's audience and remaining daily volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q

from campaigns.extensions import RepairLimit
from campaigns.models import Campaign, Send, SendStatus
from crm.models import Contact
from deliverability.models import (
    EvaluationStatus,
    HealthAlert,
    PlanStatus,
    RepairPlanTransition,
    ReputationRepairPlan,
    SendingDomain,
    TransitionKind,
)


class PlanError(Exception):
    """The plan cannot do that now; the message says why in plain words."""


@dataclass(frozen=True)
class Step:
    number: int
    clicked: bool  # the audience clicked (rather than opened or clicked) within `days`
    days: int
    daily_cap: int
    repermission: bool = False

    def describe(self) -> str:
        if self.repermission:
            return (
                f"Re-permission: campaigns that include unengaged contacts go to everyone; "
                f"regular campaigns to contacts engaged within {self.days} days"
            )
        if self.clicked:
            return f"Contacts who clicked within {self.days} days"
        return f"Contacts who opened or clicked within {self.days} days"

    def audience(self, *, now: datetime, campaign: Campaign | None = None) -> Q:
        """Who may get `campaign` (a regular campaign when None) on this step: a filter on Contact."""
        if self.repermission and campaign is not None and campaign.include_unengaged:
            return Q()
        since = now - timedelta(days=self.days)
        return Q(last_click_at__gte=since) if self.clicked else Q(last_engaged_at__gte=since)


def steps() -> list[Step]:
    """The plan's steps, from the settings."""
    caps = settings.REPAIR_PLAN_DAILY_CAPS
    engaged = settings.REPAIR_PLAN_ENGAGED_DAYS
    return [
        Step(1, clicked=True, days=settings.REPAIR_PLAN_CLICKED_DAYS, daily_cap=caps[0]),
        *(Step(n + 2, clicked=False, days=days, daily_cap=caps[n + 1]) for n, days in enumerate(engaged)),
        Step(len(engaged) + 2, clicked=False, days=engaged[-1], daily_cap=caps[-1], repermission=True),
    ]


def step_of(plan: ReputationRepairPlan) -> Step:
    all_steps = steps()
    return all_steps[min(plan.step, len(all_steps)) - 1]


def _domain_campaigns(domain_name: str):
    return Campaign.objects.filter(from_email__iendswith=f"@{domain_name}")


def volume_today(domain_name: str, *, now: datetime) -> int:
    """Messages from the domain's campaigns first handed over today (UTC), batches in flight left out."""
    start = datetime.combine(now.date(), time.min, tzinfo=UTC)
    return (
        Send.objects.filter(campaign__in=_domain_campaigns(domain_name), first_attempt_at__gte=start)
        .exclude(status=SendStatus.SENDING)
        .count()
    )


def gate_limit(campaign: Campaign, now: datetime) -> RepairLimit | None:
    """The send gate's question: what does an active repair plan on the campaign's domain allow?"""
    domain_name = campaign.from_email.rpartition("@")[2].lower()
    plan = ReputationRepairPlan.objects.filter(domain__domain=domain_name, status=PlanStatus.ACTIVE).first()
    if plan is None:
        return None
    step = step_of(plan)
    remaining = max(step.daily_cap - volume_today(domain_name, now=now), 0)
    return RepairLimit(audience=step.audience(now=now, campaign=campaign), remaining_today=remaining)


def step_figures(plan: ReputationRepairPlan, *, now: datetime) -> dict:
    """The current step's results so far: its regular campaigns' deliveries and human opens."""
    step = step_of(plan)
    sends = Send.objects.filter(
        campaign__in=_domain_campaigns(plan.domain.domain).filter(include_unengaged=False),
        status=SendStatus.DELIVERED,
        first_attempt_at__gte=plan.step_started_at,
        first_attempt_at__lt=now - timedelta(hours=settings.OPEN_RATE_EXCLUDE_HOURS),
    ).aggregate(delivered=Count("pk"), opened=Count("pk", filter=Q(opened_at__isnull=False)))
    delivered, opened = sends["delivered"], sends["opened"]
    return {
        "step": step.number,
        "days_on_step": plan.days_on_step(now),
        "delivered": delivered,
        "opened": opened,
        "open_rate": opened / delivered if delivered else None,
        "audience": Contact.objects.filter(step.audience(now=now)).count(),
        "daily_cap": step.daily_cap,
        "evaluated_at": now.isoformat(),
    }


def healthy_days(domain: SendingDomain, *, now: datetime) -> int:
    """Consecutive healthy daily evaluations of the domain, ending today."""
    statuses = domain.evaluations.filter(day__lte=now.date()).order_by("-day").values_list("day", "status")
    count, expected = 0, now.date()
    for day, status in statuses[: settings.REPAIR_PLAN_HEALTHY_DAYS]:
        if day != expected or status != EvaluationStatus.HEALTHY:
            break
        count += 1
        expected -= timedelta(days=1)
    return count


def _log(
    plan: ReputationRepairPlan,
    kind: str,
    *,
    from_step: int | None,
    reason: str,
    metrics: dict,
    now: datetime,
    user=None,
) -> RepairPlanTransition:
    return RepairPlanTransition.objects.create(
        plan=plan, kind=kind, from_step=from_step, to_step=plan.step, reason=reason, metrics=metrics, by=user, at=now
    )


def start_plan(
    domain: SendingDomain, *, now: datetime, reason: str, user=None, alert: HealthAlert | None = None
) -> ReputationRepairPlan:
    """Start a plan on the domain at step 1; the open plan it already has, if any, is returned unchanged."""
    with transaction.atomic():
        SendingDomain.objects.select_for_update().get(pk=domain.pk)
        existing = domain.repair_plans.filter(status__in=[PlanStatus.ACTIVE, PlanStatus.PAUSED]).first()
        if existing is not None:
            return existing
        plan = ReputationRepairPlan.objects.create(
            domain=domain, step=1, step_started_at=now, started_at=now, started_by=user, alert=alert, reason=reason
        )
        plan.progress = step_figures(plan, now=now)
        plan.save(update_fields=["progress"])
        _log(
            plan,
            TransitionKind.STARTED,
            from_step=None,
            reason=reason,
            metrics=alert.metrics if alert is not None else plan.progress,
            now=now,
            user=user,
        )
    return plan


def _move(
    plan: ReputationRepairPlan, kind: str, *, step: int, reason: str, metrics: dict, now: datetime, user=None
) -> RepairPlanTransition:
    before = plan.step
    plan.step = step
    plan.step_started_at = now
    plan.progress = {}
    plan.save(update_fields=["step", "step_started_at", "progress"])
    plan.progress = step_figures(plan, now=now)
    plan.save(update_fields=["progress"])
    return _log(plan, kind, from_step=before, reason=reason, metrics=metrics, now=now, user=user)


def _finish(
    plan: ReputationRepairPlan, status: str, kind: str, *, reason: str, metrics: dict, now: datetime, user=None
) -> RepairPlanTransition:
    plan.status = status
    plan.finished_at = now
    plan.save(update_fields=["status", "finished_at"])
    return _log(plan, kind, from_step=plan.step, reason=reason, metrics=metrics, now=now, user=user)


def progress_repair_plans(*, now: datetime) -> list[RepairPlanTransition]:
    """Advance, hold, step back or complete every active plan by its step's figures; return the transitions.

    A step that just began has no figures yet, so running twice on one day changes nothing more.
    """
    transitions = []
    for plan_id in ReputationRepairPlan.objects.filter(status=PlanStatus.ACTIVE).values_list("pk", flat=True):
        with transaction.atomic():
            plan = (
                ReputationRepairPlan.objects.select_for_update()
                .select_related("domain")
                .get(pk=plan_id, status=PlanStatus.ACTIVE)
            )
            transition = _progress(plan, now=now)
        if transition is not None:
            transitions.append(transition)
    return transitions


def _progress(plan: ReputationRepairPlan, *, now: datetime) -> RepairPlanTransition | None:
    step = step_of(plan)
    figures = step_figures(plan, now=now)
    plan.progress = figures
    plan.save(update_fields=["progress"])
    target = settings.REPAIR_PLAN_TARGET_OPEN_PERCENT / 100
    relapse = settings.REPAIR_PLAN_RELAPSE_OPEN_PERCENT / 100
    judged = figures["delivered"] >= settings.REPAIR_PLAN_MIN_DELIVERED
    rate = figures["open_rate"]
    metrics = {
        **figures,
        "target": target,
        "relapse_below": relapse,
        "min_delivered": settings.REPAIR_PLAN_MIN_DELIVERED,
    }
    if judged and rate < relapse and plan.step > 1:
        reason = (
            f"Relapse: step {step.number}'s human open rate {rate:.1%} over {figures['delivered']:,} deliveries "
            f"fell below {relapse:.0%}; back to step {step.number - 1}."
        )
        return _move(plan, TransitionKind.STEPPED_BACK, step=plan.step - 1, reason=reason, metrics=metrics, now=now)
    if plan.days_on_step(now) < settings.REPAIR_PLAN_STEP_DAYS:
        return None
    if step.repermission:
        healthy = healthy_days(plan.domain, now=now)
        if healthy < settings.REPAIR_PLAN_HEALTHY_DAYS:
            return None
        reason = f"The domain's open rate was healthy for {healthy} days in a row: the plan is complete."
        return _finish(
            plan,
            PlanStatus.COMPLETED,
            TransitionKind.COMPLETED,
            reason=reason,
            metrics={**metrics, "healthy_days": healthy},
            now=now,
        )
    if judged and rate >= target:
        reason = (
            f"Step {step.number}'s human open rate {rate:.1%} over {figures['delivered']:,} deliveries reached "
            f"the {target:.0%} target: on to step {step.number + 1}."
        )
        return _move(plan, TransitionKind.ADVANCED, step=plan.step + 1, reason=reason, metrics=metrics, now=now)
    return None


# Staff actions, each with a reason.


def _require_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise PlanError("Say why: the reason goes into the plan's log.")
    return reason


def pause_plan(plan: ReputationRepairPlan, *, user, reason: str, now: datetime) -> RepairPlanTransition:
    """Stop enforcing and judging the plan until it is resumed."""
    reason = _require_reason(reason)
    with transaction.atomic():
        if not ReputationRepairPlan.objects.filter(pk=plan.pk, status=PlanStatus.ACTIVE).update(
            status=PlanStatus.PAUSED
        ):
            raise PlanError(f"The plan is {plan.get_status_display().lower()}; only an active plan can be paused.")
        plan.status = PlanStatus.PAUSED
        return _log(
            plan, TransitionKind.PAUSED, from_step=plan.step, reason=reason, metrics=plan.progress, now=now, user=user
        )


def resume_plan(plan: ReputationRepairPlan, *, user, reason: str, now: datetime) -> RepairPlanTransition:
    reason = _require_reason(reason)
    with transaction.atomic():
        if not ReputationRepairPlan.objects.filter(pk=plan.pk, status=PlanStatus.PAUSED).update(
            status=PlanStatus.ACTIVE
        ):
            raise PlanError(f"The plan is {plan.get_status_display().lower()}; only a paused plan can be resumed.")
        plan.status = PlanStatus.ACTIVE
        return _log(
            plan, TransitionKind.RESUMED, from_step=plan.step, reason=reason, metrics=plan.progress, now=now, user=user
        )


def advance_plan(plan: ReputationRepairPlan, *, user, reason: str, now: datetime) -> RepairPlanTransition:
    """Move to the next step whatever the figures say; on the last step, complete the plan."""
    reason = _require_reason(reason)
    with transaction.atomic():
        plan = ReputationRepairPlan.objects.select_for_update().select_related("domain").get(pk=plan.pk)
        if not plan.is_open:
            raise PlanError(f"The plan is {plan.get_status_display().lower()}.")
        metrics = step_figures(plan, now=now)
        if step_of(plan).repermission:
            return _finish(
                plan, PlanStatus.COMPLETED, TransitionKind.COMPLETED, reason=reason, metrics=metrics, now=now, user=user
            )
        return _move(
            plan, TransitionKind.ADVANCED, step=plan.step + 1, reason=reason, metrics=metrics, now=now, user=user
        )


def end_plan(plan: ReputationRepairPlan, *, user, reason: str, now: datetime) -> RepairPlanTransition:
    """End the plan for good: the domain's campaigns are no longer restricted."""
    reason = _require_reason(reason)
    with transaction.atomic():
        plan = ReputationRepairPlan.objects.select_for_update().select_related("domain").get(pk=plan.pk)
        if not plan.is_open:
            raise PlanError(f"The plan is already {plan.get_status_display().lower()}.")
        return _finish(
            plan,
            PlanStatus.ENDED,
            TransitionKind.ENDED,
            reason=reason,
            metrics=step_figures(plan, now=now),
            now=now,
            user=user,
        )
