"""An image's review state follows its latest review job, whatever ended that job.

Jobs end in many places (the runner, a cancel, the lease reaper, an admin); the image must
never stay "being reviewed" after its review stopped. Each of those places calls
``image_review_follow`` in the same transaction, and only the image's newest review job
decides: an older job ending after a "Review again" changes nothing.
"""

from __future__ import annotations

from artcritic.events import event_publish
from artcritic.jobs.models import Job, JobKind, JobStatus
from artcritic.studio.models import Image, ReviewStatus

REVIEW_STATUS_OF_JOB = {
    JobStatus.QUEUED: ReviewStatus.PENDING,
    JobStatus.ADMITTED: ReviewStatus.PENDING,
    JobStatus.RUNNING: ReviewStatus.REVIEWING,
    JobStatus.DONE: ReviewStatus.REVIEWED,
    JobStatus.FAILED: ReviewStatus.FAILED,
    JobStatus.BLOCKED: ReviewStatus.FAILED,
    JobStatus.INTERRUPTED: ReviewStatus.FAILED,
    JobStatus.CANCELLED: ReviewStatus.CANCELLED,
}


def image_review_follow(job: Job) -> None:
    """Set the reviewed image's state from ``job``, if it is the image's newest review job."""
    if job.kind != JobKind.REVIEW or job.image_id is None:
        return
    newer = Job.objects.filter(image_id=job.image_id, kind=JobKind.REVIEW, pk__gt=job.pk)
    if newer.exists():
        return
    state = REVIEW_STATUS_OF_JOB[JobStatus(job.status)]
    changed = Image.objects.filter(pk=job.image_id).exclude(review_status=state).update(
        review_status=state
    )
    if changed and state in (ReviewStatus.FAILED, ReviewStatus.CANCELLED):
        event_publish(
            "review.created",
            project=job.project_id,
            gpu=job.gpu,
            job=job.pk,
            status=str(state),
            detail={
                "image": job.image_id,
                "reason": job.error_reason or "The review was cancelled.",
                "next_action": job.next_action or "Review again when you want a verdict.",
            },
        )
