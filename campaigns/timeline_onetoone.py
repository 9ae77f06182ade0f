"""One-to-one email and sequences on the contact's email timeline (a campaigns.timeline source)."""

from __future__ import annotations

from django.urls import reverse

from campaigns.models import EnrollmentStatus, OneToOneEmail, OneToOneStatus, SequenceEnrollment
from campaigns.timeline import Entry
from crm.models import Contact

STATUS_STYLE = {
    OneToOneStatus.SENT: "subscribed",
    OneToOneStatus.REJECTED: "danger",
    OneToOneStatus.BOUNCED: "subscribed",  # it was sent; the bounce is its own entry
    OneToOneStatus.NOT_SENT: "warning",
    OneToOneStatus.SENDING: "pending",
}
_WHAT = {
    OneToOneStatus.SENT: "One-to-one sent",
    OneToOneStatus.BOUNCED: "One-to-one sent",
    OneToOneStatus.REJECTED: "One-to-one rejected",
    OneToOneStatus.NOT_SENT: "One-to-one not sent",
    OneToOneStatus.SENDING: "One-to-one sending",
}


def _sender(email: OneToOneEmail) -> str:
    return email.sender.get_username() if email.sender else "a deleted user"


def one_to_one_entries(contact: Contact, limit: int) -> list[Entry]:
    """The contact's one-to-one messages: sent (who, through which inbox, the server's reply), bounces, replies."""
    entries = []
    emails = (
        OneToOneEmail.objects.filter(contact=contact)
        .select_related("sender", "enrollment__sequence", "step")
        .order_by("-sent_at")[:limit]
    )
    for email in emails:
        url = reverse("admin:campaigns_onetooneemail_change", args=[email.pk])
        reply = f"{email.smtp_code or ''} {email.smtp_reply}".strip()
        detail = f"by {_sender(email)} through {email.inbox_label}"
        if email.enrollment_id and email.step_id:
            detail += f" · {email.enrollment.sequence.name}, day {email.step.day}"
        if reply:
            detail += f" · server: {reply}"
        entries.append(
            Entry(email.sent_at, _WHAT[email.status], email.subject, detail[:300], STATUS_STYLE[email.status], url)
        )
        if email.bounced_at:
            entries.append(
                Entry(email.bounced_at, "One-to-one bounced", email.subject, email.bounce_reply[:300], "danger", url)
            )
        if email.replied_at:
            entries.append(Entry(email.replied_at, "Replied", email.subject, email.reply_subject, "subscribed", url))
    return entries


_ENDED = {
    EnrollmentStatus.FINISHED: ("Sequence finished", "muted"),
    EnrollmentStatus.STOPPED: ("Sequence stopped", "warning"),
}


def sequence_entries(contact: Contact, limit: int) -> list[Entry]:
    """Enrollments in sequences, and how each ended."""
    entries = []
    enrollments = (
        SequenceEnrollment.objects.filter(contact=contact)
        .select_related("sequence", "enrolled_by", "stopped_by", "next_step")
        .order_by("-enrolled_at")[:limit]
    )
    for enrollment in enrollments:
        url = reverse("admin:campaigns_sequenceenrollment_change", args=[enrollment.pk])
        name = enrollment.sequence.name
        by = enrollment.enrolled_by.get_username()
        detail = f"by {by}"
        if enrollment.status == EnrollmentStatus.ACTIVE and enrollment.next_step_id and enrollment.next_due_at:
            detail += f" · next: day {enrollment.next_step.day}, {enrollment.next_due_at:%Y-%m-%d %H:%M} UTC"
        entries.append(Entry(enrollment.enrolled_at, "Enrolled in sequence", name, detail, "pending", url))
        if enrollment.ended_at and enrollment.status in _ENDED:
            what, style = _ENDED[enrollment.status]
            detail = enrollment.get_stop_reason_display() if enrollment.stop_reason else "every step sent"
            if enrollment.stopped_by:
                detail += f" ({enrollment.stopped_by.get_username()})"
            entries.append(Entry(enrollment.ended_at, what, name, detail, style, url))
    return entries


def one_to_one_record(contact: Contact) -> dict:
    """The contact's one-to-one emails and sequence enrollments, for 'Everything we hold (JSON)'."""
    return {
        "emails": list(
            OneToOneEmail.objects.filter(contact=contact)
            .order_by("sent_at", "pk")
            .values(
                "sent_at",
                "sender__username",
                "inbox_label",
                "email",
                "subject",
                "body",
                "reply_to",
                "status",
                "smtp_code",
                "smtp_reply",
                "bounced_at",
                "bounce_category",
                "bounce_reply",
                "replied_at",
                "reply_subject",
            )
        ),
        "sequence_enrollments": list(
            SequenceEnrollment.objects.filter(contact=contact)
            .order_by("enrolled_at", "pk")
            .values("sequence__name", "enrolled_by__username", "status", "enrolled_at", "ended_at", "stop_reason")
        ),
    }
