"""Review again: a new Critic review of an image, the earlier ones kept, never two at once;
and a review that ends without a review never leaves the image "awaiting" forever."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import AbstractUser
from django.db import connection
from django.test import Client
from django.urls import reverse

from artcritic.audit.models import AuditEvent
from artcritic.jobs.models import Job, JobKind, JobStatus
from artcritic.jobs.services import JobActionRefused, job_cancel, review_again
from artcritic.studio.models import Image, Project, ReviewStatus
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import image_make, job_make, review_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def olive() -> AbstractUser:
    profile_load()
    return user_make("olive")


@pytest.fixture
def project(olive: AbstractUser) -> Project:
    return project_make(owner=olive, name="Kettles")


@pytest.fixture
def image(project: Project) -> Image:
    return image_make(request_make(prompt_make(project)))


def test_review_again_queues_a_new_review_and_keeps_the_earlier_one(
    image: Image, olive: AbstractUser
) -> None:
    earlier = review_make(image, verdict="reject")
    job = review_again(image, user=olive)
    assert (job.kind, job.status, job.image_id) == (JobKind.REVIEW, JobStatus.ADMITTED, image.pk)
    assert job.interactive  # a designer waits on it
    image.refresh_from_db()
    assert image.review_status == ReviewStatus.PENDING
    assert image.reviews.get() == earlier  # kept
    event = AuditEvent.objects.get(action="review.again")
    assert event.data == {"image": image.pk, "earlier_reviews": 1}
    assert event.actor_id == olive.pk


def test_a_second_review_again_while_one_waits_is_refused_and_queues_nothing(
    image: Image, olive: AbstractUser
) -> None:
    first = review_again(image, user=olive)
    with pytest.raises(JobActionRefused) as refused:
        review_again(image, user=olive)
    assert f"(job {first.pk}); it was not queued twice" in refused.value.reason
    assert Job.objects.filter(image=image).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_clicks_queue_one_review(project: Project, olive: AbstractUser) -> None:
    image = image_make(request_make(prompt_make(project)))
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def click() -> None:
        try:
            barrier.wait()
            review_again(image, user=olive)
            outcomes.append("queued")
        except JobActionRefused:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["queued", "refused"]
    assert Job.objects.filter(image=image, kind=JobKind.REVIEW).count() == 1


def test_cancelling_a_waiting_review_says_cancelled_and_offers_review_again(
    image: Image, olive: AbstractUser
) -> None:
    job = job_make(image=image, status=JobStatus.ADMITTED)
    job_cancel(job, user=olive)
    image.refresh_from_db()
    assert image.review_status == ReviewStatus.CANCELLED
    client = Client()
    client.force_login(olive)
    html = client.get(reverse("studio:image_detail", args=[image.pk])).content.decode()
    assert "The last review was cancelled" in html
    assert "No Critic review yet (awaiting review)" not in html
    assert reverse("studio:image_review_again", args=[image.pk]) in html
    response = client.post(reverse("studio:image_review_again", args=[image.pk]), follow=True)
    assert "is in the Critic&#x27;s queue again" in response.content.decode()
    assert Job.objects.filter(image=image, status=JobStatus.ADMITTED).count() == 1


def test_a_cancelled_review_of_a_reviewed_image_leaves_its_earlier_review_standing(
    image: Image, olive: AbstractUser
) -> None:
    review_make(image)
    job = review_again(image, user=olive)
    job_cancel(job, user=olive)
    image.refresh_from_db()
    assert image.review_status == ReviewStatus.REVIEWED


def test_both_reviews_are_shown_on_the_image_page_newest_first(
    image: Image, olive: AbstractUser
) -> None:
    review_make(image, verdict="reject", score_taste=3)
    review_make(image, verdict="approve", score_taste=8)
    client = Client()
    client.force_login(olive)
    html = client.get(reverse("studio:image_detail", args=[image.pk])).content.decode()
    assert "2 reviews, newest first" in html
    assert html.index("Recommends approve") < html.index("Recommends reject")
    assert "Latest" in html
    assert "Earlier" in html
    assert "Prompt intent" in html
    image.refresh_from_db()
    assert (image.review_count, image.critic_verdict) == (2, "approve")


def test_review_again_is_for_members_only_and_answers_posts_only(
    image: Image, olive: AbstractUser
) -> None:
    url = reverse("studio:image_review_again", args=[image.pk])
    stranger = Client()
    stranger.force_login(user_make("eve"))
    assert stranger.post(url).status_code == 404
    member = Client()
    member.force_login(olive)
    assert member.get(url).status_code == 405
    assert not Job.objects.exists()
