"""Job state changes on the web side: submitting jobs, and what admins may change."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from artcritic.audit.services import audit_record
from artcritic.gpu.admission import admit_generation
from artcritic.gpu.budget import gb
from artcritic.gpu.models import RuntimeName
from artcritic.gpu.selectors import NoActiveProfile, profile_active
from artcritic.jobs.models import FINISHED_STATUSES, Job, JobKind, JobPhase, JobStatus, Phase
from artcritic.live.events import event_publish
from artcritic.studio.models import GenerationRequest


def job_submit_generation(request: GenerationRequest, *, user: User | None) -> Job:
    """Queue the generate job of a stored request; admission decides at once.

    A request the active profile refuses is recorded as ``blocked`` with the arithmetic
    and never reaches the GPU worker; one that fits is ``admitted`` and the worker is
    asked to look for work after commit.
    """
    from artcritic.jobs.runner import request_settings
    from artcritic.jobs.tasks import gpu_kick

    gpu_name = settings.ARTCRITIC_GPU
    with transaction.atomic():
        job = Job.objects.create(
            kind=JobKind.GENERATE,
            project_id=request.project_id,
            request=request,
            submitted_by=user,
            status=JobStatus.QUEUED,
            runtime=RuntimeName.COMFYUI,
            gpu=gpu_name,
            profile_name=request.profile_name,
            progress_total=request.count,
            interactive=request.count == 1,
        )
        JobPhase.objects.create(job=job, status=JobStatus.QUEUED, started_at=job.created_at)
        audit_record(
            "job.submitted",
            f"generate job {job.pk} queued on {job.gpu} for request {request.pk}",
            actor=user,
            project_id=request.project_id,
            job_id=job.pk,
            gpu=job.gpu,
            runtime=job.runtime,
            data={"request": request.pk, "profile": job.profile_name},
        )
        try:
            _gpu, profile = profile_active(gpu_name)
        except NoActiveProfile as exc:
            return _block(
                job,
                str(exc),
                "Ask an admin to activate a hardware profile for "
                f"GPU {gpu_name}; then submit again.",
            )
        admission = admit_generation(profile, request_settings(request))
        if not admission.ok:
            return _block(job, admission.reason, admission.next_action)
        now = timezone.now()
        job.status = JobStatus.ADMITTED
        job.admitted_at = now
        job.phase = Phase.WAITING_FOR_GPU
        job.phase_started_at = now
        job.save(update_fields=["status", "admitted_at", "phase", "phase_started_at", "updated_at"])
        JobPhase.objects.create(
            job=job,
            status=job.status,
            phase=job.phase,
            started_at=now,
            detail=f"admitted on {profile.name}: needs {gb(admission.need_bytes)} of "
            f"{gb(admission.usable_bytes)} usable",
        )
        _publish(job)
        gpu_kick(gpu_name)
    return job


def _block(job: Job, reason: str, next_action: str) -> Job:
    now = timezone.now()
    job.status = JobStatus.BLOCKED
    job.error_reason = reason
    job.next_action = next_action
    job.finished_at = now
    job.phase_started_at = now
    job.save()
    JobPhase.objects.create(job=job, status=job.status, started_at=now, detail=reason)
    audit_record(
        "job.blocked",
        reason,
        project_id=job.project_id,
        job_id=job.pk,
        gpu=job.gpu,
        runtime=job.runtime,
    )
    _publish(job)
    return job


def _publish(job: Job) -> None:
    event_publish(
        "job.status",
        project=job.project_id,
        gpu=job.gpu,
        job=job.pk,
        runtime=job.runtime,
        status=job.status,
        phase=job.phase,
        progress={"current": job.progress_current, "total": job.progress_total},
        detail={"kind": job.kind, "reason": job.error_reason, "next_action": job.next_action},
    )


def job_cancel(job: Job, *, user: User) -> Job:
    """Cancel a job: at once when it waits, by interrupting the runtime when it runs."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status in FINISHED_STATUSES:
            return job
        if job.status == JobStatus.RUNNING:
            job.cancel_requested = True
            job.save(update_fields=["cancel_requested", "updated_at"])
            detail = "cancel requested; the worker interrupts the runtime"
        else:
            now = timezone.now()
            job.status = JobStatus.CANCELLED
            job.cancel_requested = True
            job.phase = ""
            job.finished_at = now
            job.phase_started_at = now
            job.save()
            JobPhase.objects.create(
                job=job,
                status=job.status,
                started_at=now,
                detail=f"cancelled by {user.get_username()}",
            )
            detail = "cancelled before it started"
        audit_record(
            "job.cancel",
            f"{user.get_username()} cancelled job {job.pk}: {detail}",
            actor=user,
            project_id=job.project_id,
            job_id=job.pk,
            gpu=job.gpu,
        )
        _publish(job)
    return job


def job_priority_set(job: Job, priority: int, *, user: User) -> Job:
    """Change a job's priority alone, leaving the worker's fields (status, phase) untouched."""
    with transaction.atomic():
        previous = Job.objects.select_for_update().values_list("priority", flat=True).get(pk=job.pk)
        if previous == priority:
            job.priority = priority
            return job
        Job.objects.filter(pk=job.pk).update(priority=priority, updated_at=timezone.now())
        audit_record(
            "job.priority_changed",
            f"{user.get_username()} changed job {job.pk}'s priority from {previous} to {priority}",
            actor=user,
            project_id=job.project_id,
            job_id=job.pk,
            gpu=job.gpu,
            data={"from": previous, "to": priority},
        )
    job.priority = priority
    return job
