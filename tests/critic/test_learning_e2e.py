"""A designer's rejections change what the Critic is shown, and its scores, for the next
similar image: the web views, the real GPU worker and the simulated Critic end to end."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from artcritic.critic.models import ShownContext
from artcritic.gpu.profiles import Profile
from artcritic.jobs.kick import gpu_kick
from artcritic.jobs.models import Job, JobKind, JobStatus
from artcritic.studio.models import SCORE_FIELDS, CriticReview
from tests.critic.test_review_context_e2e import (
    ENDED,
    LAMP,
    reviews_ended,
    reviews_submit,
    stored,
    with_critic,
)
from tests.critic.test_review_context_e2e import worker_for as worker_for  # noqa: PLC0414 - fixture
from tests.factories import profile_load, project_make, sign_in, user_make
from tests.workerproc import WorkerProcess

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def total(review: CriticReview) -> int:
    return sum(getattr(review, name) for name in SCORE_FIELDS)


def test_rejecting_near_duplicates_changes_what_the_critic_sees_and_lowers_its_scores(
    worker_for: Callable[[Profile], WorkerProcess], client: Client
) -> None:
    profile_load()
    worker = worker_for(with_critic())
    designer = user_make()
    project = project_make(owner=designer)
    first = stored(project, designer, worker.gpu, LAMP + ", three-quarter view")
    second = stored(project, designer, worker.gpu, LAMP + ", side view")
    target = stored(project, designer, worker.gpu, LAMP + ", front view")
    [before_job] = reviews_ended(reviews_submit([target], worker.gpu), worker)
    assert before_job.status == JobStatus.DONE
    before = CriticReview.objects.get(job=before_job)
    assert ShownContext.objects.get(review=before).examples == []

    sign_in(client, designer.get_username())
    for image, note in ((first, "walnut base reads as cheap"), (second, "same problem")):
        response = client.post(
            reverse("studio:image_decide", args=[image.pk]), {"verdict": "reject", "note": note}
        )
        assert response.status_code == 302
    response = client.post(reverse("studio:image_review_again", args=[target.pk]))
    assert response.status_code == 302
    again = Job.objects.filter(image=target, kind=JobKind.REVIEW).latest("id")
    gpu_kick(worker.gpu)
    [after_job] = reviews_ended([again], worker)
    assert after_job.status in ENDED
    assert after_job.status == JobStatus.DONE, after_job.error_reason
    after = CriticReview.objects.get(job=after_job)

    shown = ShownContext.objects.get(review=after)
    assert {(e["image"], e["kind"], e["thumbnail"]) for e in shown.examples} == {
        (first.pk, "reject", True),
        (second.pk, "reject", True),
    }
    assert sorted(d.note for d in after.shown_decisions.all()) == [
        "same problem",
        "walnut base reads as cheap",
    ]
    # Two rejected near-duplicates cost 2 × 3 consistency and 2 × 2 taste in the simulator;
    # its ±1 jitter per criterion cannot make up for that.
    assert after.score_consistency < before.score_consistency
    assert after.score_taste < before.score_taste
    assert total(after) < total(before)
