"""An image's review state follows its newest review job, from every way a job ends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from artcritic.jobs import lifecycle
from artcritic.jobs.models import JobStatus
from artcritic.jobs.services import job_cancel
from artcritic.studio.models import Image, ReviewStatus
from tests.factories import project_make, prompt_make, request_make, user_make
from tests.factories_media import image_make, job_make, phase_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def image() -> Image:
    project = project_make(owner=user_make())
    return image_make(request_make(prompt_make(project, project.created_by)))


def review_of(image: Image, **fields: object) -> object:
    job = job_make(image=image, **fields)
    phase_make(job)
    return job


def state(image: Image) -> str:
    image.refresh_from_db()
    return image.review_status


@pytest.mark.parametrize(
    ("end", "expected"),
    [
        (lambda j: lifecycle.job_done(j.pk), ReviewStatus.REVIEWED),
        (lambda j: lifecycle.job_fail(j.pk, reason="Critic died.", next_action="Retry."),
         ReviewStatus.FAILED),
        (lambda j: lifecycle.job_block(j.pk, reason="No room.", next_action="Wait."),
         ReviewStatus.FAILED),
        (lambda j: lifecycle.job_cancelled(j.pk), ReviewStatus.CANCELLED),
    ],
    ids=["done", "failed", "blocked", "cancelled-while-running"],
)
def test_every_ending_of_a_running_review_leaves_the_image_in_a_known_state(
    image: Image, end: object, expected: str
) -> None:
    job = review_of(image, status=JobStatus.RUNNING)
    Image.objects.filter(pk=image.pk).update(review_status=ReviewStatus.REVIEWING)
    end(job)  # type: ignore[operator]
    assert state(image) == expected


def test_cancelling_a_waiting_review_marks_the_image_cancelled(image: Image) -> None:
    job = review_of(image, status=JobStatus.ADMITTED)
    job_cancel(job, user=image.project.created_by)  # type: ignore[arg-type]
    assert state(image) == ReviewStatus.CANCELLED


def test_a_review_whose_worker_died_waits_again_then_fails_on_its_last_attempt(
    image: Image,
) -> None:
    past = timezone.now() - timedelta(minutes=5)
    job = review_of(image, status=JobStatus.RUNNING, lease_expires_at=past, gpu="g1")
    Image.objects.filter(pk=image.pk).update(review_status=ReviewStatus.REVIEWING)
    lifecycle.jobs_reap_expired("g1")
    assert state(image) == ReviewStatus.PENDING  # re-queued: attempt 2 of 2
    type(job).objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, lease_expires_at=past)
    lifecycle.jobs_reap_expired("g1")
    assert state(image) == ReviewStatus.FAILED


def test_an_older_review_ending_late_does_not_override_a_newer_one(image: Image) -> None:
    old = review_of(image, status=JobStatus.RUNNING)
    review_of(image, status=JobStatus.ADMITTED)  # "review again" queued meanwhile
    Image.objects.filter(pk=image.pk).update(review_status=ReviewStatus.PENDING)
    lifecycle.job_fail(old.pk, reason="Critic died.", next_action="Retry.")  # type: ignore[attr-defined]
    assert state(image) == ReviewStatus.PENDING
