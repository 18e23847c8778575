"""Job state changes on the web side: submitting jobs, and what admins may change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from artcritic.audit.services import audit_record
from artcritic.events import event_publish
from artcritic.gpu.admission import admit_generation, admit_review, request_settings
from artcritic.gpu.budget import gb
from artcritic.gpu.models import RuntimeName
from artcritic.gpu.selectors import NoActiveProfile, profile_active
from artcritic.jobs.history import plan_of
from artcritic.jobs.kick import gpu_kick
from artcritic.jobs.models import (
    FINISHED_STATUSES,
    PENDING_STATUSES,
    PRIORITY_MAX,
    PRIORITY_MIN,
    Job,
    JobKind,
    JobPhase,
    JobStatus,
    Phase,
)
from artcritic.jobs.placing import GpuChoice, NewJob, gpu_choose, gpus_reporting, new_job_of
from artcritic.jobs.predict import jobs_predict
from artcritic.jobs.review_state import image_review_follow
from artcritic.studio.models import CriticReview, GenerationRequest, Image, Project, ReviewStatus
from artcritic.studio.services import RequestDraft, request_create


def request_submit(*, project: Project, user: User, data: RequestDraft) -> GenerationRequest:
    """Store the prompt and its request exactly as submitted, and queue its generate job."""
    with transaction.atomic():
        request = request_create(project=project, user=user, data=data)
        job_submit_generation(request, user=user)
    return request


def job_submit_generation(request: GenerationRequest, *, user: User | None) -> Job:
    """Queue the generate job of a stored request; admission decides at once.

    A request the active profile refuses is recorded as ``blocked`` with the arithmetic
    and never reaches the GPU worker; one that fits is ``admitted`` and the worker is
    asked to look for work after commit.
    """

    new = NewJob(
        kind=JobKind.GENERATE,
        runtime=RuntimeName.COMFYUI,
        project_id=request.project_id,
        interactive=request.count == 1,
        settings=request_settings(request),
        plan=plan_of(request),
    )
    with transaction.atomic():
        missing: NoActiveProfile | None = None
        choice: GpuChoice | None = None
        try:
            choice = gpu_choose(new)
        except NoActiveProfile as exc:
            missing = exc
        gpu_name = choice.gpu if choice is not None else settings.ARTCRITIC_GPU
        job = Job.objects.create(
            kind=JobKind.GENERATE,
            project_id=request.project_id,
            request=request,
            submitted_by=user,
            status=JobStatus.QUEUED,
            runtime=RuntimeName.COMFYUI,
            gpu=gpu_name,
            placement_reason=(
                choice.reason[:500] if choice is not None and choice.admission.ok else ""
            ),
            profile_name=request.profile_name,
            progress_total=request.count,
            interactive=new.interactive,
        )
        JobPhase.objects.create(job=job, status=JobStatus.QUEUED, started_at=job.created_at)
        audit_record(
            "job.submitted",
            f"generate job {job.pk} queued on {job.gpu} for request {request.pk}"
            + (f" ({job.placement_reason})" if job.placement_reason else ""),
            actor=user,
            project_id=request.project_id,
            job_id=job.pk,
            gpu=job.gpu,
            runtime=job.runtime,
            data={"request": request.pk, "profile": job.profile_name},
        )
        if choice is None:
            return _block(
                job,
                str(missing),
                "Ask an admin to activate a hardware profile for "
                f"GPU {gpu_name}; then submit again.",
            )
        admission, profile = choice.admission, choice.profile
        if not admission.ok:
            return _block(job, admission.reason, admission.next_action)
        _admit(
            job,
            f"admitted on {profile.name}: needs {gb(admission.need_bytes)} of "
            f"{gb(admission.usable_bytes)} usable"
            + (f"; placed on {job.placement_reason}" if job.placement_reason else ""),
        )
        jobs_predict(gpu_name, [job.pk])
        _publish(job)
        gpu_kick(gpu_name)
    return job


def _admit(job: Job, detail: str) -> datetime:
    """Mark a queued job admitted and waiting for the GPU, with its history row; return when."""
    now = timezone.now()
    job.status = JobStatus.ADMITTED
    job.admitted_at = now
    job.phase = Phase.WAITING_FOR_GPU
    job.phase_started_at = now
    job.save(update_fields=["status", "admitted_at", "phase", "phase_started_at", "updated_at"])
    JobPhase.objects.create(
        job=job, status=job.status, phase=job.phase, started_at=now, detail=detail
    )
    return now


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
    _publish_status(job, {"reason": job.error_reason, "next_action": job.next_action})


def _publish_status(job: Job, detail: dict[str, object]) -> None:
    """Publish the job's ``job.status`` event; its detail is the job's kind plus ``detail``."""
    event_publish(
        "job.status",
        project=job.project_id,
        gpu=job.gpu,
        job=job.pk,
        runtime=job.runtime,
        status=job.status,
        phase=job.phase,
        progress={"current": job.progress_current, "total": job.progress_total},
        detail={"kind": job.kind, **detail},
    )


def job_cancel(job: Job, *, user: User) -> Job:
    """Cancel a job: at once when it waits, by interrupting the runtime when it runs."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status in FINISHED_STATUSES or job.cancel_requested:
            return job  # a second click (or a second admin) changes nothing
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
            image_review_follow(job)
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


def priority_check(job: Job, priority: object) -> int:
    """The one rule for a new priority: a whole number in bounds, for a job that still waits.

    Raises JobActionRefused with the reason; the database enforces the same (constraint
    job_priority_in_range, trigger jobs_job_priority_only_while_waiting) for any other path.
    """
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise JobActionRefused(f"A priority is a whole number, not {priority!r}.")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise JobActionRefused(
            f"A priority of {priority} is outside {PRIORITY_MIN}..{PRIORITY_MAX}.",
            f"choose a priority from {PRIORITY_MIN} to {PRIORITY_MAX}.",
        )
    if priority != job.priority:
        _refuse_unless_waiting(job, "its priority")
    return priority


def job_priority_set(job: Job, priority: int, *, user: User) -> Job:
    """Change a waiting job's priority alone, leaving the worker's fields untouched."""
    with transaction.atomic():
        current = Job.objects.select_for_update().get(pk=job.pk)
        previous = current.priority
        if previous == priority:
            job.priority = priority
            return job
        priority_check(current, priority)
        try:
            with transaction.atomic():
                Job.objects.filter(pk=job.pk).update(priority=priority, updated_at=timezone.now())
        except IntegrityError as exc:  # the database's rules, should a path skip this one
            raise JobActionRefused(f"Job {job.pk}'s priority was not changed: {exc}") from exc
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
        _publish(job)
        if job.status in (JobStatus.QUEUED, JobStatus.ADMITTED):
            gpu_kick(job.gpu)
    return job


# --- Admin queue management -------------------------------------------------------------------
# Each function below is one atomic state change that an admin action calls per job. A change
# that cannot be made raises ``JobActionRefused`` with the reason in words; nothing is changed.

RETRYABLE_STATUSES = (
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.INTERRUPTED,
    JobStatus.BLOCKED,
)
# Jobs that will still run, or run now: a second one for the same subject would duplicate work.
LIVE_STATUSES = (JobStatus.QUEUED, JobStatus.ADMITTED, JobStatus.RUNNING)


class JobActionRefused(Exception):
    """An admin action that is not done for this job: ``reason`` and ``next_action`` say why."""

    def __init__(self, reason: str, next_action: str = "") -> None:
        self.reason = reason
        self.next_action = next_action
        super().__init__(f"{reason} Next: {next_action}" if next_action else reason)


def _queue_lock(gpu: str) -> None:
    """Serialise queue-order changes on one GPU for this transaction (the worker is not held)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"artcritic.queue.{gpu}"])


def _publish_queue_change(job: Job, **detail: object) -> None:
    _publish_status(job, {"priority": job.priority, **detail})


def job_reprioritise(job: Job, priority: int, *, user: User) -> Job:
    """Give a waiting job a new priority (−100..100) through ``job_priority_set``.

    Only queued or admitted jobs are ordered by priority; for any other job the change
    would mean nothing, so it is refused rather than recorded.
    """
    with transaction.atomic():
        current = Job.objects.select_for_update().get(pk=job.pk)
        priority_check(current, priority)
        _refuse_unless_waiting(current, "its priority")
        if current.priority == priority:
            raise JobActionRefused(f"Job {current.pk} already has priority {priority}.")
        current = job_priority_set(current, priority, user=user)
        _publish_queue_change(current)
    return current


def _refuse_unless_waiting(job: Job, what: str) -> None:
    if job.status not in PENDING_STATUSES:
        raise JobActionRefused(
            f"Job {job.pk} is {job.get_status_display().lower()}; {what} only matters while "
            "a job waits (queued or admitted)."
        )
    if job.cancel_requested:
        raise JobActionRefused(f"Job {job.pk} is being cancelled; {what} no longer matters.")


def job_move_to_front(job: Job, *, user: User) -> Job:
    """Put a waiting job ahead of every other waiting job on its GPU: the highest priority + 1.

    The scheduler still lets a job that has waited past the profile's maximum wait run
    first (aging bounds every wait), so "front" means first among the rest.
    """

    with transaction.atomic():
        # Two admins moving two jobs at once must not both land on the same "highest + 1".
        _queue_lock(job.gpu)
        current = Job.objects.select_for_update().get(pk=job.pk)
        _refuse_unless_waiting(current, "its place in the queue")
        top = (
            Job.objects.filter(gpu=current.gpu, status__in=PENDING_STATUSES, cancel_requested=False)
            .exclude(pk=current.pk)
            .order_by("-priority", "created_at", "id")
            .values_list("pk", "priority")
            .first()
        )
        if top is None:
            raise JobActionRefused(
                f"Job {current.pk} is the only job waiting on {current.gpu}; "
                "it is already at the front."
            )
        top_id, top_priority = top
        if current.priority > top_priority:
            raise JobActionRefused(
                f"Job {current.pk} is already at the front of {current.gpu}'s queue "
                f"(priority {current.priority}; the next highest is {top_priority})."
            )
        priority = top_priority + 1
        if priority > PRIORITY_MAX:
            raise JobActionRefused(
                f"Job {current.pk} cannot go ahead of job {top_id}, which already has the "
                f"highest priority {PRIORITY_MAX} on {current.gpu}.",
                f"lower job {top_id}'s priority first, then move job {current.pk} to the front.",
            )
        previous = current.priority
        current.priority = priority
        current.save(update_fields=["priority", "updated_at"])
        audit_record(
            "job.moved_to_front",
            f"{user.get_username()} moved job {current.pk} to the front of {current.gpu}'s "
            f"queue: priority {previous} → {priority}, one above job {top_id} (priority "
            f"{top_priority}), the highest other waiting job. Jobs that waited past the "
            "profile's maximum wait still run first.",
            actor=user,
            project_id=current.project_id,
            job_id=current.pk,
            gpu=current.gpu,
            data={"from": previous, "to": priority, "above_job": top_id},
        )
        _publish_queue_change(current, moved_to_front=True)
        gpu_kick(current.gpu)
    return current


def job_retry(job: Job, *, user: User) -> Job:
    """Run a failed, cancelled, interrupted or blocked job again as a NEW job.

    The original keeps its status and history (a row there names the new job). Admission
    runs again against the GPU's active profile; a refusal creates no job. A generate job
    is retried only while its request has no stored image, so no image is made twice; a
    review only while its image has no review. One live job per subject: a second click
    finds the first retry and is refused.
    """

    with transaction.atomic():
        original = Job.objects.select_for_update().get(pk=job.pk)
        if original.status not in RETRYABLE_STATUSES:
            raise JobActionRefused(_not_retryable(original))
        # Lock the subject, so retries of any of its jobs (double clicks, two admins) queue up.
        request: GenerationRequest | None = None
        if original.request_id is not None:  # generate (the job_subject_matches_kind rule)
            request = GenerationRequest.objects.select_for_update().get(pk=original.request_id)
            _refuse_if_live(original, Job.objects.filter(request=request), f"request {request.pk}")
            _refuse_if_images_stored(original, request)
        else:
            assert original.image_id is not None  # review (the job_subject_matches_kind rule)
            image = Image.objects.select_for_update().get(pk=original.image_id)
            _refuse_if_live(original, Job.objects.filter(image=image), f"image {image.pk}")
            _refuse_if_reviewed(original, image)
        placed = _place_retry(original, request)
        profile_name, need_bytes, usable_bytes = (
            placed.profile_name, placed.need_bytes, placed.usable_bytes
        )
        retry = Job.objects.create(
            kind=original.kind,
            project_id=original.project_id,
            request_id=original.request_id,
            image_id=original.image_id,
            submitted_by_id=original.submitted_by_id,
            status=JobStatus.QUEUED,
            runtime=original.runtime,
            gpu=placed.gpu,
            placement_reason=placed.reason[:500],
            profile_name=profile_name,
            priority=original.priority,
            interactive=original.interactive,
            progress_total=request.count if request is not None else 1,
        )
        who = user.get_username()
        JobPhase.objects.create(
            job=retry,
            status=JobStatus.QUEUED,
            started_at=retry.created_at,
            detail=f"retry of job {original.pk} ({original.status}) by {who}",
        )
        fits = f"needs {gb(need_bytes)} of {gb(usable_bytes)} usable"
        # Admitted now, after created_at, so the history reads queued → admitted.
        now = _admit(retry, f"admitted again on {profile_name}: {fits}")
        JobPhase.objects.create(
            job=original,
            status=original.status,
            started_at=now,
            detail=f"retried as job {retry.pk} by {who}",
        )
        audit_record(
            "job.retried",
            f"{who} retried {original.status} {original.kind} job {original.pk} as job "
            f"{retry.pk} on {retry.gpu}: admitted again on {profile_name} ({fits}).",
            actor=user,
            project_id=retry.project_id,
            job_id=retry.pk,
            gpu=retry.gpu,
            runtime=retry.runtime,
            data={
                "retry_of": original.pk,
                "original_status": original.status,
                "profile": profile_name,
                "need_bytes": need_bytes,
            },
        )
        _publish(retry)
        gpu_kick(retry.gpu)
    return retry


def _not_retryable(job: Job) -> str:
    if job.status == JobStatus.DONE:
        return f"Job {job.pk} is done; there is nothing to retry."
    return (
        f"Job {job.pk} is still {job.get_status_display().lower()}; only failed, cancelled, "
        "interrupted or blocked jobs can be retried."
    )


def _refuse_if_live(job: Job, same_subject: QuerySet[Job], subject: str) -> None:
    live = (
        (same_subject.filter(kind=job.kind, status__in=LIVE_STATUSES).exclude(pk=job.pk))
        .order_by("id")
        .first()
    )
    if live is not None:
        raise JobActionRefused(
            f"Job {job.pk} was not retried: job {live.pk} for the same {subject} is already "
            f"{live.get_status_display().lower()}.",
            f"wait for job {live.pk}, or cancel it first.",
        )


def _refuse_if_images_stored(job: Job, request: GenerationRequest) -> None:
    stored = Image.objects.filter(request=request).count()
    if not stored:
        return
    missing = request.count - stored
    if missing <= 0:
        raise JobActionRefused(
            f"Job {job.pk} was not retried: request {request.pk} already has all "
            f"{request.count} of its image(s) stored; a retry would make nothing new."
        )
    raise JobActionRefused(
        f"Job {job.pk} was not retried: request {request.pk} already has {stored} of "
        f"{request.count} image(s) stored, and a retry only re-runs requests that stored "
        "none, so no image is ever made twice.",
        f"ask the designer to submit the request again for the {missing} missing image(s).",
    )


def _refuse_if_reviewed(job: Job, image: Image) -> None:
    review = CriticReview.objects.filter(image=image).order_by("id").first()
    if review is not None:
        by = f" by job {review.job_id}" if review.job_id else ""
        raise JobActionRefused(
            f"Job {job.pk} was not retried: image {image.pk} was already reviewed{by} "
            f"(review {review.pk}); a retry would review it twice."
        )


@dataclass(frozen=True)
class RetryPlace:
    gpu: str
    profile_name: str
    need_bytes: int
    usable_bytes: int
    reason: str = ""


def _place_retry(job: Job, request: GenerationRequest | None) -> RetryPlace:
    """Where the retry goes: placed across the GPUs whose workers are alive, as a new job
    is (the original's GPU may be the one that failed it, or gone); with no worker
    reporting, on the original's GPU as admitted by its active profile."""
    if not gpus_reporting():
        name, need, usable = _admission_for_retry(job, request)
        return RetryPlace(job.gpu, name, need, usable)
    try:
        choice = gpu_choose(new_job_of(job))
    except NoActiveProfile as exc:
        raise JobActionRefused(
            f"Job {job.pk} was not retried: {exc}",
            "activate a hardware profile on a GPU whose worker runs, then retry.",
        ) from None
    admission = choice.admission
    if not admission.ok:
        raise JobActionRefused(
            f"Job {job.pk} was not retried: profile {choice.profile.name} on {choice.gpu} "
            f"refuses it. {admission.reason}",
            admission.next_action.removeprefix("Next: "),
        )
    reason = choice.reason
    if choice.gpu != job.gpu and not reason:
        reason = f"{choice.gpu}: the GPU whose worker runs (job {job.pk} was on {job.gpu})"
    return RetryPlace(
        choice.gpu, choice.profile.name, admission.need_bytes, admission.usable_bytes, reason
    )


def _admission_for_retry(job: Job, request: GenerationRequest | None) -> tuple[str, int, int]:
    """Admission against the GPU's active profile now: (profile name, need, usable) or refused."""
    try:
        _gpu, profile = profile_active(job.gpu)
    except NoActiveProfile as exc:
        raise JobActionRefused(
            f"Job {job.pk} was not retried: {exc}",
            f"activate a hardware profile for GPU {job.gpu}, then retry.",
        ) from None
    if request is not None:
        admission = admit_generation(profile, request_settings(request))
    else:
        admission = admit_review(profile)
    if not admission.ok:
        raise JobActionRefused(
            f"Job {job.pk} was not retried: profile {profile.name} refuses it. {admission.reason}",
            admission.next_action.removeprefix("Next: "),
        )
    return profile.name, admission.need_bytes, admission.usable_bytes


# --- Review again (designers, the image page and the review screen) ---------------------------


def review_job_live(image: Image) -> Job | None:
    """The image's review job that still waits or runs, if any."""
    return (
        Job.objects.filter(image=image, kind=JobKind.REVIEW, status__in=LIVE_STATUSES)
        .order_by("-created_at", "-id")
        .first()
    )


def review_again(image: Image, *, user: User) -> Job:
    """Queue a NEW Critic review of ``image``; earlier reviews stay and are shown beside it.

    Refused (``JobActionRefused``, nothing created) while a review of the image waits or
    runs — a double click or a second designer finds the first one — and when the active
    profile cannot run the Critic, with the profile's reason.
    """
    with transaction.atomic():
        # Lock the image so that two clicks (or two designers) queue at most one review.
        locked = Image.objects.select_for_update().get(pk=image.pk)
        live = review_job_live(locked)
        if live is not None:
            raise JobActionRefused(
                f"Image {locked.pk} already has a Critic review "
                f"{'running' if live.status == JobStatus.RUNNING else 'waiting for the GPU'} "
                f"(job {live.pk}); it was not queued twice.",
                "wait for that review; it appears on the image when the Critic answers.",
            )
        try:
            choice = gpu_choose(
                NewJob(
                    kind=JobKind.REVIEW,
                    runtime=RuntimeName.CRITIC,
                    project_id=locked.project_id,
                    interactive=True,
                )
            )
        except NoActiveProfile as exc:
            raise JobActionRefused(
                f"No review was queued: {exc}",
                "ask an admin to activate a hardware profile for GPU "
                f"{settings.ARTCRITIC_GPU}.",
            ) from None
        gpu_name, profile, admission = choice.gpu, choice.profile, choice.admission
        if not admission.ok:
            raise JobActionRefused(
                f"No review was queued: profile {profile.name} cannot run the Critic. "
                f"{admission.reason}",
                admission.next_action.removeprefix("Next: "),
            )
        earlier = CriticReview.objects.filter(image=locked).count()
        job = Job.objects.create(
            kind=JobKind.REVIEW,
            project_id=locked.project_id,
            image=locked,
            submitted_by=user,
            status=JobStatus.QUEUED,
            runtime=RuntimeName.CRITIC,
            gpu=gpu_name,
            placement_reason=choice.reason[:500],
            profile_name=profile.name,
            progress_total=1,
            interactive=True,
        )
        JobPhase.objects.create(
            job=job,
            status=JobStatus.QUEUED,
            started_at=job.created_at,
            detail=f"review again of image {locked.pk} asked by {user.get_username()}",
        )
        _admit(
            job,
            f"admitted on {profile.name}: needs {gb(admission.need_bytes)} of "
            f"{gb(admission.usable_bytes)} usable"
            + (f"; placed on {choice.reason}" if choice.reason else ""),
        )
        Image.objects.filter(pk=locked.pk).update(review_status=ReviewStatus.PENDING)
        audit_record(
            "review.again",
            f"{user.get_username()} asked the Critic to review image {locked.pk} again "
            f"(job {job.pk}); {earlier} earlier review(s) kept",
            actor=user,
            project_id=locked.project_id,
            job_id=job.pk,
            gpu=job.gpu,
            runtime=job.runtime,
            data={"image": locked.pk, "earlier_reviews": earlier},
        )
        jobs_predict(gpu_name, [job.pk])
        _publish(job)
        gpu_kick(gpu_name)
    return job
