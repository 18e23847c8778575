"""The image's counters (approvals, rejections, the Critic's latest verdict, review count) are
kept by the database: right after every change, and under simultaneous decisions."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import AbstractUser
from django.db import connection

from artcritic.studio.models import HumanDecision, Image, Project
from artcritic.studio.services import decision_record, decision_undo
from tests.factories import project_make, prompt_make, request_make, user_make
from tests.factories_media import image_make, review_make


def counts(image: Image) -> tuple[int, int, str, int]:
    image.refresh_from_db()
    return image.approvals, image.rejections, image.critic_verdict, image.review_count


@pytest.mark.django_db
def test_decisions_changes_and_undos_keep_the_counts_true() -> None:
    olive, ravi = user_make("olive"), user_make("ravi")
    project = project_make(olive, ravi)
    image = image_make(request_make(prompt_make(project)))
    assert counts(image) == (0, 0, "", 0)
    decision_record(image=image, user=olive, verdict="approve")
    decision_record(image=image, user=ravi, verdict="approve")
    assert counts(image)[:2] == (2, 0)
    assert image.human_majority == "approve"
    decision_record(image=image, user=ravi, verdict="reject")  # a change, not a second vote
    assert counts(image)[:2] == (1, 1)
    assert image.human_majority == ""
    decision_undo(user=ravi, project=project)  # ravi's approve is current again
    assert counts(image)[:2] == (2, 0)
    HumanDecision.objects.filter(image=image, user=olive).delete()
    assert counts(image)[:2] == (1, 0)


@pytest.mark.django_db
def test_the_latest_review_is_the_critics_verdict_and_every_review_counts() -> None:
    image = image_make(request_make(prompt_make(project_make())))
    review_make(image, verdict="reject")
    assert counts(image)[2:] == ("reject", 1)
    latest = review_make(image, verdict="approve")
    assert counts(image)[2:] == ("approve", 2)
    latest.delete()
    assert counts(image)[2:] == ("reject", 1)


@pytest.mark.django_db(transaction=True)
def test_simultaneous_decisions_of_many_designers_lose_no_count() -> None:
    users = [user_make(f"designer{n}") for n in range(8)]
    project: Project = project_make(*users)
    image = image_make(request_make(prompt_make(project)))
    barrier = threading.Barrier(len(users))
    errors: list[BaseException] = []

    def decide(user: AbstractUser, verdict: str) -> None:
        try:
            barrier.wait()
            decision_record(image=image, user=user, verdict=verdict)  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=decide, args=(user, "approve" if n % 4 else "reject"))
        for n, user in enumerate(users)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert counts(image)[:2] == (6, 2)
