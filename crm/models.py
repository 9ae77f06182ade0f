from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from crm.addresses import parse_address


class ContactSource(models.TextChoices):
    FORM = "form", "Signup form"
    IMPORT = "import", "Import"
    ADMIN = "admin", "Admin"
    API = "api", "API"


class EngagementStatus(models.TextChoices):
    NEW = "new", "New"
    ENGAGED = "engaged", "Engaged"
    UNENGAGED = "unengaged", "Unengaged"


class EmailStatus(models.TextChoices):
    OK = "ok", "OK"
    HARD_BOUNCED = "hard_bounced", "Hard-bounced"
    COMPLAINED = "complained", "Complained"
    INVALID = "invalid", "Invalid"


def validate_time_zone(value: str) -> None:
    if value and value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone (use an IANA name such as Europe/Berlin).")


class Contact(models.Model):
    email = models.CharField(max_length=254, help_text="The address as the person gave it.")
    email_normalized = models.CharField(
        max_length=254,
        unique=True,
        editable=False,
        help_text="Lowercased, ASCII domain: the key for duplicates and suppression.",
    )
    is_role_address = models.BooleanField(
        default=False, editable=False, help_text="A function mailbox such as postmaster@ or noreply@."
    )
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    company = models.CharField(max_length=200, blank=True)
    phone = models.CharField(max_length=50, blank=True)
    time_zone = models.CharField(max_length=64, blank=True, validators=[validate_time_zone])
    language = models.CharField(max_length=16, blank=True, help_text="A language tag such as en or pt-BR.")
    properties = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=16, choices=ContactSource, default=ContactSource.ADMIN)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Engagement, maintained by the send pipeline and event recording.
    last_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_open_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Human opens only; machine opens never count."
    )
    last_click_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_engaged_at = models.DateTimeField(null=True, blank=True, editable=False)
    sends_since_engagement = models.PositiveIntegerField(default=0, editable=False)
    engagement_status = models.CharField(
        max_length=16, choices=EngagementStatus, default=EngagementStatus.NEW, editable=False
    )

    email_status = models.CharField(max_length=16, choices=EmailStatus, default=EmailStatus.OK)
    unsubscribed_from_all_at = models.DateTimeField(null=True, blank=True, editable=False)
    do_not_contact = models.BooleanField(
        "Do not contact",
        default=False,
        # Also a database default: set-based inserts (imports) that name no value for it stay valid.
        db_default=False,
        help_text="The person asked not to be contacted at all: no marketing email and no one-to-one email.",
    )

    class Meta:
        indexes = [
            # The admin list sorts newest first; Django adds -pk for a stable order.
            models.Index(fields=["-created_at", "-id"], name="crm_contact_created_idx"),
            models.Index(fields=["engagement_status", "-created_at"], name="crm_contact_engagement_idx"),
            models.Index(fields=["email_status", "-created_at"], name="crm_contact_emailstatus_idx"),
            models.Index(fields=["source", "-created_at"], name="crm_contact_source_idx"),
        ]

    def __str__(self) -> str:
        return self.email

    def save(self, *args, **kwargs) -> None:
        self.set_address(self.email)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        super().clean()
        try:
            self.set_address(self.email)
        except ValidationError as exc:
            raise ValidationError({"email": exc.messages}) from None
        duplicate = Contact.objects.filter(email_normalized=self.email_normalized).exclude(pk=self.pk)
        if duplicate.exists():
            raise ValidationError({"email": f"A contact with the address {self.email_normalized} already exists."})

    def set_address(self, raw: str) -> None:
        """Set the address and its normalized key; raises ValidationError if it is not valid."""
        address = parse_address(raw)
        self.email = address.given
        self.email_normalized = address.normalized
        self.is_role_address = address.is_role

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    def is_unsubscribed_from_all(self) -> bool:
        return self.unsubscribed_from_all_at is not None

    def is_suppressed(self) -> bool:
        return Suppression.objects.filter(email=self.email_normalized).exists()


class SubscriptionType(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    public = models.BooleanField(default=True, help_text="Shown on signup forms and the preference center.")
    requires_double_opt_in = models.BooleanField(default=True)
    active = models.BooleanField(default=True, help_text="Inactive types receive no marketing email.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SubscriptionStatus(models.TextChoices):
    PENDING = "pending", "Pending confirmation"
    SUBSCRIBED = "subscribed", "Subscribed"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"


class Subscription(models.Model):
    # Both keys are served by the composite indexes below; single-column ones would only slow writes.
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="subscriptions", db_index=False)
    subscription_type = models.ForeignKey(
        SubscriptionType, on_delete=models.PROTECT, related_name="subscriptions", db_index=False
    )
    status = models.CharField(max_length=16, choices=SubscriptionStatus, default=SubscriptionStatus.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    requested_at = models.DateTimeField(
        null=True, blank=True, help_text="When the pending request was made (signup or preference change)."
    )
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)
    subscribed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["contact", "subscription_type"], name="crm_subscription_once_per_type")
        ]
        indexes = [
            # Audience building and the admin's subscription filter look up by type and status.
            models.Index(fields=["subscription_type", "status", "contact"], name="crm_subscription_type_idx"),
            # The clean-up of never-confirmed requests reads pending rows by age.
            models.Index(fields=["status", "requested_at"], name="crm_subscription_pending_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.contact} · {self.subscription_type} · {self.get_status_display()}"


class ConsentAction(models.TextChoices):
    GRANTED = "granted", "Granted"
    CONFIRMED = "confirmed", "Confirmed"
    WITHDRAWN = "withdrawn", "Withdrawn"


class ConsentMethod(models.TextChoices):
    FORM = "form", "Signup form"
    DOUBLE_OPT_IN = "double_opt_in", "Double opt-in"
    IMPORT = "import", "Import"
    STAFF = "staff", "Staff"
    API = "api", "API"
    UNSUBSCRIBE_LINK = "unsubscribe_link", "Unsubscribe link"
    PREFERENCE_CENTER = "preference_center", "Preference center"
    ESP_EVENT = "esp_event", "ESP event"


class LawfulBasis(models.TextChoices):
    CONSENT = "consent", "Consent"
    LEGITIMATE_INTEREST = "legitimate_interest", "Legitimate interest"
    CONTRACT = "contract", "Contract"
    NOT_APPLICABLE = "not_applicable", "Not applicable"


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("Consent records are append-only: they cannot be updated.")

    def delete(self):
        raise TypeError("Consent records are append-only: they cannot be deleted.")


class ConsentRecord(models.Model):
    """One entry of the append-only consent log.

    The contact link is kept without a database constraint and without cascading: deleting a
    contact must not delete the proof of what they agreed to, so `email` carries the
    normalized address alongside.
    """

    contact = models.ForeignKey(
        Contact,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # crm_consent_contact_idx starts with it
        related_name="consent_records",
    )
    email = models.CharField(max_length=254, db_index=True, help_text="Normalized address at the time.")
    subscription_type = models.ForeignKey(
        SubscriptionType,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="consent_records",
        help_text="Empty means all marketing email.",
    )
    action = models.CharField(max_length=16, choices=ConsentAction)
    method = models.CharField(max_length=24, choices=ConsentMethod)
    lawful_basis = models.CharField(max_length=24, choices=LawfulBasis, default=LawfulBasis.CONSENT)
    source_detail = models.CharField(
        max_length=255, blank=True, help_text="Which form, import job or staff user this came from."
    )
    staff_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    signup_form = models.ForeignKey(
        "SignupForm",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        db_index=False,  # crm_consent_form_idx starts with it
        related_name="consent_records",
    )
    consent_text = models.TextField(blank=True, help_text="The exact words shown, or their version.")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True, help_text="Evidence carried over from another system.")
    created_at = models.DateTimeField(db_index=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The eligibility rule reads each contact's latest record; the change page lists them.
            models.Index(fields=["contact", "-created_at", "-id"], name="crm_consent_contact_idx"),
            # The signup form list counts submissions and confirmations per form.
            models.Index(fields=["signup_form", "action"], name="crm_consent_form_idx"),
        ]

    def __str__(self) -> str:
        scope = self.subscription_type or "all marketing email"
        return f"{self.email}: {self.get_action_display()} for {scope} ({self.get_method_display()})"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise TypeError("Consent records are append-only: they cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("Consent records are append-only: they cannot be deleted.")


class SuppressionReason(models.TextChoices):
    HARD_BOUNCE = "hard_bounce", "Hard bounce"
    COMPLAINT = "complaint", "Spam complaint"
    UNSUBSCRIBE = "unsubscribe", "Unsubscribed from all"
    IMPORTED_UNSUBSCRIBE = "imported_unsubscribe", "Imported unsubscribe"
    IMPORTED_CLEANED = "imported_cleaned", "Imported cleaned"
    UNENGAGED_SUNSET = "unengaged_sunset", "Unengaged sunset"
    MANUAL = "manual", "Manual"


class Suppression(models.Model):
    """An address that must not get marketing email, whatever contact row it is on.

    Keyed by the normalized address, not by contact: deleting and re-importing a contact, or
    importing the same person from a second ESP, never brings a suppressed address back.
    """

    email = models.CharField(max_length=254, help_text="Normalized address.")
    reason = models.CharField(max_length=24, choices=SuppressionReason)
    source = models.CharField(max_length=255, blank=True, help_text="What suppressed it: a campaign, import, user.")
    note = models.TextField(blank=True)
    occurred_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When it happened at the source, e.g. the unsubscribe time in an imported file.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["email", "reason"], name="crm_suppression_once_per_reason")]
        indexes = [
            # The admin searches suppressions by the start of the address (LIKE 'x%').
            models.Index(fields=["email"], name="crm_suppression_prefix_idx", opclasses=["varchar_pattern_ops"]),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.get_reason_display()})"

    def clean(self) -> None:
        super().clean()
        try:
            self.email = parse_address(self.email).normalized
        except ValidationError as exc:
            raise ValidationError({"email": exc.messages}) from None


class SignupForm(models.Model):
    """A public signup form at /subscribe/<slug>/, embeddable in an iframe."""

    slug = models.SlugField(unique=True, help_text="The form lives at /subscribe/<slug>/.")
    title = models.CharField(max_length=200)
    intro = models.TextField(blank=True, help_text="Shown above the fields.")
    ask_first_name = models.BooleanField(default=True)
    ask_last_name = models.BooleanField(default=False)
    ask_company = models.BooleanField(default=False)
    subscription_types = models.ManyToManyField(SubscriptionType, through="SignupFormOffer", related_name="+")
    consent_text = models.TextField(
        help_text="The exact words a person agrees to. Stored with every consent the form produces."
    )
    double_opt_in = models.BooleanField(
        default=True, help_text="Send a confirmation link before subscribing (recommended)."
    )
    success_text = models.TextField(
        default="Thank you! If this address can receive our email, a message is on its way to it.",
        help_text="Shown after a submission; the same for every address, so nobody learns who is on a list.",
    )
    confirmed_redirect_url = models.URLField(
        blank=True, help_text="Optional: where to send people after they confirm (e.g. a thank-you page)."
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return f"/subscribe/{self.slug}/"


class SignupFormOffer(models.Model):
    """A subscription type a signup form offers, ticked in advance or not."""

    signup_form = models.ForeignKey(SignupForm, on_delete=models.CASCADE, related_name="offers")
    subscription_type = models.ForeignKey(SubscriptionType, on_delete=models.PROTECT, related_name="+")
    pre_ticked = models.BooleanField(default=False)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["signup_form", "subscription_type"], name="crm_offer_once_per_form")
        ]

    def __str__(self) -> str:
        return f"{self.signup_form} offers {self.subscription_type}"


class PendingSubscription(Subscription):
    """Subscriptions waiting for double opt-in confirmation (an admin view of Subscription)."""

    class Meta:
        proxy = True
        verbose_name = "pending confirmation"
        verbose_name_plural = "pending confirmations"


class ImportBasis(models.TextChoices):
    EVIDENCE = "evidence", "Evidence in the file (subscribe only rows that prove opt-in)"
    ATTESTED = "attested", "Attested by staff for the whole file"
    NONE = "none", "No consent (create contacts without subscriptions)"


class FieldPolicy(models.TextChoices):
    FILL_BLANKS = "fill", "Fill blank fields of existing contacts"
    OVERWRITE = "overwrite", "Overwrite fields of existing contacts"
    SKIP = "skip", "Leave existing contacts' fields alone"


class ImportStatus(models.TextChoices):
    PENDING = "pending", "Waiting"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class ImportJob(models.Model):
    """One import of one uploaded file (a CSV or a ZIP of CSVs), with its outcome."""

    file_name = models.CharField(max_length=255)
    file_path = models.CharField(max_length=1024, help_text="Where the uploaded file is kept until the job ends.")
    preset = models.CharField(max_length=32)
    column_mapping = models.JSONField(default=dict, blank=True, help_text="Generic CSVs: field → column.")
    subscription_types = models.ManyToManyField(SubscriptionType, blank=True, related_name="+")
    basis = models.CharField(max_length=16, choices=ImportBasis, default=ImportBasis.EVIDENCE)
    lawful_basis = models.CharField(max_length=24, choices=LawfulBasis, default=LawfulBasis.CONSENT)
    attestation = models.TextField(blank=True, help_text="For attested imports: the basis staff attest to.")
    field_policy = models.CharField(max_length=16, choices=FieldPolicy, default=FieldPolicy.FILL_BLANKS)
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=ImportStatus, default=ImportStatus.PENDING)
    counts = models.JSONField(default=dict, blank=True)
    rows_read = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="How many times a worker started this job.")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="When a worker last reported progress.")
    message = models.TextField(blank=True, help_text="Why the job failed, if it did.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Import #{self.pk}: {self.file_name}"


class ImportProblem(models.Model):
    """A row an import could not take, with its line number and reason."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="problems")
    file_name = models.CharField(max_length=255)
    line = models.PositiveIntegerField()
    column = models.CharField(max_length=255, blank=True)
    value = models.CharField(max_length=255, blank=True)
    reason = models.CharField(max_length=255)

    class Meta:
        ordering = ["job", "file_name", "line", "id"]

    def __str__(self) -> str:
        return f"{self.file_name} line {self.line}: {self.reason}"
