"""Approve/reject: idempotent clicks, kept history, and one current decision under races."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser, User
from django.db import transaction
from django.test import Client
from django.urls import reverse

from artcritic.audit.models import AuditEvent
from artcritic.studio.models import HumanDecision, Image, Membership, Project
from artcritic.studio.services import decision_record
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import image_make
from tests.races import JOIN_SECONDS, thread_start, wait_until_a_backend_waits_for_a_lock


def image_of(project: Project, author: AbstractUser) -> Image:
    return image_make(request_make(prompt_make(project, author)))


@pytest.fixture
def owner(db: None) -> User:
    return user_make("dana")  # type: ignore[return-value]


@pytest.fixture
def image(owner: User) -> Image:
    return image_of(project_make(owner=owner), owner)


def current_rows(image: Image, user: AbstractUser) -> list[HumanDecision]:
    return list(HumanDecision.objects.filter(image=image, user=user, is_current=True))


# ---- The service ----


def test_the_same_verdict_twice_is_one_decision(image: Image, owner: User) -> None:
    first, created = decision_record(image=image, user=owner, verdict="approve")
    again, created_again = decision_record(image=image, user=owner, verdict="approve")
    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert HumanDecision.objects.count() == 1
    assert AuditEvent.objects.filter(action="decision.recorded").count() == 1


def test_approve_then_reject_keeps_a_history_of_two_with_one_current(
    image: Image, owner: User
) -> None:
    decision_record(image=image, user=owner, verdict="approve", note="nice")
    rejected, created = decision_record(image=image, user=owner, verdict="reject")
    assert created
    history = list(HumanDecision.objects.filter(image=image).order_by("id"))
    assert [(d.verdict, d.is_current) for d in history] == [
        ("approve", False),
        ("reject", True),
    ]
    assert history[0].note == "nice"
    assert current_rows(image, owner) == [rejected]
    event = AuditEvent.objects.filter(action="decision.recorded").latest("id")
    assert event.data["previous"] == "approve"
    assert event.actor == owner


def test_a_repeat_without_a_note_keeps_the_earlier_note(image: Image, owner: User) -> None:
    decision_record(image=image, user=owner, verdict="reject", note="seams show")
    current, created = decision_record(image=image, user=owner, verdict="reject")
    assert not created
    assert current.note == "seams show"


def test_the_same_verdict_with_a_new_note_is_a_new_decision(image: Image, owner: User) -> None:
    decision_record(image=image, user=owner, verdict="reject", note="seams show")
    current, created = decision_record(image=image, user=owner, verdict="reject", note="too tall")
    assert created
    assert current.note == "too tall"
    assert HumanDecision.objects.filter(image=image).count() == 2
    assert len(current_rows(image, owner)) == 1


def test_each_member_has_their_own_current_decision(image: Image, owner: User) -> None:
    colleague = user_make()
    Membership.objects.create(project=image.project, user=colleague)
    decision_record(image=image, user=owner, verdict="approve")
    decision_record(image=image, user=colleague, verdict="reject")
    assert HumanDecision.objects.filter(image=image, is_current=True).count() == 2


def test_an_unknown_verdict_is_refused(image: Image, owner: User) -> None:
    with pytest.raises(ValueError, match="maybe"):
        decision_record(image=image, user=owner, verdict="maybe")
    assert not HumanDecision.objects.exists()


# ---- Races (real transactions on separate connections) ----


def _hold_uncommitted_decision(
    image: Image, user: User, verdict: str, inserted: threading.Event, release: threading.Event
) -> int:
    with transaction.atomic():
        row = HumanDecision.objects.create(image=image, user=user, verdict=verdict)
        inserted.set()
        release.wait(JOIN_SECONDS)
    return row.pk


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("held", "clicked"), [("approve", "approve"), ("approve", "reject")])
def test_a_click_racing_an_uncommitted_decision_ends_with_one_current_row(
    held: str, clicked: str
) -> None:
    owner = user_make()
    image = image_of(project_make(owner=owner), owner)
    inserted, release = threading.Event(), threading.Event()
    held_result: list[Any] = []
    click_result: list[Any] = []
    holder = thread_start(
        lambda: _hold_uncommitted_decision(image, owner, held, inserted, release), held_result
    )
    assert inserted.wait(JOIN_SECONDS)
    # The click cannot see the uncommitted row, so it inserts and waits on the unique index.
    clicker = thread_start(
        lambda: decision_record(image=image, user=owner, verdict=clicked), click_result
    )
    wait_until_a_backend_waits_for_a_lock()
    release.set()
    holder.join(JOIN_SECONDS)
    clicker.join(JOIN_SECONDS)

    decision, created = click_result[0]
    assert HumanDecision.objects.filter(image=image, user=owner, is_current=True).count() == 1
    current = HumanDecision.objects.get(image=image, user=owner, is_current=True)
    assert current.verdict == clicked
    if held == clicked:
        assert (decision.pk, created) == (held_result[0], False)
        assert HumanDecision.objects.filter(image=image).count() == 1
    else:
        assert created
        assert HumanDecision.objects.filter(image=image).count() == 2


@pytest.mark.django_db(transaction=True)
def test_many_concurrent_clicks_always_leave_exactly_one_current_decision() -> None:
    owner = user_make()
    image = image_of(project_make(owner=owner), owner)
    for round_number in range(6):
        barrier = threading.Barrier(4)
        results: list[Any] = []
        verdicts = ["approve", "reject"] * 2 if round_number % 2 else ["reject"] * 4

        def click(verdict: str, barrier: threading.Barrier = barrier) -> Any:
            barrier.wait(JOIN_SECONDS)
            return decision_record(image=image, user=owner, verdict=verdict)

        threads = [
            thread_start(lambda verdict=verdict: click(verdict), results) for verdict in verdicts
        ]
        for thread in threads:
            thread.join(JOIN_SECONDS)
        assert not [r for r in results if isinstance(r, Exception)], results
        currents = HumanDecision.objects.filter(image=image, user=owner, is_current=True)
        assert currents.count() == 1, f"round {round_number}"


# ---- Through the page ----


@pytest.fixture
def member_client(owner: User) -> Client:
    profile_load()
    client = Client()
    client.force_login(owner)
    return client


def test_double_clicking_approve_on_the_page_records_one_decision(
    image: Image, member_client: Client
) -> None:
    url = reverse("studio:image_decide", args=[image.pk])
    first = member_client.post(url, {"verdict": "approve"}, follow=True)
    second = member_client.post(url, {"verdict": "approve"}, follow=True)
    assert "Decision recorded: approve." in first.content.decode()
    assert "Decision unchanged: approve." in second.content.decode()
    assert HumanDecision.objects.count() == 1


def test_deciding_returns_to_the_page_it_came_from_but_never_off_site(
    image: Image, member_client: Client
) -> None:
    url = reverse("studio:image_decide", args=[image.pk])
    gallery = reverse("studio:gallery", args=[image.project_id]) + "?mine=undecided"
    response = member_client.post(url, {"verdict": "reject", "next": gallery})
    assert response["Location"] == gallery
    response = member_client.post(url, {"verdict": "approve", "next": "https://evil.test/"})
    assert response["Location"] == reverse("studio:image_detail", args=[image.pk])


def test_a_script_gets_back_just_the_pressed_buttons(image: Image, member_client: Client) -> None:
    response = member_client.post(
        reverse("studio:image_decide", args=[image.pk]),
        {"verdict": "reject"},
        headers={"X-Fragment": "decision"},
    )
    content = response.content.decode()
    assert response.status_code == 200
    assert content.lstrip().startswith("<form")
    assert 'decision__reject" aria-pressed="true"' in content
    assert "<html" not in content


def test_a_bad_decision_is_refused_with_a_message_and_nothing_recorded(
    image: Image, member_client: Client
) -> None:
    url = reverse("studio:image_decide", args=[image.pk])
    response = member_client.post(url, {"verdict": "approve", "note": "n" * 1001}, follow=True)
    assert "Decision not recorded" in response.content.decode()
    assert "at most 1000 characters" in response.content.decode()
    fragment = member_client.post(url, {"verdict": "meh"}, headers={"X-Fragment": "decision"})
    assert fragment.status_code == 400
    assert not HumanDecision.objects.exists()


def test_deciding_needs_a_csrf_token(image: Image, owner: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post(reverse("studio:image_decide", args=[image.pk]), {"verdict": "approve"})
    assert response.status_code == 403
    assert not HumanDecision.objects.exists()


def test_deciding_by_get_is_not_allowed(image: Image, member_client: Client) -> None:
    response = member_client.get(
        reverse("studio:image_decide", args=[image.pk]), {"verdict": "approve"}
    )
    assert response.status_code == 405
    assert not HumanDecision.objects.exists()
