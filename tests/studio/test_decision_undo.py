"""Undo of a designer's last decision: kept history, walking back, and safety under races."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction

from artcritic.audit.models import AuditEvent
from artcritic.critic.selection import examples_for
from artcritic.events import group_for_project
from artcritic.studio.models import HumanDecision, Image, Membership, Project
from artcritic.studio.services import decision_record, decision_undo
from tests.factories import project_make, prompt_make, request_make, user_make
from tests.factories_media import image_make
from tests.livelisten import StreamListener
from tests.races import JOIN_SECONDS, thread_start, wait_until_a_backend_waits_for_a_lock

RECEIVE_SECONDS = 5  # how long a published event may take to arrive; not an assertion


def images_of(project: Project, author: AbstractUser, count: int) -> list[Image]:
    request = request_make(prompt_make(project, author), count=count)
    return [image_make(request, index) for index in range(count)]


def rows(image: Image, user: AbstractUser) -> list[tuple[str, bool, bool]]:
    """(verdict, is current, is undone) of every decision, oldest first."""
    return [
        (d.verdict, d.is_current, d.undone_at is not None)
        for d in HumanDecision.objects.filter(image=image, user=user).order_by("created_at", "id")
    ]


def assert_consistent(image: Image, user: AbstractUser) -> None:
    """At most one current row, never an undone one, and it is the newest row not undone."""
    history = list(
        HumanDecision.objects.filter(image=image, user=user).order_by("-created_at", "-id")
    )
    current = [d for d in history if d.is_current]
    alive = [d for d in history if d.undone_at is None]
    assert len(current) <= 1
    assert not [d for d in current if d.undone_at is not None]
    assert current == alive[:1], "the current decision must be the newest one not undone"


@pytest.fixture
def dana(db: None) -> AbstractUser:
    return user_make("dana")


@pytest.fixture
def project(dana: AbstractUser) -> Project:
    return project_make(owner=dana)


@pytest.fixture
def images(project: Project, dana: AbstractUser) -> list[Image]:
    return images_of(project, dana, 3)


# ---- What an undo does ----


def test_undo_with_nothing_to_undo_changes_nothing_and_says_so(
    project: Project, dana: AbstractUser, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        assert decision_undo(user=dana, project=project) is None
    assert callbacks == []  # no live event for nothing
    assert not AuditEvent.objects.filter(action="decision.undone").exists()


def test_undoing_the_only_decision_leaves_no_current_one_and_keeps_the_row(
    images: list[Image], project: Project, dana: AbstractUser
) -> None:
    decision, _ = decision_record(image=images[0], user=dana, verdict="approve", note="clean")
    undone = decision_undo(user=dana, project=project)
    assert undone is not None
    assert undone.pk == decision.pk
    assert undone.undone_at is not None
    assert rows(images[0], dana) == [("approve", False, True)]
    assert HumanDecision.objects.get(pk=decision.pk).note == "clean"


def test_undoing_a_change_of_mind_brings_the_earlier_verdict_back(
    images: list[Image], project: Project, dana: AbstractUser
) -> None:
    decision_record(image=images[0], user=dana, verdict="approve")
    decision_record(image=images[0], user=dana, verdict="reject")
    decision_undo(user=dana, project=project)
    assert rows(images[0], dana) == [("approve", True, False), ("reject", False, True)]
    assert_consistent(images[0], dana)


def test_each_undo_walks_one_step_further_back_through_my_decisions(
    images: list[Image], project: Project, dana: AbstractUser
) -> None:
    first, _ = decision_record(image=images[0], user=dana, verdict="approve")
    second, _ = decision_record(image=images[1], user=dana, verdict="reject")
    changed, _ = decision_record(image=images[1], user=dana, verdict="approve")
    undone = [decision_undo(user=dana, project=project) for _ in range(4)]
    assert [d.pk if d else None for d in undone] == [changed.pk, second.pk, first.pk, None]
    assert not HumanDecision.objects.filter(is_current=True).exists()
    assert HumanDecision.objects.filter(undone_at__isnull=False).count() == 3


def test_deciding_again_after_an_undo_makes_a_new_current_row_and_keeps_the_undone_one(
    images: list[Image], project: Project, dana: AbstractUser
) -> None:
    decision_record(image=images[0], user=dana, verdict="approve")
    decision_undo(user=dana, project=project)
    again, created = decision_record(image=images[0], user=dana, verdict="approve")
    assert created
    assert rows(images[0], dana) == [("approve", False, True), ("approve", True, False)]
    # The undone row is history: a further undo undoes the new decision, not the old one.
    assert decision_undo(user=dana, project=project) == again
    assert decision_undo(user=dana, project=project) is None


def test_i_cannot_undo_someone_elses_decision(
    images: list[Image], project: Project, dana: AbstractUser
) -> None:
    eli = user_make("eli")
    Membership.objects.create(project=project, user=eli)
    mine, _ = decision_record(image=images[0], user=dana, verdict="approve")
    theirs, _ = decision_record(image=images[0], user=eli, verdict="reject")  # newer than mine
    assert decision_undo(user=dana, project=project) == mine
    assert HumanDecision.objects.get(pk=theirs.pk).is_current
    assert HumanDecision.objects.get(pk=theirs.pk).undone_at is None


def test_undo_stays_inside_the_project_it_was_asked_for(
    images: list[Image], project: Project, dana: AbstractUser
) -> None:
    elsewhere = project_make(owner=dana)
    other_image = images_of(elsewhere, dana, 1)[0]
    here, _ = decision_record(image=images[0], user=dana, verdict="approve")
    decision_record(image=other_image, user=dana, verdict="reject")  # newer, other project
    assert decision_undo(user=dana, project=project) == here
    assert rows(other_image, dana) == [("reject", True, False)]


def test_an_undo_naming_a_decision_that_is_not_my_latest_undoes_nothing(
    images: list[Image], project: Project, dana: AbstractUser
) -> None:
    older, _ = decision_record(image=images[0], user=dana, verdict="approve")
    latest, _ = decision_record(image=images[1], user=dana, verdict="reject")
    assert decision_undo(user=dana, project=project, expected_id=older.pk) is None
    assert decision_undo(user=dana, project=project, expected_id=latest.pk) == latest
    # The same request again (a double key press): already undone, nothing more happens.
    assert decision_undo(user=dana, project=project, expected_id=latest.pk) is None
    assert rows(images[0], dana) == [("approve", True, False)]


def test_an_undo_is_audited_with_what_became_current(
    images: list[Image], project: Project, dana: AbstractUser
) -> None:
    approve, _ = decision_record(image=images[0], user=dana, verdict="approve")
    reject, _ = decision_record(image=images[0], user=dana, verdict="reject")
    decision_undo(user=dana, project=project)
    event = AuditEvent.objects.get(action="decision.undone")
    assert event.actor == dana
    assert event.project_id == project.pk
    assert event.data == {
        "image": images[0].pk,
        "decision": reject.pk,
        "verdict": "reject",
        "restored": approve.pk,
        "current": "approve",
    }
    assert "dana undid their reject of image" in event.summary


def test_an_undo_is_published_live_to_the_project_after_commit(
    images: list[Image],
    project: Project,
    dana: AbstractUser,
    django_capture_on_commit_callbacks: Any,
) -> None:
    listener = StreamListener(group_for_project(project.pk))
    decision, _ = decision_record(image=images[0], user=dana, verdict="approve")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        decision_undo(user=dana, project=project)
    assert len(callbacks) == 1  # nothing is sent before the undo commits
    with listener:
        assert listener.take(0.3) is None
        callbacks[0]()
        message = listener.take(RECEIVE_SECONDS)
    assert message is not None
    event = message["event"]
    assert event["type"] == "decision.recorded"
    assert event["project"] == project.pk
    assert event["detail"] == {
        "image": images[0].pk,
        "user": dana.pk,
        "verdict": None,
        "undone": decision.pk,
    }


def test_an_undone_row_can_never_be_current_again_by_a_database_rule(
    images: list[Image], project: Project, dana: AbstractUser
) -> None:
    decision, _ = decision_record(image=images[0], user=dana, verdict="approve")
    decision_undo(user=dana, project=project)
    with (
        pytest.raises(IntegrityError, match="decision_undone_is_not_current"),
        transaction.atomic(),
    ):
        HumanDecision.objects.filter(pk=decision.pk).update(is_current=True)


def test_the_critic_is_never_shown_an_undone_decision(
    images: list[Image], project: Project, dana: AbstractUser
) -> None:
    kept, _ = decision_record(image=images[1], user=dana, verdict="reject", note="seams")
    decision_record(image=images[2], user=dana, verdict="approve")
    decision_undo(user=dana, project=project)
    shown = examples_for(images[0], 5)
    assert [d for e in shown for d in e.decisions] == [kept]


# ---- Races (real transactions on separate connections) ----


@pytest.fixture
def racers(transactional_db: None) -> tuple[Project, AbstractUser, list[Image]]:
    user = user_make()
    project = project_make(owner=user)
    return project, user, images_of(project, user, 2)


def _held(work: Callable[[], Any], started: threading.Event, release: threading.Event) -> Any:
    """Run ``work`` in a transaction that stays open (its locks held) until ``release``."""
    with transaction.atomic():
        result = work()
        started.set()
        release.wait(JOIN_SECONDS)
    return result


@pytest.mark.django_db(transaction=True)
def test_an_undo_waits_for_a_decision_being_written_and_then_undoes_that_one(
    racers: tuple[Project, AbstractUser, list[Image]],
) -> None:
    project, user, images = racers
    decision_record(image=images[0], user=user, verdict="approve")
    started, release = threading.Event(), threading.Event()
    held: list[Any] = []
    undo: list[Any] = []
    writer = thread_start(
        lambda: _held(
            lambda: decision_record(image=images[0], user=user, verdict="reject"), started, release
        ),
        held,
    )
    assert started.wait(JOIN_SECONDS)
    undoer = thread_start(lambda: decision_undo(user=user, project=project), undo)
    wait_until_a_backend_waits_for_a_lock()
    release.set()
    writer.join(JOIN_SECONDS)
    undoer.join(JOIN_SECONDS)

    rejected, _ = held[0]
    assert undo == [HumanDecision.objects.get(pk=rejected.pk)]
    assert rows(images[0], user) == [("approve", True, False), ("reject", False, True)]


@pytest.mark.django_db(transaction=True)
def test_a_decision_waits_for_an_undo_in_progress_and_then_supersedes_what_it_restored(
    racers: tuple[Project, AbstractUser, list[Image]],
) -> None:
    project, user, images = racers
    decision_record(image=images[0], user=user, verdict="approve")
    decision_record(image=images[0], user=user, verdict="reject")
    started, release = threading.Event(), threading.Event()
    held: list[Any] = []
    click: list[Any] = []
    undoer = thread_start(
        lambda: _held(lambda: decision_undo(user=user, project=project), started, release), held
    )
    assert started.wait(JOIN_SECONDS)
    clicker = thread_start(
        lambda: decision_record(
            image=images[0], user=user, verdict="reject", note="on second look"
        ),
        click,
    )
    wait_until_a_backend_waits_for_a_lock()
    release.set()
    undoer.join(JOIN_SECONDS)
    clicker.join(JOIN_SECONDS)

    decision, created = click[0]
    assert created
    assert rows(images[0], user) == [
        ("approve", False, False),
        ("reject", False, True),
        ("reject", True, False),
    ]
    assert HumanDecision.objects.get(image=images[0], user=user, is_current=True).pk == decision.pk


@pytest.mark.django_db(transaction=True)
def test_the_same_undo_sent_twice_at_once_undoes_one_decision(
    racers: tuple[Project, AbstractUser, list[Image]],
) -> None:
    project, user, images = racers
    first, _ = decision_record(image=images[0], user=user, verdict="approve")
    latest, _ = decision_record(image=images[1], user=user, verdict="reject")
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def press() -> Any:
        barrier.wait(JOIN_SECONDS)
        return decision_undo(user=user, project=project, expected_id=latest.pk)

    threads = [thread_start(press, results) for _ in range(2)]
    for thread in threads:
        thread.join(JOIN_SECONDS)
    assert sorted(r.pk if r else 0 for r in results) == [0, latest.pk]
    assert HumanDecision.objects.get(pk=first.pk).is_current


@pytest.mark.django_db(transaction=True)
def test_concurrent_undos_and_decisions_always_leave_a_consistent_history(
    racers: tuple[Project, AbstractUser, list[Image]],
) -> None:
    project, user, images = racers
    for round_number in range(5):
        barrier = threading.Barrier(4)
        results: list[Any] = []
        image = images[round_number % 2]

        def decide(verdict: str, image: Image = image, barrier: threading.Barrier = barrier) -> Any:
            barrier.wait(JOIN_SECONDS)
            return decision_record(image=image, user=user, verdict=verdict)

        def undo(barrier: threading.Barrier = barrier) -> Any:
            barrier.wait(JOIN_SECONDS)
            return decision_undo(user=user, project=project)

        threads = [
            thread_start(lambda: decide("approve"), results),
            thread_start(lambda: decide("reject"), results),
            thread_start(undo, results),
            thread_start(undo, results),
        ]
        for thread in threads:
            thread.join(JOIN_SECONDS)
        assert not [r for r in results if isinstance(r, Exception)], results
        for each in images:
            assert_consistent(each, user)
