"""A GPU's queue forecast from learned durations: what is left of the running job, and when
each waiting job starts and finishes, in the scheduler's order.

Reads only what it is given plus the GPU's duration history and runtime states, so the
dashboard, the GPU page and the predictions stored at admission say the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Exists, Q, Subquery

from artcritic.critic.batching import reviews_in_flight_for
from artcritic.gpu.models import Gpu, RuntimeState, RuntimeStatus
from artcritic.gpu.profiles import Profile
from artcritic.jobs.durations import (
    LEAD_IN,
    DurationModel,
    Estimate,
    GenerationPlan,
    RunningJob,
)
from artcritic.jobs.eta import Eta, queue_forecast
from artcritic.jobs.history import duration_model, plan_of
from artcritic.jobs.models import PENDING_STATUSES, Job, JobKind, JobStatus
from artcritic.jobs.scheduler import PendingJob

# Runtime states whose process is up (ready, or parked by its release strategy): bringing
# one back is a wake or a reload, not a cold start. Unhealthy ones are recreated.
STARTED_STATES = frozenset(
    {
        RuntimeStatus.STARTING,
        RuntimeStatus.LOADING,
        RuntimeStatus.WARMING,
        RuntimeStatus.READY,
        RuntimeStatus.BUSY,
        RuntimeStatus.RELEASING,
        RuntimeStatus.SLEEPING,
    }
)
RESIDENT_ORDER = (
    RuntimeStatus.BUSY,
    RuntimeStatus.READY,
    RuntimeStatus.WARMING,
    RuntimeStatus.LOADING,
    RuntimeStatus.STARTING,
)


def job_plan(job: Job) -> GenerationPlan | None:
    """A generation's plan (its request must be loaded); None for a review."""
    if job.kind != JobKind.GENERATE or job.request is None:
        return None
    return plan_of(job.request)


def job_own(job: Job, model: DurationModel) -> Estimate:
    """The job's own run (no swap), from the model."""
    plan = job_plan(job)
    if plan is not None and plan.model_mode not in model.profile.models:
        # A mode the active profile lacks: admission blocks it as soon as it is claimed.
        return model.estimate(job.runtime, LEAD_IN)
    return model.own_seconds(job.kind, plan)


def pending_for_scheduler(jobs: Sequence[Job], model: DurationModel) -> list[PendingJob]:
    """Plain values for the pure scheduler and the forecast."""
    return [
        PendingJob(
            id=job.pk,
            runtime=job.runtime,
            kind=job.kind,
            project_id=job.project_id,
            priority=job.priority,
            interactive=job.interactive,
            enqueued_at=job.created_at.timestamp(),
            expected_seconds=job_own(job, model).seconds,
            variant=job.request.model_mode if job.request is not None else "",
        )
        for job in jobs
    ]


@dataclass(frozen=True)
class GpuForecast:
    """The running jobs' remaining seconds and every waiting job's ETA."""

    model: DurationModel
    left_s: Mapping[int, float]
    etas: tuple[Eta, ...]
    # Per job: the estimate of its own run (its ``words`` say where it comes from).
    own: Mapping[int, Estimate]

    def eta(self, job_id: int) -> Eta | None:
        return next((eta for eta in self.etas if eta.job_id == job_id), None)

    @property
    def busy_s(self) -> float:
        return max(self.left_s.values(), default=0.0)


def runtime_view(states: Mapping[str, str]) -> tuple[str | None, frozenset[str]]:
    """The resident runtime (busy/ready first) and the runtimes whose process is up."""
    resident = next(
        (name for status in RESIDENT_ORDER for name, value in states.items() if value == status),
        None,
    )
    return resident, frozenset(name for name, value in states.items() if value in STARTED_STATES)


def runtime_statuses(gpu: Gpu) -> dict[str, str]:
    """Each runtime's status on ``gpu`` (one query)."""
    return dict(RuntimeState.objects.filter(gpu=gpu).values_list("runtime", "status"))


def loaded_modes(gpu: Gpu) -> frozenset[str]:
    """Model modes ComfyUI ran on ``gpu`` since the Critic last did (which released them)."""
    critic_last = (
        Job.objects.filter(gpu=gpu.name, kind=JobKind.REVIEW, finished_at__isnull=False)
        .order_by("-finished_at")
        .values("finished_at")[:1]
    )
    modes = (
        Job.objects.filter(gpu=gpu.name, kind=JobKind.GENERATE, status=JobStatus.DONE)
        .filter(Q(finished_at__gt=Subquery(critic_last)) | ~Exists(critic_last))
        .order_by()
        .values_list("request__model_mode", flat=True)
        .distinct()
    )
    return frozenset(mode for mode in modes if mode)


def running_left_s(
    job: Job,
    model: DurationModel,
    now: datetime,
    *,
    states: Mapping[str, str],
    detail: str = "",
) -> float:
    """Seconds left of a running job, by its phase and progress."""
    resident, started = runtime_view(states)
    plan = job_plan(job)
    if plan is not None and plan.model_mode not in model.profile.models:
        return model.estimate(job.runtime, LEAD_IN).seconds
    view = RunningJob(
        kind=job.kind,
        runtime=job.runtime,
        phase=job.phase,
        phase_runtime=job.phase_runtime,
        elapsed_s=(now - job.phase_started_at).total_seconds() if job.phase_started_at else 0.0,
        progress_current=job.progress_current,
        plan=plan,
        detail=detail,
    )
    pending_switch = 0.0
    if job.phase == "waiting_for_gpu" and resident != job.runtime:
        mode = plan.model_mode if plan is not None else ""
        pending_switch = model.switch_seconds(resident, frozenset(), job.runtime, mode, started)
    return model.remaining_seconds(view, pending_switch_s=pending_switch, started=started)


@dataclass(frozen=True)
class QueueView:
    """A GPU's queue as the ETA model sees it: its waiting jobs and what the GPU holds."""

    model: DurationModel
    pending: list[PendingJob]
    left_s: Mapping[int, float]
    own: Mapping[int, Estimate]
    # The runtime in VRAM when the running job ends, its model modes, the runtimes started.
    resident: str | None
    loaded: frozenset[str]
    started: frozenset[str]
    # Reviews run up to this many at once; the time left of those running now (a batch).
    review_seats: int = 1
    reviews_running_left: tuple[float, ...] = ()

    @property
    def busy_s(self) -> float:
        return max(self.left_s.values(), default=0.0)


def queue_view(
    gpu: Gpu,
    profile: Profile,
    jobs: Sequence[Job],
    now: datetime,
    *,
    model: DurationModel | None = None,
    states: Mapping[str, str] | None = None,
    details: Mapping[int, str] | None = None,
) -> QueueView:
    """What ``gpu_forecast`` replays, and what placement adds a new job to."""
    model = model or duration_model(gpu.name, profile)
    states = runtime_statuses(gpu) if states is None else states
    running = [job for job in jobs if job.status == JobStatus.RUNNING]
    pending = [job for job in jobs if job.status in PENDING_STATUSES and not job.cancel_requested]
    left = {
        job.pk: running_left_s(
            job, model, now, states=states, detail=(details or {}).get(job.pk, "")
        )
        for job in running
    }
    own = {job.pk: job_own(job, model) for job in [*running, *pending]}
    resident, started = runtime_view(states)
    loaded = loaded_modes(gpu) if resident == "comfyui" or running else frozenset()
    if running:
        # What is resident when the running job ends is that job's runtime and models.
        resident = running[0].runtime
        if running[0].request is not None:
            loaded = loaded | {running[0].request.model_mode}
        started = started | {resident}
    batch = running and all(job.kind == JobKind.REVIEW for job in running)
    return QueueView(
        model=model,
        pending=pending_for_scheduler(pending, model),
        left_s=left,
        own=own,
        resident=resident,
        loaded=loaded if resident == "comfyui" else frozenset(),
        started=started,
        review_seats=reviews_in_flight_for(profile),
        reviews_running_left=tuple(left[job.pk] for job in running) if batch else (),
    )


def gpu_forecast(
    gpu: Gpu,
    profile: Profile,
    jobs: Sequence[Job],
    now: datetime,
    *,
    model: DurationModel | None = None,
    states: Mapping[str, str] | None = None,
    details: Mapping[int, str] | None = None,
) -> GpuForecast:
    """The forecast of ``gpu`` over ``jobs`` (its running and waiting ones, requests loaded).

    Queries: the duration history (two) unless ``model`` is given, the runtime states (one)
    unless ``states`` is.
    """
    view = queue_view(gpu, profile, jobs, now, model=model, states=states, details=details)
    etas = queue_forecast(
        view.pending,
        resident=view.resident,
        now=now.timestamp(),
        policy=view.model.scheduler_policy(),
        busy_for_s=view.busy_s,
        switch=view.model.switch_seconds,
        loaded=view.loaded,
        started=view.started,
        gap_s=view.model.gap_seconds(),
        review_seats=view.review_seats,
        reviews_running_left=view.reviews_running_left,
    )
    return GpuForecast(model=view.model, left_s=view.left_s, etas=etas, own=view.own)
