from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.clickjacking import xframe_options_sameorigin

from campaigns import audience, charts, checklist, pipeline, rendering, reports, tasks, timeline, webhooks
from campaigns.models import (
    SKIP_REASONS,
    Campaign,
    CampaignStatus,
    ContactList,
    EmailEvent,
    EventSource,
    ListMembership,
    Segment,
    Send,
    SendStatus,
    UnprocessedPayload,
)
from crm import admin as crm_admin
from crm.addresses import normalize_address
from crm.admin import RecordAdmin, short_datetime
from crm.exporting import CONTACT_RECORD_PARTS, stream_csv
from crm.models import Contact, EngagementStatus
from crm.pagination import EstimatedCountPaginator

# Other apps add links to a campaign's page (deliverability: resume for engaged contacts only
# after an automatic pause). Each callable gets the request and the campaign, gives (url, label) pairs.
CAMPAIGN_TOOLS: list[Callable[[HttpRequest, Campaign], list[tuple[str, str]]]] = []

_STATUS_STYLE = {
    CampaignStatus.DRAFT: "pending",
    CampaignStatus.PREPARING: "warning",
    CampaignStatus.SCHEDULED: "warning",
    CampaignStatus.SENDING: "subscribed",
    CampaignStatus.PAUSED: "warning",
    CampaignStatus.SENT: "muted",
    CampaignStatus.CANCELLED: "danger",
}
_SEND_STYLE = {
    SendStatus.DELIVERED: "subscribed",
    SendStatus.ACCEPTED: "subscribed",
    SendStatus.HARD_BOUNCED: "danger",
    SendStatus.SOFT_BOUNCED: "warning",
    SendStatus.DEFERRED: "warning",
    SendStatus.NOT_SENT: "pending",
    SendStatus.SKIPPED: "muted",
}


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = [
            "name",
            "subscription_type",
            "from_name",
            "from_email",
            "reply_to",
            "subject",
            "preheader",
            "html_body",
            "text_body",
            "lists",
            "segments",
            "exclude_lists",
            "exclude_segments",
            "include_unengaged",
            "scheduled_at",
            "in_recipient_time_zone",
        ]
        widgets = {
            "html_body": forms.Textarea(attrs={"rows": 18, "cols": 100, "class": "dw-code"}),
            "text_body": forms.Textarea(attrs={"rows": 8, "cols": 100, "class": "dw-code"}),
        }

    def clean(self):
        cleaned = super().clean()
        fields = {"subject": "subject", "HTML body": "html_body", "text body": "text_body"}
        for problem in rendering.check_templates(
            subject=cleaned.get("subject", ""), html=cleaned.get("html_body", ""), text=cleaned.get("text_body", "")
        ):
            where = f"Line {problem.line}: " if problem.line else ""
            self.add_error(fields[problem.field], f"{where}{problem.message}")
        return cleaned


class SegmentForm(forms.ModelForm):
    engagement_statuses = forms.MultipleChoiceField(
        choices=EngagementStatus.choices, widget=forms.CheckboxSelectMultiple, required=False
    )

    class Meta:
        model = Segment
        fields = [
            "name",
            "description",
            "subscribed_to",
            "engagement_statuses",
            "last_engaged_within_days",
            "created_within_days",
            "email_domains",
            "in_lists",
            "property_name",
            "property_value",
        ]
        widgets = {"email_domains": forms.Textarea(attrs={"rows": 3, "cols": 40})}


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    list_display = ["name", "description", "created_at"]
    search_fields = ["name", "description"]
    filter_horizontal = ["in_lists"]
    readonly_fields = ["matching_now"]

    @admin.display(description="Matching now")
    def matching_now(self, segment: Segment) -> str:
        if segment.pk is None:
            return "—"
        return f"{Contact.objects.filter(segment.conditions(now=timezone.now())).count():,} contacts"


class ListMembershipInline(admin.TabularInline):
    model = ListMembership
    raw_id_fields = ["contact"]
    extra = 0
    verbose_name_plural = "Members"


@admin.register(ContactList)
class ContactListAdmin(admin.ModelAdmin):
    list_display = ["name", "members", "created_at"]
    search_fields = ["name"]
    inlines = [ListMembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("contacts"))

    @admin.display(description="Members", ordering="member_count")
    def members(self, contact_list: ContactList) -> int:
        return contact_list.member_count


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    list_display = [
        "name",
        "status_badge",
        "subscription_type",
        "sent",
        "delivered_rate",
        "open_rate",
        "click_rate",
        "bounce_rate",
        "unsubscribe_rate",
        "complaint_rate",
        "changed",
    ]
    list_display_links = ["name"]
    list_filter = ["status", "subscription_type"]
    search_fields = ["name", "subject", "from_email"]
    autocomplete_fields = ["lists", "segments", "exclude_lists", "exclude_segments"]
    readonly_fields = ["status", "status_changed_at", "status_changed_by"]
    change_form_template = "admin/campaigns/campaign/change_form.html"
    save_on_top = True
    fieldsets = [
        (None, {"fields": ["name", "subscription_type", "status", "status_changed_at", "status_changed_by"]}),
        ("Sender", {"fields": ["from_name", "from_email", "reply_to"]}),
        ("Content", {"fields": ["subject", "preheader", "html_body", "text_body"]}),
        (
            "Audience",
            {
                "fields": ["lists", "segments", "exclude_lists", "exclude_segments", "include_unengaged"],
                "description": "No list or segment: everyone with a subscription of the type (the gate skips "
                "whoever may not get it, and says why).",
            },
        ),
        ("Schedule", {"fields": ["scheduled_at", "in_recipient_time_zone"]}),
    ]

    class Media:
        css = {"all": ["crm/admin.css", "campaigns/admin.css"]}

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("subscription_type")

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status != CampaignStatus.DRAFT:
            # What went out is what the results describe: a started campaign is not edited.
            return [field.name for field in Campaign._meta.fields if field.name != "id"] + [
                "lists",
                "segments",
                "exclude_lists",
                "exclude_segments",
            ]
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, campaign: Campaign) -> str:
        if campaign.status_reason:
            # Paused by the system (the bad-send guard), or a start that found it could not: say why on hover.
            return format_html(
                '<span class="dw-badge dw-danger" title="{}">{}</span>',
                campaign.status_reason,
                "Not started"
                if campaign.status == CampaignStatus.DRAFT
                else f"{campaign.get_status_display()} automatically",
            )
        return format_html(
            '<span class="dw-badge dw-{}">{}</span>', _STATUS_STYLE[campaign.status], campaign.get_status_display()
        )

    # The figures come from Campaign.stats, stored by the refresh job: counting millions of
    # sends per row would make the list as slow as its biggest campaign.
    @admin.display(description="Sent")
    def sent(self, campaign: Campaign) -> str:
        attempted = campaign.stats.get("attempted")
        return f"{attempted:,}" if attempted else "—"

    def _rate(self, campaign: Campaign, part: str, whole: str) -> str:
        stats = campaign.stats
        return f"{stats[part] / stats[whole]:.1%}" if stats.get(whole) and part in stats else "—"

    @admin.display(description="Delivered")
    def delivered_rate(self, campaign: Campaign) -> str:
        return self._rate(campaign, "delivered", "attempted")

    @admin.display(description="Opened")
    def open_rate(self, campaign: Campaign) -> str:
        return self._rate(campaign, "opened", "delivered")

    @admin.display(description="Clicked")
    def click_rate(self, campaign: Campaign) -> str:
        return self._rate(campaign, "clicked", "delivered")

    @admin.display(description="Bounced")
    def bounce_rate(self, campaign: Campaign) -> str:
        return self._rate(campaign, "bounced", "attempted")

    @admin.display(description="Unsubscribed")
    def unsubscribe_rate(self, campaign: Campaign) -> str:
        return self._rate(campaign, "unsubscribed", "delivered")

    @admin.display(description="Complaints")
    def complaint_rate(self, campaign: Campaign) -> str:
        return self._rate(campaign, "complained", "delivered")

    @admin.display(description="Changed", ordering="status_changed_at")
    def changed(self, campaign: Campaign) -> str:
        return short_datetime(campaign.status_changed_at or campaign.created_at)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        campaign = self.get_object(request, object_id)
        if campaign is not None:
            extra_context = {**(extra_context or {}), **self._campaign_context(request, campaign)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _campaign_context(self, request, campaign: Campaign) -> dict:
        context = {
            "checklist": checklist.check_campaign(campaign),
            "campaign_results": None,
            "campaign_tools": [tool for tools in CAMPAIGN_TOOLS for tool in tools(request, campaign)],
        }
        if campaign.status == CampaignStatus.DRAFT:
            context["audience_url"] = reverse("admin:campaigns_campaign_audience", args=[campaign.pk])
        else:
            # Every field is read-only once started: no Save buttons that would save nothing.
            context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
        if campaign.status not in {CampaignStatus.DRAFT, CampaignStatus.PREPARING}:
            context["campaign_results"] = reports.campaign_results(campaign)
            context["recipients_url"] = (
                reverse("admin:campaigns_send_changelist") + f"?campaign__id__exact={campaign.pk}"
            )
            context["performance_url"] = reverse("admin:campaigns_campaign_performance", args=[campaign.pk])
        context["preview_url"] = reverse("admin:campaigns_campaign_preview", args=[campaign.pk])
        context["preview_contact"] = request.GET.get("preview_contact", "")
        return context

    def get_urls(self):
        def view(name: str, handler):
            return path(
                f"<int:object_id>/{name}/", self.admin_site.admin_view(handler), name=f"campaigns_campaign_{name}"
            )

        return [
            view("preview", self.preview_view),
            view("audience", self.audience_view),
            view("start", self.start_view),
            view("pause", self.pause_view),
            view("resume", self.resume_view),
            view("cancel", self.cancel_view),
            view("test", self.test_send_view),
            view("performance", self.performance_view),
            view("export", self.export_view),
            *super().get_urls(),
        ]

    def _campaign(self, request, object_id, *, change: bool = True) -> Campaign:
        campaign = get_object_or_404(Campaign, pk=object_id)
        allowed = (
            self.has_change_permission(request, campaign) if change else self.has_view_permission(request, campaign)
        )
        if not allowed:
            raise PermissionDenied
        return campaign

    def _back(self, campaign: Campaign) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))

    def audience_view(self, request, object_id):
        """Who the campaign would go to now and who the gate would skip, for its page to load once it shows."""
        campaign = self._campaign(request, object_id, change=False)
        recipients, skipped = audience.preview(campaign, now=timezone.now())
        context = {"recipients": recipients, "skipped": _skipped_by_reason(skipped)}
        return TemplateResponse(request, "admin/campaigns/campaign/audience.html", context)

    @method_decorator(xframe_options_sameorigin)
    def preview_view(self, request, object_id):
        """The HTML as one contact would get it, for the preview frame (GET only, changes nothing)."""
        campaign = self._campaign(request, object_id, change=False)
        contact = _contact_for_preview(request.GET.get("contact", ""))
        if contact is None:
            contact = Contact(email="preview@example.com", first_name="", last_name="")
        return HttpResponse(pipeline.render_for(campaign, contact).html)

    def start_view(self, request, object_id):
        campaign = self._campaign(request, object_id)
        if request.method == "POST":
            try:
                pipeline.request_start(campaign, user=request.user, now=timezone.now())
            except pipeline.CampaignError as exc:
                messages.error(request, str(exc))
            else:
                tasks.prepare_campaign.delay_on_commit(campaign.pk)
                scheduled = campaign.scheduled_at is not None and campaign.scheduled_at > timezone.now()
                then = "waits for its scheduled time" if scheduled else "starts"
                messages.success(request, f"{campaign}: preparing the sends; it {then} once they are built.")
            return self._back(campaign)
        recipients, skipped = audience.preview(campaign, now=timezone.now())
        items = checklist.check_campaign(campaign)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "campaign": campaign,
            "title": f"Send {campaign}?",
            "recipients": recipients,
            "skipped": _skipped_by_reason(skipped),
            "checklist": items,
            "blocked": checklist.blocking(items),
        }
        return TemplateResponse(request, "admin/campaigns/campaign/start.html", context)

    def _transition(self, request, object_id, action, done: str):
        campaign = self._campaign(request, object_id)
        if request.method != "POST":
            raise PermissionDenied
        try:
            action(campaign, user=request.user, now=timezone.now())
        except pipeline.CampaignError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{campaign}: {done}.")
        return self._back(campaign)

    def pause_view(self, request, object_id):
        return self._transition(request, object_id, pipeline.pause_campaign, "paused; nothing more goes out")

    def resume_view(self, request, object_id):
        response = self._transition(request, object_id, pipeline.resume_campaign, "sending again")
        if Campaign.objects.filter(pk=object_id, status=CampaignStatus.SENDING).exists():
            tasks.enqueue_campaign(int(object_id))
        return response

    def cancel_view(self, request, object_id):
        campaign = self._campaign(request, object_id)
        if request.method == "POST":
            try:
                cancelled = pipeline.cancel_campaign(campaign, user=request.user, now=timezone.now())
            except pipeline.CampaignError as exc:
                messages.error(request, str(exc))
            else:
                messages.success(
                    request, f"{campaign}: cancelled; {cancelled:,} sends not yet handed over will not go."
                )
            return self._back(campaign)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "campaign": campaign,
            "title": f"Cancel {campaign}?",
            "pending": campaign.sends.filter(status__in=pipeline.CLAIMABLE).count(),
        }
        return TemplateResponse(request, "admin/campaigns/campaign/cancel.html", context)

    def test_send_view(self, request, object_id):
        campaign = self._campaign(request, object_id, change=False)
        if request.method != "POST":
            raise PermissionDenied
        to = request.POST.get("to", "").strip()
        try:
            validate_email(to)
        except ValidationError:
            messages.error(request, f"{to!r} is not an email address; nothing was sent.")
            return self._back(campaign)
        contact = _contact_for_preview(request.POST.get("contact", "")) or Contact(email=to)
        reply = pipeline.send_test(campaign, contact=contact, to=to)
        if reply.code and 200 <= reply.code < 300:
            messages.success(request, f"Test sent to {to} as {contact.email}: {reply.code} {reply.text}")
        else:
            messages.error(request, f"The test to {to} was not accepted: {reply.code or 'no answer'} {reply.text}")
        return self._back(campaign)

    def performance_view(self, request, object_id):
        """Everything about how the campaign did: results, people and machines, links, over time."""
        campaign = self._campaign(request, object_id, change=False)
        performance = reports.campaign_performance(campaign)
        recipients = reverse("admin:campaigns_send_changelist") + f"?campaign__id__exact={campaign.pk}"
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "campaign": campaign,
            "title": f"Performance: {campaign}",
            "performance": performance,
            "chart": _activity_chart(performance.over_time),
            "recipients_url": recipients,
            "by_result": [
                (label, count, rate, f"{recipients}&status__exact={status}")
                for status, (label, count, rate) in zip(
                    [s for s in SendStatus if performance.results.by_status.get(s)],
                    performance.results.rows(),
                    strict=True,
                )
            ],
            "by_engagement": [(label, f"{recipients}&engagement={value}") for value, label in EngagementFilter.CHOICES],
        }
        return TemplateResponse(request, "admin/campaigns/campaign/performance.html", context)

    def changelist_view(self, request, extra_context=None):
        updated = Campaign.objects.aggregate(latest=Max("stats_updated_at"))["latest"]
        extra_context = {**(extra_context or {}), "stats_updated_at": updated}
        return super().changelist_view(request, extra_context)

    def export_view(self, request, object_id):
        """Every recipient's result as CSV, streamed (a million rows in flat memory)."""
        campaign = self._campaign(request, object_id, change=False)
        response = StreamingHttpResponse(
            stream_csv(reports.recipient_rows(campaign), reports.RECIPIENT_COLUMNS), content_type="text/csv"
        )
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-results.csv"'
        return response


def _activity_chart(over_time: list[tuple[datetime, int, int]]):
    """Human opens and clicks by hour since the first send (by day past three days)."""
    if not over_time:
        return ""
    start = over_time[0][0]
    hours = int((over_time[-1][0] - start).total_seconds() // 3600) + 1
    step = 1 if hours <= 72 else 24
    buckets = [[0, 0] for _ in range((hours + step - 1) // step)]
    for hour, opens, clicks in over_time:
        bucket = buckets[int((hour - start).total_seconds() // 3600) // step]
        bucket[0] += opens
        bucket[1] += clicks
    labels = [f"+{i * step}h" if step == 1 else f"day {i + 1}" for i in range(len(buckets))]
    return charts.line_chart(
        [
            charts.Series("Opens (people)", [b[0] for b in buckets], "#417690"),
            charts.Series("Clicks (people)", [b[1] for b in buckets], "#2e7d32", dashed=True),
        ],
        labels,
        title=f"Opens and clicks by {'hour' if step == 1 else 'day'} since the first send",
    )


def _skipped_by_reason(skipped: dict[str, int]) -> list[tuple[str, int]]:
    labels = dict(SKIP_REASONS)
    return sorted(((labels.get(reason, reason), n) for reason, n in skipped.items()), key=lambda row: -row[1])


def _contact_for_preview(value: str) -> Contact | None:
    value = value.strip()
    if not value:
        return None
    try:
        return Contact.objects.filter(email_normalized=normalize_address(value)).first()
    except ValidationError:
        return None


class EngagementFilter(admin.SimpleListFilter):
    title = "engagement"
    parameter_name = "engagement"
    CHOICES = [
        ("opened", "Opened"),
        ("not_opened", "Delivered, not opened"),
        ("clicked", "Clicked"),
        ("unsubscribed", "Unsubscribed"),
        ("complained", "Complained"),
    ]

    def lookups(self, request, model_admin):
        return self.CHOICES

    def queryset(self, request, queryset):
        value = self.value()
        if value == "not_opened":
            return queryset.filter(status__in=reports.DELIVERED_OR_ACCEPTED, opened_at__isnull=True)
        if value in {"opened", "clicked", "unsubscribed", "complained"}:
            return queryset.filter(**{f"{value}_at__isnull": False})
        return queryset


@admin.register(Send)
class SendAdmin(RecordAdmin):
    list_display = [
        "email",
        "campaign",
        "result",
        "reason",
        "smtp_code",
        "reply",
        "attempts",
        "last_attempt",
        "opened",
        "clicked",
    ]
    list_filter = ["status", EngagementFilter, "bounce_category", "skip_reason", "campaign"]
    search_fields = ["email"]
    list_select_related = ["campaign"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    readonly_fields = [field.name for field in Send._meta.fields]

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().lower()
        return (queryset.filter(email=term) if term else queryset), False

    @admin.display(description="Result", ordering="status")
    def result(self, send: Send) -> str:
        return format_html(
            '<span class="dw-badge dw-{}">{}</span>', _SEND_STYLE.get(send.status, "pending"), send.get_status_display()
        )

    @admin.display(description="Why")
    def reason(self, send: Send) -> str:
        return send.get_skip_reason_display() if send.skip_reason else send.bounce_category.replace("_", " ")

    @admin.display(description="Server said")
    def reply(self, send: Send) -> str:
        return send.smtp_reply[:160]

    @admin.display(description="Last attempt", ordering="last_attempt_at")
    def last_attempt(self, send: Send) -> str:
        return short_datetime(send.last_attempt_at)

    @admin.display(description="Opened", ordering="opened_at")
    def opened(self, send: Send) -> str:
        return short_datetime(send.opened_at) if send.opened_at else "—"

    @admin.display(description="Clicked", ordering="clicked_at")
    def clicked(self, send: Send) -> str:
        return short_datetime(send.clicked_at) if send.clicked_at else "—"


class MachineFilter(admin.SimpleListFilter):
    title = "made by"
    parameter_name = "made_by"

    def lookups(self, request, model_admin):
        return [("person", "A person"), ("machine", "A machine (proxy, scanner, prefetcher)")]

    def queryset(self, request, queryset):
        if self.value() in {"person", "machine"}:
            return queryset.filter(is_machine=self.value() == "machine")
        return queryset


class OrphanedFilter(admin.SimpleListFilter):
    title = "matched to a send"
    parameter_name = "matched"

    def lookups(self, request, model_admin):
        return [("yes", "Matched a send"), ("no", "Orphaned (no send)")]

    def queryset(self, request, queryset):
        if self.value() in {"yes", "no"}:
            return queryset.filter(send__isnull=self.value() == "no")
        return queryset


@admin.register(EmailEvent)
class EmailEventAdmin(RecordAdmin):
    list_display = ["occurred", "kind", "recipient", "campaign", "reported_by", "machine", "effect"]
    list_filter = ["type", "source", MachineFilter, OrphanedFilter, "esp", "bounce_category"]
    search_fields = ["recipient", "message_id"]
    search_help_text = "A whole email address or Message-ID."
    list_select_related = ["campaign"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    readonly_fields = [*(field.name for field in EmailEvent._meta.fields if field.name != "payload"), "raw_payload"]
    # The contact timeline links to a contact's events; the send and campaign pages to theirs.
    _ID_LOOKUPS = frozenset({"contact", "send", "campaign", "contact__id__exact", "send__id__exact"})

    def lookup_allowed(self, lookup, value, request=None):
        return lookup in self._ID_LOOKUPS or super().lookup_allowed(lookup, value, request)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(recipient=term.lower()) | Q(message_id=term)), False

    @admin.display(description="When", ordering="occurred_at")
    def occurred(self, event: EmailEvent) -> str:
        return short_datetime(event.occurred_at)

    @admin.display(description="Event", ordering="type")
    def kind(self, event: EmailEvent) -> str:
        return format_html('<span class="dw-badge dw-{}">{}</span>', _event_style(event), event.get_type_display())

    @admin.display(description="Reported by", ordering="source")
    def reported_by(self, event: EmailEvent) -> str:
        if event.source == EventSource.WEBHOOK and event.esp:
            return f"{event.get_source_display()} ({event.esp})"
        return event.get_source_display()

    @admin.display(description="Machine", ordering="is_machine")
    def machine(self, event: EmailEvent) -> str:
        return event.machine_reason if event.is_machine else ""

    class Media:
        css = {"all": ["crm/admin.css", "campaigns/admin.css"]}

    @admin.display(description="Payload")
    def raw_payload(self, event: EmailEvent) -> str:
        return format_html('<pre class="dw-code">{}</pre>', json.dumps(event.payload, indent=2, ensure_ascii=False))


@admin.register(UnprocessedPayload)
class UnprocessedPayloadAdmin(RecordAdmin):
    list_display = ["received_at", "kind", "esp", "error", "attempts", "processed_at"]
    list_filter = ["kind", "esp", ("processed_at", admin.EmptyFieldListFilter)]
    readonly_fields = ["kind", "esp", "content_type", "error", "received_at", "attempts", "processed_at", "body_text"]
    exclude = ["body", "headers"]
    actions = ["process_again"]

    @admin.display(description="Body")
    def body_text(self, payload: UnprocessedPayload) -> str:
        return format_html('<pre class="dw-code">{}</pre>', bytes(payload.body)[:20000].decode("utf-8", "replace"))

    @admin.action(description="Process the selected payloads again")
    def process_again(self, request, queryset):
        now = timezone.now()
        results = [webhooks.retry_payload(payload, now=now) for payload in queryset.filter(processed_at__isnull=True)]
        done = sum(results)
        if done:
            self.message_user(request, f"{done} processed.", messages.SUCCESS)
        if len(results) - done:
            self.message_user(
                request, f"{len(results) - done} still could not be processed; the error says why.", messages.WARNING
            )


def _event_style(event: EmailEvent) -> str:
    return "muted" if event.is_machine else timeline.EVENT_STYLE.get(event.type, "pending")


crm_admin.CONTACT_PANELS.append(timeline.timeline_panel)
CONTACT_RECORD_PARTS["marketing_email"] = timeline.marketing_record

from campaigns import admin_onetoone  # noqa: E402, F401
