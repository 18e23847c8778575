"""Reads for the live dashboard and the GPU pages, in a handful of queries however long the queue.

Each panel is a plain view model built from one or two querysets: the GPU panel (active
profile, runtime states, the latest NVML reading), a GPU's queue (running job, pending
jobs in the scheduler's order with ETAs from ``eta.queue_forecast``), a project's queue
(its own jobs from those queues plus its recently finished ones) and the gallery strip.
Other projects' jobs are counted and timed, never named: a row knows whether the viewer
is a member of its project, and templates redact the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from artcritic.gpu.models import Gpu, RuntimeName, RuntimeState, RuntimeStatus
from artcritic.gpu.profiles import Profile, ProfileError, profile_from_data
from artcritic.jobs.durations import DurationModel
from artcritic.jobs.forecast import gpu_forecast
from artcritic.jobs.history import duration_model, duration_samples
from artcritic.jobs.models import PENDING_STATUSES, Job, JobKind, JobPhase, JobStatus
from artcritic.live.panels import (
    Dashboard,
    GpuPanel,
    GpuQueue,
    HistoryRow,
    JobRow,
    ProjectQueue,
    ReadingView,
    RuntimeRow,
    ahead_words,
    phase_usual_s,
    request_groups,
    runtime_usual_s,
)
from artcritic.studio.models import Image, Membership, Project
from artcritic.studio.selectors import gallery_images

ACTIVE_STATUSES = (*PENDING_STATUSES, JobStatus.RUNNING)
STRIP_IMAGES = 12
HISTORY_ROWS = 6


# -- GPU panels ------------------------------------------------------------------------------


def _profile(gpu: Gpu | None) -> tuple[Profile | None, str]:
    if gpu is None:
        return None, ""
    try:
        return profile_from_data(gpu.active_profile.data), ""
    except ProfileError as exc:
        return None, str(exc)


def _gpus(names: Sequence[str] | None) -> dict[str, Gpu]:
    def count(*statuses: str) -> Coalesce:
        counted = (
            Job.objects.filter(gpu=OuterRef("name"), status__in=statuses)
            .order_by()
            .values("gpu")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return Coalesce(Subquery(counted), 0)

    rows = Gpu.objects.select_related("active_profile").annotate(
        waiting=count(*PENDING_STATUSES), running_jobs=count(JobStatus.RUNNING)
    )
    if names is not None:
        rows = rows.filter(name__in=names)
    return {gpu.name: gpu for gpu in rows.order_by("name")}


def gpu_panels(
    names: Sequence[str] | None = None,
    *,
    now: datetime | None = None,
    models: Mapping[str, DurationModel] | None = None,
) -> list[GpuPanel]:
    """Panels of the named GPUs (every GPU when None), in two queries (and the duration
    history's two unless ``models`` already holds every GPU's, e.g. from its queue)."""
    now = now or timezone.now()
    models = models or {}
    gpus = _gpus(names)
    states: dict[str, dict[str, RuntimeState]] = {}
    for state in RuntimeState.objects.filter(gpu__in=list(gpus.values())).select_related("gpu"):
        states.setdefault(state.gpu.name, {})[state.runtime] = state
    panels = []
    # One history read for every GPU shown: usual times come from what each one did.
    unread = [name for name in gpus if name not in models]
    samples = duration_samples(unread) if unread else []
    for name in sorted(gpus) if names is None else list(dict.fromkeys(names)):
        gpu = gpus.get(name)
        profile, error = _profile(gpu)
        model = models.get(name)
        if model is None and profile is not None:
            model = duration_model(name, profile, samples=samples)
        if gpu is None:
            error = (
                f"GPU {name} has no active hardware profile. An admin must run "
                f"`manage.py loadprofiles --activate <profile> --gpu {name}`."
            )
        panels.append(
            GpuPanel(
                name=name,
                gpu=gpu,
                profile=profile,
                profile_error=error,
                runtimes=[
                    _runtime_row(
                        runtime,
                        label,
                        state=states.get(name, {}).get(runtime),
                        profile=profile,
                        model=model,
                        now=now,
                    )
                    for runtime, label in RuntimeName.choices
                ],
                reading=ReadingView(
                    data=dict(gpu.reading) if gpu is not None else {},
                    at=gpu.reading_at if gpu is not None else None,
                    now=now,
                ),
                waiting=getattr(gpu, "waiting", 0),
                running=getattr(gpu, "running_jobs", 0),
            )
        )
    return panels


def _runtime_row(
    runtime: str,
    label: str,
    *,
    state: RuntimeState | None,
    profile: Profile | None,
    model: DurationModel | None,
    now: datetime,
) -> RuntimeRow:
    if state is None:  # never started on this GPU
        return RuntimeRow(
            runtime=runtime,
            label=label,
            status=RuntimeStatus.STOPPED,
            status_label=RuntimeStatus.STOPPED.label,
            since=None,
            detail="never started on this GPU",
            simulated=False,
            usual_s=None,
            now=now,
        )
    active = profile.name if profile is not None else ""
    return RuntimeRow(
        runtime=runtime,
        label=label,
        status=state.status,
        status_label=state.get_status_display(),
        since=state.status_since,
        detail=state.detail,
        simulated=state.simulated,
        usual_s=runtime_usual_s(model, runtime, state.status),
        now=now,
        other_profile=state.profile_name
        if state.profile_name and active and state.profile_name != active
        else "",
    )


# -- queues ----------------------------------------------------------------------------------


def _active_jobs(where: Q, user: Any) -> list[Job]:
    """Running and pending jobs, with whether the viewer is a member and the phase's detail."""
    latest_detail = (
        JobPhase.objects.filter(job=OuterRef("pk")).order_by("-started_at", "-id").values("detail")
    )
    return list(
        Job.objects.filter(where, status__in=ACTIVE_STATUSES)
        .select_related("request__prompt", "image__prompt", "project", "submitted_by")
        .annotate(
            mine=Exists(Membership.objects.filter(project=OuterRef("project_id"), user=user)),
            phase_detail=Subquery(latest_detail[:1]),
        )
        .order_by("created_at", "id")
    )


def _queue(
    name: str,
    gpu: Gpu | None,
    jobs: list[Job],
    now: datetime,
    models: dict[str, DurationModel] | None = None,
) -> GpuQueue:
    profile, _error = _profile(gpu)
    running = [job for job in jobs if job.status == JobStatus.RUNNING]
    # A cancelled job never runs again (the claim skips it), so it is not ahead of anyone.
    pending = [job for job in jobs if job.status in PENDING_STATUSES and not job.cancel_requested]

    def mine(job: Job) -> bool:
        return bool(getattr(job, "mine", False))

    if profile is None or gpu is None:
        return GpuQueue(
            name,
            gpu,
            profile,
            [JobRow(job=job, mine=mine(job), now=now) for job in running],
            [
                JobRow(job=job, mine=mine(job), now=now, position=n)
                for n, job in enumerate(pending, start=1)
            ],
        )
    details = {job.pk: str(getattr(job, "phase_detail", "") or "") for job in running}
    forecast = gpu_forecast(gpu, profile, [*running, *pending], now, details=details)
    if models is not None:
        models[name] = forecast.model  # the GPU panel's usual times, without a second read
    running_rows = [
        JobRow(
            job=job,
            mine=mine(job),
            now=now,
            usual_s=phase_usual_s(forecast.model, job),
            finish_in_s=forecast.left_s.get(job.pk),
            estimate=forecast.own.get(job.pk),
        )
        for job in running
    ]
    names = {job.project_id: job.project.name for job in jobs if mine(job)}
    by_id = {job.pk: job for job in pending}
    pending_rows = [
        JobRow(
            job=by_id[eta.job_id],
            mine=mine(by_id[eta.job_id]),
            now=now,
            position=n,
            ahead=ahead_words(running, eta.ahead, names),
            eta=eta,
            finish_in_s=eta.finish_in_s,
            estimate=forecast.own.get(eta.job_id),
        )
        for n, eta in enumerate(forecast.etas, start=1)
    ]
    return GpuQueue(name, gpu, profile, running_rows, pending_rows)


def _queues(
    jobs: list[Job],
    gpus: Mapping[str, Gpu],
    names: Sequence[str],
    now: datetime,
    models: dict[str, DurationModel] | None = None,
) -> list[GpuQueue]:
    by_gpu: dict[str, list[Job]] = {}
    for job in jobs:
        by_gpu.setdefault(job.gpu, []).append(job)
    return [_queue(name, gpus.get(name), by_gpu.get(name, []), now, models) for name in names]


def gpu_queue(name: str, user: Any, *, now: datetime | None = None) -> GpuQueue:
    """The whole queue of one GPU (rows of other projects are the template's to redact)."""
    now = now or timezone.now()
    gpus = {gpu.name: gpu for gpu in Gpu.objects.select_related("active_profile").filter(name=name)}
    return _queues(_active_jobs(Q(gpu=name), user), gpus, [name], now)[0]


def project_queue(
    project: Project,
    user: Any,
    *,
    now: datetime | None = None,
    models: dict[str, DurationModel] | None = None,
) -> ProjectQueue:
    """The project's running and pending jobs (with ETAs), reviews folded under the request
    whose images they review. What finished is the request history's, not this panel's.
    ``models`` receives each forecast GPU's duration model."""
    now = now or timezone.now()
    site = settings.ARTCRITIC_GPU
    their_gpus = Job.objects.filter(project=project, status__in=ACTIVE_STATUSES).values("gpu")
    jobs = _active_jobs(Q(gpu__in=their_gpus) | Q(gpu=site), user)
    names = sorted({site} | {job.gpu for job in jobs if job.project_id == project.pk})
    gpus = {
        gpu.name: gpu for gpu in Gpu.objects.select_related("active_profile").filter(name__in=names)
    }
    queues = _queues(jobs, gpus, names, now, models)
    ours = [row for queue in queues for row in queue.rows if row.job.project_id == project.pk]
    return ProjectQueue(
        project=project,
        running=[row for row in ours if row.running],
        pending=[row for row in ours if not row.running],
        finished=[],
        gpu_names=names,
        others=sum(1 for queue in queues for row in queue.rows if row.job.project_id != project.pk),
        groups=request_groups(ours),
    )


def project_images(project: Project, user: Any, limit: int = STRIP_IMAGES) -> list[Image]:
    """The project's newest images with the viewer's and the Critic's verdicts."""
    return list(gallery_images(project, user)[:limit])


def project_dashboard(project: Project, user: Any, *, now: datetime | None = None) -> Dashboard:
    """The project page's first paint: GPU panels, the project's queue, the newest images."""
    now = now or timezone.now()
    models: dict[str, DurationModel] = {}
    queue = project_queue(project, user, now=now, models=models)
    return Dashboard(
        gpus=gpu_panels(queue.gpu_names, now=now, models=models),
        queue=queue,
        images=project_images(project, user),
    )


def request_history(
    project: Project, *, before: int | None = None, limit: int = HISTORY_ROWS
) -> tuple[list[HistoryRow], int | None]:
    """The project's finished generation requests, newest first, each with how its images
    and their Critic reviews stand: (rows, the job id to continue from, or None at the end).
    Reviews are folded into their request's row; a designer never sees a row per review.
    What still runs or waits is the queue panel's, so nothing is listed twice."""
    jobs = Job.objects.filter(project=project, kind=JobKind.GENERATE).exclude(
        status__in=ACTIVE_STATUSES
    )
    if before is not None:
        jobs = jobs.filter(pk__lt=before)
    page = list(
        jobs.select_related("request__prompt", "submitted_by").order_by("-created_at", "-id")[
            : limit + 1
        ]
    )
    more = len(page) > limit
    page = page[:limit]
    counted = (
        Image.objects.filter(request_id__in=[job.request_id for job in page])
        .order_by()
        .values("request_id")
        .annotate(
            images=Count("pk"),
            reviewed=Count("pk", filter=~Q(critic_verdict="")),
            critic_approves=Count("pk", filter=Q(critic_verdict="approve")),
            unreviewed=Count(
                "pk", filter=Q(critic_verdict="", review_status__in=("failed", "cancelled"))
            ),
        )
    )
    tallies: dict[int | None, dict[str, Any]] = {}
    for row in counted:
        values: dict[str, Any] = dict(row)
        tallies[values.pop("request_id")] = {key: int(value) for key, value in values.items()}
    # What the reviews of each request's images cost, and the Critic tokens they took.
    reviewed = (
        Job.objects.filter(kind=JobKind.REVIEW, image__request_id__in=[j.request_id for j in page])
        .order_by()
        .values("image__request_id")
        .annotate(
            reviews_cost=Sum("cost"),
            review_tokens=Sum(
                F("reviews__prompt_tokens") + F("reviews__completion_tokens"), default=0
            ),
        )
    )
    for costed in reviewed:
        tally = tallies.setdefault(costed["image__request_id"], {})
        tally["reviews_cost"] = costed["reviews_cost"]
        tally["review_tokens"] = int(costed["review_tokens"] or 0)
    rows = [HistoryRow(job=job, tally=tallies.get(job.request_id) or {}) for job in page]
    return rows, (page[-1].pk if more and page else None)
