"""Admin for one-to-one email: connected inboxes, the compose screen on the contact page, the
message log, sequences and enrollments. Imported at the end of campaigns/admin.py."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from campaigns import inboxes, onetoone, sequences, timeline, timeline_onetoone
from campaigns.models import (
    ConnectedInbox,
    EnrollmentStatus,
    InboxKind,
    OneToOneEmail,
    OneToOneStatus,
    Sequence,
    SequenceEnrollment,
    SequenceStep,
    StopReason,
)
from crm import admin as crm_admin
from crm.admin import RecordAdmin, short_datetime
from crm.exporting import CONTACT_RECORD_PARTS
from crm.models import Contact

_STATUS_BADGE = '<span class="dw-badge dw-{}">{}</span>'
_PASSWORD_HELP = "Stored encrypted and never shown again. Leave blank to keep the current one."


def _can_write(user) -> bool:
    return user.has_perm("campaigns.add_onetooneemail")


def _can_enroll(user) -> bool:
    return user.has_perm("campaigns.add_sequenceenrollment")


class ConnectedInboxForm(forms.ModelForm):
    smtp_password = forms.CharField(
        label="SMTP password", required=False, widget=forms.PasswordInput(render_value=False), help_text=_PASSWORD_HELP
    )
    imap_password = forms.CharField(
        label="IMAP password", required=False, widget=forms.PasswordInput(render_value=False), help_text=_PASSWORD_HELP
    )

    class Meta:
        model = ConnectedInbox
        fields = [
            "user",
            "kind",
            "from_name",
            "from_email",
            "smtp_host",
            "smtp_port",
            "smtp_security",
            "smtp_username",
            "imap_host",
            "imap_port",
            "imap_security",
            "imap_username",
            "imap_folder",
            "imap_sent_folder",
        ]

    def clean(self):
        cleaned = super().clean()
        inbox = self.instance
        needs_smtp_password = cleaned.get("kind") == InboxKind.CONNECTED and cleaned.get("smtp_username")
        if needs_smtp_password and not cleaned.get("smtp_password") and not inbox.smtp_password_encrypted:
            self.add_error("smtp_password", "Enter the password for the SMTP user.")
        if cleaned.get("imap_host") and not cleaned.get("imap_password") and not inbox.imap_password_encrypted:
            self.add_error("imap_password", "Enter the password for the IMAP account.")
        return cleaned

    def save(self, commit=True):
        inbox = super().save(commit=False)
        if self.cleaned_data.get("smtp_password"):
            inbox.set_smtp_password(self.cleaned_data["smtp_password"])
        if self.cleaned_data.get("imap_password"):
            inbox.set_imap_password(self.cleaned_data["imap_password"])
        if commit:
            inbox.save()
        return inbox


@admin.register(ConnectedInbox)
class ConnectedInboxAdmin(admin.ModelAdmin):
    form = ConnectedInboxForm
    list_display = ["__str__", "user", "kind", "smtp_server", "imap_account", "last_test", "imap_read"]
    list_filter = ["kind"]
    list_select_related = ["user"]
    search_fields = ["from_email", "from_name", "user__username"]
    actions = ["test_connection"]
    readonly_fields = ["last_test_at", "last_test_result", "imap_last_read", "imap_last_problem"]
    fieldsets = [
        (None, {"fields": ["user", "kind", "from_name", "from_email"]}),
        (
            "Sending (SMTP)",
            {
                "fields": ["smtp_host", "smtp_port", "smtp_security", "smtp_username", "smtp_password"],
                "description": "Your mailbox provider's outgoing server, as a mail client uses it. "
                "A hosted inbox leaves these blank: it sends through Deliverwell, from an address on a "
                "passing sending domain.",
            },
        ),
        (
            "Replies and bounces (IMAP, optional)",
            {
                "fields": [
                    "imap_host",
                    "imap_port",
                    "imap_security",
                    "imap_username",
                    "imap_password",
                    "imap_folder",
                    "imap_sent_folder",
                ],
                "description": "Read for replies (which stop sequences) and bounce messages (recorded on the "
                "contact). Reading never marks your mail as read.",
            },
        ),
        ("Checks", {"fields": ["last_test_at", "last_test_result", "imap_last_read", "imap_last_problem"]}),
    ]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(user=request.user)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser:
            return fieldsets
        first = {**fieldsets[0][1], "fields": [f for f in fieldsets[0][1]["fields"] if f != "user"]}
        return [(None, first), *fieldsets[1:]]

    def has_add_permission(self, request):
        # One inbox per staff member: theirs, once.
        if not request.user.is_superuser and ConnectedInbox.objects.filter(user=request.user).exists():
            return False
        return super().has_add_permission(request)

    def save_model(self, request, obj, form, change):
        if not request.user.is_superuser:
            obj.user = request.user
        super().save_model(request, obj, form, change)

    @admin.display(description="SMTP")
    def smtp_server(self, inbox: ConnectedInbox) -> str:
        if inbox.kind == InboxKind.HOSTED:
            return "hosted"
        return f"{inbox.smtp_host}:{inbox.smtp_port} ({inbox.get_smtp_security_display().split(' (')[0]})"

    @admin.display(description="IMAP")
    def imap_account(self, inbox: ConnectedInbox) -> str:
        return f"{inbox.imap_username} at {inbox.imap_host}" if inbox.imap_host else "—"

    @admin.display(description="Last test")
    def last_test(self, inbox: ConnectedInbox) -> str:
        if not inbox.last_test_at:
            return "never"
        ok = inbox.last_test_result.startswith("OK")
        return format_html(
            _STATUS_BADGE + " {}",
            "subscribed" if ok else "danger",
            "OK" if ok else "failed",
            short_datetime(inbox.last_test_at),
        )

    @admin.display(description="IMAP last read")
    def imap_last_read(self, inbox: ConnectedInbox) -> str:
        return short_datetime(inbox.imap_read_at)

    @admin.display(description="IMAP problem")
    def imap_last_problem(self, inbox: ConnectedInbox) -> str:
        return inbox.imap_problem or "—"

    @admin.display(description="IMAP read")
    def imap_read(self, inbox: ConnectedInbox) -> str:
        if inbox.imap_problem:
            return format_html(_STATUS_BADGE, "danger", "failing")
        return short_datetime(inbox.imap_read_at)

    @admin.action(description="Test connection", permissions=["view"])
    def test_connection(self, request, queryset):
        now = timezone.now()
        for inbox in queryset:
            result = inboxes.check_connection(inbox, now=now)
            level = messages.SUCCESS if result.ok else messages.ERROR
            self.message_user(request, f"{inbox}: {'OK' if result.ok else 'failed'}. {result}", level)


@admin.register(OneToOneEmail)
class OneToOneEmailAdmin(RecordAdmin):
    list_display = ["sent_at", "subject", "email", "sender", "status_badge", "server_reply", "bounced_at", "replied_at"]
    list_filter = ["status", ("sent_at", admin.DateFieldListFilter), "inbox"]
    list_select_related = ["sender"]
    search_fields = ["email"]
    search_help_text = "Search by the start of the email address."
    readonly_fields = [
        "sent_at",
        "contact",
        "email",
        "sender",
        "inbox_label",
        "subject",
        "body",
        "reply_to",
        "status",
        "smtp_code",
        "smtp_reply",
        "message_id",
        "enrollment",
        "step",
        "bounced_at",
        "bounce_category",
        "bounce_reply",
        "replied_at",
        "reply_subject",
    ]
    fields = readonly_fields

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().lower()
        return (queryset.filter(email__startswith=term) if term else queryset), False

    @admin.display(description="Status", ordering="status")
    def status_badge(self, email: OneToOneEmail) -> str:
        return format_html(_STATUS_BADGE, timeline_onetoone.STATUS_STYLE[email.status], email.get_status_display())

    @admin.display(description="Server said")
    def server_reply(self, email: OneToOneEmail) -> str:
        return f"{email.smtp_code or ''} {email.smtp_reply}".strip()[:120]

    def get_urls(self):
        write = path("write/<int:contact_id>/", self.admin_site.admin_view(self.write_view), name="campaigns_write")
        return [write, *super().get_urls()]

    def write_view(self, request: HttpRequest, contact_id: int):
        """Compose a one-to-one email to one contact; it goes out on submit."""
        if not _can_write(request.user):
            raise PermissionDenied
        contact = get_object_or_404(Contact, pk=contact_id)
        inbox = onetoone.inbox_of(request.user)
        blockers = _blockers(contact, inbox)
        form = ComposeForm(request.POST or None)
        if request.method == "POST" and form.is_valid() and not blockers:
            try:
                logged = onetoone.send_one_to_one(
                    contact=contact,
                    sender=request.user,
                    subject=form.cleaned_data["subject"],
                    body=form.cleaned_data["body"],
                    reply_to=form.cleaned_data["reply_to"],
                    now=timezone.now(),
                )
            except onetoone.Refused as refused:
                form.add_error(None, str(refused))
            else:
                reply = f"{logged.smtp_code or ''} {logged.smtp_reply}".strip()
                if logged.status == OneToOneStatus.SENT:
                    self.message_user(request, f"Sent to {contact.email} through {logged.inbox_label}. {reply}")
                    return HttpResponseRedirect(reverse("admin:crm_contact_change", args=[contact.pk]) + "#timeline")
                what = "The server rejected the message" if logged.status == OneToOneStatus.REJECTED else "Not sent"
                form.add_error(None, f"{what}: {reply}")
                contact.refresh_from_db()
                blockers = _blockers(contact, inbox)  # a rejected address may be suppressed now
        context = {
            **self.admin_site.each_context(request),
            "title": f"Write to {contact.full_name or contact.email}",
            "contact": contact,
            "inbox": inbox,
            "blockers": blockers,
            "form": form,
            "opts": Contact._meta,
            "variables": ["contact.first_name", "contact.last_name", "contact.full_name", "contact.company"],
        }
        return TemplateResponse(request, "admin/campaigns/onetoone/compose.html", context)


def _blockers(contact: Contact, inbox: ConnectedInbox | None) -> list[str]:
    """What stops this user writing to this contact, in plain words."""
    problems = [
        None if inbox else "You have no connected inbox yet.",
        onetoone.contact_refusal(contact),
        onetoone.from_address_refusal(inbox) if inbox else None,
    ]
    return [problem for problem in problems if problem]


class ComposeForm(forms.Form):
    subject = forms.CharField(max_length=250, widget=forms.TextInput(attrs={"size": 80}))
    body = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 14, "cols": 80}),
        help_text="Plain text, as from your mail client. No unsubscribe footer is added: this is not marketing.",
    )
    reply_to = forms.EmailField(label="Reply-To", required=False, help_text="Blank: replies come to your own address.")


class SequenceStepInline(admin.StackedInline):
    model = SequenceStep
    extra = 1
    fields = ["day", "subject", "body"]


@admin.register(Sequence)
class SequenceAdmin(admin.ModelAdmin):
    list_display = ["name", "active", "step_count", "active_count", "created_at"]
    list_filter = ["active"]
    search_fields = ["name"]
    inlines = [SequenceStepInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                step_total=Count("steps", distinct=True),
                active_total=Count("enrollments", filter=Q(enrollments__status=EnrollmentStatus.ACTIVE), distinct=True),
            )
        )

    @admin.display(description="Steps", ordering="step_total")
    def step_count(self, sequence: Sequence) -> int:
        return sequence.step_total

    @admin.display(description="Enrolled now", ordering="active_total")
    def active_count(self, sequence: Sequence) -> int:
        return sequence.active_total

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(SequenceEnrollment)
class SequenceEnrollmentAdmin(admin.ModelAdmin):
    list_display = ["contact", "sequence", "status", "next_step", "next_due_at", "enrolled_by", "stop_reason"]
    list_filter = ["status", "stop_reason", "sequence"]
    list_select_related = ["contact", "sequence", "next_step", "enrolled_by"]
    search_fields = ["contact__email_normalized__startswith"]
    readonly_fields = [
        "contact",
        "sequence",
        "status",
        "next_step",
        "next_due_at",
        "enrolled_by",
        "enrolled_at",
        "stop_reason",
        "stopped_by",
        "ended_at",
    ]
    fields = readonly_fields
    actions = ["stop"]

    def has_add_permission(self, request):
        return False  # from the contact page or the contact list's action

    @admin.action(description="Stop the selected enrollments", permissions=["change"])
    def stop(self, request, queryset):
        stopped = queryset.stop(reason=StopReason.MANUAL, now=timezone.now(), by=request.user)
        self.message_user(request, f"Stopped {stopped} enrollment(s); the others had already ended.")

    def get_urls(self):
        enroll = path("enroll/<int:contact_id>/", self.admin_site.admin_view(self.enroll_view), name="campaigns_enroll")
        return [enroll, *super().get_urls()]

    def enroll_view(self, request: HttpRequest, contact_id: int):
        if not _can_enroll(request.user):
            raise PermissionDenied
        contact = get_object_or_404(Contact, pk=contact_id)
        form = EnrollForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            sequence = form.cleaned_data["sequence"]
            try:
                enrollment = sequences.enroll(contact, sequence, user=request.user, now=timezone.now())
            except sequences.EnrollmentRefused as refused:
                form.add_error(None, str(refused))
            else:
                when = short_datetime(enrollment.next_due_at)
                self.message_user(request, f"Enrolled {contact.email} in {sequence}; the first step goes {when} UTC.")
                return HttpResponseRedirect(reverse("admin:crm_contact_change", args=[contact.pk]) + "#timeline")
        context = {
            **self.admin_site.each_context(request),
            "title": f"Enroll {contact.full_name or contact.email} in a sequence",
            "contact": contact,
            "form": form,
            "opts": Contact._meta,
        }
        return TemplateResponse(request, "admin/campaigns/onetoone/enroll.html", context)


class EnrollForm(forms.Form):
    sequence = forms.ModelChoiceField(queryset=Sequence.objects.filter(active=True))


def contact_tools(request: HttpRequest, contact: Contact) -> list[tuple[str, str]]:
    tools = []
    if _can_write(request.user):
        tools.append((reverse("admin:campaigns_write", args=[contact.pk]), "Write an email"))
    if _can_enroll(request.user):
        tools.append((reverse("admin:campaigns_enroll", args=[contact.pk]), "Enroll in a sequence"))
    return tools


@admin.action(description="Enroll in a sequence", permissions=["view"])
def enroll_in_sequence(modeladmin, request, queryset):
    if not _can_enroll(request.user):
        raise PermissionDenied
    form = EnrollForm(request.POST if request.POST.get("confirmed") == "yes" else None)
    if form.is_bound and form.is_valid():
        sequence = form.cleaned_data["sequence"]
        try:
            result = sequences.enroll_contacts(queryset, sequence, user=request.user, now=timezone.now())
        except sequences.EnrollmentRefused as refused:
            modeladmin.message_user(request, str(refused), messages.ERROR)
            return None
        modeladmin.message_user(request, f"Enrolled {result.enrolled} contact(s) in {sequence}.", messages.SUCCESS)
        for reason, count in result.refused.items():
            modeladmin.message_user(request, f"Not enrolled, {count} contact(s): {reason}", messages.WARNING)
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Enroll in a sequence",
        "form": form,
        "count": queryset.count(),
        "limit": settings.ONE_TO_ONE_BULK_LIMIT,
        "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "opts": Contact._meta,
    }
    return TemplateResponse(request, "admin/campaigns/onetoone/enroll_action.html", context)


crm_admin.CONTACT_TOOLS.append(contact_tools)
CONTACT_RECORD_PARTS["one_to_one_email"] = timeline_onetoone.one_to_one_record
crm_admin.CONTACT_ACTIONS.append(enroll_in_sequence)
timeline.SOURCES.extend([timeline_onetoone.one_to_one_entries, timeline_onetoone.sequence_entries])
