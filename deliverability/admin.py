from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from campaigns import admin as campaigns_admin
from campaigns import pipeline
from campaigns import tasks as campaign_tasks
from campaigns.models import Campaign, Send
from crm.admin import short_datetime
from crm.models import Contact
from crm.pagination import EstimatedCountPaginator
from deliverability import dashboard, dns_checks, health, records, repair, signing, tasks
from deliverability.domains import Level
from deliverability.esps import Transport
from deliverability.models import (
    OPEN_PLAN_STATUSES,
    CheckStatus,
    DkimKey,
    DomainAlert,
    DomainCheck,
    HealthAlert,
    KeyAlgorithm,
    KeyState,
    PlanStatus,
    RecordKind,
    RepairPlanTransition,
    ReputationRepairPlan,
    SendingDomain,
    Severity,
    SunsetCandidate,
)

_BADGE = '<span class="dw-badge dw-{}" title="{}">{}</span>'
_STATUS_STYLE = {
    CheckStatus.PASS: "subscribed",
    CheckStatus.WARNING: "warning",
    CheckStatus.FAIL: "danger",
    CheckStatus.UNCHECKABLE: "pending",
    CheckStatus.NOT_APPLICABLE: "muted",
    CheckStatus.NOT_CHECKED: "muted",
}
_LIST_RECORDS = [RecordKind.SPF, RecordKind.DKIM, RecordKind.DMARC, RecordKind.SPF_ALIGNMENT, RecordKind.DKIM_ALIGNMENT]


def status_badge(status: str, title: str = "", text: str = "") -> str:
    return format_html(_BADGE, _STATUS_STYLE.get(status, "muted"), title, text or CheckStatus(status).label)


class DkimKeyInline(admin.TabularInline):
    model = DkimKey
    verbose_name = "DKIM selector"
    verbose_name_plural = "DKIM selectors"
    fields = ["selector", "algorithm", "key_bits", "cname_target", "state", "activated", "next_step"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Signing since")
    def activated(self, key: DkimKey) -> str:
        return short_datetime(key.activated_at)

    @admin.display(description="")
    def next_step(self, key: DkimKey) -> str:
        if key.state == KeyState.PENDING:
            url = reverse("admin:deliverability_dkimkey_activate", args=[key.pk])
            return format_html('<a class="button" href="{}">Switch on…</a>', url)
        if key.state == KeyState.RETIRING:
            url = reverse("admin:deliverability_dkimkey_retire", args=[key.pk])
            return format_html('<a class="button" href="{}">Retire…</a>', url)
        return ""


class EspDkimInline(admin.TabularInline):
    """Adds the DKIM CNAMEs an ESP hands out; our own keys are generated, never typed in."""

    model = DkimKey
    verbose_name = "ESP DKIM selector (CNAME)"
    verbose_name_plural = "Add ESP DKIM selectors (CNAMEs your ESP shows)"
    fields = ["selector", "cname_target"]
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).none()


@admin.register(SendingDomain)
class SendingDomainAdmin(admin.ModelAdmin):
    list_display = [
        "domain",
        "transport",
        "sender_type",
        "overall",
        "record_badges",
        "checked",
        "open_alerts",
        "health",
    ]
    list_filter = ["status", "transport", "sender_type"]
    search_fields = ["domain", "content_domains", "return_path_domain"]
    actions = ["check_now", "generate_rsa_key", "generate_ed25519_key"]
    inlines = [DkimKeyInline, EspDkimInline]
    save_on_top = True
    change_form_template = "admin/deliverability/sendingdomain/change_form.html"
    formfield_overrides = {
        models.URLField: {"assume_scheme": "https"},
        models.TextField: {"widget": forms.Textarea(attrs={"rows": 3, "cols": 40})},
    }
    fieldsets = [
        (None, {"fields": ["domain", "content_domains", "transport", "sender_type", "spf_include"]}),
        (
            "Dedicated IP: return path",
            {"fields": ["return_path_domain", "return_path_target"], "classes": ["collapse"]},
        ),
        ("DMARC and BIMI", {"fields": ["dmarc_report_address", "bimi_logo_url", "bimi_certificate_url"]}),
    ]

    class Media:
        css = {"all": ["crm/admin.css", "deliverability/admin.css"]}
        js = ["deliverability/copy.js"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                "alerts",
                models.Prefetch("health_alerts", HealthAlert.objects.unresolved(), to_attr="unresolved_health_alerts"),
                models.Prefetch(
                    "repair_plans",
                    ReputationRepairPlan.objects.filter(status__in=OPEN_PLAN_STATUSES),
                    to_attr="open_plans",
                ),
            )
        )

    def get_inline_instances(self, request, obj=None):
        # Our own keys are generated; CNAMEs to an ESP's keys only make sense with an ESP.
        inlines = super().get_inline_instances(request, obj)
        if obj is None or obj.transport == Transport.SMTP:
            return [inline for inline in inlines if not isinstance(inline, EspDkimInline)]
        return inlines

    @admin.display(description="Status", ordering="status")
    def overall(self, domain: SendingDomain) -> str:
        return status_badge(domain.status)

    @admin.display(description="Records")
    def record_badges(self, domain: SendingDomain) -> str:
        """The core records always; the others only when something is wrong with them."""
        results = domain.record_statuses
        shown = [
            kind
            for kind in RecordKind
            if kind in results
            and (kind in _LIST_RECORDS or results[kind]["status"] not in {CheckStatus.PASS, CheckStatus.NOT_APPLICABLE})
        ]
        return format_html_join(
            " ",
            _BADGE,
            ((_STATUS_STYLE[results[kind]["status"]], results[kind]["summary"], kind.label) for kind in shown),
        )

    @admin.display(description="Last checked", ordering="last_checked_at")
    def checked(self, domain: SendingDomain) -> str:
        return short_datetime(domain.last_checked_at) if domain.last_checked_at else "never"

    @admin.display(description="Alerts")
    def open_alerts(self, domain: SendingDomain) -> str:
        count = sum(1 for alert in domain.alerts.all() if alert.acknowledged_at is None and alert.resolved_at is None)
        if not count:
            return ""
        url = reverse("admin:deliverability_domainalert_changelist") + f"?domain__id__exact={domain.pk}&open=yes"
        return format_html('<a href="{}">{}</a>', url, status_badge(CheckStatus.FAIL, text=f"{count} open"))

    @admin.display(description="Sender health")
    def health(self, domain: SendingDomain) -> str:
        """Health alerts and the repair plan's step, linking to the dashboard."""
        badges = [
            status_badge(
                CheckStatus.FAIL if alert.severity == Severity.CRITICAL else CheckStatus.WARNING,
                title=alert.summary,
                text=alert.get_kind_display(),
            )
            for alert in domain.unresolved_health_alerts
        ]
        badges += [
            status_badge(CheckStatus.WARNING, title=plan.get_status_display(), text=f"Repair plan: step {plan.step}")
            for plan in domain.open_plans
        ]
        url = reverse("admin:deliverability_sendingdomain_health", args=[domain.pk])
        return format_html('<a href="{}">Dashboard</a> {}', url, format_html_join(" ", "{}", ((b,) for b in badges)))

    def changelist_view(self, request, extra_context=None):
        self._warn_about_alerts(request, DomainAlert.objects.open())
        _warn_about_health(request, HealthAlert.objects.needing_attention())
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        domain = self.get_object(request, object_id)
        if domain is not None:
            self._warn_about_alerts(request, domain.alerts.open())
            extra_context = {**(extra_context or {}), **self._domain_context(domain)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _warn_about_alerts(self, request, alerts) -> None:
        if request.method != "GET":
            return
        for alert in alerts.select_related("domain")[:5]:
            messages.error(
                request,
                f"Alert for {alert.domain}: {alert.get_record_display()} failed on "
                f"{timezone.localtime(alert.raised_at):%Y-%m-%d %H:%M} after passing: {alert.summary}",
            )

    def _domain_context(self, domain: SendingDomain) -> dict:
        order = list(RecordKind)
        latest = sorted(
            domain.checks.filter(checked_at=domain.last_checked_at) if domain.last_checked_at else [],
            key=lambda check: order.index(check.record),
        )
        runs = list(domain.checks.values_list("checked_at", flat=True).distinct().order_by("-checked_at")[:10])
        by_run: dict = {run: {} for run in runs}
        for check in domain.checks.filter(checked_at__in=runs):
            by_run[check.checked_at][check.record] = check
        return {
            "findings": [(Level(f.level).label, f.level, f.message) for f in domain.findings()],
            "latest_checks": [(check, _STATUS_STYLE[check.status]) for check in latest],
            "publish": records.records_to_publish(domain),
            "dmarc_stages": records.dmarc_stages(domain),
            "allowlist": records.allowlist_advice(domain),
            "history_records": order,
            "history": [
                (run, [(row.get(kind), _STATUS_STYLE[row[kind].status] if kind in row else "") for kind in order])
                for run, row in by_run.items()
            ],
        }

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        for finding in obj.findings():
            if finding.level in {Level.WARNING, Level.ADVICE}:
                messages.warning(request, finding.message)
        transaction.on_commit(lambda: tasks.check_sending_domain.delay(obj.pk))
        messages.info(request, f"Checking {obj.domain}'s DNS records in the background; reload the page to see them.")

    def response_add(self, request, obj, post_url_continue=None):
        # A new domain's next step is publishing its records, which its own page lists.
        if "_addanother" in request.POST or IS_POPUP_VAR in request.POST:
            return super().response_add(request, obj, post_url_continue)
        return HttpResponseRedirect(reverse("admin:deliverability_sendingdomain_change", args=[obj.pk]))

    def save_formset(self, request, form, formset, change):
        for key in formset.save(commit=False):
            if key.pk is None and key.cname_target:
                key.state = KeyState.ACTIVE
                key.activated_at = timezone.now()
            key.save()

    def get_urls(self):
        urls = [
            path("<int:object_id>/check/", self.admin_site.admin_view(self.check_view), name="deliverability_check"),
            path(
                "<int:object_id>/dkim/new/",
                self.admin_site.admin_view(self.new_key_view),
                name="deliverability_dkimkey_new",
            ),
            path(
                "<int:object_id>/health/",
                self.admin_site.admin_view(self.health_view),
                name="deliverability_sendingdomain_health",
            ),
            path(
                "<int:object_id>/repair-plan/start/",
                self.admin_site.admin_view(self.start_plan_view),
                name="deliverability_sendingdomain_start_plan",
            ),
        ]
        return urls + super().get_urls()

    def health_view(self, request, object_id):
        """The deliverability dashboard: charts, alerts, the repair plan, bounce reasons, recommendations."""
        domain = get_object_or_404(SendingDomain, pk=object_id)
        if not self.has_view_permission(request, domain):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            **dashboard.dashboard(domain, now=timezone.now()),
            "opts": self.opts,
            "title": f"Deliverability of {domain}",
            "can_start_plan": request.user.has_perm("deliverability.add_reputationrepairplan"),
            "can_change_plan": request.user.has_perm("deliverability.change_reputationrepairplan"),
        }
        return TemplateResponse(request, "admin/deliverability/sendingdomain/health.html", context)

    def start_plan_view(self, request, object_id):
        domain = get_object_or_404(SendingDomain, pk=object_id)
        if not request.user.has_perm("deliverability.add_reputationrepairplan"):
            raise PermissionDenied
        back = reverse("admin:deliverability_sendingdomain_health", args=[domain.pk])
        form = PlanReasonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            plan = repair.start_plan(domain, now=timezone.now(), reason=form.cleaned_data["reason"], user=request.user)
            messages.success(request, f"{plan}: step {plan.step}, {repair.step_of(plan).describe().lower()}.")
            return HttpResponseRedirect(back)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Start a reputation repair plan for {domain}",
            "explanation": "From now on the domain's campaigns reach only step 1's audience and daily volume: "
            + repair.steps()[0].describe().lower()
            + f", at most {repair.steps()[0].daily_cap:,} messages a day. The plan widens the audience as they open.",
            "form": form,
            "button": "Start the plan",
            "back": back,
        }
        return TemplateResponse(request, "admin/deliverability/reason_form.html", context)

    def check_view(self, request, object_id):
        domain = get_object_or_404(SendingDomain, pk=object_id)
        if request.method != "POST" or not self.has_view_permission(request, domain):
            raise PermissionDenied
        self._check(request, [domain])
        return HttpResponseRedirect(reverse("admin:deliverability_sendingdomain_change", args=[domain.pk]))

    def new_key_view(self, request, object_id):
        domain = get_object_or_404(SendingDomain, pk=object_id)
        if not self.has_change_permission(request, domain):
            raise PermissionDenied
        if request.method == "POST" and request.POST.get("algorithm") in KeyAlgorithm.values:
            self._generate(request, [domain], request.POST["algorithm"])
            return HttpResponseRedirect(reverse("admin:deliverability_sendingdomain_change", args=[domain.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "domain": domain,
            "algorithms": KeyAlgorithm.choices,
            "active": domain.dkim_keys.filter(state=KeyState.ACTIVE, cname_target=""),
            "title": f"New DKIM key for {domain}",
        }
        return TemplateResponse(request, "admin/deliverability/sendingdomain/new_key.html", context)

    @admin.action(description="Check DNS records now")
    def check_now(self, request, queryset):
        self._check(request, list(queryset))

    def _check(self, request, domains: list[SendingDomain]) -> None:
        now = timezone.now()
        using = dns_checks.resolver()
        for domain in domains:
            dns_checks.check_domain(domain, now=now, using=using)
            failing = domain.failing_records()
            if failing:
                messages.error(request, f"Checked {domain}: {len(failing)} record(s) fail. " + " ".join(failing))
            elif domain.status == CheckStatus.UNCHECKABLE:
                messages.warning(request, f"Checked {domain}: some records could not be checked (DNS did not answer).")
            else:
                messages.success(request, f"Checked {domain}: {domain.get_status_display().lower()}.")

    @admin.action(description="Generate an RSA-2048 DKIM key", permissions=["change"])
    def generate_rsa_key(self, request, queryset):
        self._generate(request, list(queryset), KeyAlgorithm.RSA)

    @admin.action(description="Generate an Ed25519 DKIM key", permissions=["change"])
    def generate_ed25519_key(self, request, queryset):
        self._generate(request, list(queryset), KeyAlgorithm.ED25519)

    def _generate(self, request, domains: list[SendingDomain], algorithm: str) -> None:
        now = timezone.now()
        for domain in domains:
            key = signing.create_key(domain, algorithm=algorithm, now=now)
            messages.success(
                request,
                f"New {key.get_algorithm_display()} key {key.selector} for {domain}. Publish {key.record_name} "
                "(shown under 'Records to publish'), then switch it on.",
            )


@admin.register(DkimKey)
class DkimKeyAdmin(admin.ModelAdmin):
    list_display = ["selector", "domain", "algorithm", "key_bits", "state", "created_at", "activated_at"]
    list_filter = ["state", "algorithm"]
    search_fields = ["selector", "domain__domain"]
    list_select_related = ["domain"]
    fields = ["domain", "selector", "algorithm", "key_bits", "cname_target", "state", "public_key", "activated_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_urls(self):
        urls = [
            path(
                "<int:object_id>/activate/",
                self.admin_site.admin_view(self.activate_view),
                name="deliverability_dkimkey_activate",
            ),
            path(
                "<int:object_id>/retire/",
                self.admin_site.admin_view(self.retire_view),
                name="deliverability_dkimkey_retire",
            ),
        ]
        return urls + super().get_urls()

    def activate_view(self, request, object_id):
        return self._transition(
            request,
            object_id,
            action=signing.activate_key,
            title="Switch on DKIM key",
            explanation="Mail is signed with this key from now on. The key it replaces stays published; "
            "retire it after a few days, once no mail signed with it is still on its way.",
        )

    def retire_view(self, request, object_id):
        return self._transition(
            request,
            object_id,
            action=signing.retire_key,
            title="Retire DKIM key",
            explanation="Nothing is signed with this key any more. After retiring it you may delete its DNS record.",
        )

    def _transition(self, request, object_id, *, action, title: str, explanation: str):
        key = get_object_or_404(DkimKey.objects.select_related("domain"), pk=object_id)
        if not request.user.has_perm("deliverability.change_sendingdomain"):
            raise PermissionDenied
        back = reverse("admin:deliverability_sendingdomain_change", args=[key.domain_id])
        if request.method == "POST":
            try:
                action(key, now=timezone.now())
            except signing.KeyRotationError as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, f"DKIM key {key.record_name}: {key.get_state_display().lower()}.")
            return HttpResponseRedirect(back)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "key": key,
            "title": title,
            "explanation": explanation,
            "back": back,
        }
        return TemplateResponse(request, "admin/deliverability/dkimkey/confirm.html", context)


class OpenAlertFilter(admin.SimpleListFilter):
    title = "open"
    parameter_name = "open"

    def lookups(self, request, model_admin):
        return [("yes", "Open"), ("no", "Resolved or acknowledged")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.open()
        if self.value() == "no":
            return queryset.exclude(pk__in=DomainAlert.objects.open().values("pk"))
        return queryset


@admin.register(DomainAlert)
class DomainAlertAdmin(admin.ModelAdmin):
    list_display = ["domain", "record", "summary", "raised_at", "resolved_at", "acknowledged_at", "acknowledged_by"]
    list_filter = [OpenAlertFilter, "record", "domain"]
    list_select_related = ["domain", "acknowledged_by"]
    actions = ["acknowledge"]
    readonly_fields = list_display

    def has_add_permission(self, request):
        return False

    @admin.action(description="Acknowledge selected alerts", permissions=["change"])
    def acknowledge(self, request, queryset):
        count = queryset.filter(acknowledged_at=None).update(
            acknowledged_at=timezone.now(), acknowledged_by=request.user
        )
        messages.success(request, f"{count} alert(s) acknowledged.")


def _warn_about_health(request, alerts) -> None:
    if request.method != "GET":
        return
    for alert in alerts.select_related("domain", "campaign")[:5]:
        messages.error(request, f"{alert.get_kind_display()}: {alert.summary}")


class PlanReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), help_text="Kept in the plan's log.", max_length=2000
    )


@admin.register(HealthAlert)
class HealthAlertAdmin(admin.ModelAdmin):
    list_display = ["raised", "severity_badge", "kind", "domain", "campaign", "summary", "resolved", "acknowledged_at"]
    list_filter = ["kind", "severity", ("resolved_at", admin.EmptyFieldListFilter), "domain"]
    list_select_related = ["domain", "campaign", "acknowledged_by"]
    search_fields = ["summary", "campaign__name", "domain__domain"]
    actions = ["acknowledge"]
    readonly_fields = [
        "domain",
        "campaign",
        "kind",
        "severity",
        "summary",
        "figures",
        "raised_at",
        "resolved_at",
        "acknowledged_at",
        "acknowledged_by",
    ]
    exclude = ["metrics"]

    def has_add_permission(self, request):
        return False

    def has_acknowledge_permission(self, request):
        return request.user.has_perm("deliverability.change_healthalert")

    @admin.display(description="Raised", ordering="raised_at")
    def raised(self, alert: HealthAlert) -> str:
        return short_datetime(alert.raised_at)

    @admin.display(description="Resolved", ordering="resolved_at")
    def resolved(self, alert: HealthAlert) -> str:
        return short_datetime(alert.resolved_at) if alert.resolved_at else "open"

    @admin.display(description="Severity", ordering="severity")
    def severity_badge(self, alert: HealthAlert) -> str:
        style = CheckStatus.FAIL if alert.severity == Severity.CRITICAL else CheckStatus.WARNING
        if alert.resolved_at:
            style = CheckStatus.NOT_CHECKED
        return status_badge(style, text=alert.get_severity_display())

    @admin.display(description="Figures")
    def figures(self, alert: HealthAlert) -> str:
        return format_html_join("", "<div><strong>{}</strong>: {}</div>", sorted(alert.metrics.items()))

    def changelist_view(self, request, extra_context=None):
        _warn_about_health(request, HealthAlert.objects.needing_attention())
        return super().changelist_view(request, extra_context)

    @admin.action(description="Acknowledge selected alerts", permissions=["acknowledge"])
    def acknowledge(self, request, queryset):
        count = queryset.filter(acknowledged_at=None).update(
            acknowledged_at=timezone.now(), acknowledged_by=request.user
        )
        messages.success(request, f"{count} alert(s) acknowledged.")

    def get_urls(self):
        urls = [
            path(
                "resume-engaged/<int:campaign_id>/",
                self.admin_site.admin_view(self.resume_engaged_view),
                name="deliverability_resume_engaged",
            )
        ]
        return urls + super().get_urls()

    def resume_engaged_view(self, request, campaign_id):
        """Resume a campaign the guard paused, for the contacts who engaged recently only."""
        campaign = get_object_or_404(Campaign, pk=campaign_id)
        if not request.user.has_perm("campaigns.change_campaign"):
            raise PermissionDenied
        back = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
        if request.method == "POST":
            try:
                skipped = health.resume_for_engaged_only(campaign, user=request.user, now=timezone.now())
            except pipeline.CampaignError as exc:
                messages.error(request, str(exc))
            else:
                campaign_tasks.enqueue_campaign(campaign.pk)
                messages.success(
                    request,
                    f"{campaign}: sending again to recently engaged contacts; {skipped:,} other sends skipped.",
                )
            return HttpResponseRedirect(back)
        remaining = Send.objects.filter(campaign=campaign, status__in=pipeline.CLAIMABLE)
        engaged = remaining.filter(
            contact__last_engaged_at__gte=timezone.now() - timedelta(days=settings.RECENTLY_ENGAGED_DAYS)
        ).count()
        total = remaining.count()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Resume {campaign} for engaged contacts only?",
            "campaign": campaign,
            "alert": health.paused_by_guard(campaign),
            "remaining": total,
            "engaged": engaged,
            "skipped": total - engaged,
            "days": settings.RECENTLY_ENGAGED_DAYS,
            "back": back,
        }
        return TemplateResponse(request, "admin/deliverability/healthalert/resume_engaged.html", context)


def campaign_tools(request, campaign: Campaign) -> list[tuple[str, str]]:
    """On a campaign the bad-send guard paused: why, and a way on for engaged contacts only."""
    alert = health.paused_by_guard(campaign)
    if alert is None:
        return []
    tools = [(reverse("admin:deliverability_healthalert_change", args=[alert.pk]), "Why it was paused")]
    if request.user.has_perm("campaigns.change_campaign"):
        url = reverse("admin:deliverability_resume_engaged", args=[campaign.pk])
        tools.append((url, "Resume for engaged contacts only…"))
    return tools


campaigns_admin.CAMPAIGN_TOOLS.append(campaign_tools)


class RepairPlanTransitionInline(admin.TabularInline):
    model = RepairPlanTransition
    fields = ["at", "kind", "from_step", "to_step", "reason", "figures", "by"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "Log"

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Figures")
    def figures(self, transition) -> str:
        return format_html_join(", ", "{}: {}", sorted(transition.metrics.items()))


_PLAN_STYLE = {
    PlanStatus.ACTIVE: CheckStatus.WARNING,
    PlanStatus.PAUSED: CheckStatus.NOT_CHECKED,
    PlanStatus.COMPLETED: CheckStatus.PASS,
    PlanStatus.ENDED: CheckStatus.NOT_CHECKED,
}
_PLAN_ACTIONS = {
    "pause": (
        repair.pause_plan,
        "Pause the plan",
        "The domain's campaigns are no longer restricted until you resume it.",
    ),
    "resume": (repair.resume_plan, "Resume the plan", "The step's audience and daily volume apply again."),
    "advance": (
        repair.advance_plan,
        "Advance to the next step",
        "Whatever the figures say: the next step's wider audience and higher volume apply from now on.",
    ),
    "end": (repair.end_plan, "End the plan", "For good: the domain's campaigns are no longer restricted."),
}


@admin.register(ReputationRepairPlan)
class ReputationRepairPlanAdmin(admin.ModelAdmin):
    list_display = ["domain", "status_badge", "step", "step_audience", "started", "step_since", "progress_summary"]
    list_filter = ["status", "domain"]
    list_select_related = ["domain"]
    inlines = [RepairPlanTransitionInline]
    readonly_fields = [
        "domain",
        "status",
        "step",
        "step_audience",
        "step_started_at",
        "started_at",
        "started_by",
        "reason",
        "alert",
        "finished_at",
        "progress_summary",
    ]
    exclude = ["progress"]
    change_form_template = "admin/deliverability/reputationrepairplan/change_form.html"

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Status", ordering="status")
    def status_badge(self, plan: ReputationRepairPlan) -> str:
        return status_badge(_PLAN_STYLE[plan.status], text=plan.get_status_display())

    @admin.display(description="Audience of the step")
    def step_audience(self, plan: ReputationRepairPlan) -> str:
        step = repair.step_of(plan)
        return f"{step.describe()}; at most {step.daily_cap:,} messages a day"

    @admin.display(description="Started", ordering="started_at")
    def started(self, plan: ReputationRepairPlan) -> str:
        return short_datetime(plan.started_at)

    @admin.display(description="On this step since", ordering="step_started_at")
    def step_since(self, plan: ReputationRepairPlan) -> str:
        return short_datetime(plan.step_started_at)

    @admin.display(description="Progress")
    def progress_summary(self, plan: ReputationRepairPlan) -> str:
        figures = plan.progress
        if not figures:
            return "—"
        rate = figures.get("open_rate")
        return (
            f"{figures['delivered']:,} delivered (judged from {settings.REPAIR_PLAN_MIN_DELIVERED:,}), human open rate "
            f"{'—' if rate is None else f'{rate:.1%}'} (target {settings.REPAIR_PLAN_TARGET_OPEN_PERCENT:g} %), "
            f"{figures['days_on_step']} of {settings.REPAIR_PLAN_STEP_DAYS} days"
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        plan = self.get_object(request, object_id)
        if plan is not None:
            can_change = request.user.has_perm("deliverability.change_reputationrepairplan")
            actions = {
                PlanStatus.ACTIVE: ["pause", "advance", "end"],
                PlanStatus.PAUSED: ["resume", "advance", "end"],
            }.get(plan.status, [])
            extra_context = {
                **(extra_context or {}),
                "plan_actions": [
                    (reverse("admin:deliverability_plan_action", args=[plan.pk, name]), _PLAN_ACTIONS[name][1])
                    for name in actions
                ]
                if can_change
                else [],
                "dashboard_url": reverse("admin:deliverability_sendingdomain_health", args=[plan.domain_id]),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        urls = [
            path(
                "<int:object_id>/steer/<str:action>/",
                self.admin_site.admin_view(self.action_view),
                name="deliverability_plan_action",
            )
        ]
        return urls + super().get_urls()

    def action_view(self, request, object_id, action):
        plan = get_object_or_404(ReputationRepairPlan.objects.select_related("domain"), pk=object_id)
        if action not in _PLAN_ACTIONS:
            raise Http404
        if not request.user.has_perm("deliverability.change_reputationrepairplan"):
            raise PermissionDenied
        function, title, explanation = _PLAN_ACTIONS[action]
        back = reverse("admin:deliverability_reputationrepairplan_change", args=[plan.pk])
        form = PlanReasonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                transition = function(plan, user=request.user, reason=form.cleaned_data["reason"], now=timezone.now())
            except repair.PlanError as exc:
                messages.error(request, str(exc))
            else:
                done = transition.get_kind_display().lower()
                messages.success(request, f"{plan.domain}: {done}, step {transition.to_step}.")
            return HttpResponseRedirect(back)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{title}: {plan.domain}",
            "explanation": explanation,
            "form": form,
            "button": title,
            "back": back,
        }
        return TemplateResponse(request, "admin/deliverability/reason_form.html", context)


@admin.register(SunsetCandidate)
class SunsetCandidateAdmin(admin.ModelAdmin):
    """Contacts who ignored a re-engagement campaign: staff review them and approve their suppression."""

    list_display = ["email", "full_name", "engagement_status", "last_engaged", "last_sent"]
    search_fields = ["email_normalized"]
    search_help_text = "The start of an address."
    list_filter = ["engagement_status"]
    actions = ["approve"]
    list_per_page = 100
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_queryset(self, request):
        return health.sunset_candidates(now=timezone.now(), contacts=SunsetCandidate.objects.all())

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().lower()
        return (queryset.filter(email_normalized__startswith=term) if term else queryset), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Last engaged", ordering="last_engaged_at")
    def last_engaged(self, contact: Contact) -> str:
        return short_datetime(contact.last_engaged_at) if contact.last_engaged_at else "never"

    @admin.display(description="Last sent", ordering="last_sent_at")
    def last_sent(self, contact: Contact) -> str:
        return short_datetime(contact.last_sent_at)

    def has_approve_permission(self, request):
        return request.user.has_perm("deliverability.change_sunsetcandidate")

    @admin.action(description="Approve sunset: suppress the selected contacts", permissions=["approve"])
    def approve(self, request, queryset):
        if "confirmed" not in request.POST:
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Suppress these contacts?",
                "count": queryset.count(),
                "queryset": queryset[:20],
                "days": settings.SUNSET_AFTER_DAYS,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                "select_across": request.POST.get("select_across", "0"),
                "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
            }
            return TemplateResponse(request, "admin/deliverability/sunsetcandidate/approve.html", context)
        count = health.approve_sunset(queryset, user=request.user, now=timezone.now())
        addresses = f"{count:,} address{pluralize(count, 'es')}"
        messages.success(request, f"{addresses} suppressed (unengaged sunset): no more marketing email.")
        return None


@admin.register(DomainCheck)
class DomainCheckAdmin(admin.ModelAdmin):
    list_display = ["domain", "record", "status", "summary", "checked_at"]
    list_filter = ["status", "record"]
    search_fields = ["domain__domain"]
    list_select_related = ["domain"]
    date_hierarchy = "checked_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
