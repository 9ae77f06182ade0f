from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from crm.models import Contact
from deliverability.domains import Level, combination_findings, normalize_domain
from deliverability.esps import ESPS, Transport


class SenderType(models.TextChoices):
    SHARED = "shared", "Shared sending IPs"
    DEDICATED = "dedicated", "Dedicated IP"


class CheckStatus(models.TextChoices):
    PASS = "pass", "Pass"
    WARNING = "warning", "Warning"
    FAIL = "fail", "Fail"
    UNCHECKABLE = "uncheckable", "Could not check"
    NOT_APPLICABLE = "n/a", "Not applicable"
    NOT_CHECKED = "not_checked", "Not checked yet"


class RecordKind(models.TextChoices):
    SPF = "spf", "SPF"
    DKIM = "dkim", "DKIM"
    DMARC = "dmarc", "DMARC"
    SPF_ALIGNMENT = "spf_alignment", "SPF alignment"
    DKIM_ALIGNMENT = "dkim_alignment", "DKIM alignment"
    FROM_DOMAIN = "from_domain", "From domain (MX, CNAME)"
    RETURN_PATH = "return_path", "Return path"
    PTR = "ptr", "Reverse DNS (PTR)"
    BIMI = "bimi", "BIMI"


class SendingDomain(models.Model):
    domain = models.CharField(
        max_length=253, unique=True, help_text="The domain in the From address, e.g. news.example.com."
    )
    content_domains = models.TextField(
        blank=True,
        help_text="Domains that host your website, blog or landing pages, one per line (e.g. www.example.com).",
    )
    sender_type = models.CharField(max_length=16, choices=SenderType, default=SenderType.SHARED)
    transport = models.CharField(max_length=16, choices=Transport, default=Transport.SMTP)
    spf_include = models.CharField(
        "SPF include",
        max_length=253,
        blank=True,
        help_text="The SPF include your ESP asks for. Blank: the ESP's standard include.",
    )
    return_path_domain = models.CharField(
        max_length=253,
        blank=True,
        help_text="Dedicated IP only: the envelope (bounce) domain, e.g. bounces.news.example.com.",
    )
    return_path_target = models.CharField(
        max_length=253,
        blank=True,
        help_text="Where the return-path domain points: the CNAME target your ESP shows. "
        "Blank on direct SMTP: an MX to BOUNCE_MX_HOST.",
    )
    dmarc_report_address = models.EmailField(
        "DMARC report address",
        blank=True,
        help_text="Where DMARC aggregate reports go (rua). Blank: dmarc-reports@ your root domain.",
    )
    bimi_logo_url = models.URLField("BIMI logo URL", blank=True, help_text="HTTPS URL of the SVG Tiny PS logo.")
    bimi_certificate_url = models.URLField(
        "BIMI certificate URL", blank=True, help_text="HTTPS URL of the VMC or CMC certificate (PEM)."
    )
    status = models.CharField(max_length=16, choices=CheckStatus, default=CheckStatus.NOT_CHECKED, editable=False)
    record_statuses = models.JSONField(default=dict, editable=False)
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain

    def clean(self) -> None:
        errors = {}
        for field in ("domain", "return_path_domain", "return_path_target", "spf_include"):
            value = getattr(self, field)
            if value:
                try:
                    setattr(self, field, normalize_domain(value))
                except ValidationError as exc:
                    errors[field] = exc.messages
        try:
            self.content_domains = "\n".join(self.content_domain_list(strict=True))
        except ValidationError as exc:
            errors["content_domains"] = exc.messages
        if self.transport == Transport.OTHER and not self.spf_include and self.sender_type == SenderType.SHARED:
            errors["spf_include"] = ["Name the SPF include your ESP asks for."]
        if errors:
            raise ValidationError(errors)
        refused = [f.message for f in self.findings() if f.level == Level.ERROR]
        if refused:
            raise ValidationError(refused)

    def content_domain_list(self, *, strict: bool = False) -> list[str]:
        names = []
        for line in self.content_domains.replace(",", "\n").splitlines():
            if not line.strip():
                continue
            try:
                names.append(normalize_domain(line))
            except ValidationError:
                if strict:
                    raise
        return list(dict.fromkeys(names))

    def findings(self):
        return combination_findings(
            domain=self.domain,
            content_domains=self.content_domain_list(),
            dedicated_ip=self.sender_type == SenderType.DEDICATED,
            return_path_domain=self.return_path_domain,
        )

    @property
    def envelope_domain(self) -> str:
        """The domain of the Return-Path our mail carries: what SPF checks and aligns."""
        if self.return_path_domain:
            return self.return_path_domain
        if self.transport == Transport.SMTP:
            return self.domain
        return ESPS[self.transport].envelope_domain

    def failing_records(self) -> list[str]:
        return [
            f"{RecordKind(kind).label}: {result['summary']}"
            for kind, result in self.record_statuses.items()
            if result["status"] == CheckStatus.FAIL
        ]


class KeyAlgorithm(models.TextChoices):
    RSA = "rsa", "RSA-2048"
    ED25519 = "ed25519", "Ed25519"


class KeyState(models.TextChoices):
    PENDING = "pending", "Published, not signing yet"
    ACTIVE = "active", "Signing"
    RETIRING = "retiring", "Replaced, keep published"
    RETIRED = "retired", "Retired, may be removed from DNS"


class DkimKey(models.Model):
    """A DKIM selector on a sending domain: our own key pair, or an ESP's CNAME."""

    domain = models.ForeignKey(SendingDomain, on_delete=models.CASCADE, related_name="dkim_keys")
    selector = models.CharField(max_length=63)
    algorithm = models.CharField(max_length=8, choices=KeyAlgorithm, default=KeyAlgorithm.RSA)
    key_bits = models.PositiveIntegerField(null=True, blank=True, editable=False)
    public_key = models.TextField(blank=True, editable=False, help_text="The p= value, base64.")
    private_key_encrypted = models.TextField(blank=True, editable=False)
    cname_target = models.CharField(
        max_length=253, blank=True, help_text="ESP-managed DKIM: the CNAME target the ESP shows for this selector."
    )
    state = models.CharField(max_length=8, choices=KeyState, default=KeyState.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True, editable=False)
    retired_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["domain", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "selector"], name="dkim_selector_unique_per_domain"),
            models.UniqueConstraint(
                fields=["domain", "algorithm"],
                condition=models.Q(state="active", cname_target=""),
                name="one_active_dkim_key_per_algorithm",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.selector}._domainkey.{self.domain.domain}"

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain.domain}"

    @property
    def is_ours(self) -> bool:
        return bool(self.public_key)

    def record_value(self) -> str:
        return f"v=DKIM1; k={self.algorithm}; p={self.public_key}"


class DomainCheck(models.Model):
    """One record's result in one check run: the domain's history."""

    domain = models.ForeignKey(SendingDomain, on_delete=models.CASCADE, related_name="checks")
    checked_at = models.DateTimeField()
    record = models.CharField(max_length=16, choices=RecordKind)
    status = models.CharField(max_length=16, choices=CheckStatus)
    summary = models.CharField(max_length=300)
    explanation = models.TextField(blank=True)
    found = models.TextField(blank=True, help_text="What DNS answered.")

    class Meta:
        ordering = ["-checked_at", "record"]
        indexes = [models.Index(fields=["domain", "-checked_at"], name="domaincheck_domain_recent")]

    def __str__(self) -> str:
        return f"{self.domain} {self.get_record_display()}: {self.get_status_display()}"


class DomainAlertQuerySet(models.QuerySet):
    def open(self) -> DomainAlertQuerySet:
        return self.filter(acknowledged_at=None, resolved_at=None)


class DomainAlert(models.Model):
    """A record that passed and now fails: shown in the admin until staff acknowledge it."""

    domain = models.ForeignKey(SendingDomain, on_delete=models.CASCADE, related_name="alerts")
    record = models.CharField(max_length=16, choices=RecordKind)
    raised_at = models.DateTimeField()
    summary = models.CharField(max_length=300)
    resolved_at = models.DateTimeField(null=True, blank=True, help_text="When the record passed again.")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = DomainAlertQuerySet.as_manager()

    class Meta:
        ordering = ["-raised_at"]

    def __str__(self) -> str:
        return f"{self.domain}: {self.get_record_display()} fails"


class Severity(models.TextChoices):
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class HealthAlertKind(models.TextChoices):
    OPEN_RATE_LOW = "open_rate_low", "Open rate below the critical threshold"
    OPEN_RATE_DROP = "open_rate_drop", "Open rate dropped against its baseline"
    BAD_SEND = "bad_send", "Campaign paused by the bad-send guard"


DOMAIN_ALERT_KINDS = [HealthAlertKind.OPEN_RATE_LOW, HealthAlertKind.OPEN_RATE_DROP]


class HealthAlertQuerySet(models.QuerySet):
    def unresolved(self) -> HealthAlertQuerySet:
        return self.filter(resolved_at=None)

    def needing_attention(self) -> HealthAlertQuerySet:
        return self.filter(resolved_at=None, acknowledged_at=None)


class HealthAlert(models.Model):
    """A sender-health problem the jobs found: a domain's open rate, or a campaign's bad send.

    It stays unresolved while the problem lasts (the jobs resolve it); staff acknowledge it to
    say they have seen it. At most one unresolved alert per domain and kind, and per campaign.
    """

    domain = models.ForeignKey(
        SendingDomain, null=True, blank=True, on_delete=models.CASCADE, related_name="health_alerts"
    )
    campaign = models.ForeignKey(
        "campaigns.Campaign", null=True, blank=True, on_delete=models.CASCADE, related_name="health_alerts"
    )
    kind = models.CharField(max_length=16, choices=HealthAlertKind)
    severity = models.CharField(max_length=8, choices=Severity)
    summary = models.CharField(max_length=300)
    metrics = models.JSONField(default=dict, blank=True, help_text="The figures that raised it.")
    raised_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = HealthAlertQuerySet.as_manager()

    class Meta:
        ordering = ["-raised_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["domain", "kind"],
                condition=models.Q(resolved_at=None, kind__in=DOMAIN_ALERT_KINDS),
                name="one_unresolved_health_alert_per_domain",
            ),
            models.UniqueConstraint(
                fields=["campaign"],
                condition=models.Q(resolved_at=None, kind=HealthAlertKind.BAD_SEND),
                name="one_unresolved_bad_send_alert_per_campaign",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign or self.domain}: {self.summary}"


class DailyMetrics(models.Model):
    """One sending domain's outcomes on one day (UTC), counted by the day they happened.

    Written by deliverability.health.roll_up_daily_metrics; the open-rate evaluation, the repair
    plan's completion and the dashboard read these rows, never the event table.
    """

    domain = models.ForeignKey(SendingDomain, on_delete=models.CASCADE, related_name="daily_metrics")
    day = models.DateField()
    sent = models.PositiveIntegerField(
        default=0, help_text="Handed over with a result: accepted, delivered, bounced or not sent (not deferrals)."
    )
    delivered = models.PositiveIntegerField(default=0)
    not_sent = models.PositiveIntegerField(default=0)
    hard_bounces = models.PositiveIntegerField(default=0)
    soft_bounces = models.PositiveIntegerField(default=0)
    bounce_categories = models.JSONField(
        default=dict, blank=True, help_text='Bounces by category: {"unknown_user": {"hard": 3, "soft": 0}, …}.'
    )
    human_opens = models.PositiveIntegerField(default=0, help_text="Messages a person opened (each once a day).")
    machine_opens = models.PositiveIntegerField(default=0, help_text="Opens by proxies, scanners and prefetchers.")
    clicks = models.PositiveIntegerField(default=0, help_text="Messages a person clicked in (each once a day).")
    complaints = models.PositiveIntegerField(default=0)
    unsubscribes = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "daily metrics"
        ordering = ["domain", "day"]
        constraints = [models.UniqueConstraint(fields=["domain", "day"], name="one_daily_metrics_per_domain_day")]

    def __str__(self) -> str:
        return f"{self.domain} on {self.day}"

    @staticmethod
    def rate(count: int, base: int) -> float | None:
        """count / base, or None when there is no base."""
        return count / base if base else None

    @property
    def delivery_rate(self) -> float | None:
        return self.rate(self.delivered, self.sent)

    @property
    def bounce_rate(self) -> float | None:
        return self.rate(self.hard_bounces + self.soft_bounces, self.sent)

    @property
    def hard_bounce_rate(self) -> float | None:
        return self.rate(self.hard_bounces, self.sent)

    @property
    def open_rate(self) -> float | None:
        return self.rate(self.human_opens, self.delivered)

    @property
    def click_rate(self) -> float | None:
        return self.rate(self.clicks, self.delivered)

    @property
    def complaint_rate(self) -> float | None:
        return self.rate(self.complaints, self.delivered)

    @property
    def unsubscribe_rate(self) -> float | None:
        return self.rate(self.unsubscribes, self.delivered)


class EvaluationStatus(models.TextChoices):
    HEALTHY = "healthy", "Healthy"
    LOW = "low", "Below the critical open rate"
    DROPPED = "dropped", "Dropped against the baseline"
    INSUFFICIENT = "insufficient", "Not enough deliveries to judge"


class HealthEvaluation(models.Model):
    """A sending domain's daily open-rate evaluation: the rolling window's human open rate and its verdict."""

    domain = models.ForeignKey(SendingDomain, on_delete=models.CASCADE, related_name="evaluations")
    day = models.DateField(help_text="The day of the evaluation.")
    window_start = models.DateField()
    window_end = models.DateField(help_text="The first day after the window (the last hours are left out).")
    delivered = models.PositiveIntegerField()
    human_opens = models.PositiveIntegerField()
    open_rate = models.FloatField(null=True, blank=True)
    baseline_delivered = models.PositiveIntegerField()
    baseline_open_rate = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=EvaluationStatus)
    low_streak = models.PositiveSmallIntegerField(
        default=0, help_text="Consecutive daily evaluations below the critical open rate, this one included."
    )
    evaluated_at = models.DateTimeField()

    class Meta:
        ordering = ["domain", "day"]
        constraints = [models.UniqueConstraint(fields=["domain", "day"], name="one_evaluation_per_domain_day")]

    def __str__(self) -> str:
        return f"{self.domain} on {self.day}: {self.get_status_display()}"


class PlanStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    ENDED = "ended", "Ended by staff"


OPEN_PLAN_STATUSES = [PlanStatus.ACTIVE, PlanStatus.PAUSED]


class ReputationRepairPlan(models.Model):
    """A sending domain's way back to the inbox: mail the most engaged contacts first, step by step.

    The steps and their rules live in deliverability/repair.py; while the plan is active the send
    gate keeps the domain's campaigns to the step's audience and daily volume.
    """

    domain = models.ForeignKey(SendingDomain, on_delete=models.CASCADE, related_name="repair_plans")
    status = models.CharField(max_length=16, choices=PlanStatus, default=PlanStatus.ACTIVE)
    step = models.PositiveSmallIntegerField(default=1)
    step_started_at = models.DateTimeField()
    started_at = models.DateTimeField()
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty: started by a critical alert.",
    )
    alert = models.ForeignKey(HealthAlert, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.TextField(help_text="Why the plan started.")
    finished_at = models.DateTimeField(null=True, blank=True)
    progress = models.JSONField(
        default=dict, blank=True, help_text="The current step's figures at the last daily evaluation."
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["domain"],
                condition=models.Q(status__in=OPEN_PLAN_STATUSES),
                name="one_open_repair_plan_per_domain",
            )
        ]

    def __str__(self) -> str:
        return f"Repair plan for {self.domain} ({self.get_status_display().lower()})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_PLAN_STATUSES

    def days_on_step(self, now: datetime) -> int:
        return (now - self.step_started_at).days


class TransitionKind(models.TextChoices):
    STARTED = "started", "Started"
    ADVANCED = "advanced", "Advanced"
    STEPPED_BACK = "stepped_back", "Stepped back"
    PAUSED = "paused", "Paused"
    RESUMED = "resumed", "Resumed"
    COMPLETED = "completed", "Completed"
    ENDED = "ended", "Ended"


class RepairPlanTransition(models.Model):
    """One change of a repair plan, with what caused it: the log staff read on the plan's page."""

    plan = models.ForeignKey(ReputationRepairPlan, on_delete=models.CASCADE, related_name="transitions")
    kind = models.CharField(max_length=16, choices=TransitionKind)
    from_step = models.PositiveSmallIntegerField(null=True, blank=True)
    to_step = models.PositiveSmallIntegerField()
    reason = models.TextField()
    metrics = models.JSONField(default=dict, blank=True)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty: the daily evaluation.",
    )
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.plan.domain}: {self.get_kind_display()} to step {self.to_step}"


class SunsetCandidate(Contact):
    """Contacts the sunset rule offers to staff for suppression (deliverability.health.sunset_candidates)."""

    class Meta:
        proxy = True
        verbose_name = "sunset candidate"
        verbose_name_plural = "sunset review"
