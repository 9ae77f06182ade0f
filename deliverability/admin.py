from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from crm.admin import short_datetime
from deliverability import dns_checks, records, signing, tasks
from deliverability.domains import Level
from deliverability.esps import Transport
from deliverability.models import (
    CheckStatus,
    DkimKey,
    DomainAlert,
    DomainCheck,
    KeyAlgorithm,
    KeyState,
    RecordKind,
    SendingDomain,
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
    list_display = ["domain", "transport", "sender_type", "overall", "record_badges", "checked", "open_alerts"]
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
        return super().get_queryset(request).prefetch_related("alerts")

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

    def changelist_view(self, request, extra_context=None):
        self._warn_about_alerts(request, DomainAlert.objects.open())
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
        ]
        return urls + super().get_urls()

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
