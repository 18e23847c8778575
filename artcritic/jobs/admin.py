"""The queue in the admin: jobs with their phase history; only the priority is editable."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from artcritic.audit.admin import ReadOnlyAdmin
from artcritic.jobs.models import Job, JobPhase
from artcritic.jobs.services import job_priority_set


class JobPhaseInline(admin.TabularInline):
    model = JobPhase
    fields = ("started_at", "status", "phase", "runtime", "detail")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "kind",
        "status",
        "phase",
        "progress",
        "gpu",
        "project",
        "priority",
        "created_at",
        "reason",
    )
    list_display_links = ("id", "kind")
    list_filter = ("status", "kind", "gpu", "interactive")
    search_fields = ("project__name", "error_reason", "next_action", "=id")
    date_hierarchy = "created_at"
    list_select_related = ("project",)
    inlines = (JobPhaseInline,)
    fields = (
        ("kind", "status", "phase", "phase_runtime", "phase_started_at"),
        ("project", "request", "image", "submitted_by"),
        ("runtime", "gpu", "profile_name"),
        ("priority", "interactive"),
        ("progress_current", "progress_total", "output_count"),
        ("attempt", "max_attempts", "lease_owner", "lease_expires_at", "cancel_requested"),
        "error_reason",
        "next_action",
        ("vram_peak_bytes", "energy_joules"),
        ("created_at", "admitted_at", "started_at", "finished_at", "updated_at"),
    )
    # Everything but the priority belongs to the worker; an admin save must not overwrite it.
    readonly_fields = tuple(
        f.name for f in Job._meta.get_fields() if f.concrete and f.name not in {"id", "priority"}
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        return super().get_queryset(request).select_related("project")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="progress")
    def progress(self, job: Job) -> str:
        return f"{job.progress_current}/{job.progress_total}" if job.progress_total else "—"

    @admin.display(description="reason")
    def reason(self, job: Job) -> str:
        text = job.error_reason
        return text if len(text) <= 90 else f"{text[:89]}…"

    def save_model(
        self, request: HttpRequest, obj: Job, form: ModelForm[Job], change: bool
    ) -> None:
        if isinstance(request.user, User):
            job_priority_set(obj, obj.priority, user=request.user)


@admin.register(JobPhase)
class JobPhaseAdmin(ReadOnlyAdmin):
    list_display = ("job", "started_at", "status", "phase", "runtime", "detail")
    list_filter = ("status", "phase", "runtime")
    search_fields = ("=job__id", "detail")
    date_hierarchy = "started_at"
    list_select_related = ("job",)
