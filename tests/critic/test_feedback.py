"""The Feedback page: agreement over time, confusion matrix, score distributions,
disagreements and the calibration, on hand-computed cases; who may see it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from artcritic.critic.feedback import (
    agreement_over_time,
    confusion,
    labelled_reviews,
    score_distributions,
)
from artcritic.critic.models import Calibration
from artcritic.critic.services import calibration_current
from artcritic.studio.models import CriticReview, Image, Project
from artcritic.studio.services import decision_record, decision_undo
from tests.factories import project_make, prompt_make, request_make, sign_in, user_make
from tests.factories_media import decision_make, image_make, review_make

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
DAY1 = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC)
DAY3 = DAY1 + dt.timedelta(days=2)


@pytest.fixture
def olive() -> AbstractUser:
    return user_make("olive")


@pytest.fixture
def bo() -> AbstractUser:
    return user_make("bo")


@pytest.fixture
def cy() -> AbstractUser:
    return user_make("cy")


@pytest.fixture
def project(olive: AbstractUser, bo: AbstractUser, cy: AbstractUser) -> Project:
    return project_make(bo, cy, owner=olive, name="Kettles")


def image_new(project: Project, text: str = "a kettle") -> Image:
    return image_make(request_make(prompt_make(project, text=text)))


def reviewed(image: Image, verdict: str, when: dt.datetime, **scores: Any) -> CriticReview:
    review = review_make(image, verdict=verdict, **scores)
    CriticReview.objects.filter(pk=review.pk).update(created_at=when)
    return review


@pytest.fixture
def seven(
    project: Project, olive: AbstractUser, bo: AbstractUser, cy: AbstractUser
) -> dict[str, Image]:
    """Seven images, one per cell of the confusion matrix and its margins."""
    images = {name: image_new(project, f"kettle {name}") for name in "ABCDEFG"}
    a, b, c, d, e, f = (images[n] for n in "ABCDEF")
    reviewed(a, "approve", DAY1, score_taste=8)
    decision_make(a, olive), decision_make(a, bo)  # team approves; agrees
    reviewed(b, "approve", DAY1, score_taste=6)
    decision_make(b, olive, verdict="reject")  # team rejects; disagrees
    reviewed(c, "approve", DAY1, score_taste=3)  # an earlier review that agreed
    reviewed(c, "reject", DAY3, score_taste=3)
    decision_make(c, olive), decision_make(c, bo), decision_make(c, cy, verdict="reject")  # 2–1
    reviewed(d, "reject", DAY3, score_taste=2)
    decision_make(d, olive, verdict="reject")  # agrees
    reviewed(e, "approve", DAY3)
    decision_make(e, olive), decision_make(e, bo, verdict="reject")  # split: left out
    reviewed(f, "reject", DAY3)  # nobody decided: left out
    return images  # G: no review yet


def test_the_confusion_matrix_counts_each_cell_and_its_margins(
    project: Project, seven: dict[str, Image]
) -> None:
    c = confusion(project)
    assert (c.approve_approve, c.approve_reject, c.reject_approve, c.reject_reject) == (1, 1, 1, 1)
    assert (c.split, c.undecided, c.unreviewed) == (1, 1, 1)
    assert (c.agreeing, c.compared) == (2, 4)


def test_agreement_over_time_counts_every_review_in_the_day_it_was_written(
    project: Project, seven: dict[str, Image]
) -> None:
    unit, periods = agreement_over_time(project)
    assert unit == "day"
    # Day 1: A agrees, B disagrees, C's earlier approve agrees with the team's approve: 2 of 3.
    # Day 3: C's latest reject disagrees, D agrees: 1 of 2. E (split) and F (undecided) are out.
    assert [(p.start, p.agreeing, p.compared, p.percent) for p in periods] == [
        (DAY1.date(), 2, 3, 67),
        (DAY3.date(), 1, 2, 50),
    ]


def test_reviews_spread_over_months_are_counted_per_week(
    project: Project, olive: AbstractUser
) -> None:
    early, late = image_new(project), image_new(project)
    reviewed(early, "approve", DAY1)
    reviewed(late, "reject", DAY1 + dt.timedelta(days=60))
    decision_make(early, olive), decision_make(late, olive)
    unit, periods = agreement_over_time(project)
    assert unit == "week"
    assert [(p.start.weekday(), p.agreeing, p.compared) for p in periods] == [(0, 1, 1), (0, 0, 1)]


def test_score_distributions_split_the_latest_scores_by_the_teams_verdict(
    project: Project, seven: dict[str, Image]
) -> None:
    taste = score_distributions(labelled_reviews(project))[0]
    assert taste.key == "taste"
    # Approved by the team: A (8), C (latest review 3). Rejected: B (6), D (2).
    assert [s for s, n in enumerate(taste.approved) for _ in range(n)] == [3, 8]
    assert [s for s, n in enumerate(taste.rejected) for _ in range(n)] == [2, 6]
    assert (taste.approved_mean, taste.rejected_mean) == (5.5, 4.0)


def test_calibration_is_refitted_only_when_decisions_change(
    project: Project, olive: AbstractUser
) -> None:
    images = [image_new(project) for _ in range(10)]
    for i, image in enumerate(images):
        reviewed(
            image,
            "reject",
            DAY1,
            score_taste=5,
            score_manufacturability=5,
            score_intent=5,
            score_consistency=5,
        )
        decision_make(image, olive, verdict="approve" if i < 7 else "reject")
    first = calibration_current(project)
    assert first.model is not None
    assert (first.row.held_out_agreeing, first.row.held_out_compared) == (7, 10)
    assert (first.row.raw_agreeing, first.row.raw_compared) == (3, 10)
    fitted_at = first.row.fitted_at
    again = calibration_current(project)
    assert again.row.fitted_at == fitted_at  # same rows: the stored fit, no refit
    decision_record(image=images[9], user=olive, verdict="approve", note="")
    third = calibration_current(project)
    assert third.row.fitted_at > fitted_at
    assert (third.row.raw_agreeing, third.row.approvals, third.row.rejections) == (2, 8, 2)
    decision_undo(user=olive, project=project, expected_id=None)
    assert calibration_current(project).row.approvals == 7
    assert Calibration.objects.count() == 1


# ---- The page ----


def page(client: Client, project: Project) -> Any:
    return client.get(reverse("studio:project_feedback", args=[project.pk]))


def test_the_page_shows_raw_and_calibrated_agreement_side_by_side(
    project: Project, olive: AbstractUser
) -> None:
    for i in range(10):
        image = image_new(project)
        reviewed(
            image,
            "reject",
            DAY1,
            score_taste=5,
            score_manufacturability=5,
            score_intent=5,
            score_consistency=5,
        )
        decision_make(image, olive, verdict="approve" if i < 7 else "reject")
    client = Client()
    sign_in(client, "olive")
    html = page(client, project).content.decode()
    assert "30.0 %" in html
    assert "3 of 10 decided images" in html
    assert "70.0 %" in html
    assert "7 of 10, each judged by a fit that did not see it" in html
    assert f'<a href="/projects/{project.pk}/feedback/" aria-current="page">Feedback</a>' in html


def test_too_few_decisions_say_how_many_the_calibration_needs(
    project: Project, seven: dict[str, Image], client_olive: Client
) -> None:
    html = page(client_olive, project).content.decode()
    assert "Not fitted yet: 4 decided, reviewed images (2 approved, 2 rejected" in html
    assert 'data-cell="approve-reject">1<' in html
    assert 'data-cell="undecided">1<' in html


@pytest.fixture
def client_olive(olive: AbstractUser) -> Client:
    client = Client()
    client.force_login(olive)
    return client


def test_disagreements_list_the_images_with_both_verdicts_and_escape_prompts(
    project: Project, olive: AbstractUser, client_olive: Client
) -> None:
    image = image_new(project, HOSTILE)
    reviewed(image, "approve", timezone.now())
    decision_make(image, olive, verdict="reject")
    agreeing = image_new(project, "fine kettle")
    reviewed(agreeing, "approve", timezone.now())
    decision_make(agreeing, olive)
    response = page(client_olive, project)
    shown = [row[0].pk for row in response.context["disagreements"]]
    assert shown == [image.pk]
    html = response.content.decode()
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Critic: approve" in html
    assert "Team: reject 0–1" in html


def test_an_empty_project_says_there_is_nothing_to_chart(
    project: Project, client_olive: Client
) -> None:
    html = page(client_olive, project).content.decode()
    assert "Nothing to chart yet" in html
    assert "No disagreements" in html


def test_the_page_costs_the_same_queries_for_3_or_30_images(
    project: Project, olive: AbstractUser, client_olive: Client
) -> None:
    def make(n: int) -> None:
        for i in range(n):
            image = image_new(project)
            reviewed(image, "approve", DAY1 + dt.timedelta(days=i % 3), score_taste=i % 11)
            decision_make(image, olive, verdict="approve" if i % 2 else "reject")

    make(3)
    page(client_olive, project)  # fits and stores the calibration
    with CaptureQueriesContext(connection) as few:
        page(client_olive, project)
    make(27)
    page(client_olive, project)
    with CaptureQueriesContext(connection) as many:
        page(client_olive, project)
    assert len(many) == len(few), [q["sql"][:120] for q in many.captured_queries]


def test_only_members_see_the_page(project: Project, seven: dict[str, Image]) -> None:
    outsider = Client()
    outsider.force_login(user_make("mallory"))
    assert page(outsider, project).status_code == 404
    staff = Client()
    staff.force_login(user_make("root", is_staff=True, is_superuser=True))
    assert page(staff, project).status_code == 404
    anonymous = page(Client(), project)
    assert anonymous.status_code == 302
    assert "/login/" in anonymous["Location"]


def test_the_page_answers_get_only(project: Project, client_olive: Client) -> None:
    url = reverse("studio:project_feedback", args=[project.pk])
    assert client_olive.post(url).status_code == 405
    assert client_olive.get(url.replace(str(project.pk), "999999")).status_code == 404
