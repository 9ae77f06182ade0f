from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Exists, OuterRef, Q

from crm.eligibility import Ineligibility
from crm.models import Contact, EngagementStatus, Subscription, SubscriptionStatus, SubscriptionType


class ContactList(models.Model):
    """A static list: contacts staff put on it, by hand, action or import."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    contacts = models.ManyToManyField(Contact, through="ListMembership", related_name="lists")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ListMembership(models.Model):
    contact_list = models.ForeignKey(ContactList, on_delete=models.CASCADE)
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["contact_list", "contact"], name="one_membership_per_list")]

    def __str__(self) -> str:
        return f"{self.contact} on {self.contact_list}"


_PROPERTY_NAME = RegexValidator(
    r"^[A-Za-z0-9_ -]+$", "Letters, digits, spaces, dashes and underscores only.", inverse_match=False
)


class Segment(models.Model):
    """A saved filter: its contacts are whoever matches when a campaign is sent (all conditions)."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    subscribed_to = models.ForeignKey(
        SubscriptionType,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Only contacts subscribed (confirmed) to this type.",
    )
    engagement_statuses = models.JSONField(
        default=list, blank=True, help_text="Only contacts in these engagement statuses (none ticked: any)."
    )
    last_engaged_within_days = models.PositiveIntegerField(null=True, blank=True)
    created_within_days = models.PositiveIntegerField(null=True, blank=True)
    email_domains = models.TextField(blank=True, help_text="Only addresses at these domains, one per line.")
    in_lists = models.ManyToManyField(ContactList, blank=True, related_name="+", help_text="Members of any of these.")
    property_name = models.CharField(max_length=100, blank=True, validators=[_PROPERTY_NAME])
    property_value = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if "__" in self.property_name:
            raise ValidationError({"property_name": "A property name cannot contain two underscores in a row."})
        unknown = set(self.engagement_statuses) - set(EngagementStatus.values)
        if unknown:
            raise ValidationError({"engagement_statuses": f"Unknown engagement status: {', '.join(sorted(unknown))}."})

    def domain_list(self) -> list[str]:
        return [line.strip().lower().lstrip("@") for line in self.email_domains.splitlines() if line.strip()]

    def conditions(self, *, now: datetime) -> Q:
        """The segment as one filter on Contact."""
        condition = Q()
        if self.subscribed_to_id:
            condition &= Exists(
                Subscription.objects.filter(
                    contact=OuterRef("pk"),
                    subscription_type_id=self.subscribed_to_id,
                    status=SubscriptionStatus.SUBSCRIBED,
                )
            )
        if self.engagement_statuses:
            condition &= Q(engagement_status__in=self.engagement_statuses)
        if self.last_engaged_within_days is not None:
            condition &= Q(last_engaged_at__gte=now - timedelta(days=self.last_engaged_within_days))
        if self.created_within_days is not None:
            condition &= Q(created_at__gte=now - timedelta(days=self.created_within_days))
        domains = self.domain_list()
        if domains:
            any_domain = Q()
            for domain in domains:
                any_domain |= Q(email_normalized__endswith=f"@{domain}")
            condition &= any_domain
        list_ids = [contact_list.pk for contact_list in self.in_lists.all()]
        if list_ids:
            condition &= Exists(ListMembership.objects.filter(contact=OuterRef("pk"), contact_list_id__in=list_ids))
        if self.property_name:
            condition &= Q(**{f"properties__{self.property_name}": self.property_value})
        return condition


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    SENDING = "sending", "Sending"
    PAUSED = "paused", "Paused"
    SENT = "sent", "Sent"
    CANCELLED = "cancelled", "Cancelled"


class Campaign(models.Model):
    name = models.CharField(max_length=200)
    subscription_type = models.ForeignKey(
        SubscriptionType,
        on_delete=models.PROTECT,
        related_name="campaigns",
        help_text="Decides who may receive it and what 'unsubscribe' means.",
    )
    from_name = models.CharField(max_length=100)
    from_email = models.EmailField(help_text="On a sending domain whose checks pass.")
    reply_to = models.EmailField(blank=True)
    subject = models.CharField(max_length=250)
    preheader = models.CharField(max_length=250, blank=True, help_text="The preview text shown after the subject.")
    html_body = models.TextField("HTML body")
    text_body = models.TextField("Plain-text body", blank=True, help_text="Blank: generated from the HTML.")
    lists = models.ManyToManyField(ContactList, blank=True, related_name="campaigns")
    exclude_lists = models.ManyToManyField(ContactList, blank=True, related_name="excluded_from_campaigns")
    segments = models.ManyToManyField(Segment, blank=True, related_name="campaigns")
    exclude_segments = models.ManyToManyField(Segment, blank=True, related_name="excluded_from_campaigns")
    include_unengaged = models.BooleanField(
        default=False, help_text="Send to unengaged contacts too (re-engagement campaigns)."
    )
    status = models.CharField(max_length=16, choices=CampaignStatus, default=CampaignStatus.DRAFT, editable=False)
    scheduled_at = models.DateTimeField(null=True, blank=True, help_text="Blank: send when started.")
    in_recipient_time_zone = models.BooleanField(
        "At this local time for each recipient",
        default=False,
        help_text="Send at the scheduled date and clock time in each contact's own time zone (contacts "
        "without one: CAMPAIGN_DEFAULT_TIME_ZONE). Where that time has already passed, the message goes at once.",
    )
    status_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    status_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class SendStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SKIPPED = "skipped", "Skipped"
    SENDING = "sending", "Sending"
    DEFERRED = "deferred", "Deferred (will retry)"
    ACCEPTED = "accepted", "Handed to the ESP"
    DELIVERED = "delivered", "Delivered"
    HARD_BOUNCED = "hard_bounced", "Hard bounce"
    SOFT_BOUNCED = "soft_bounced", "Soft bounce"
    NOT_SENT = "not_sent", "Not sent (no answer)"
    CANCELLED = "cancelled", "Cancelled"


class GateRefusal(models.TextChoices):
    """Reasons the send gate adds to the eligibility rule's (crm.eligibility.Ineligibility)."""

    FREQUENCY_CAP = "frequency_cap", "Frequency cap reached"


SKIP_REASONS = [*Ineligibility.choices, *GateRefusal.choices]


# Sends that count against the frequency cap: anything handed to a transport.
HANDED_OVER = [
    SendStatus.SENDING,
    SendStatus.DEFERRED,
    SendStatus.ACCEPTED,
    SendStatus.DELIVERED,
    SendStatus.SOFT_BOUNCED,
]


class Send(models.Model):
    """One campaign to one contact: at most one per pair (DESIGN invariant 4)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="sends")
    contact = models.ForeignKey(Contact, null=True, on_delete=models.SET_NULL, related_name="sends")
    email = models.CharField(max_length=254, help_text="The normalized address when the audience was built.")
    status = models.CharField(max_length=16, choices=SendStatus, default=SendStatus.QUEUED)
    skip_reason = models.CharField(max_length=20, choices=SKIP_REASONS, blank=True)
    due_at = models.DateTimeField(help_text="Not sent before this time (scheduling, local time, retries).")
    attempts = models.PositiveSmallIntegerField(default=0)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True, help_text="Which worker's batch holds it.")
    message_id = models.CharField(max_length=255, blank=True)
    smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    smtp_reply = models.TextField(blank=True, help_text="What the receiving server said, word for word.")
    bounce_category = models.CharField(max_length=20, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "contact"], name="one_send_per_campaign_contact")]
        indexes = [
            models.Index(fields=["campaign", "status"], name="send_campaign_status"),
            models.Index(fields=["status", "due_at"], name="send_due"),
            models.Index(fields=["contact", "first_attempt_at"], name="send_contact_recent"),
            # The warm-up cap counts today's first attempts before every claim.
            models.Index(fields=["first_attempt_at"], name="send_first_attempt"),
            models.Index(fields=["message_id"], name="send_message_id"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} → {self.email}"
