"""An image's review state follows its latest review job, whatever ended that job.

Jobs end in many places (the runner, a cancel, the lease reaper, an admin); the image must
never stay "being reviewed" or "awaiting review" after its review stopped. Each of those
places calls ``image_review_follow`` in the same transaction. Only the image's newest review
job decides (an older one ending after a "Review again" changes nothing, nor does any job
while another review of the image waits or runs), and a failed or cancelled "Review again"
of an image that already has a review shows that review again: the image page still says
what happened to the attempt, with "Review again".
"""

from __future__ import annotations

from django.db.models import Q

from artcritic.events import event_publish
from artcritic.jobs.models import PENDING_STATUSES, Job, JobKind, JobStatus
from artcritic.studio.models import CriticReview, Image, ReviewStatus

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
    reviews = Job.objects.filter(image_id=job.image_id, kind=JobKind.REVIEW).exclude(pk=job.pk)
    if reviews.filter(
        Q(pk__gt=job.pk) | Q(status__in=(*PENDING_STATUSES, JobStatus.RUNNING))
    ).exists():
        return
    state = REVIEW_STATUS_OF_JOB[JobStatus(job.status)]
    if (
        state in (ReviewStatus.FAILED, ReviewStatus.CANCELLED)
        and CriticReview.objects.filter(image_id=job.image_id).exists()
    ):
        state = ReviewStatus.REVIEWED
    changed = Image.objects.filter(pk=job.image_id).exclude(review_status=state).update(
        review_status=state
    )
    ended_without_review = job.status in (
        JobStatus.FAILED, JobStatus.BLOCKED, JobStatus.CANCELLED, JobStatus.INTERRUPTED
    )
    if changed and ended_without_review:
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
