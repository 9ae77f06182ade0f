from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Exists, OuterRef, Q

from crm import encryption
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
    # Started by staff; a worker is building the sends (campaigns.pipeline.prepare_campaign).
    PREPARING = "preparing", "Preparing"
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
    track_opens = models.BooleanField(
        default=True, help_text="A tracking pixel. Opens by mail privacy proxies and prefetchers are told apart."
    )
    track_clicks = models.BooleanField(default=True, help_text="Links go through a redirect that records the click.")
    add_utm_tags = models.BooleanField(
        "Add UTM tags",
        default=False,
        help_text="utm_source, utm_medium=email and utm_campaign on tracked links (tags a link already has are kept).",
    )
    utm_campaign = models.CharField(
        "UTM campaign", max_length=100, blank=True, help_text="Blank: the campaign's name as a slug."
    )
    status_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    status_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    status_reason = models.TextField(
        blank=True, editable=False, help_text="Why the status last changed when it was not staff (an automatic pause)."
    )
    # The campaign's figures (campaigns.reports.campaign_stats), refreshed while it has activity:
    # the campaign list reads them instead of counting millions of sends per row.
    stats = models.JSONField(default=dict, blank=True, editable=False)
    stats_updated_at = models.DateTimeField(null=True, blank=True, editable=False)
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
    REPAIR_PLAN = "repair_plan", "Outside the repair plan's audience"
    REPAIR_PLAN_CAP = "repair_plan_cap", "Repair plan's daily volume reached"
    ENGAGED_ONLY = "engaged_only", "Not engaged: resumed for engaged contacts only"


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

    # Neither key has an index of its own: the composite indexes below lead with each.
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="sends", db_index=False)
    contact = models.ForeignKey(Contact, null=True, on_delete=models.SET_NULL, related_name="sends", db_index=False)
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
    # The first human open and click (machine ones never count), complaint and unsubscribe.
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "contact"], name="one_send_per_campaign_contact")]
        indexes = [
            models.Index(fields=["campaign", "status", "first_attempt_at"], name="send_campaign_status_time"),
            models.Index(fields=["status", "due_at"], name="send_due"),
            models.Index(fields=["contact", "first_attempt_at"], name="send_contact_recent"),
            # The warm-up cap counts today's first attempts before every claim.
            models.Index(fields=["first_attempt_at"], name="send_first_attempt"),
            models.Index(fields=["message_id"], name="send_message_id"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} → {self.email}"


class CampaignLink(models.Model):
    """A link that was in a campaign's email: clicks redirect only to these (no open redirect)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="links")
    url = models.TextField(help_text="The link as the email had it.")
    url_hash = models.CharField(max_length=64, editable=False)
    target = models.TextField(help_text="Where a click goes: the link, with UTM tags when the campaign adds them.")
    position = models.PositiveIntegerField(help_text="Order of first appearance in the email.")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "url_hash"], name="one_link_per_campaign_url")]

    def __str__(self) -> str:
        return self.url


class EventType(models.TextChoices):
    ACCEPTED = "accepted", "Accepted by the ESP"
    DELIVERED = "delivered", "Delivered"
    DEFERRED = "deferred", "Deferred"
    HARD_BOUNCE = "hard_bounce", "Hard bounce"
    SOFT_BOUNCE = "soft_bounce", "Soft bounce"
    NOT_SENT = "not_sent", "Not sent"
    OPEN = "open", "Open"
    CLICK = "click", "Click"
    COMPLAINT = "complaint", "Spam complaint"
    UNSUBSCRIBE = "unsubscribe", "Unsubscribe"
    AUTO_REPLY = "auto_reply", "Automatic reply"
    OTHER = "other", "Other"


class EventSource(models.TextChoices):
    SMTP = "smtp", "SMTP reply"
    ESP_API = "esp_api", "ESP API"
    WEBHOOK = "webhook", "ESP webhook"
    BOUNCE_MAIL = "bounce_mail", "Bounce or complaint mail"
    TRACKING = "tracking", "Tracking link"
    UNSUBSCRIBE_LINK = "unsubscribe_link", "Unsubscribe link"


class EmailEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("Email events are append-only: they cannot be updated.")


class EmailEvent(models.Model):
    """One thing that happened to a sent message, recorded once (campaigns.events.record_events).

    Append-only. Links to the send, campaign and contact carry no database constraint, so the
    history (and the rates built on it) outlives deleted campaigns and contacts. An event that
    matched no send is kept as orphaned (send is empty).
    """

    type = models.CharField(max_length=16, choices=EventType)
    source = models.CharField(max_length=16, choices=EventSource)
    occurred_at = models.DateTimeField(help_text="When it happened, by the reporter's clock.")
    recorded_at = models.DateTimeField()
    send = models.ForeignKey(
        Send, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="events"
    )
    campaign = models.ForeignKey(
        Campaign,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # email_event_campaign starts with it
        related_name="events",
    )
    contact = models.ForeignKey(
        Contact,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # email_event_contact starts with it
        related_name="email_events",
    )
    recipient = models.CharField(max_length=254, blank=True)
    esp = models.CharField("ESP", max_length=32, blank=True)
    esp_event_id = models.CharField(
        "event id", max_length=255, blank=True, help_text="The reporter's id: the same id twice is one event."
    )
    message_id = models.CharField(max_length=255, blank=True)
    bounce_category = models.CharField(max_length=20, blank=True)
    smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    smtp_reply = models.TextField(blank=True)
    link = models.ForeignKey(
        CampaignLink, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    url = models.TextField(blank=True)
    user_agent = models.TextField(blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    is_machine = models.BooleanField(
        default=False, help_text="A proxy, scanner or prefetcher, not a person: left out of engagement and rates."
    )
    machine_reason = models.CharField(max_length=100, blank=True)
    effect = models.CharField(max_length=255, blank=True, help_text="What recording it changed.")
    payload = models.JSONField(default=dict, blank=True, help_text="What the reporter sent, as it sent it.")

    objects = EmailEventQuerySet.as_manager()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            # One notification may cover several recipients, or events, under one id (Amazon SES).
            models.UniqueConstraint(
                fields=["esp", "esp_event_id", "recipient", "type"],
                condition=~Q(esp_event_id=""),
                name="one_event_per_reporter_id",
            )
        ]
        indexes = [
            # The performance page: counts and the chart per campaign and type.
            models.Index(fields=["campaign", "type", "occurred_at"], name="email_event_campaign"),
            # The contact timeline and the soft-bounce escalation.
            models.Index(fields=["contact", "occurred_at"], name="email_event_contact"),
            # Machine-click bursts and a send's history.
            models.Index(fields=["send", "type"], name="email_event_send"),
        ]

    def __str__(self) -> str:
        return f"{self.get_type_display()} · {self.recipient or 'unknown recipient'}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise TypeError("Email events are append-only: they cannot be changed.")
        super().save(*args, **kwargs)

    @property
    def orphaned(self) -> bool:
        return self.send_id is None


class PayloadKind(models.TextChoices):
    WEBHOOK = "webhook", "ESP webhook"
    BOUNCE_MAIL = "bounce_mail", "Bounce or complaint mail"


class UnprocessedPayload(models.Model):
    """Input that passed authentication but could not be processed: kept, never dropped, for staff to retry."""

    kind = models.CharField(max_length=16, choices=PayloadKind)
    esp = models.CharField("ESP", max_length=32, blank=True)
    content_type = models.CharField(max_length=255, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    body = models.BinaryField()
    error = models.TextField()
    received_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=1)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.esp} at {self.received_at:%Y-%m-%d %H:%M}"


# ---------------------------------------------------------------------------------------------
# One-to-one email and sequences (campaigns/inboxes.py, onetoone.py, sequences.py, imap.py).
# Not marketing email: these never become Sends or EmailEvents and never count towards
# marketing rates or the frequency cap.
# ---------------------------------------------------------------------------------------------


class InboxKind(models.TextChoices):
    CONNECTED = "connected", "Connected mailbox (its own SMTP server)"
    HOSTED = "hosted", "Hosted (Deliverwell's own sending)"


class MailSecurity(models.TextChoices):
    STARTTLS = "starttls", "STARTTLS (usually port 587 or 143)"
    TLS = "tls", "TLS from the start (usually port 465 or 993)"
    NONE = "none", "None (unencrypted: local test servers only)"


class ConnectedInbox(models.Model):
    """A staff member's mailbox for one-to-one email: their own SMTP server, or the hosted path.

    Passwords are stored encrypted (crm.encryption) and never shown again. The IMAP account,
    when given, is read for replies and bounce messages and receives a copy of what was sent.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="connected_inbox")
    kind = models.CharField(max_length=16, choices=InboxKind, default=InboxKind.CONNECTED)
    from_name = models.CharField(max_length=100)
    from_email = models.EmailField(help_text="Your own address: replies and bounce messages come back to it.")
    smtp_host = models.CharField("SMTP host", max_length=255, blank=True)
    smtp_port = models.PositiveIntegerField("SMTP port", default=587)
    smtp_security = models.CharField(
        "SMTP security", max_length=16, choices=MailSecurity, default=MailSecurity.STARTTLS
    )
    smtp_username = models.CharField("SMTP user name", max_length=255, blank=True)
    smtp_password_encrypted = models.TextField(blank=True, editable=False)
    imap_host = models.CharField("IMAP host", max_length=255, blank=True, help_text="Blank: no IMAP account.")
    imap_port = models.PositiveIntegerField("IMAP port", default=993)
    imap_security = models.CharField("IMAP security", max_length=16, choices=MailSecurity, default=MailSecurity.TLS)
    imap_username = models.CharField("IMAP user name", max_length=255, blank=True)
    imap_password_encrypted = models.TextField(blank=True, editable=False)
    imap_folder = models.CharField("IMAP folder to read", max_length=255, default="INBOX")
    imap_sent_folder = models.CharField(
        "IMAP folder for sent copies",
        max_length=255,
        blank=True,
        help_text="Blank: no copy is saved (some providers, such as Gmail, save one themselves).",
    )
    # Where reading stopped: the folder's UIDVALIDITY and the highest UID already read.
    imap_uid_validity = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    imap_last_uid = models.PositiveBigIntegerField(default=0, editable=False)
    imap_read_at = models.DateTimeField(null=True, blank=True, editable=False)
    imap_problem = models.TextField(blank=True, editable=False, help_text="Why the last read failed, if it did.")
    last_test_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_test_result = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "connected inbox"
        verbose_name_plural = "connected inboxes"
        ordering = ["from_email"]

    def __str__(self) -> str:
        return f"{self.from_name} <{self.from_email}>"

    def clean(self) -> None:
        if self.kind == InboxKind.CONNECTED and not self.smtp_host:
            raise ValidationError({"smtp_host": "A connected mailbox needs its SMTP server."})
        if self.imap_host and not self.imap_username:
            raise ValidationError({"imap_username": "The IMAP account needs its user name."})

    @property
    def from_header(self) -> str:
        return f"{self.from_name} <{self.from_email}>"

    @property
    def label(self) -> str:
        """What the timeline says a message went through."""
        if self.kind == InboxKind.HOSTED:
            return f"{self.from_email} (hosted)"
        return f"{self.from_email} via {self.smtp_host}:{self.smtp_port}"

    def has_imap(self) -> bool:
        return bool(self.imap_host and self.imap_username and self.imap_password_encrypted)

    def set_smtp_password(self, password: str) -> None:
        self.smtp_password_encrypted = encryption.encrypt(password) if password else ""

    def smtp_password(self) -> str:
        """The SMTP password; raises encryption.UnreadableSecret if no ENCRYPTION_KEYS key opens it."""
        return encryption.decrypt(self.smtp_password_encrypted) if self.smtp_password_encrypted else ""

    def set_imap_password(self, password: str) -> None:
        self.imap_password_encrypted = encryption.encrypt(password) if password else ""

    def imap_password(self) -> str:
        return encryption.decrypt(self.imap_password_encrypted) if self.imap_password_encrypted else ""


class OneToOneStatus(models.TextChoices):
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    REJECTED = "rejected", "Rejected by the server"
    NOT_SENT = "not_sent", "Not sent"
    BOUNCED = "bounced", "Bounced"


class OneToOneEmail(models.Model):
    """One message a staff member sent to one contact from their inbox (or a sequence's step)."""

    contact = models.ForeignKey(Contact, null=True, on_delete=models.SET_NULL, related_name="one_to_one_emails")
    email = models.CharField(max_length=254, help_text="The normalized address it went to.")
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    inbox = models.ForeignKey(ConnectedInbox, null=True, on_delete=models.SET_NULL, related_name="emails")
    inbox_label = models.CharField(max_length=300, help_text="The inbox as it was when the message went.")
    subject = models.CharField(max_length=250)
    body = models.TextField(help_text="As the contact got it.")
    reply_to = models.EmailField(blank=True)
    fingerprint = models.CharField(
        max_length=64, editable=False, help_text="The text before personalization: the same text to many is bulk."
    )
    enrollment = models.ForeignKey(
        "SequenceEnrollment", null=True, blank=True, on_delete=models.SET_NULL, related_name="emails"
    )
    step = models.ForeignKey("SequenceStep", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    message_id = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=OneToOneStatus, default=OneToOneStatus.SENDING)
    smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    smtp_reply = models.TextField(blank=True, help_text="What the server said, word for word.")
    bounce_category = models.CharField(max_length=20, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    bounce_reply = models.TextField(blank=True, help_text="The bounce message's diagnostic.")
    replied_at = models.DateTimeField(null=True, blank=True)
    reply_subject = models.CharField(max_length=250, blank=True)
    sent_at = models.DateTimeField()

    class Meta:
        ordering = ["-sent_at", "-id"]
        verbose_name = "one-to-one email"
        constraints = [
            # A sequence step goes to an enrollment once, even when the job runs twice; an attempt
            # that never reached the server (not sent) may be made again.
            models.UniqueConstraint(
                fields=["enrollment", "step"],
                condition=~Q(status="not_sent"),
                name="one_email_per_enrollment_step",
            )
        ]
        indexes = [
            models.Index(fields=["contact", "sent_at"], name="onetoone_contact"),
            # The bulk guard counts recent messages with the same text.
            models.Index(fields=["fingerprint", "sent_at"], name="onetoone_fingerprint"),
            models.Index(fields=["message_id"], name="onetoone_message_id"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} → {self.email}"


class Sequence(models.Model):
    """A series of one-to-one emails with delays, sent from the enrolling staff member's inbox."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True, help_text="Inactive: no new enrollments; enrolled contacts pause.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SequenceStep(models.Model):
    sequence = models.ForeignKey(Sequence, on_delete=models.CASCADE, related_name="steps")
    day = models.PositiveIntegerField(help_text="Days after enrollment (0: right away), then the next business hour.")
    subject = models.CharField(max_length=250)
    body = models.TextField(
        help_text="Plain text with the same personalization as campaigns ({{ contact.first_name }})."
    )

    class Meta:
        ordering = ["sequence", "day"]
        constraints = [models.UniqueConstraint(fields=["sequence", "day"], name="one_step_per_sequence_day")]

    def __str__(self) -> str:
        return f"Day {self.day}: {self.subject}"


class EnrollmentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    FINISHED = "finished", "Finished"
    STOPPED = "stopped", "Stopped"


class StopReason(models.TextChoices):
    REPLIED = "replied", "The contact replied"
    BOUNCED = "bounced", "A message bounced"
    UNSUBSCRIBED = "unsubscribed", "The contact unsubscribed"
    REFUSED = "refused", "The contact may not be emailed"
    NO_INBOX = "no_inbox", "The sender has no connected inbox"
    MANUAL = "manual", "Stopped by staff"


class EnrollmentQuerySet(models.QuerySet):
    def stop(self, *, reason: str, now: datetime, by=None) -> int:
        """Stop the active enrollments among these; return how many were stopped."""
        return self.filter(status=EnrollmentStatus.ACTIVE).update(
            status=EnrollmentStatus.STOPPED, stop_reason=reason, stopped_by=by, ended_at=now, next_due_at=None
        )


class SequenceEnrollment(models.Model):
    sequence = models.ForeignKey(Sequence, on_delete=models.CASCADE, related_name="enrollments")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="sequence_enrollments")
    enrolled_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=EnrollmentStatus, default=EnrollmentStatus.ACTIVE)
    next_step = models.ForeignKey(SequenceStep, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    next_due_at = models.DateTimeField(null=True, blank=True, help_text="When the next step goes.")
    stop_reason = models.CharField(max_length=16, choices=StopReason, blank=True)
    stopped_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    enrolled_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    objects = EnrollmentQuerySet.as_manager()

    class Meta:
        ordering = ["-enrolled_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["sequence", "contact"],
                condition=Q(status="active"),
                name="one_active_enrollment_per_sequence",
            )
        ]
        indexes = [models.Index(fields=["status", "next_due_at"], name="enrollment_due")]

    def __str__(self) -> str:
        return f"{self.contact} in {self.sequence}"
