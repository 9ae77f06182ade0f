"""Contact imports in the admin: upload → preview (a dry run of a sample) → confirm → a Celery job.

The views parse, call one function of `crm.importing.flow`, and render. Starting an import
needs the add permission on import jobs, cancelling one the change permission.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import AdminRadioSelect
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from crm.admin import short_datetime
from crm.exporting import stream_csv
from crm.importing import flow
from crm.importing.presets import PRESETS
from crm.importing.reading import UnreadableFile
from crm.models import FieldPolicy, ImportBasis, ImportJob, ImportStatus, LawfulBasis, SubscriptionType

# Outcome → label, in the order the preview and the job page list them.
COUNT_LABELS = {
    "rows": "Rows read",
    "new": "New contacts",
    "updated": "Existing contacts updated",
    "subscribed": "Subscriptions added",
    "suppressed": "Suppressed (unsubscribed or cleaned at the source)",
    "no_consent": "Not subscribed: no consent",
    "kept_out": "Not subscribed: suppressed or unsubscribed here",
    "invalid": "Invalid rows",
    "duplicate": "Duplicates in the file",
}
PREVIEW_PROBLEMS = 20
JOB_PROBLEMS = 50
_STATUS_BADGES = {
    ImportStatus.PENDING: "pending",
    ImportStatus.RUNNING: "warning",
    ImportStatus.DONE: "subscribed",
    ImportStatus.FAILED: "danger",
    ImportStatus.CANCELLED: "muted",
}


class ImportUploadForm(forms.Form):
    file = forms.FileField(help_text="A CSV file, or the ZIP of CSV files Mailchimp exports.")
    preset = forms.ChoiceField(
        label="Source",
        choices=[("auto", "Recognise from the columns"), *((name, preset.label) for name, preset in PRESETS.items())],
        initial="auto",
    )
    subscription_types = forms.ModelMultipleChoiceField(
        queryset=SubscriptionType.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple(attrs={"class": "radiolist"}),
        help_text="Rows with a basis for consent are subscribed to these.",
    )
    basis = forms.ChoiceField(
        label="Consent basis",
        choices=ImportBasis.choices,
        initial=ImportBasis.EVIDENCE,
        widget=AdminRadioSelect(attrs={"class": "radiolist"}),
    )
    lawful_basis = forms.ChoiceField(choices=LawfulBasis.choices, initial=LawfulBasis.CONSENT)
    attestation = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="For an attested import: how these people agreed (stored with every consent record).",
    )
    field_policy = forms.ChoiceField(
        label="Existing contacts",
        choices=FieldPolicy.choices,
        initial=FieldPolicy.FILL_BLANKS,
        widget=AdminRadioSelect(attrs={"class": "radiolist"}),
    )

    def clean(self):
        cleaned = super().clean()
        basis = cleaned.get("basis")
        if basis == ImportBasis.ATTESTED and not cleaned.get("attestation", "").strip():
            self.add_error("attestation", "An attested import needs the basis you attest to.")
        if basis in (ImportBasis.EVIDENCE, ImportBasis.ATTESTED) and not cleaned.get("subscription_types"):
            self.add_error(
                "subscription_types", "Choose the subscription types to subscribe to, or the basis “No consent”."
            )
        return cleaned


class ColumnMappingForm(forms.Form):
    """Which column of a generic CSV holds each field."""

    def __init__(self, *args, header: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        choices = [("", "—"), *((column, column) for column in header if column)]
        for name in flow.MAPPED_FIELDS:
            self.fields[name] = forms.ChoiceField(
                label=name.replace("_", " ").capitalize(), choices=choices, required=name == "email"
            )


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = [
        "file_name",
        "status_badge",
        "created_by",
        "created",
        "rows_read",
        "new",
        "subscribed",
        "suppressed",
        "invalid",
    ]
    list_display_links = ["file_name"]
    list_filter = ["status", ("created_by", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["created_by"]
    search_fields = ["file_name"]

    class Media:
        css = {"all": ["crm/admin.css"]}

    # The list.

    @admin.display(description="Status", ordering="status")
    def status_badge(self, job: ImportJob) -> str:
        if flow.is_draft(job):
            return format_html('<span class="dw-badge dw-pending">{}</span>', "preview, not started")
        return format_html(
            '<span class="dw-badge dw-{}">{}</span>', _STATUS_BADGES[job.status], job.get_status_display()
        )

    @admin.display(description="Created", ordering="created_at")
    def created(self, job: ImportJob) -> str:
        return short_datetime(job.created_at)

    def _count(self, job: ImportJob, name: str) -> int | str:
        return "—" if flow.is_draft(job) or name not in job.counts else job.counts[name]

    @admin.display(description="New")
    def new(self, job: ImportJob) -> int | str:
        return self._count(job, "new")

    @admin.display(description="Subscribed")
    def subscribed(self, job: ImportJob) -> int | str:
        return self._count(job, "subscribed")

    @admin.display(description="Suppressed")
    def suppressed(self, job: ImportJob) -> int | str:
        return self._count(job, "suppressed")

    @admin.display(description="Invalid")
    def invalid(self, job: ImportJob) -> int | str:
        return self._count(job, "invalid")

    # Permissions: jobs are a log; they are deleted only once they have ended.

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.status not in flow.ENDED:
            return False
        return super().has_delete_permission(request, obj)

    # Pages.

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/preview/", view(self.preview_view), name=f"{name}_preview"),
            path("<path:object_id>/cancel/", view(self.cancel_view), name=f"{name}_cancel"),
            path("<path:object_id>/status/", view(self.status_view), name=f"{name}_status"),
            path("<path:object_id>/errors.csv", view(self.error_report_view), name=f"{name}_errors"),
            *super().get_urls(),
        ]

    def _url(self, name: str, job: ImportJob | None = None) -> str:
        args = [job.pk] if job is not None else []
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args)

    def _job(self, request: HttpRequest, object_id: str) -> ImportJob:
        job = self.get_object(request, unquote(object_id))
        if job is None:
            raise Http404("No such import job.")
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        return job

    def _render(self, request: HttpRequest, template: str, title: str, **context) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            **context,
        }
        return TemplateResponse(request, f"admin/crm/importjob/{template}", context)

    def add_view(self, request, form_url="", extra_context=None):
        """The upload form; a valid upload is previewed at once and shown on the preview page."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportUploadForm()
        if request.method == "POST":
            form = ImportUploadForm(request.POST, request.FILES)
            if form.is_valid():
                options = {name: value for name, value in form.cleaned_data.items() if name != "file"}
                try:
                    job = flow.start_preview(
                        form.cleaned_data["file"], created_by=request.user, now=timezone.now(), **options
                    )
                except UnreadableFile as exc:
                    form.add_error("file", str(exc))
                else:
                    return redirect(self._url("preview", job))
        return self._render(request, "upload.html", "Import contacts", form=form)

    def preview_view(self, request, object_id):
        """A draft's dry-run counts and first problems; staff remap columns, confirm or discard here."""
        job = self._job(request, object_id)
        if not flow.is_draft(job):
            return redirect(self._url("change", job))
        if not self.has_add_permission(request):
            raise PermissionDenied
        preview = flow.describe_preview(job)
        mapping_form = ColumnMappingForm(header=preview.header, initial=preview.mapping)
        if request.method == "POST":
            if "_confirm" in request.POST:
                if flow.confirm_import(job, user=request.user):
                    self.log_addition(request, job, "Started the import.")
                    self.message_user(request, f"Import of {job.file_name} started.", messages.SUCCESS)
                return redirect(self._url("change", job))
            if "_discard" in request.POST:
                if flow.cancel_import(job, now=timezone.now()):
                    self.log_change(request, job, "Discarded the preview.")
                    self.message_user(request, f"Discarded {job.file_name}; nothing was imported.", messages.SUCCESS)
                return redirect(self._url("changelist"))
            mapping_form = ColumnMappingForm(request.POST, header=preview.header)
            if mapping_form.is_valid():
                flow.preview_again(job, mapping=mapping_form.cleaned_data, now=timezone.now())
                self.message_user(request, "Previewed again with the columns you chose.", messages.SUCCESS)
                return redirect(self._url("preview", job))
        return self._render(
            request,
            "preview.html",
            f"Preview: {job.file_name}",
            job=job,
            preview=preview,
            counts=[(label, preview.counts.get(name, 0)) for name, label in COUNT_LABELS.items()],
            problems=job.problems.all()[:PREVIEW_PROBLEMS],
            mapping_form=mapping_form,
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The job page, read-only: status, who and when, options, progress, counts and problems."""
        job = self._job(request, object_id)
        if flow.is_draft(job):
            return redirect(self._url("preview", job))
        progress = flow.job_progress(job)
        return self._render(
            request,
            "job.html",
            str(job),
            job=job,
            badge=_STATUS_BADGES[job.status],
            preset_label=PRESETS[job.preset].label if job.preset in PRESETS else "Recognised from the columns",
            progress=progress,
            counts=[(label, job.counts[name]) for name, label in COUNT_LABELS.items() if name in job.counts],
            problems=job.problems.all()[:JOB_PROBLEMS],
            subscription_types=job.subscription_types.order_by("name"),
            can_cancel=not progress["ended"] and self.has_change_permission(request, job),
        )

    def cancel_view(self, request, object_id):
        """GET asks for confirmation; POST cancels."""
        job = self._job(request, object_id)
        if not self.has_change_permission(request, job):
            raise PermissionDenied
        if request.method == "POST":
            if flow.cancel_import(job, now=timezone.now()):
                self.log_change(request, job, "Cancelled the import.")
                self.message_user(request, f"Cancelled the import of {job.file_name}.", messages.SUCCESS)
            else:
                self.message_user(request, "This import had already ended.", messages.WARNING)
            return redirect(self._url("change", job))
        if job.status in flow.ENDED:
            self.message_user(request, "This import has already ended.", messages.WARNING)
            return redirect(self._url("change", job))
        return self._render(request, "cancel.html", f"Cancel the import of {job.file_name}?", job=job)

    def status_view(self, request, object_id):
        """The job's progress as JSON, polled by the job page while it runs."""
        return JsonResponse(flow.job_progress(self._job(request, object_id)))

    def error_report_view(self, request, object_id):
        job = self._job(request, object_id)
        response = StreamingHttpResponse(
            stream_csv(flow.error_report_rows(job), flow.ERROR_REPORT_COLUMNS), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-errors.csv"'
        return response
