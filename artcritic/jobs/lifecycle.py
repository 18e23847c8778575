"""Job state changes on the GPU side: claim, phases, progress, leases, finish, fail, reap.

Each function is one atomic state change that appends to the phase history where
the phase changes, and publishes a live event only after commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from artcritic.audit.services import audit_record
from artcritic.events import event_publish
from artcritic.gpu.costs import job_cost
from artcritic.gpu.models import Gpu
from artcritic.gpu.profiles import Economics, Profile
from artcritic.jobs.durations import DurationModel
from artcritic.jobs.forecast import pending_for_scheduler
from artcritic.jobs.history import duration_model
from artcritic.jobs.models import PENDING_STATUSES, Job, JobKind, JobPhase, JobStatus, Phase
from artcritic.jobs.review_state import image_review_follow
from artcritic.jobs.scheduler import schedule_next

log = logging.getLogger(__name__)

LEASE_SECONDS = 30
ACTIVE_STATUSES = (JobStatus.RUNNING,)
# Phases of a runtime swap: release the other runtime, verify, start or wake, load, warm.
SWAP_PHASES = frozenset(
    {Phase.RELEASING, Phase.VERIFYING_VRAM, Phase.STARTING, Phase.LOADING, Phase.WARMING}
)


class ProfileChanged(Exception):
    """The GPU's active profile changed since the worker read it; read it again."""

    def __init__(self, gpu: str, expected: str, active: str | None) -> None:
        super().__init__(f"GPU {gpu} now uses profile {active!r}, not {expected!r}")


@dataclass(frozen=True)
class Claim:
    """A job this worker now owns, and why the scheduler picked it."""

    job_id: int
    reason: str
    swap: bool


@dataclass(frozen=True)
class Measured:
    """What the GPU worker measured over a job, and the economics to price it with."""

    # NVML's energy counter over claim → finish; None when the card does not report it.
    energy_joules: float | None = None
    # The most VRAM in use in the readings taken during the job; None without readings.
    vram_peak_bytes: int | None = None
    economics: Economics | None = None
    # The job's own GPU-seconds when it shared the GPU (batched reviews: its part of the
    # time it ran on the Critic, critic.batching.gpu_share; none while it waited for the
    # Critic to start); None: claim → finish less the swap. Energy and the host's draw
    # are split in the same proportion.
    gpu_seconds: float | None = None


def _publish_status(job: Job, *, detail: dict[str, object] | None = None) -> None:
    event_publish(
        "job.status",
        project=job.project_id,
        gpu=job.gpu,
        job=job.pk,
        runtime=job.phase_runtime or job.runtime,
        status=job.status,
        phase=job.phase,
        progress={"current": job.progress_current, "total": job.progress_total},
        detail={
            "kind": job.kind,
            "reason": job.error_reason,
            "next_action": job.next_action,
            "attempt": job.attempt,
            "phase_started_at": job.phase_started_at.isoformat() if job.phase_started_at else "",
            **(detail or {}),
        },
    )


def _history(job: Job, detail: str = "") -> None:
    JobPhase.objects.create(
        job=job,
        status=job.status,
        phase=job.phase,
        runtime=job.phase_runtime,
        started_at=job.phase_started_at or timezone.now(),
        detail=detail[:2000],
    )


def _lease_take(job: Job, worker: str, profile_name: str, now: datetime) -> None:
    """The job runs under ``worker``'s lease from ``now``, waiting for its GPU first."""
    job.status = JobStatus.RUNNING
    job.lease_owner = worker
    job.lease_expires_at = now + timedelta(seconds=LEASE_SECONDS)
    job.started_at = job.started_at or now
    job.claimed_at = now
    # The profile it runs under (the request keeps the one it was submitted on).
    job.profile_name = profile_name
    job.phase = Phase.WAITING_FOR_GPU
    job.phase_runtime = ""
    job.phase_started_at = now
    job.save(
        update_fields=[
            "status",
            "lease_owner",
            "lease_expires_at",
            "started_at",
            "claimed_at",
            "profile_name",
            "phase",
            "phase_runtime",
            "phase_started_at",
            "updated_at",
        ]
    )


def job_claim_next(
    gpu: str,
    *,
    worker: str,
    resident: str | None,
    profile: Profile,
    model: DurationModel | None = None,
    now: datetime | None = None,
) -> Claim | None:
    """Lock the pending jobs of this GPU (SKIP LOCKED), let the scheduler pick one, own it.

    The scheduler's swap costs come from ``model`` (the GPU's learned durations; read
    from its history when not given).
    """
    now = now or timezone.now()
    model = model or duration_model(gpu, profile)
    with transaction.atomic():
        # Serialise with profile switches: a job never starts under a profile that was
        # replaced between the worker reading it and claiming the job.
        active = (
            Gpu.objects.select_for_update()
            .filter(name=gpu)
            .values_list("active_profile__name", flat=True)
            .first()
        )
        if active != profile.name:
            raise ProfileChanged(gpu, profile.name, active)
        pending = list(
            Job.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("request")
            .filter(gpu=gpu, status__in=PENDING_STATUSES, cancel_requested=False)
            .order_by("created_at", "id")
        )
        if not pending:
            return None
        decision = schedule_next(
            pending_for_scheduler(pending, model),
            resident=resident,
            now=now.timestamp(),
            policy=model.scheduler_policy(),
        )
        if decision is None:
            return None
        job = next(j for j in pending if j.pk == decision.job_id)
        _lease_take(job, worker, profile.name, now)
        _history(job, f"claimed by {worker}: {decision.reason}")
        _publish_status(job, detail={"scheduler": decision.reason})
        return Claim(job_id=job.pk, reason=decision.reason, swap=decision.swap)


def job_claim_reviews(
    gpu: str,
    *,
    worker: str,
    profile: Profile,
    limit: int,
    unless_others: bool = False,
    now: datetime | None = None,
) -> list[int]:
    """Own up to ``limit`` more waiting reviews of this GPU, highest priority, oldest first.

    Called right after the scheduler picked a review, so that the Critic — already the
    runtime that was made ready — serves several at once (vLLM batches them), and again
    as each ends. Each claimed review stays its own job with its own lease, phases and end.
    ``unless_others``: claim nothing while another kind of job waits, so that a generation
    waits for the reviews running, never for the whole queue of reviews.
    """
    if limit <= 0:
        return []
    if (
        unless_others
        and Job.objects.filter(gpu=gpu, status__in=PENDING_STATUSES, cancel_requested=False)
        .exclude(kind=JobKind.REVIEW)
        .exists()
    ):
        return []
    now = now or timezone.now()
    with transaction.atomic():
        active = (
            Gpu.objects.select_for_update()
            .filter(name=gpu)
            .values_list("active_profile__name", flat=True)
            .first()
        )
        if active != profile.name:
            return []  # the next claim reads the new profile; nothing extra starts under the old
        jobs = list(
            Job.objects.select_for_update(skip_locked=True)
            .filter(
                gpu=gpu,
                kind=JobKind.REVIEW,
                status__in=PENDING_STATUSES,
                cancel_requested=False,
            )
            .order_by("-priority", "created_at", "id")[:limit]
        )
        for job in jobs:
            _lease_take(job, worker, profile.name, now)
            reason = "batched on the Critic beside the reviews it is running"
            _history(job, f"claimed by {worker}: {reason}")
            _publish_status(job, detail={"scheduler": reason})
        return [job.pk for job in jobs]


def lease_renew(job_id: int, *, worker: str) -> bool:
    """Extend the lease; False when the job is no longer ours (reaped or finished)."""
    updated = Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, lease_owner=worker).update(
        lease_expires_at=timezone.now() + timedelta(seconds=LEASE_SECONDS)
    )
    return updated == 1


def job_phase_enter(
    job_id: int,
    phase: Phase,
    *,
    runtime: str = "",
    detail: str = "",
    progress: tuple[int, int] | None = None,
) -> None:
    """Enter a phase: a new history row with its start time, and a live event."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        job.phase = phase
        job.phase_runtime = runtime
        job.phase_started_at = timezone.now()
        if progress is not None:
            job.progress_current, job.progress_total = progress
        job.save(
            update_fields=[
                "phase",
                "phase_runtime",
                "phase_started_at",
                "progress_current",
                "progress_total",
                "updated_at",
            ]
        )
        _history(job, detail)
        _publish_status(job, detail={"text": detail} if detail else None)


# job_progress runs for every step the Artist reports, so it is one statement: update the
# numbers and read back what the event needs, in a single round trip to PostgreSQL (the
# ORM's read-then-update took two, ~3x the time on a busy machine: bench/live.py).
_PROGRESS_COLUMNS = ("project_id", "gpu", "phase", "phase_runtime", "runtime", "status")
_PROGRESS_SQL = (
    "UPDATE jobs_job SET progress_current = %s, progress_total = %s, updated_at = %s "
    "WHERE id = %s RETURNING project_id, gpu, phase, phase_runtime, runtime, status"
)


def _progress_update(job_id: int, current: int, total: int) -> dict[str, object] | None:
    with connection.cursor() as cursor:
        cursor.execute(_PROGRESS_SQL, [current, total, timezone.now(), job_id])
        row = cursor.fetchone()
    return None if row is None else dict(zip(_PROGRESS_COLUMNS, row, strict=True))


def job_progress(job_id: int, current: int, total: int, *, detail: str = "") -> None:
    """Step progress inside the current phase: no history row, just the numbers and an event
    (latest-wins per job on the way to the dashboards: artcritic/events.py)."""
    current = max(0, min(current, total))
    job = _progress_update(job_id, current, total)
    if job is None:
        return
    event_publish(
        "job.progress",
        project=job["project_id"],
        gpu=job["gpu"],
        job=job_id,
        runtime=job["phase_runtime"] or job["runtime"],
        status=job["status"],
        phase=job["phase"],
        progress={"current": current, "total": total},
        detail={"text": detail} if detail else {},
    )


def swap_seconds(starts: list[tuple[datetime, str]], end: datetime) -> float:
    """Seconds spent in swap phases, from each phase's start to the next one's (or ``end``)."""
    total = 0.0
    for (started, phase), (until, _next) in zip(starts, [*starts[1:], (end, "")], strict=True):
        if phase in SWAP_PHASES:
            total += max(0.0, (until - started).total_seconds())
    return total


MIN_SHARE = 1e-6  # a job that shared the GPU still pays a sliver of the host's draw


def _measure(job: Job, now: datetime, measured: Measured) -> None:
    """Fill the job's GPU-seconds, swap seconds, energy, peak VRAM and cost (claim → now)."""
    if job.claimed_at is None:
        return
    starts = list(
        JobPhase.objects.filter(job=job, started_at__gte=job.claimed_at)
        .order_by("started_at", "id")
        .values_list("started_at", "phase")
    )
    wall = max(0.0, (now - job.claimed_at).total_seconds())
    swap = min(wall, swap_seconds(starts, now))
    job.swap_seconds = swap
    own = wall - swap
    used = own if measured.gpu_seconds is None else max(0.0, min(own, measured.gpu_seconds))
    share = used / own if own > 0 else 1.0
    job.gpu_seconds = used
    energy = measured.energy_joules
    job.energy_joules = energy * share if energy is not None else None
    job.vram_peak_bytes = measured.vram_peak_bytes
    if measured.economics is not None:
        cost = job_cost(
            measured.economics,
            gpu_energy_joules=job.energy_joules,
            start=job.claimed_at,
            end=now,
            gpu_seconds=job.gpu_seconds,
            swap_seconds=swap,
            share=max(share, MIN_SHARE),
        )
        job.cost = cost.total
        job.cost_electricity = cost.electricity
        job.cost_kwh = cost.kwh
        job.cost_currency = measured.economics.currency


def _finish(
    job_id: int,
    status: JobStatus,
    *,
    reason: str = "",
    next_action: str = "",
    detail: str = "",
    code: str = "",
    measured: Measured | None = None,
    fields: dict[str, object] | None = None,
) -> Job:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        now = timezone.now()
        if measured is not None:
            _measure(job, now, measured)
        job.error_code = code
        job.status = status
        job.phase = ""
        job.phase_runtime = ""
        job.phase_started_at = now
        job.finished_at = now
        job.lease_owner = ""
        job.lease_expires_at = None
        job.error_reason = reason
        job.next_action = next_action
        for name, value in (fields or {}).items():
            setattr(job, name, value)
        job.save()
        _history(job, detail or reason)
        _publish_status(job)
        image_review_follow(job)
        audit_record(
            f"job.{status}",
            reason or f"{job.kind} job {job.pk} {status}",
            project_id=job.project_id,
            job_id=job.pk,
            gpu=job.gpu,
            runtime=job.runtime,
        )
        return job


def job_done(
    job_id: int, *, detail: str = "", measured: Measured | None = None, **fields: object
) -> Job:
    """The job finished its work."""
    return _finish(job_id, JobStatus.DONE, detail=detail, measured=measured, fields=fields)


def job_fail(
    job_id: int,
    *,
    reason: str,
    next_action: str,
    code: str = "failed",
    measured: Measured | None = None,
    **fields: object,
) -> Job:
    """The job failed visibly: what happened (with numbers) and the next safe action."""
    return _finish(
        job_id,
        JobStatus.FAILED,
        reason=reason,
        next_action=next_action,
        code=code,
        measured=measured,
        fields=fields,
    )


def job_block(
    job_id: int, *, reason: str, next_action: str, measured: Measured | None = None
) -> Job:
    """The active profile refuses the job before any work starts."""
    return _finish(
        job_id,
        JobStatus.BLOCKED,
        reason=reason,
        next_action=next_action,
        code="blocked_by_profile",
        measured=measured,
    )


def job_cancelled(
    job_id: int, *, detail: str = "Cancelled.", measured: Measured | None = None
) -> Job:
    """A running job stopped because someone asked it to."""
    return _finish(job_id, JobStatus.CANCELLED, detail=detail, measured=measured)


def job_cancel_requested(job_id: int) -> bool:
    """Whether someone asked this job to stop (cheap read, polled during long phases)."""
    return Job.objects.filter(pk=job_id, cancel_requested=True).exists()


def jobs_reap_expired(gpu: str, *, now: datetime | None = None) -> list[int]:
    """Running jobs whose worker stopped heartbeating: interrupted, and re-queued once.

    A re-queued generate job keeps the images it stored and makes only the missing ones,
    with the seeds its request recorded (the runner skips what is stored; the request is
    never edited), so nothing is made twice and nothing already made is lost. Every
    outcome, with the phase the work was really in, is in the phase history.
    """
    now = now or timezone.now()
    reaped: list[int] = []
    with transaction.atomic():
        expired = list(
            Job.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("request")
            .filter(gpu=gpu, status=JobStatus.RUNNING)
            .filter(Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True))
        )
        for job in expired:
            message = f"The GPU worker stopped during {_lost_work(job)}"
            job.status = JobStatus.INTERRUPTED
            job.error_code = "worker_lost"
            job.phase = ""
            job.phase_started_at = now
            job.lease_owner = ""
            job.lease_expires_at = None
            requeue = job.attempt < job.max_attempts
            saved = (
                f" after saving {job.output_count} of {job.request.count} image(s)"
                if job.request is not None and job.output_count
                else ""
            )
            if requeue:
                resume = (
                    "; the missing ones will be made with their recorded seeds"
                    if saved
                    else ""
                )
                job.error_reason = (
                    f"{message}{saved}; the job was put back in the queue (attempt "
                    f"{job.attempt + 1} of {job.max_attempts}){resume}."
                )
            else:
                job.error_reason = (
                    f"{message}{saved}, on its last attempt ({job.attempt} of "
                    f"{job.max_attempts}); the images it stored are kept."
                    if saved
                    else f"{message} on its last attempt ({job.attempt} of {job.max_attempts})."
                )
                job.next_action = (
                    "Check the GPU worker's logs, then submit the request again "
                    "for the missing images."
                    if saved
                    else "Check the GPU worker's logs, then submit the request again."
                )
            job.save()
            _history(job, job.error_reason)
            _publish_status(job)
            if requeue:
                _requeue(job)
            image_review_follow(job)
            audit_record(
                "job.interrupted",
                job.error_reason,
                project_id=job.project_id,
                job_id=job.pk,
                gpu=gpu,
                runtime=job.runtime,
            )
            reaped.append(job.pk)
    return reaped


def _requeue(job: Job) -> None:
    """Put an interrupted job (locked by the caller) back in its GPU's queue, next attempt."""
    job.status = JobStatus.ADMITTED
    job.attempt = F("attempt") + 1
    job.progress_current = 0
    job.phase = Phase.WAITING_FOR_GPU
    job.save()
    job.refresh_from_db()
    _history(job, "re-queued after interruption")
    _publish_status(job)


def job_runtime_version_set(job_id: int, version: str) -> None:
    """Record the runtime version the job runs on (as the runtime reported it)."""
    if version:
        Job.objects.filter(pk=job_id).update(runtime_version=version[:80])


def job_requeue_interrupted(job_id: int, *, reason: str, next_action: str) -> Job:
    """The runtime lost the job's work: interrupted, and re-queued once if it saved nothing.

    Both steps are rows of the phase history, so the user sees what happened and that it
    runs again (attempt n of m); on its last attempt the job fails with ``next_action``.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if not job.output_count and job.attempt < job.max_attempts:
            now = timezone.now()
            job.status = JobStatus.INTERRUPTED
            job.phase = ""
            job.phase_started_at = now
            job.lease_owner = ""
            job.lease_expires_at = None
            job.error_reason = (
                f"{reason} The job was put back in the queue "
                f"(attempt {job.attempt + 1} of {job.max_attempts})."
            )
            job.next_action = ""
            job.save()
            _history(job, job.error_reason)
            _publish_status(job)
            audit_record(
                "job.interrupted",
                job.error_reason,
                project_id=job.project_id,
                job_id=job.pk,
                gpu=job.gpu,
                runtime=job.runtime,
            )
            _requeue(job)
            image_review_follow(job)
            return job
    last = f"{reason} It was the last attempt ({job.attempt} of {job.max_attempts})."
    if job.output_count:
        last = f"{reason} It had saved {job.output_count} image(s), so it was not re-run."
    return job_fail(job_id, reason=last, next_action=next_action)


def _lost_work(job: Job) -> str:
    """What the job was doing when its worker vanished, as its last phase row says."""
    last = job.phases.order_by("-started_at", "-id").values_list("phase", "detail").first()
    phase, detail = last if last is not None else (job.phase, "")
    phase = phase or job.phase
    if not phase:
        return "its work"
    label = str(Phase(phase).label).lower()
    return f"{label} ({detail})" if detail and detail.lower() != label else label


def job_move_gpu(job_id: int, *, from_gpu: str, to_gpu: str, reason: str) -> bool:
    """Move a job that waits, or whose worker's lease ran out, to another GPU's queue.

    Only when it is still on ``from_gpu`` in such a state (several workers may try the
    same move at once; one wins). A job moved while "running" keeps that status: the new
    GPU's worker finds its lease expired and interrupts and re-queues it once, exactly as
    if its own worker had died (``jobs_reap_expired``).
    """
    now = timezone.now()
    with transaction.atomic():
        job = (
            Job.objects.select_for_update(skip_locked=True)
            .filter(pk=job_id, gpu=from_gpu, cancel_requested=False)
            .filter(
                Q(status__in=PENDING_STATUSES)
                | Q(status=JobStatus.RUNNING)
                & (Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True))
            )
            .first()
        )
        if job is None:
            return False
        job.gpu = to_gpu
        job.placement_reason = reason[:500]
        job.save(update_fields=["gpu", "placement_reason"])
        _history(job, reason)
        _publish_status(job)
        event_publish(
            "job.status",
            project=job.project_id,
            gpu=from_gpu,
            job=job.pk,
            runtime=job.runtime,
            status=job.status,
            phase=job.phase,
            progress={"current": job.progress_current, "total": job.progress_total},
            detail={"kind": job.kind, "moved_to": to_gpu, "reason": reason},
        )
    return True
