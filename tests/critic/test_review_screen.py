"""The review screen shows the Critic's own verdict beside the calibrated one, and every
review of the image after a review again (a cancelled one included)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import AbstractUser
from django.test import Client
from django.urls import reverse

from artcritic.critic.models import Calibration
from artcritic.critic.tasks import calibration_refit
from artcritic.jobs.models import Job, JobStatus
from artcritic.jobs.services import job_cancel, review_again
from artcritic.studio.models import CriticReview, Image, Project
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import decision_make, image_make, review_make

pytestmark = pytest.mark.django_db
DAY = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def olive() -> AbstractUser:
    profile_load()
    return user_make("olive")


@pytest.fixture
def project(olive: AbstractUser) -> Project:
    return project_make(owner=olive, name="Kettles")


@pytest.fixture
def client(olive: AbstractUser) -> Client:
    client = Client()
    client.force_login(olive)
    return client


def image_new(project: Project) -> Image:
    return image_make(request_make(prompt_make(project)))


def taught(project: Project, olive: AbstractUser) -> None:
    """Twelve decided images: the team approves taste 7–9 and rejects taste 1–3, while the
    Critic approves them all."""
    for taste in (1, 2, 3, 7, 8, 9) * 2:
        image = image_new(project)
        review_make(image, verdict="approve", score_taste=taste)
        decision_make(image, olive, verdict="approve" if taste >= 7 else "reject")


def screen(client: Client, project: Project, image: Image) -> str:
    url = reverse("studio:review", args=[project.pk]) + f"?filter=all&image={image.pk}"
    return client.get(url).content.decode()


def test_the_calibrated_verdict_stands_beside_the_critics_own(
    project: Project, olive: AbstractUser, client: Client
) -> None:
    taught(project, olive)
    assert calibration_refit(project.pk) == 12  # what the default worker runs after a decision
    shown = image_new(project)
    review_make(shown, verdict="approve", score_taste=2)
    html = screen(client, project, shown)
    assert "Recommends approve" in html  # the raw verdict is never hidden
    assert 'data-calibrated="reject"' in html
    assert "differs from the Critic's own verdict" in html
    assert "fitted on 12 decided images" in html
    row = Calibration.objects.get(project=project)
    assert f"held out it agrees with the team on {row.held_out_agreeing} of 12" in html
    assert "the Critic's own verdict on 6 of 12" in html


def test_without_a_fit_the_screen_says_why(
    project: Project, olive: AbstractUser, client: Client
) -> None:
    image = image_new(project)
    review_make(image)
    assert "the team's decisions have not been fitted" in screen(client, project, image)
    decision_make(image, olive)
    calibration_refit(project.pk)
    html = screen(client, project, image)
    assert "No calibrated verdict yet: 1 decided, reviewed image (1 approved, 0 rejected" in html


def test_refitting_a_project_that_is_gone_does_nothing() -> None:
    assert calibration_refit(999_999) == 0
    assert not Calibration.objects.exists()


def test_a_decision_on_the_review_screen_refits_after_commit(
    project: Project,
    olive: AbstractUser,
    client: Client,
    django_capture_on_commit_callbacks: object,
) -> None:
    image = image_new(project)
    with django_capture_on_commit_callbacks() as callbacks:  # type: ignore[operator]
        client.post(
            reverse("studio:review_decide", args=[project.pk]),
            {"image": image.pk, "verdict": "approve", "filter": "all"},
        )
    # The decision's own live event, and the refit sent to the default queue.
    assert any("calibration_refit_soon" in cb.__qualname__ for cb in callbacks)


def test_after_a_cancelled_review_again_both_reviews_show_on_the_review_screen(
    project: Project, olive: AbstractUser, client: Client
) -> None:
    image = image_new(project)
    first = review_make(image, verdict="reject", score_taste=2)
    CriticReview.objects.filter(pk=first.pk).update(created_at=DAY)
    cancelled = review_again(image, user=olive)
    job_cancel(cancelled, user=olive)
    html = screen(client, project, image)
    assert "The last Critic review was cancelled." in html
    assert f'action="/images/{image.pk}/review-again/"' in html
    again = review_again(image, user=olive)
    assert again.pk != cancelled.pk
    Job.objects.filter(pk=again.pk).update(status=JobStatus.DONE)
    review_make(image, verdict="approve", score_taste=8, job=again)
    html = screen(client, project, image)
    assert "Recommends approve" in html
    assert "Earlier review of this image" in html
    assert "taste 2 · manufacturability 6 · intent 8 · consistency 5" in html
    assert "This is the latest of 2 reviews" in html
