"""Sequences: a series of one-to-one emails with delays, from the enrolling staff member's inbox.

Each step is due `day` days after enrollment, moved to the next business hour in the
contact's time zone (SEQUENCE_BUSINESS_HOURS_*, SEQUENCE_BUSINESS_DAYS). A Beat job (`run`)
first reads the connected inboxes, so a reply or bounce that arrived stops the sequence
before its next step, then stops the enrollments of contacts who unsubscribed or may no
longer be emailed, then sends the steps that are due.

A step goes to an enrollment at most once: the logged message is inserted before sending
under a unique (enrollment, step) constraint, so a job that runs twice, or a worker that
dies after sending, never sends a step again (a step whose attempt never reached the
server — not sent — is tried again at the next run).
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet

from campaigns import imap, onetoone
from campaigns.models import (
    ConnectedInbox,
    EnrollmentStatus,
    OneToOneStatus,
    Sequence,
    SequenceEnrollment,
    SequenceStep,
    StopReason,
)
from crm.models import Contact, EmailStatus, Suppression

BATCH_SIZE = 200
RETRY_NOT_SENT = timedelta(hours=1)


def business_time(moment: datetime, zone_name: str) -> datetime:
    """The first moment at or after `moment` within business hours in the zone `zone_name`."""
    zone = zoneinfo.ZoneInfo(zone_name or settings.CAMPAIGN_DEFAULT_TIME_ZONE)
    local = moment.astimezone(zone)
    start, end = settings.SEQUENCE_BUSINESS_HOURS_START, settings.SEQUENCE_BUSINESS_HOURS_END
    days = set(settings.SEQUENCE_BUSINESS_DAYS)
    for _ in range(8):
        opening = datetime.combine(local.date(), time(start), tzinfo=zone)
        closing = opening + timedelta(hours=end - start)
        if local.isoweekday() in days and local < closing:
            return max(local, opening).astimezone(moment.tzinfo)
        local = datetime.combine(local.date() + timedelta(days=1), time(start), tzinfo=zone)
    raise AssertionError("SEQUENCE_BUSINESS_DAYS is empty")  # settings refuse that


def _due_at(enrollment: SequenceEnrollment, step: SequenceStep) -> datetime:
    return business_time(enrollment.enrolled_at + timedelta(days=step.day), enrollment.contact.time_zone)


def enrollment_refusal(contact: Contact, sequence: Sequence, *, user) -> str | None:
    """Why `user` may not enroll `contact` in `sequence` now, or None if they may."""
    if not sequence.active:
        return f"The sequence {sequence} is inactive."
    if not sequence.steps.exists():
        return f"The sequence {sequence} has no steps."
    if not ConnectedInbox.objects.filter(user=user).exists():
        return "You have no connected inbox for the sequence to send from: add one under Connected inboxes."
    refusal = onetoone.contact_refusal(contact)
    if refusal:
        return refusal
    if contact.is_unsubscribed_from_all():
        return f"{contact.email} unsubscribed from all marketing email, and sequences stop on unsubscribe."
    if SequenceEnrollment.objects.filter(sequence=sequence, contact=contact, status=EnrollmentStatus.ACTIVE).exists():
        return f"{contact.email} is already enrolled in {sequence}."
    return None


class EnrollmentRefused(Exception):
    pass


def enroll(contact: Contact, sequence: Sequence, *, user, now: datetime) -> SequenceEnrollment:
    """Enroll one contact; raises EnrollmentRefused with the reason in plain words."""
    refusal = enrollment_refusal(contact, sequence, user=user)
    if refusal:
        raise EnrollmentRefused(refusal)
    first = sequence.steps.order_by("day").first()
    enrollment = SequenceEnrollment(sequence=sequence, contact=contact, enrolled_by=user, enrolled_at=now)
    enrollment.next_step = first
    enrollment.next_due_at = _due_at(enrollment, first)
    enrollment.save()
    return enrollment


@dataclass
class EnrollResult:
    enrolled: int = 0
    refused: dict[str, int] = field(default_factory=dict)


def enroll_contacts(contacts: QuerySet[Contact], sequence: Sequence, *, user, now: datetime) -> EnrollResult:
    """Enroll several contacts (the admin action); more than the bulk limit at once is refused whole."""
    limit = settings.ONE_TO_ONE_BULK_LIMIT
    if contacts.count() > limit:
        raise EnrollmentRefused(
            f"A sequence is one-to-one email: at most {limit} contacts can be enrolled at once. "
            "For more, use a campaign, which checks consent and carries an unsubscribe link."
        )
    result = EnrollResult()
    for contact in contacts:
        try:
            enroll(contact, sequence, user=user, now=now)
        except EnrollmentRefused as refused:
            reason = str(refused).replace(contact.email, "the contact")
            result.refused[reason] = result.refused.get(reason, 0) + 1
        else:
            result.enrolled += 1
    return result


def stop_enrollment(enrollment: SequenceEnrollment, *, now: datetime, by=None) -> bool:
    """Stop one enrollment by hand; False if it was no longer active."""
    stopped = SequenceEnrollment.objects.filter(pk=enrollment.pk).stop(reason=StopReason.MANUAL, now=now, by=by)
    return bool(stopped)


def stop_ineligible(*, now: datetime) -> int:
    """Stop the active enrollments of contacts who unsubscribed from all or may not be emailed, set-based."""
    active = SequenceEnrollment.objects.filter(status=EnrollmentStatus.ACTIVE)
    unsubscribed = active.filter(contact__unsubscribed_from_all_at__isnull=False)
    stopped = unsubscribed.stop(reason=StopReason.UNSUBSCRIBED, now=now)
    refused = active.filter(
        Q(contact__do_not_contact=True)
        | Q(contact__email_status__in=[EmailStatus.HARD_BOUNCED, EmailStatus.COMPLAINED, EmailStatus.INVALID])
        | Exists(
            Suppression.objects.filter(
                email=OuterRef("contact__email_normalized"), reason__in=onetoone.REFUSING_SUPPRESSIONS
            )
        )
    )
    return stopped + refused.stop(reason=StopReason.REFUSED, now=now)


@dataclass
class StepRun:
    sent: int = 0
    not_sent: int = 0
    stopped: int = 0
    waiting: int = 0


def send_due_steps(*, now: datetime) -> StepRun:
    """Send every due step of an active enrollment in an active sequence."""
    due = (
        SequenceEnrollment.objects.filter(
            status=EnrollmentStatus.ACTIVE, next_due_at__lte=now, sequence__active=True, next_step__isnull=False
        )
        .select_related("contact", "next_step", "enrolled_by")
        .order_by("next_due_at", "pk")[:BATCH_SIZE]
    )
    run = StepRun()
    for enrollment in due:
        _send_step(enrollment, run, now=now)
    return run


def _send_step(enrollment: SequenceEnrollment, run: StepRun, *, now: datetime) -> None:
    step = enrollment.next_step
    try:
        logged = onetoone.send_one_to_one(
            contact=enrollment.contact,
            sender=enrollment.enrolled_by,
            subject=step.subject,
            body=step.body,
            now=now,
            enrollment=enrollment,
            step=step,
        )
    except onetoone.Refused as refused:
        if refused.bulk:
            run.waiting += 1  # the hour's limit for this text: it goes at a later run
            return
        reason = StopReason.NO_INBOX if onetoone.inbox_of(enrollment.enrolled_by) is None else StopReason.REFUSED
        run.stopped += SequenceEnrollment.objects.filter(pk=enrollment.pk).stop(reason=reason, now=now)
        return
    if logged is not None and logged.status == OneToOneStatus.NOT_SENT:
        run.not_sent += 1
        SequenceEnrollment.objects.filter(pk=enrollment.pk, status=EnrollmentStatus.ACTIVE).update(
            next_due_at=business_time(now + RETRY_NOT_SENT, enrollment.contact.time_zone)
        )
        return
    if logged is not None and logged.status == OneToOneStatus.REJECTED:
        run.stopped += SequenceEnrollment.objects.filter(pk=enrollment.pk).stop(reason=StopReason.BOUNCED, now=now)
        return
    run.sent += logged is not None
    _advance(enrollment, step, now=now)


def _advance(enrollment: SequenceEnrollment, step: SequenceStep, *, now: datetime) -> None:
    following = enrollment.sequence.steps.filter(day__gt=step.day).order_by("day").first()
    current = SequenceEnrollment.objects.filter(pk=enrollment.pk, status=EnrollmentStatus.ACTIVE, next_step=step)
    if following is None:
        current.update(status=EnrollmentStatus.FINISHED, next_step=None, next_due_at=None, ended_at=now)
    else:
        current.update(next_step=following, next_due_at=_due_at(enrollment, following))


def run(*, now: datetime) -> StepRun:
    """The Beat job: read inboxes (replies and bounces stop sequences), stop the ineligible, send due steps."""
    imap.read_inboxes(now=now)
    stop_ineligible(now=now)
    return send_due_steps(now=now)
