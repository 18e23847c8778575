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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from artcritic.gpu.models import Gpu, RuntimeName, RuntimeState, RuntimeStatus
from artcritic.gpu.profiles import GB, Profile, ProfileError, profile_from_data
from artcritic.gpu.runtime_state import resident_runtime
from artcritic.jobs.eta import AheadGroup, Eta, duration_words, queue_forecast
from artcritic.jobs.lifecycle import expected_seconds, pending_for_scheduler
from artcritic.jobs.models import PENDING_STATUSES, Job, JobKind, JobPhase, JobStatus, Phase
from artcritic.jobs.scheduler import policy_from_profile
from artcritic.studio.models import Image, Membership, Project
from artcritic.studio.selectors import gallery_images

ACTIVE_STATUSES = (*PENDING_STATUSES, JobStatus.RUNNING)
TROUBLE_STATUSES = (JobStatus.BLOCKED, JobStatus.FAILED, JobStatus.INTERRUPTED)
RECENT_FINISHED = 5
STRIP_IMAGES = 8
# Readings come every 2 s and are published at least every 30 s; older than this means
# the GPU worker (which takes them) is not running.
STALE_READING_S = 90
PASSING_STATES = frozenset({"starting", "loading", "warming", "releasing"})
KIND_NOUN = {JobKind.GENERATE: "generation", JobKind.REVIEW: "review"}


# -- words and numbers (pure) ------------------------------------------------------------


def clock_words(seconds: float) -> str:
    """'12 s', '1 m 40 s', '2 m', '1 h 5 m': elapsed and usual times, as the page ticks them."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total} s"
    minutes, rest = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} m {rest} s" if rest else f"{minutes} m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} m" if minutes else f"{hours} h"


def runtime_usual_s(profile: Profile | None, runtime: str, state: str) -> float | None:
    """How long a runtime usually spends starting, loading, warming or releasing (profile)."""
    if profile is None or runtime not in RuntimeName.values:
        return None
    d = profile.durations
    if state == "releasing":
        if runtime == RuntimeName.COMFYUI:
            return d.comfyui_free
        return d.critic_stop if profile.runtimes.critic.release == "stop" else d.critic_sleep
    step = {"starting": "start", "loading": "load", "warming": "warm"}.get(state)
    return None if step is None else float(getattr(d, f"{runtime}_{step}"))


def phase_usual_s(profile: Profile | None, job: Job) -> float | None:
    """How long the job's current phase usually takes, where the profile says."""
    if profile is None or not job.phase:
        return None
    if job.phase in PASSING_STATES:
        return runtime_usual_s(profile, job.phase_runtime or job.runtime, job.phase)
    if job.phase == Phase.GENERATING:
        return expected_seconds(job, profile)
    if job.phase == Phase.REVIEWING:
        return profile.durations.critic_review
    if job.phase == Phase.UPLOADING:
        count = job.request.count if job.request is not None else 1
        return profile.durations.upload_per_image * count
    return None


def busy_for_s(job: Job, profile: Profile, now: datetime) -> float:
    """An estimate of what is left of a running job: its run, less progress, plus its phase."""
    own = expected_seconds(job, profile)
    elapsed = (now - job.phase_started_at).total_seconds() if job.phase_started_at else 0.0
    if job.phase in (Phase.GENERATING, Phase.REVIEWING, Phase.UPLOADING, Phase.RECORDING):
        if job.progress_total:
            return max(0.0, own * (1 - job.progress_current / job.progress_total))
        return max(0.0, own - elapsed)
    return own + max(0.0, (phase_usual_s(profile, job) or 0.0) - elapsed)


def ahead_words(
    running: Sequence[Job], groups: Sequence[AheadGroup], names: Mapping[int, str]
) -> str:
    """'behind 3 reviews for Lamps and 2 jobs of other projects'; ``names``: the viewer's."""
    parts: list[str] = []
    others = 0
    for job in running:
        if job.project_id in names:
            parts.append(f"the running {KIND_NOUN[JobKind(job.kind)]} for {names[job.project_id]}")
        else:
            others += 1
    for group in groups:
        if group.project_id in names:
            noun = KIND_NOUN[JobKind(group.kind)] + ("" if group.count == 1 else "s")
            parts.append(f"{group.count} {noun} for {names[group.project_id]}")
        else:
            others += group.count
    if others:
        parts.append("1 job of another project" if others == 1 else f"{others} jobs of other projects")
    if not parts:
        return "next on the GPU"
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"behind {listed}"


# -- view models -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    """One job as a panel shows it; ``mine``: the viewer is a member of its project."""

    job: Job
    mine: bool
    now: datetime
    usual_s: float | None = None
    position: int | None = None
    ahead: str = ""
    eta: Eta | None = None
    finish_in_s: float | None = None

    @property
    def noun(self) -> str:
        return KIND_NOUN[JobKind(self.job.kind)]

    @property
    def running(self) -> bool:
        return self.job.status == JobStatus.RUNNING

    @property
    def pending(self) -> bool:
        return self.job.status in PENDING_STATUSES

    @property
    def cancelling(self) -> bool:
        return self.running and self.job.cancel_requested

    @property
    def can_cancel(self) -> bool:
        return self.mine and (self.pending or self.running) and not self.job.cancel_requested

    @property
    def trouble(self) -> bool:
        return self.job.status in TROUBLE_STATUSES

    @property
    def requeued(self) -> bool:
        """Put back in the queue after an interruption (the reason stays on the job)."""
        return self.pending and self.job.attempt > 1 and bool(self.job.error_reason)

    @property
    def phase_detail(self) -> str:
        return str(getattr(self.job, "phase_detail", "") or "")

    @property
    def elapsed_words(self) -> str:
        started = self.job.phase_started_at
        return clock_words((self.now - started).total_seconds()) if started else ""

    @property
    def usual_words(self) -> str:
        return clock_words(self.usual_s) if self.usual_s else ""

    @property
    def starts_at(self) -> datetime | None:
        return self.now + timedelta(seconds=self.eta.start_in_s) if self.eta else None

    @property
    def start_words(self) -> str:
        return duration_words(self.eta.start_in_s) if self.eta else ""

    @property
    def finishes_at(self) -> datetime | None:
        if self.finish_in_s is None:
            return None
        return self.now + timedelta(seconds=self.finish_in_s)

    @property
    def finish_words(self) -> str:
        return "" if self.finish_in_s is None else duration_words(self.finish_in_s)

    @property
    def show_progress(self) -> bool:
        return self.running and self.job.kind == JobKind.GENERATE and self.job.progress_total > 0

    @property
    def progress_label(self) -> str:
        job = self.job
        if job.phase == Phase.GENERATING:
            return f"generating {job.progress_current}/{job.progress_total}"
        return f"{job.progress_current}/{job.progress_total}"


@dataclass(frozen=True)
class GpuQueue:
    """A GPU's running jobs and its pending ones in the order the scheduler will run them."""

    name: str
    gpu: Gpu | None
    profile: Profile | None
    running: list[JobRow]
    pending: list[JobRow]

    @property
    def rows(self) -> list[JobRow]:
        return [*self.running, *self.pending]


@dataclass(frozen=True)
class ProjectQueue:
    """One project's jobs: running, pending in scheduler order, recently finished."""

    project: Project
    running: list[JobRow]
    pending: list[JobRow]
    finished: list[JobRow]
    gpu_names: list[str]
    # Jobs of other projects running or waiting on those GPUs (a count, never names).
    others: int

    @property
    def active(self) -> list[JobRow]:
        return [*self.running, *self.pending]


@dataclass(frozen=True)
class RuntimeRow:
    """A runtime's state on a GPU, how long it has been in it and how long that usually takes."""

    runtime: str
    label: str
    status: str
    status_label: str
    since: datetime | None
    detail: str
    simulated: bool
    usual_s: float | None
    now: datetime
    # The profile it was started under, when that is not the active one.
    other_profile: str = ""

    @property
    def passing(self) -> bool:
        return self.status in PASSING_STATES

    @property
    def unhealthy(self) -> bool:
        return self.status == RuntimeStatus.UNHEALTHY

    @property
    def elapsed_words(self) -> str:
        return clock_words((self.now - self.since).total_seconds()) if self.since else ""

    @property
    def usual_words(self) -> str:
        return clock_words(self.usual_s) if self.usual_s else ""


@dataclass(frozen=True)
class ReadingView:
    """The latest stored NVML reading of a GPU, or why there is none."""

    data: dict[str, Any]
    at: datetime | None
    now: datetime

    @property
    def missing(self) -> bool:
        return self.at is None or not self.data

    @property
    def ok(self) -> bool:
        return not self.missing and bool(self.data.get("ok"))

    @property
    def unavailable(self) -> bool:
        return not self.missing and not self.data.get("ok")

    @property
    def age_s(self) -> float:
        return (self.now - self.at).total_seconds() if self.at else 0.0

    @property
    def age_words(self) -> str:
        return clock_words(self.age_s)

    @property
    def stale(self) -> bool:
        return not self.missing and self.age_s > STALE_READING_S

    @property
    def used_gb(self) -> float:
        return int(self.data.get("used_bytes") or 0) / GB

    @property
    def total_gb(self) -> float:
        return int(self.data.get("total_bytes") or 0) / GB

    @property
    def used_pct(self) -> int:
        total = int(self.data.get("total_bytes") or 0)
        used = int(self.data.get("used_bytes") or 0)
        return max(0, min(100, round(100 * used / total))) if total else 0

    @property
    def energy_words(self) -> str:
        joules = self.data.get("energy_joules")
        if joules is None:
            return ""
        return f"{joules / 1000:.1f} kJ" if joules < 1e6 else f"{joules / 3.6e6:.2f} kWh"


@dataclass(frozen=True)
class GpuPanel:
    """What a GPU is doing: its profile, each runtime's state, its latest reading."""

    name: str
    gpu: Gpu | None
    profile: Profile | None
    profile_error: str
    runtimes: list[RuntimeRow]
    reading: ReadingView
    waiting: int = 0
    running: int = 0

    @property
    def simulated(self) -> bool:
        return bool(
            (self.profile is not None and self.profile.simulated)
            or any(row.simulated for row in self.runtimes)
            or self.reading.data.get("simulated")
        )

    @property
    def profile_name(self) -> str:
        return self.gpu.active_profile.name if self.gpu is not None else ""


@dataclass(frozen=True)
class Dashboard:
    """Everything the project page renders on first paint; its fragments re-read each part."""

    gpus: list[GpuPanel]
    queue: ProjectQueue
    images: list[Image] = field(default_factory=list)


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


def gpu_panels(names: Sequence[str] | None = None, *, now: datetime | None = None) -> list[GpuPanel]:
    """Panels of the named GPUs (every GPU when None), in two queries."""
    now = now or timezone.now()
    gpus = _gpus(names)
    states: dict[str, dict[str, RuntimeState]] = {}
    for state in RuntimeState.objects.filter(gpu__in=list(gpus.values())).select_related("gpu"):
        states.setdefault(state.gpu.name, {})[state.runtime] = state
    panels = []
    for name in sorted(gpus) if names is None else list(dict.fromkeys(names)):
        gpu = gpus.get(name)
        profile, error = _profile(gpu)
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
                    _runtime_row(runtime, label, states.get(name, {}).get(runtime), profile, now)
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
    runtime: str, label: str, state: RuntimeState | None, profile: Profile | None, now: datetime
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
        usual_s=runtime_usual_s(profile, runtime, state.status),
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
        .select_related("request__prompt", "image", "project", "submitted_by")
        .annotate(
            mine=Exists(Membership.objects.filter(project=OuterRef("project_id"), user=user)),
            phase_detail=Subquery(latest_detail[:1]),
        )
        .order_by("created_at", "id")
    )


def _queue(name: str, gpu: Gpu | None, jobs: list[Job], now: datetime) -> GpuQueue:
    profile, _error = _profile(gpu)
    running = [job for job in jobs if job.status == JobStatus.RUNNING]
    # A cancelled job never runs again (the claim skips it), so it is not ahead of anyone.
    pending = [job for job in jobs if job.status in PENDING_STATUSES and not job.cancel_requested]
    running_rows = [
        JobRow(
            job=job,
            mine=bool(getattr(job, "mine", False)),
            now=now,
            usual_s=phase_usual_s(profile, job),
            finish_in_s=busy_for_s(job, profile, now) if profile is not None else None,
        )
        for job in running
    ]
    if profile is None or gpu is None or not pending:
        pending_rows = [
            JobRow(job=job, mine=bool(getattr(job, "mine", False)), now=now, position=n)
            for n, job in enumerate(pending, start=1)
        ]
        return GpuQueue(name, gpu, profile, running_rows, pending_rows)
    # What is resident when the running job ends is that job's runtime, not today's state.
    resident = running[0].runtime if running else resident_runtime(gpu)
    busy = max((row.finish_in_s or 0.0 for row in running_rows), default=0.0)
    forecast = queue_forecast(
        pending_for_scheduler(pending, profile),
        resident=resident,
        now=now.timestamp(),
        policy=policy_from_profile(profile),
        busy_for_s=busy,
    )
    names = {job.project_id: job.project.name for job in jobs if getattr(job, "mine", False)}
    by_id = {job.pk: job for job in pending}
    pending_rows = [
        JobRow(
            job=by_id[eta.job_id],
            mine=bool(getattr(by_id[eta.job_id], "mine", False)),
            now=now,
            position=n,
            ahead=ahead_words(running, eta.ahead, names),
            eta=eta,
            finish_in_s=eta.finish_in_s,
        )
        for n, eta in enumerate(forecast, start=1)
    ]
    return GpuQueue(name, gpu, profile, running_rows, pending_rows)


def _queues(jobs: list[Job], gpus: Mapping[str, Gpu], names: Sequence[str], now: datetime) -> list[GpuQueue]:
    by_gpu: dict[str, list[Job]] = {}
    for job in jobs:
        by_gpu.setdefault(job.gpu, []).append(job)
    return [_queue(name, gpus.get(name), by_gpu.get(name, []), now) for name in names]


def gpu_queue(name: str, user: Any, *, now: datetime | None = None) -> GpuQueue:
    """The whole queue of one GPU (rows of other projects are the template's to redact)."""
    now = now or timezone.now()
    gpus = {gpu.name: gpu for gpu in Gpu.objects.select_related("active_profile").filter(name=name)}
    return _queues(_active_jobs(Q(gpu=name), user), gpus, [name], now)[0]


def project_queue(project: Project, user: Any, *, now: datetime | None = None) -> ProjectQueue:
    """The project's running and pending jobs (with ETAs) and its recently finished ones."""
    now = now or timezone.now()
    site = settings.ARTCRITIC_GPU
    their_gpus = Job.objects.filter(project=project, status__in=ACTIVE_STATUSES).values("gpu")
    jobs = _active_jobs(Q(gpu__in=their_gpus) | Q(gpu=site), user)
    names = sorted({site} | {job.gpu for job in jobs if job.project_id == project.pk})
    gpus = {gpu.name: gpu for gpu in Gpu.objects.select_related("active_profile").filter(name__in=names)}
    queues = _queues(jobs, gpus, names, now)
    ours = [row for queue in queues for row in queue.rows if row.job.project_id == project.pk]
    finished = (
        Job.objects.filter(project=project)
        .exclude(status__in=ACTIVE_STATUSES)
        .select_related("request__prompt", "image", "submitted_by")
        .order_by("-updated_at", "-id")[:RECENT_FINISHED]
    )
    return ProjectQueue(
        project=project,
        running=[row for row in ours if row.running],
        pending=[row for row in ours if not row.running],
        finished=[JobRow(job=job, mine=True, now=now) for job in finished],
        gpu_names=names,
        others=sum(
            1 for queue in queues for row in queue.rows if row.job.project_id != project.pk
        ),
    )


def project_images(project: Project, user: Any, limit: int = STRIP_IMAGES) -> list[Image]:
    """The project's newest images with the viewer's and the Critic's verdicts."""
    return list(gallery_images(project, user)[:limit])


def project_dashboard(project: Project, user: Any, *, now: datetime | None = None) -> Dashboard:
    """The project page's first paint: GPU panels, the project's queue, the newest images."""
    now = now or timezone.now()
    queue = project_queue(project, user, now=now)
    return Dashboard(
        gpus=gpu_panels(queue.gpu_names, now=now),
        queue=queue,
        images=project_images(project, user),
    )
