from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import Count, Exists, OuterRef, Prefetch, Q
from django.db.models.expressions import RawSQL
from django.http import FileResponse, HttpRequest, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.text import smart_split, unescape_string_literal

from crm import consent, optin, suppression
from crm.addresses import normalize_address
from crm.exporting import EXPORT_COLUMNS, contact_record, contact_rows, stream_csv, write_xlsx
from crm.models import (
    ConsentAction,
    ConsentMethod,
    ConsentRecord,
    Contact,
    ContactSource,
    EmailStatus,
    EngagementStatus,
    PendingSubscription,
    SignupForm,
    SignupFormOffer,
    Subscription,
    SubscriptionStatus,
    SubscriptionType,
    Suppression,
    SuppressionReason,
)
from crm.pagination import EstimatedCountPaginator

_BADGE = '<span class="dw-badge dw-{}" title="{}">{}</span>'

# Other apps add to the contact page without crm importing them: sections below the fields
# (the timeline of emails) and links at the top (write an email). Each callable gets the
# request and the contact; a panel returns HTML ("" for nothing), a tool (url, label) pairs.
CONTACT_PANELS: list[Callable[[HttpRequest, Contact], str]] = []
CONTACT_TOOLS: list[Callable[[HttpRequest, Contact], list[tuple[str, str]]]] = []
# ...and actions on the contact list (enroll in a sequence): admin action functions
# (modeladmin, request, queryset) with @admin.action's description and permissions.
CONTACT_ACTIONS: list[Callable] = []


def short_datetime(value) -> str:
    """'2026-11-02 09:30' in the current time zone, or a dash."""
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M") if value else "—"


class SubscriptionFilter(admin.SimpleListFilter):
    """Filter by subscription type and status in one choice ("Newsletter · subscribed")."""

    title = "subscription"
    parameter_name = "subscription"

    def lookups(self, request, model_admin):
        types = SubscriptionType.objects.order_by("name").values_list("pk", "name")
        return [
            (f"{pk}:{status.value}", f"{name} · {status.label.lower()}")
            for pk, name in types
            for status in SubscriptionStatus
        ]

    def queryset(self, request, queryset):
        # Only the offered choices are applied; anything else typed into the URL is ignored.
        if self.value() not in dict(self.lookup_choices):
            return queryset
        type_id, _, status = self.value().partition(":")
        return queryset.filter(
            Exists(Subscription.objects.filter(contact=OuterRef("pk"), subscription_type_id=type_id, status=status))
        )


class SuppressedFilter(admin.SimpleListFilter):
    title = "suppressed"
    parameter_name = "suppressed"

    def lookups(self, request, model_admin):
        return [("yes", "Suppressed"), ("no", "Not suppressed")]

    def queryset(self, request, queryset):
        suppressed = Exists(Suppression.objects.filter(email=OuterRef("email_normalized")))
        if self.value() == "yes":
            return queryset.filter(suppressed)
        if self.value() == "no":
            return queryset.exclude(suppressed)
        return queryset


class ContactChangeList(ChangeList):
    """The contact list, marking suppressed addresses with one lookup for the page's rows."""

    def get_results(self, request):
        super().get_results(request)
        # Only the page's addresses: a per-row subquery would make PostgreSQL hash the whole
        # suppression list on every page.
        emails = [contact.email_normalized for contact in self.result_list]
        suppressed = set(Suppression.objects.filter(email__in=emails).values_list("email", flat=True))
        for contact in self.result_list:
            contact.suppressed = contact.email_normalized in suppressed


class SubscriptionInlineForm(forms.ModelForm):
    """Staff may subscribe or unsubscribe; a person's own opt-out is never overridden here."""

    status = forms.ChoiceField(
        choices=[(SubscriptionStatus.SUBSCRIBED, "Subscribed"), (SubscriptionStatus.UNSUBSCRIBED, "Unsubscribed")]
    )

    class Meta:
        model = Subscription
        fields = ["subscription_type", "status"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # An existing row keeps its type; staff change its status instead.
            self.fields["subscription_type"].disabled = True

    def clean(self):
        cleaned = super().clean()
        subscription_type = cleaned.get("subscription_type")
        if cleaned.get("status") == SubscriptionStatus.SUBSCRIBED and subscription_type and self.has_changed():
            refusal = consent.staff_subscribe_refusal(self.instance.contact, subscription_type)
            if refusal:
                raise forms.ValidationError(refusal)
        return cleaned


class SubscriptionInline(admin.TabularInline):
    model = Subscription
    form = SubscriptionInlineForm
    extra = 0
    can_delete = False
    fields = ["subscription_type", "status", "subscribed_at", "unsubscribed_at", "created_at"]
    readonly_fields = ["subscribed_at", "unsubscribed_at", "created_at"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        # No add/change/delete links to the subscription type itself from a contact's page.
        for option in ("can_add_related", "can_change_related", "can_delete_related", "can_view_related"):
            setattr(field.widget, option, False)
        return field


class ConsentHistoryInline(admin.TabularInline):
    model = ConsentRecord
    verbose_name = "consent record"
    verbose_name_plural = "Consent history (append-only)"
    extra = 0
    can_delete = False
    fields = readonly_fields = [
        "created_at",
        "action",
        "subscription_type",
        "method",
        "lawful_basis",
        "source_detail",
        "staff_user",
        "ip_address",
        "consent_text",
    ]
    ordering = ["-created_at", "-id"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("subscription_type", "staff_user")


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["email", "name", "company", "status_badges", "last_engaged", "created"]
    list_filter = [
        SubscriptionFilter,
        "engagement_status",
        "email_status",
        "do_not_contact",
        SuppressedFilter,
        "source",
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["email", "first_name", "last_name", "company"]
    search_help_text = (
        "Search by any part of the email address, name or company (at least 3 characters; "
        "shorter terms match the start of the address)."
    )
    ordering = ["-created_at"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    raw_id_fields = ["owner"]
    inlines = [SubscriptionInline, ConsentHistoryInline]
    actions = ["unsubscribe_from_all", "suppress", "export_selected", "export_selected_xlsx"]
    readonly_fields = [
        "status_badges",
        "email_normalized",
        "is_role_address",
        "unsubscribed_from_all_at",
        "engagement_status",
        "last_sent_at",
        "last_open_at",
        "last_click_at",
        "last_engaged_at",
        "sends_since_engagement",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "status_badges",
                    "email",
                    "email_normalized",
                    "is_role_address",
                    "email_status",
                    "do_not_contact",
                ]
            },
        ),
        ("Person", {"fields": ["first_name", "last_name", "company", "phone", "time_zone", "language", "owner"]}),
        ("Properties", {"fields": ["properties", "source"], "classes": ["collapse"]}),
        (
            "Engagement",
            {
                "fields": [
                    "engagement_status",
                    "last_sent_at",
                    "last_open_at",
                    "last_click_at",
                    "last_engaged_at",
                    "sends_since_engagement",
                    "unsubscribed_from_all_at",
                ]
            },
        ),
        ("Record", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_actions(self, request):
        actions = super().get_actions(request)
        for action in CONTACT_ACTIONS:
            allowed = getattr(action, "allowed_permissions", ())
            if all(getattr(self, f"has_{permission}_permission")(request) for permission in allowed):
                actions[action.__name__] = (action, action.__name__, action.short_description)
        return actions

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        # The trigram index needs three characters; a shorter term would scan the whole table,
        # so it matches the start of the normalized address through its b-tree index.
        if term and len(term) < 3:
            return queryset.filter(email_normalized__startswith=term.lower()), False
        # A whole address is looked up on the unique index: its trigrams (".com") are everywhere.
        try:
            return queryset.filter(email_normalized=normalize_address(term)), False
        except ValidationError:
            pass
        if not term:
            return queryset, False
        # Each word may be in any of the searched columns, as in Django's own search, but the four
        # are searched as one text: the expression of the one trigram index that serves the search
        # (migration 0010), which this must match exactly. A word cannot match across two columns
        # (it holds no space); a quoted phrase can ("Ann Lee": first and last name).
        columns = (f'"crm_contact"."{column}"' for column in ("email", "first_name", "last_name", "company"))
        searched = RawSQL(" || ' ' || ".join(columns), (), output_field=models.TextField())
        queryset = queryset.alias(searched=searched)
        for bit in smart_split(term):
            if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
                bit = unescape_string_literal(bit)
            queryset = queryset.filter(searched__icontains=bit)
        return queryset, False

    def get_queryset(self, request):
        subscriptions = Prefetch(
            "subscriptions",
            queryset=Subscription.objects.select_related("subscription_type").order_by("subscription_type__name"),
        )
        return super().get_queryset(request).prefetch_related(subscriptions)

    def get_changelist(self, request, **kwargs):
        return ContactChangeList

    @admin.display(description="Name", ordering="last_name")
    def name(self, contact: Contact) -> str:
        return contact.full_name

    @admin.display(description="Last engaged", ordering="last_engaged_at")
    def last_engaged(self, contact: Contact) -> str:
        return short_datetime(contact.last_engaged_at)

    @admin.display(description="Created", ordering="created_at")
    def created(self, contact: Contact) -> str:
        return short_datetime(contact.created_at)

    @admin.display(description="Status")
    def status_badges(self, contact: Contact) -> str:
        badges = [
            ("subscribed", "Subscribed", s.subscription_type.name)
            if s.status == SubscriptionStatus.SUBSCRIBED
            else ("pending", "Pending confirmation", f"{s.subscription_type.name} (pending)")
            for s in contact.subscriptions.all()
            if s.status != SubscriptionStatus.UNSUBSCRIBED
        ]
        if contact.do_not_contact:
            badges.append(("danger", "Asked not to be contacted at all: no email of any kind", "do not contact"))
        if contact.unsubscribed_from_all_at:
            badges.append(("warning", "Unsubscribed from all marketing email", "unsubscribed (all)"))
        suppressed = getattr(contact, "suppressed", None)
        if suppressed is None:
            suppressed = contact.is_suppressed()
        if suppressed:
            badges.append(("danger", "Address is on the suppression list", "suppressed"))
        if contact.email_status != EmailStatus.OK:
            badges.append(("danger", "Email status", contact.get_email_status_display().lower()))
        if contact.engagement_status == EngagementStatus.UNENGAGED:
            badges.append(("warning", "No opens or clicks in recent sends", "unengaged"))
        if contact.is_role_address:
            badges.append(("muted", "Role address (postmaster@, info@ …)", "role"))
        return format_html_join(" ", _BADGE, badges)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.source = ContactSource.ADMIN
            obj.owner = obj.owner or request.user
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        if formset.model is not Subscription:
            return super().save_formset(request, form, formset, change)
        # Subscriptions change only through the consent functions, which write the log.
        now = timezone.now()
        for subscription in formset.save(commit=False):
            apply = (
                consent.subscribe_contact
                if subscription.status == SubscriptionStatus.SUBSCRIBED
                else consent.unsubscribe_contact
            )
            apply(
                form.instance,
                subscription.subscription_type,
                method=ConsentMethod.STAFF,
                now=now,
                staff_user=request.user,
                source_detail=f"admin: {request.user.get_username()}",
                consent_text=f"Changed by {request.user.get_username()} in the admin.",
            )

    def confirm(self, request: HttpRequest, queryset, *, action: str, title: str, explanation: str, extra=None):
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "explanation": explanation,
            "count": queryset.count(),
            "action": action,
            "opts": self.model._meta,
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "extra": extra,
        }
        return TemplateResponse(request, "admin/crm/contact/confirm_action.html", context)

    @admin.action(description="Unsubscribe from all marketing email", permissions=["change"])
    def unsubscribe_from_all(self, request, queryset):
        if request.POST.get("confirmed") != "yes":
            return self.confirm(
                request,
                queryset,
                action="unsubscribe_from_all",
                title="Unsubscribe from all marketing email?",
                explanation=(
                    "Each contact is unsubscribed from every subscription type, a withdrawal is written "
                    "to their consent history, and their address is suppressed so no import can bring it "
                    "back. Only the person can opt in again."
                ),
            )
        changed = consent.unsubscribe_from_all(
            queryset,
            method=ConsentMethod.STAFF,
            now=timezone.now(),
            staff_user=request.user,
            source_detail=f"admin: {request.user.get_username()}",
        )
        skipped = queryset.count() - changed
        self.message_user(
            request,
            f"Unsubscribed {changed} contact(s) from all marketing email"
            + (f"; {skipped} already were." if skipped else "."),
            messages.SUCCESS,
        )
        return None

    @admin.action(description="Suppress addresses", permissions=["change"])
    def suppress(self, request, queryset):
        note = request.POST.get("note", "").strip()
        if request.POST.get("confirmed") != "yes":
            return self.confirm(
                request,
                queryset,
                action="suppress",
                title="Suppress these addresses?",
                explanation=(
                    "No marketing email will go to these addresses, even if the contacts are deleted and "
                    "imported again. Subscriptions and consent are kept."
                ),
                extra="note",
            )
        added = suppression.suppress_contacts(
            queryset,
            reason=SuppressionReason.MANUAL,
            now=timezone.now(),
            source=f"admin: {request.user.get_username()}",
            note=note,
            created_by=request.user,
        )
        self.message_user(request, f"Suppressed {added} address(es); the others already were.", messages.SUCCESS)
        return None

    @admin.action(description="Export as CSV", permissions=["view"])
    def export_selected(self, request, queryset):
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(
            stream_csv(contact_rows(queryset), EXPORT_COLUMNS), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="contacts-{stamp}.csv"'
        return response

    @admin.action(description="Export as Excel (XLSX)", permissions=["view"])
    def export_selected_xlsx(self, request, queryset):
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        # Deleted when the response closes it, after the download.
        handle = tempfile.NamedTemporaryFile(suffix=".xlsx")  # noqa: SIM115 (FileResponse closes it)
        write_xlsx(contact_rows(queryset), EXPORT_COLUMNS, Path(handle.name))
        return FileResponse(handle, as_attachment=True, filename=f"contacts-{stamp}.xlsx")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        contact = self.get_object(request, object_id)
        if contact is not None:
            extra_context = {
                **(extra_context or {}),
                "contact_panels": [panel for render in CONTACT_PANELS if (panel := render(request, contact))],
                "contact_tools": [tool for tools in CONTACT_TOOLS for tool in tools(request, contact)],
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        data = path(
            "<int:contact_id>/data.json",
            self.admin_site.admin_view(self.data_view),
            name="crm_contact_data",
        )
        return [data, *super().get_urls()]

    def data_view(self, request, contact_id: int):
        """Everything we hold about one contact, as JSON (for data-subject access requests)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        contact = get_object_or_404(Contact, pk=contact_id)
        response = JsonResponse(contact_record(contact), json_dumps_params={"indent": 2, "ensure_ascii": False})
        response["Content-Disposition"] = f'attachment; filename="contact-{contact.pk}.json"'
        return response

    class Media:
        css = {"all": ["crm/admin.css"]}


@admin.register(SubscriptionType)
class SubscriptionTypeAdmin(admin.ModelAdmin):
    list_display = ["name", "public", "requires_double_opt_in", "active", "subscribed", "pending", "created_at"]
    list_filter = ["active", "public", "requires_double_opt_in"]
    search_fields = ["name", "description"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                subscribed_count=Count("subscriptions", filter=Q(subscriptions__status=SubscriptionStatus.SUBSCRIBED)),
                pending_count=Count("subscriptions", filter=Q(subscriptions__status=SubscriptionStatus.PENDING)),
            )
        )

    @admin.display(description="Subscribed", ordering="subscribed_count")
    def subscribed(self, subscription_type: SubscriptionType) -> int:
        return subscription_type.subscribed_count

    @admin.display(description="Pending", ordering="pending_count")
    def pending(self, subscription_type: SubscriptionType) -> int:
        return subscription_type.pending_count


class RecordAdmin(admin.ModelAdmin):
    """A log that staff read and never write: no add, change or delete, whatever their role."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ConsentRecord)
class ConsentRecordAdmin(RecordAdmin):
    list_display = ["created_at", "email", "action", "subscription_scope", "method", "lawful_basis", "source_detail"]
    list_filter = ["action", "method", "lawful_basis", "subscription_type", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["email"]
    search_help_text = "Search by the exact email address."
    list_select_related = ["subscription_type"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    readonly_fields = [field.name for field in ConsentRecord._meta.fields]

    @admin.display(description="Subscription type", ordering="subscription_type__name")
    def subscription_scope(self, record: ConsentRecord) -> str:
        return record.subscription_type.name if record.subscription_type else "All marketing email"

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().lower()
        return (queryset.filter(email=term) if term else queryset), False


class SuppressionForm(forms.ModelForm):
    class Meta:
        model = Suppression
        fields = ["email", "reason", "note"]


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    form = SuppressionForm
    list_display = ["email", "reason", "source", "created_by", "created_at"]
    list_filter = ["reason", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["email"]
    search_help_text = "Search by the start of the email address."
    list_select_related = ["created_by"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().lower()
        if not term:
            return queryset, False
        return queryset.filter(email__startswith=term), False

    def get_readonly_fields(self, request, obj=None):
        return ["email", "reason", "source", "created_by", "created_at"] if obj else []

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_at = timezone.now()
            obj.created_by = request.user
            obj.source = f"admin: {request.user.get_username()}"
        super().save_model(request, obj, form, change)


class SignupFormOfferInline(admin.TabularInline):
    model = SignupFormOffer
    extra = 1
    fields = ["subscription_type", "pre_ticked", "position"]
    autocomplete_fields = ["subscription_type"]
    verbose_name = "subscription type offered"
    verbose_name_plural = "Subscription types offered"


@admin.register(SignupForm)
class SignupFormAdmin(admin.ModelAdmin):
    list_display = [
        "title",
        "public_link",
        "active",
        "double_opt_in",
        "submissions",
        "confirmations",
        "confirmation_rate",
    ]
    list_filter = ["active", "double_opt_in"]
    search_fields = ["title", "slug"]
    prepopulated_fields = {"slug": ["title"]}
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    inlines = [SignupFormOfferInline]
    readonly_fields = ["embed_code", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["title", "slug", "active", "intro"]}),
        ("Fields", {"fields": ["ask_first_name", "ask_last_name", "ask_company"]}),
        (
            "Consent",
            {
                "fields": ["consent_text", "double_opt_in", "success_text", "confirmed_redirect_url"],
                "description": "The consent text is stored with every consent record this form writes.",
            },
        ),
        ("Embed", {"fields": ["embed_code"]}),
        ("Record", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def get_queryset(self, request):
        granted = Q(consent_records__action=ConsentAction.GRANTED)
        confirmed = Q(consent_records__action=ConsentAction.CONFIRMED)
        return (
            super()
            .get_queryset(request)
            .annotate(
                submission_count=Count("consent_records__contact", filter=granted, distinct=True),
                confirmation_count=Count("consent_records__contact", filter=confirmed, distinct=True),
            )
        )

    @admin.display(description="Page")
    def public_link(self, signup_form: SignupForm) -> str:
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">/subscribe/{}/</a>',
            signup_form.get_absolute_url(),
            signup_form.slug,
        )

    @admin.display(description="Submissions", ordering="submission_count")
    def submissions(self, signup_form: SignupForm) -> int:
        return signup_form.submission_count

    @admin.display(description="Confirmations", ordering="confirmation_count")
    def confirmations(self, signup_form: SignupForm) -> int | str:
        return signup_form.confirmation_count

    @admin.display(description="Confirmation rate")
    def confirmation_rate(self, signup_form: SignupForm) -> str:
        if not signup_form.submission_count:
            return "—"
        return f"{signup_form.confirmation_count / signup_form.submission_count:.0%}"

    @admin.display(description="Embed code")
    def embed_code(self, signup_form: SignupForm) -> str:
        if not signup_form.pk:
            return "Save the form to get its embed code."
        url = f"{settings.SITE_URL}{signup_form.get_absolute_url()}?{urlencode({'embed': 1})}"
        snippet = (
            f'<iframe src="{url}" title="{signup_form.title}" width="100%" height="560" '
            f'style="border:0;max-width:34rem" loading="lazy"></iframe>'
        )
        return format_html(
            '<textarea id="dw-embed" rows="3" cols="80" readonly>{}</textarea><br>'
            '<button type="button" class="button" '
            "onclick=\"navigator.clipboard.writeText(document.getElementById('dw-embed').value);"
            "this.textContent='Copied';\">Copy embed code</button>"
            '<p class="help">Paste it into any web page. Only this form may be framed by other sites.</p>',
            snippet,
        )


@admin.register(PendingSubscription)
class PendingSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["contact", "subscription_type", "requested_at", "confirmation_sent_at"]
    list_filter = ["subscription_type", ("requested_at", admin.DateFieldListFilter)]
    list_select_related = ["contact", "subscription_type"]
    search_fields = ["contact__email_normalized__startswith"]
    search_help_text = "Search by the start of the email address."
    raw_id_fields = ["contact"]
    actions = ["resend_confirmation"]
    ordering = ["-requested_at"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def get_queryset(self, request):
        return super().get_queryset(request).filter(status=SubscriptionStatus.PENDING)

    def get_search_results(self, request, queryset, search_term):
        return super().get_search_results(request, queryset, search_term.strip().lower())

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Resend the confirmation email", permissions=["view"])
    def resend_confirmation(self, request, queryset):
        now = timezone.now()
        contacts = Contact.objects.filter(pk__in=queryset.values("contact"))
        queued = sum(optin.request_confirmation(contact, now=now) for contact in contacts)
        skipped = contacts.count() - queued
        self.message_user(
            request,
            f"Queued {queued} confirmation email(s)"
            + (
                f"; {skipped} skipped because one was sent in the last {settings.CONFIRMATION_RESEND_MINUTES} minutes."
                if skipped
                else "."
            ),
            messages.SUCCESS,
        )


from crm.importing import admin as import_admin  # noqa: E402, F401
