"""The composer's live admission answer: fits, or blocked with the arithmetic; stores nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from artcritic.gpu.models import Gpu
from artcritic.jobs.models import Job
from artcritic.studio.models import GenerationRequest, Project
from tests.factories import composer_data, profile_load, project_make, sign_in, user_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def project() -> Project:
    profile_load()
    return project_make(owner=user_make("dana"))


def check(client: Client, project: Project, **overrides: Any) -> dict[str, Any]:
    response = client.post(
        reverse("studio:composer_check", args=[project.pk]), composer_data(**overrides)
    )
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


def logged_in(username: str) -> Client:
    client = Client()
    sign_in(client, username)
    return client


def test_a_request_that_fits_says_how_much_it_needs_of_what_is_usable(project: Project) -> None:
    answer = check(logged_in("dana"), project)
    assert answer == {
        "state": "fits",
        "reason": answer["reason"],
        "next_action": answer["next_action"],
        "need_gb": 19.6,
        "usable_gb": 30.5,
        "profile": "sim-32gb",
        "gpu": "sim0",
        "fields": [],
    }


def test_with_several_gpus_the_check_answers_where_submitting_would_place_it(
    project: Project,
) -> None:
    """A request too big for the default GPU's 32 GB fits the 96 GB card beside it: the
    check says so, and names the GPU, as submitting would place it there."""
    profile_load("rtx-pro-6000-96gb", gpu="big1")
    Gpu.objects.update(reading_at=timezone.now())  # both workers alive
    client = logged_in("dana")
    answer = check(client, project, model_mode="flux-dev-bf16")
    assert answer["state"] == "fits", answer
    assert answer["gpu"] == "big1"
    assert answer["profile"] == "rtx-pro-6000-96gb"
    assert answer["reason"].startswith("Runs on big1 (rtx-pro-6000-96gb): ")
    # The 96 GB card's worker went quiet: a submit would wait for it, and the check says so.
    Gpu.objects.filter(name="big1").update(reading_at=timezone.now() - timedelta(minutes=5))
    answer = check(client, project, model_mode="flux-dev-bf16")
    assert (answer["state"], answer["gpu"]) == ("fits", "big1")
    assert "the job waits for it to come back" in answer["reason"]
    # Without that card at all: blocked with the 32 GB card's arithmetic, as a submit is.
    Gpu.objects.filter(name="big1").delete()
    answer = check(client, project, model_mode="flux-dev-bf16")
    assert (answer["state"], answer["gpu"]) == ("blocked", "sim0")
    assert "30.5 GB" in answer["reason"]


def test_an_over_budget_request_is_blocked_with_the_arithmetic_and_nothing_is_stored(
    project: Project,
) -> None:
    answer = check(logged_in("dana"), project, model_mode="flux-dev-bf16")
    assert answer["state"] == "blocked"
    assert "needs ≈ 36.2 GB" in answer["reason"]
    assert "30.5 GB" in answer["reason"]
    assert "will not change" in answer["next_action"]
    assert not answer["next_action"].startswith("Next")
    # The fields it names are the ones the page highlights.
    assert answer["fields"] == ["model_mode", "width", "height", "seed_policy", "count"]
    assert not GenerationRequest.objects.exists()
    assert not Job.objects.exists()


def test_invalid_values_are_reported_per_field_instead_of_a_guess(project: Project) -> None:
    answer = check(logged_in("dana"), project, width="1001", steps="-3")
    assert answer["state"] == "invalid"
    assert set(answer["errors"]) == {"width", "steps"}
    assert answer["labels"] == {"width": "Width", "steps": "Steps"}


def test_the_check_names_every_out_of_range_field_the_issue_found(project: Project) -> None:
    answer = check(logged_in("dana"), project, width="1000", height="100", steps="500")
    assert answer["state"] == "invalid"
    assert set(answer["errors"]) == {"height", "steps"} | (
        {"width"} if "width" in answer["errors"] else set()
    )
    assert "outside" in answer["errors"]["steps"][0]


def test_a_non_member_gets_404_and_an_anonymous_user_is_sent_to_login(project: Project) -> None:
    user_make("eve")
    url = reverse("studio:composer_check", args=[project.pk])
    assert logged_in("eve").post(url, composer_data()).status_code == 404
    anonymous = Client().post(url, composer_data())
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/login/")


def test_the_check_only_answers_posts(project: Project) -> None:
    url = reverse("studio:composer_check", args=[project.pk])
    assert logged_in("dana").get(url).status_code == 405


def test_the_check_is_csrf_protected(project: Project) -> None:
    client = Client(enforce_csrf_checks=True)
    sign_in(client, "dana")
    url = reverse("studio:composer_check", args=[project.pk])
    assert client.post(url, composer_data()).status_code == 403
