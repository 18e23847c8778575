"""The queue in the admin: jobs in the order the GPU will run them, and what staff may do.

Actions are thin: each calls one service per job and reports, per job, what happened.
Cancel, re-prioritise and move-to-front need ``jobs.change_job``; retry creates a job, so
it needs ``jobs.add_job`` (there is still no add form: jobs come from requests).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import ActionLocation, helpers
from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.contrib.auth.models import User
from django.db.models import Case, F, IntegerField, Q, QuerySet, Value, When
from django.db.models.expressions import OrderBy
from django.forms import ModelForm
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from artcritic.gpu.models import Gpu, RuntimeState, RuntimeStatus
from artcritic.gpu.profiles import ProfileError, profile_from_data
from artcritic.jobs.durations import DurationModel
from artcritic.jobs.eta import queue_forecast
from artcritic.jobs.forecast import pending_for_scheduler
from artcritic.jobs.models import (
    FINISHED_STATUSES,
    PENDING_STATUSES,
    PRIORITY_MAX,
    PRIORITY_MIN,
    Job,
    JobPhase,
    JobStatus,
)
from artcritic.jobs.services import (
    JobActionRefused,
    job_cancel,
    job_move_to_front,
    job_priority_set,
    job_reprioritise,
    job_retry,
    priority_check,
)
from artcritic.staff.admin.base import ReadOnlyAdmin
from artcritic.staff.admin.filters import BY_DATE, GpuFilter
from artcritic.staff.admin.gpu import duration_short

BOTH = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]
ACTIVE_STATUSES = (JobStatus.RUNNING, *PENDING_STATUSES)
EDITABLE = frozenset({"id", "priority"})
# Replaying the scheduler is quadratic in the waiting jobs; past this the list falls back to
# the static part of its order (priority, interactive, oldest), which is still close.
QUEUE_REPLAY_MAX = 300
# The same preference as runtime_state.resident_runtime, read without creating rows.
RESIDENT_ORDER = (
    RuntimeStatus.BUSY,
    RuntimeStatus.READY,
    RuntimeStatus.WARMING,
    RuntimeStatus.LOADING,
    RuntimeStatus.STARTING,
)


def queue_positions(now: datetime) -> dict[int, int]:
    """Each waiting job's place (1 = next) in its GPU's queue, by replaying the scheduler.

    Three queries whatever the number of jobs: waiting jobs, their GPUs with profiles, and
    the runtime states (for the resident runtime the scheduler prefers). Jobs on a GPU with
    no valid profile get no place: nothing will run them until an admin fixes that.
    """
    pending = list(
        Job.objects.filter(status__in=PENDING_STATUSES, cancel_requested=False)
        .select_related("request")
        .order_by("created_at", "id")[: QUEUE_REPLAY_MAX + 1]
    )
    if not pending or len(pending) > QUEUE_REPLAY_MAX:
        return {}
    by_gpu: dict[str, list[Job]] = defaultdict(list)
    for job in pending:
        by_gpu[job.gpu].append(job)
    gpus = {g.name: g for g in Gpu.objects.select_related("active_profile").filter(name__in=by_gpu)}
    states: dict[str, dict[str, str]] = defaultdict(dict)
    for gpu_name, runtime, status in RuntimeState.objects.filter(gpu__name__in=by_gpu).values_list(
        "gpu__name", "runtime", "status"
    ):
        states[gpu_name][runtime] = status
    positions: dict[int, int] = {}
    for gpu_name, jobs in by_gpu.items():
        gpu = gpus.get(gpu_name)
        if gpu is None:
            continue
        try:
            profile = profile_from_data(gpu.active_profile.data)
        except ProfileError:
            continue
        resident = next(
            (
                runtime
                for status in RESIDENT_ORDER
                for runtime, value in states[gpu_name].items()
                if value == status
            ),
            None,
        )
        # The order only: the profile's durations decide it as well as learned ones would.
        model = DurationModel(profile)
        forecast = queue_forecast(
            pending_for_scheduler(jobs, model),
            resident=resident,
            now=now.timestamp(),
            policy=model.scheduler_policy(),
        )
        positions.update((eta.job_id, place) for place, eta in enumerate(forecast, 1))
    return positions


def queue_place(positions: dict[int, int]) -> Case:
    """A job's place in its GPU's queue as an SQL expression (NULL when it has none)."""
    return Case(
        *(When(pk=pk, then=Value(n)) for pk, n in positions.items()),
        default=None,
        output_field=IntegerField(),
    )


def queue_ordering(positions: dict[int, int]) -> list[OrderBy]:
    """Running first, then waiting jobs in the scheduler's order, then the rest, newest first."""
    waiting = Q(status__in=PENDING_STATUSES)

    def for_waiting(expression: Any) -> Case:
        return Case(When(waiting, then=expression), default=None)

    rank = Case(
        When(status=JobStatus.RUNNING, then=Value(0)),
        When(waiting, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return [
        rank.asc(),
        queue_place(positions).asc(nulls_last=True),
        # The static part of the scheduler (rules b, d, e), for jobs without a place.
        for_waiting(F("priority")).desc(nulls_last=True),
        for_waiting(F("interactive")).desc(nulls_last=True),
        for_waiting(F("created_at")).asc(nulls_last=True),
        for_waiting(F("id")).asc(nulls_last=True),
        F("created_at").desc(),
        F("id").desc(),
    ]


class QueueChangeList(ChangeList):
    """The job list in queue order unless a column header asks for another."""

    def __init__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        self.positions = queue_positions(timezone.now())
        super().__init__(request, *args, **kwargs)

    def get_ordering(self, request: HttpRequest, queryset: QuerySet[Job]) -> list[Any]:
        if self.params.get(ORDER_VAR):
            return list(super().get_ordering(request, queryset))
        return list(queue_ordering(self.positions))

    def get_queryset(
        self, request: HttpRequest, exclude_parameters: list[str | None] | None = None
    ) -> QuerySet[Job]:
        queryset = super().get_queryset(request, exclude_parameters)
        return queryset.annotate(queue_place_n=queue_place(self.positions))

    def get_results(self, request: HttpRequest) -> None:
        """The page in queue order without sorting every job: the running and waiting jobs
        (few) in the scheduler's order, then the rest newest first from an index.

        The same rows in the same order as ``queue_ordering`` over the whole table, where
        finished jobs tie on every queue key and fall to created_at, id descending.
        """
        super().get_results(request)
        if self.params.get(ORDER_VAR) or (self.show_all and self.can_show_all):
            return
        start = (self.page_num - 1) * self.list_per_page
        end = start + self.list_per_page
        ahead = list(self.queryset.filter(status__in=ACTIVE_STATUSES)[start:end])
        rest: list[Job] = []
        if len(ahead) < self.list_per_page:
            # This page reaches past the active jobs: how many there are decides the offset.
            active = start + len(ahead) if ahead or start == 0 else self._active_count()
            finished = self.queryset.exclude(status__in=ACTIVE_STATUSES).order_by(
                "-created_at", "-id"
            )
            rest = list(finished[max(0, start - active) : end - active])
        self.result_list = [*ahead, *rest]

    def _active_count(self) -> int:
        return self.queryset.filter(status__in=ACTIVE_STATUSES).count()

    def get_ordering_field_columns(self) -> dict[int, Literal["desc", "asc"]]:
        # The queue order is no single column: mark none as sorted.
        return super().get_ordering_field_columns() if ORDER_VAR in self.params else {}


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


class PriorityForm(forms.Form):
    priority = forms.IntegerField(
        min_value=PRIORITY_MIN,
        max_value=PRIORITY_MAX,
        help_text=f"A whole number from {PRIORITY_MIN} to {PRIORITY_MAX}; higher runs first. "
        "Jobs that waited past the profile's maximum wait still run first.",
    )


class JobChangeForm(forms.ModelForm):
    """The change form edits the priority alone, by the same rule as every other path."""

    class Meta:
        model = Job
        fields = ("priority",)

    def clean_priority(self) -> int:
        priority = self.cleaned_data["priority"]
        try:
            return priority_check(self.instance, priority)
        except JobActionRefused as exc:
            raise forms.ValidationError(str(exc)) from exc


def _staff_user(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User):  # the admin site lets only active staff users in
        raise TypeError("admin actions need a logged-in user")
    return user


def _cancel_one(job: Job, user: User) -> tuple[int, str]:
    """Cancel one job through ``job_cancel``; the message says what happened to it."""
    if job.status in FINISHED_STATUSES:
        verb = "done" if job.status == JobStatus.DONE else job.get_status_display().lower()
        return messages.WARNING, f"Job {job.pk} was already {verb}; nothing to cancel."
    if job.status == JobStatus.INTERRUPTED:
        return (
            messages.WARNING,
            f"Job {job.pk} was interrupted and waits no more; nothing to cancel.",
        )
    if job.status == JobStatus.RUNNING and job.cancel_requested:
        return messages.WARNING, f"Job {job.pk} is already stopping (cancel requested earlier)."
    after = job_cancel(job, user=user)
    if after.status == JobStatus.RUNNING:
        runtime = after.get_runtime_display()
        return (
            messages.SUCCESS,
            f"Job {job.pk} is running: cancel requested; the worker interrupts {runtime} and "
            "records it as cancelled.",
        )
    if after.status == JobStatus.CANCELLED and job.status in PENDING_STATUSES:
        return messages.SUCCESS, f"Job {job.pk} was cancelled before it started."
    # It moved on between the list and the click (the worker finished or claimed it).
    return messages.WARNING, f"Job {job.pk} is {after.status} now; it was not cancelled."


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "status_label",
        "phase_elapsed",
        "progress",
        "queue_place",
        "gpu",
        "kind",
        "project",
        "priority",
        "attempt_label",
        "reason",
        "created_at",
    )
    list_display_links = ("id", "status_label")
    list_filter = (
        "status",
        "kind",
        GpuFilter,
        ("project", admin.RelatedFieldListFilter),
        "interactive",
        ("created_at", BY_DATE),
    )
    search_fields = ("=id", "request__prompt__text", "image__prompt__text", "project__name")
    list_select_related = ("project",)
    list_per_page = 50
    inlines = (JobPhaseInline,)
    actions = ("cancel_jobs", "retry_jobs", "reprioritise_jobs", "move_jobs_to_front")
    form = JobChangeForm
    fields = (
        ("kind", "status", "phase", "phase_runtime", "phase_started_at"),
        ("project", "request", "image", "submitted_by"),
        ("runtime", "runtime_version", "gpu", "profile_name"),
        ("priority", "interactive"),
        ("progress_current", "progress_total", "output_count"),
        ("attempt", "max_attempts", "lease_owner", "lease_expires_at", "cancel_requested"),
        "error_reason",
        "next_action",
        ("vram_peak_bytes", "energy_joules"),
        ("created_at", "admitted_at", "started_at", "finished_at", "updated_at"),
        "audit_trail",
    )
    # Everything but the priority belongs to the worker; an admin save must not overwrite it.
    readonly_fields = (
        *(
            f.name
            for f in Job._meta.get_fields()
            if f.concrete and f.name not in {"id", "priority"}
        ),
        "audit_trail",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        return super().get_queryset(request).select_related("project")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return QueueChangeList

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        """Retrying creates a job, so it needs the add permission (the add form stays off)."""
        return request.user.has_perm("jobs.add_job")

    # --- columns ---

    @admin.display(description="status", ordering="status")
    def status_label(self, job: Job) -> str:
        label = job.get_status_display()
        if job.cancel_requested and job.status == JobStatus.RUNNING:
            return f"{label} (cancel requested)"
        return label

    @admin.display(description="phase", ordering="phase_started_at")
    def phase_elapsed(self, job: Job) -> str:
        if not job.phase:
            return "—"
        label = job.get_phase_display()
        if job.phase_runtime:
            label = f"{label} {job.get_phase_runtime_display()}"
        if job.phase_started_at is None:
            return label
        elapsed = (timezone.now() - job.phase_started_at).total_seconds()
        return f"{label} · {duration_short(elapsed)}"

    @admin.display(description="progress")
    def progress(self, job: Job) -> str:
        return f"{job.progress_current}/{job.progress_total}" if job.progress_total else "—"

    @admin.display(description="queue")
    def queue_place(self, job: Job) -> str:
        # Annotated by QueueChangeList: the place the scheduler would give it now.
        place = getattr(job, "queue_place_n", None)
        return f"#{place}" if place else "—"

    @admin.display(description="attempt", ordering="attempt")
    def attempt_label(self, job: Job) -> str:
        return f"{job.attempt} of {job.max_attempts}"

    @admin.display(description="reason")
    def reason(self, job: Job) -> str:
        text = job.error_reason
        return text if len(text) <= 90 else f"{text[:89]}…"

    @admin.display(description="audit trail")
    def audit_trail(self, job: Job) -> str:
        url = reverse("admin:audit_auditevent_changelist")
        return format_html('<a href="{}?job={}">Audit events of job {}</a>', url, job.pk, job.pk)

    # --- saving the priority from the change form ---

    def save_model(
        self, request: HttpRequest, obj: Job, form: ModelForm[Job], change: bool
    ) -> None:
        job_priority_set(obj, obj.priority, user=_staff_user(request))

    # --- actions ---

    def _report(self, request: HttpRequest, level: int, message: str) -> None:
        self.message_user(request, message, level=level)

    def _apply_each(
        self,
        request: HttpRequest,
        jobs: Iterable[Job],
        change: Callable[[Job], Job],
        done: Callable[[Job, Job], str],
    ) -> None:
        """Apply ``change`` to each job in turn; report its refusal, or ``done(job, result)``."""
        for job in jobs:
            try:
                result = change(job)
            except JobActionRefused as exc:
                self._report(request, messages.WARNING, str(exc))
                continue
            self._report(request, messages.SUCCESS, done(job, result))

    @admin.action(description="Cancel selected jobs", permissions=["change"], location=BOTH)
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        user = _staff_user(request)
        for job in queryset.order_by("pk"):
            self._report(request, *_cancel_one(job, user))

    @admin.action(
        description="Retry selected jobs as new jobs", permissions=["retry"], location=BOTH
    )
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        user = _staff_user(request)
        self._apply_each(
            request,
            queryset.order_by("pk"),
            lambda job: job_retry(job, user=user),
            lambda job, retry: (
                f"Job {job.pk} was retried as job {retry.pk}: admitted again on "
                f"{retry.profile_name}, waiting for GPU {retry.gpu}."
            ),
        )

    @admin.action(
        description="Move selected jobs to the front of their queue",
        permissions=["change"],
        location=BOTH,
    )
    def move_jobs_to_front(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        user = _staff_user(request)
        # Newest first: each move lands above the last, so the selected jobs keep their
        # order among themselves (the oldest ends up in front).
        self._apply_each(
            request,
            queryset.order_by("-created_at", "-pk"),
            lambda job: job_move_to_front(job, user=user),
            lambda job, moved: (
                f"Job {job.pk} moved to the front of {moved.gpu}'s queue "
                f"(priority {job.priority} → {moved.priority})."
            ),
        )

    @admin.action(description="Change the priority of selected jobs…", permissions=["change"])
    def reprioritise_jobs(
        self, request: HttpRequest, queryset: QuerySet[Job]
    ) -> TemplateResponse | None:
        form = PriorityForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            user = _staff_user(request)
            priority: int = form.cleaned_data["priority"]
            self._apply_each(
                request,
                queryset.order_by("pk"),
                lambda job: job_reprioritise(job, priority, user=user),
                lambda job, _: (
                    f"Job {job.pk}'s priority changed from {job.priority} to {priority}."
                ),
            )
            return None
        jobs: Sequence[Job] = list(queryset.order_by("pk"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Change the priority of jobs",
            "opts": self.opts,
            "jobs": jobs,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "priority_min": PRIORITY_MIN,
            "priority_max": PRIORITY_MAX,
        }
        return TemplateResponse(request, "admin/jobs/job/reprioritise.html", context)


@admin.register(JobPhase)
class JobPhaseAdmin(ReadOnlyAdmin):
    list_display = ("job", "started_at", "status", "phase", "runtime", "detail")
    list_filter = ("status", "phase", "runtime", ("started_at", BY_DATE))
    search_fields = ("=job__id", "detail")
    list_per_page = 50
    list_select_related = ("job",)
