"""Job state changes on the GPU side: claim, phases, progress, leases, finish, fail, reap.

Each function is one atomic state change that appends to the phase history where
the phase changes, and publishes a live event only after commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from artcritic.audit.services import audit_record
from artcritic.events import event_publish
from artcritic.gpu.models import Gpu
from artcritic.gpu.profiles import Profile
from artcritic.jobs.models import PENDING_STATUSES, Job, JobKind, JobPhase, JobStatus, Phase
from artcritic.jobs.scheduler import PendingJob, policy_from_profile, schedule_next
from artcritic.studio.models import CriticReview, Image, ReviewStatus

log = logging.getLogger(__name__)

LEASE_SECONDS = 30
ACTIVE_STATUSES = (JobStatus.RUNNING,)


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


def expected_seconds(job: Job, profile: Profile) -> float:
    """The job's own compute time from the profile (no swaps), for scheduling and ETAs."""
    if job.kind == JobKind.REVIEW:
        return profile.durations.critic_review
    request = job.request
    if request is None or request.model_mode not in profile.models:
        return profile.durations.critic_review
    model = profile.models[request.model_mode]
    megapixels = request.width * request.height / 1e6
    upload = profile.durations.upload_per_image * request.count
    return model.seconds_per_step_megapixel * megapixels * request.steps * request.count + upload


def pending_for_scheduler(jobs: list[Job], profile: Profile) -> list[PendingJob]:
    """Plain values for the pure scheduler."""
    return [
        PendingJob(
            id=job.pk,
            runtime=job.runtime,
            kind=job.kind,
            project_id=job.project_id,
            priority=job.priority,
            interactive=job.interactive,
            enqueued_at=job.created_at.timestamp(),
            expected_seconds=expected_seconds(job, profile),
        )
        for job in jobs
    ]


def job_claim_next(
    gpu: str, *, worker: str, resident: str | None, profile: Profile, now: datetime | None = None
) -> Claim | None:
    """Lock the pending jobs of this GPU (SKIP LOCKED), let the scheduler pick one, own it."""
    now = now or timezone.now()
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
            pending_for_scheduler(pending, profile),
            resident=resident,
            now=now.timestamp(),
            policy=policy_from_profile(profile),
        )
        if decision is None:
            return None
        job = next(j for j in pending if j.pk == decision.job_id)
        job.status = JobStatus.RUNNING
        job.lease_owner = worker
        job.lease_expires_at = now + timedelta(seconds=LEASE_SECONDS)
        job.started_at = job.started_at or now
        job.phase = Phase.WAITING_FOR_GPU
        job.phase_runtime = ""
        job.phase_started_at = now
        job.save(
            update_fields=[
                "status",
                "lease_owner",
                "lease_expires_at",
                "started_at",
                "phase",
                "phase_runtime",
                "phase_started_at",
                "updated_at",
            ]
        )
        _history(job, f"claimed by {worker}: {decision.reason}")
        _publish_status(job, detail={"scheduler": decision.reason})
        return Claim(job_id=job.pk, reason=decision.reason, swap=decision.swap)


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


def job_progress(job_id: int, current: int, total: int, *, detail: str = "") -> None:
    """Step progress inside the current phase: no history row, just the numbers and an event."""
    current = max(0, min(current, total))
    job = (
        Job.objects.filter(pk=job_id)
        .only("project_id", "gpu", "phase", "phase_runtime", "runtime", "status")
        .first()
    )
    if job is None:
        return
    Job.objects.filter(pk=job_id).update(
        progress_current=current, progress_total=total, updated_at=timezone.now()
    )
    event_publish(
        "job.progress",
        project=job.project_id,
        gpu=job.gpu,
        job=job_id,
        runtime=job.phase_runtime or job.runtime,
        status=job.status,
        phase=job.phase,
        progress={"current": current, "total": total},
        detail={"text": detail} if detail else {},
    )


def _finish(
    job_id: int,
    status: JobStatus,
    *,
    reason: str = "",
    next_action: str = "",
    detail: str = "",
    fields: dict[str, object] | None = None,
) -> Job:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        now = timezone.now()
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
        image_review_settle(job)
        _publish_status(job)
        audit_record(
            f"job.{status}",
            reason or f"{job.kind} job {job.pk} {status}",
            project_id=job.project_id,
            job_id=job.pk,
            gpu=job.gpu,
            runtime=job.runtime,
        )
        return job


def image_review_settle(job: Job) -> None:
    """A review job ended without a review: the image says so, never "awaiting" forever.

    An image with an earlier review shows that review again; one without says its review
    failed or was cancelled (the image and review pages offer "Review again"). Nothing
    changes while another review of the image still waits or runs.
    """
    if job.kind != JobKind.REVIEW or job.image_id is None or job.status == JobStatus.DONE:
        return
    if job.status not in (JobStatus.FAILED, JobStatus.BLOCKED, JobStatus.CANCELLED):
        return
    others = Job.objects.filter(
        image_id=job.image_id,
        kind=JobKind.REVIEW,
        status__in=(*PENDING_STATUSES, JobStatus.RUNNING),
    ).exclude(pk=job.pk)
    if others.exists():
        return
    if CriticReview.objects.filter(image_id=job.image_id).exists():
        status = ReviewStatus.REVIEWED
    elif job.status == JobStatus.CANCELLED:
        status = ReviewStatus.CANCELLED
    else:
        status = ReviewStatus.FAILED
    Image.objects.filter(pk=job.image_id).update(review_status=status)


def job_done(job_id: int, *, detail: str = "", **fields: object) -> Job:
    """The job finished its work."""
    return _finish(job_id, JobStatus.DONE, detail=detail, fields=fields)


def job_fail(job_id: int, *, reason: str, next_action: str, **fields: object) -> Job:
    """The job failed visibly: what happened (with numbers) and the next safe action."""
    return _finish(job_id, JobStatus.FAILED, reason=reason, next_action=next_action, fields=fields)


def job_block(job_id: int, *, reason: str, next_action: str) -> Job:
    """The active profile refuses the job before any work starts."""
    return _finish(job_id, JobStatus.BLOCKED, reason=reason, next_action=next_action)


def job_cancelled(job_id: int, *, detail: str = "Cancelled.") -> Job:
    """A running job stopped because someone asked it to."""
    return _finish(job_id, JobStatus.CANCELLED, detail=detail)


def job_cancel_requested(job_id: int) -> bool:
    """Whether someone asked this job to stop (cheap read, polled during long phases)."""
    return Job.objects.filter(pk=job_id, cancel_requested=True).exists()


def jobs_reap_expired(gpu: str, *, now: datetime | None = None) -> list[int]:
    """Running jobs whose worker stopped heartbeating: interrupted, re-queued once if no output.

    A job that already produced output is not re-run (that would duplicate images); it is
    marked interrupted with what it saved. Every outcome is in the phase history.
    """
    now = now or timezone.now()
    reaped: list[int] = []
    with transaction.atomic():
        expired = list(
            Job.objects.select_for_update(skip_locked=True)
            .filter(gpu=gpu, status=JobStatus.RUNNING)
            .filter(Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True))
        )
        for job in expired:
            lost_phase = job.get_phase_display() if job.phase else "its work"
            job.status = JobStatus.INTERRUPTED
            job.phase = ""
            job.phase_started_at = now
            job.lease_owner = ""
            job.lease_expires_at = None
            requeue = job.output_count == 0 and job.attempt < job.max_attempts
            message = f"The GPU worker stopped during {lost_phase.lower()}"
            if requeue:
                job.error_reason = (
                    f"{message}; the job was put back in the queue "
                    f"(attempt {job.attempt + 1} of {job.max_attempts})."
                )
            elif job.output_count:
                job.error_reason = (
                    f"{message} after saving {job.output_count} image(s); it was not re-run, "
                    "so no image is made twice."
                )
                job.next_action = "Submit the request again for the missing images."
            else:
                job.error_reason = (
                    f"{message} on its last attempt ({job.attempt} of {job.max_attempts})."
                )
                job.next_action = "Check the GPU worker's logs, then submit the request again."
            job.save()
            _history(job, job.error_reason)
            _publish_status(job)
            if requeue:
                job.status = JobStatus.ADMITTED
                job.attempt = F("attempt") + 1
                job.progress_current = 0
                job.phase = Phase.WAITING_FOR_GPU
                job.save()
                job.refresh_from_db()
                _history(job, "re-queued after interruption")
                _publish_status(job)
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
