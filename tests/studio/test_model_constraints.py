"""Database rules of the studio models: each CheckConstraint, UniqueConstraint and trigger."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DataError, IntegrityError, transaction

from artcritic.studio.models import (
    MAX_SEED,
    SCORE_FIELDS,
    GenerationRequest,
    Image,
    Membership,
    Project,
    Prompt,
    Role,
)
from tests.factories import project_make, prompt_make, request_make, user_make
from tests.factories_media import decision_make, image_make, review_make

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Users are made in most tests here; the real PBKDF2 cost would dominate the run."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def prompt() -> Prompt:
    owner = user_make()
    return prompt_make(project_make(owner=owner), owner)


@pytest.fixture
def image(prompt: Prompt) -> Image:
    return image_make(request_make(prompt))


# --- projects, memberships, prompts --------------------------------------------------


@pytest.mark.parametrize("name", ["", " ", "\t\n  "])
def test_a_project_needs_a_name_that_is_not_blank(name: str) -> None:
    with pytest.raises(IntegrityError, match="project_name_not_blank"), transaction.atomic():
        Project.objects.create(name=name)


def test_a_user_is_a_member_of_a_project_once() -> None:
    user = user_make()
    project = project_make(user)

    with pytest.raises(IntegrityError, match="membership_once"), transaction.atomic():
        Membership.objects.create(project=project, user=user, role=Role.OWNER)


@pytest.mark.parametrize("role", ["admin", "OWNER", ""])
def test_a_membership_role_is_owner_or_member(role: str) -> None:
    project = project_make()

    with pytest.raises(IntegrityError, match="membership_role_valid"), transaction.atomic():
        Membership.objects.create(project=project, user=user_make(), role=role)


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "x" * 4001, "🪔" * 4001])
def test_a_prompt_text_is_present_and_at_most_4000_characters(text: str) -> None:
    project = project_make()

    with (
        pytest.raises(IntegrityError, match="prompt_text_present_and_bounded"),
        transaction.atomic(),
    ):
        Prompt.objects.create(project=project, text=text)


def test_a_prompt_of_exactly_4000_characters_even_emoji_is_accepted() -> None:
    prompt = Prompt.objects.create(project=project_make(), text="🪔" * 4000)

    assert len(Prompt.objects.get(pk=prompt.pk).text) == 4000


def test_a_negative_prompt_is_at_most_2000_characters() -> None:
    project = project_make()
    Prompt.objects.create(project=project, text="lamp", negative_text="n" * 2000)

    with pytest.raises(IntegrityError, match="prompt_negative_bounded"), transaction.atomic():
        Prompt.objects.create(project=project, text="lamp", negative_text="n" * 2001)


# --- generation requests -------------------------------------------------------------

REQUEST_REFUSALS = [
    pytest.param({"width": 1001}, "request_size_multiple_of_8", id="width-1001"),
    pytest.param({"height": 1020}, "request_size_multiple_of_8", id="height-1020"),
    pytest.param({"width": 56}, "request_size_in_range", id="width-below-64"),
    pytest.param({"height": 8200}, "request_size_in_range", id="height-above-8192"),
    pytest.param({"width": 0}, "request_size_in_range", id="width-0"),
    pytest.param({"steps": 0}, "request_steps_range", id="steps-0"),
    pytest.param({"steps": 201}, "request_steps_range", id="steps-201"),
    pytest.param({"cfg": -0.1}, "request_cfg_range", id="cfg-negative"),
    pytest.param({"cfg": 30.01}, "request_cfg_range", id="cfg-above-30"),
    pytest.param({"cfg": float("nan")}, "request_cfg_range", id="cfg-nan"),
    pytest.param({"cfg": float("inf")}, "request_cfg_range", id="cfg-infinite"),
    pytest.param({"count": 0}, "request_count_range", id="count-0"),
    pytest.param({"count": 65}, "request_count_range", id="count-65"),
    pytest.param({"seed": -1}, "request_seed_range", id="seed-negative"),
    pytest.param({"seed": MAX_SEED + 1}, "request_seed_range", id="seed-beyond-2-53"),
    pytest.param({"count": 2, "seeds": [1]}, "request_one_seed_per_image", id="too-few-seeds"),
    pytest.param({"count": 1, "seeds": [1, 2]}, "request_one_seed_per_image", id="too-many-seeds"),
    pytest.param({"count": 1, "seeds": []}, "request_one_seed_per_image", id="no-seeds"),
    pytest.param({"lora_strength": 100.5}, "request_lora_strength_range", id="lora-above-100"),
    pytest.param({"lora_strength": -101}, "request_lora_strength_range", id="lora-below-100"),
    pytest.param({"seed_policy": "sometimes"}, "request_seed_policy_valid", id="seed-policy"),
    pytest.param({"model_mode": "FLUX"}, "request_model_mode_slug", id="mode-upper-case"),
    pytest.param({"model_mode": ""}, "request_model_mode_slug", id="mode-empty"),
    pytest.param({"model_mode": "../flux"}, "request_model_mode_slug", id="mode-path"),
    pytest.param(
        {"model_mode": "flux'; DROP TABLE studio_image;--"},
        "request_model_mode_slug",
        id="mode-sql",
    ),
]


@pytest.mark.parametrize(("fields", "constraint"), REQUEST_REFUSALS)
def test_a_request_outside_the_database_ranges_is_refused(
    prompt: Prompt, fields: dict[str, Any], constraint: str
) -> None:
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        request_make(prompt, **fields)

    assert not GenerationRequest.objects.exists()


@pytest.mark.parametrize(
    "fields",
    [
        {"width": 64, "height": 8192, "steps": 1, "cfg": 0.0, "count": 1, "seed": 0},
        {"width": 8192, "height": 64, "steps": 200, "cfg": 30.0, "count": 64, "seed": 0},
        {"seed": MAX_SEED, "seed_policy": "fixed", "seeds": [MAX_SEED]},
        {"lora_name": "clay", "lora_strength": -100.0},
        {"lora_name": "clay", "lora_strength": 100.0},
        {"model_mode": "flux-dev_fp8.v2"},
    ],
)
def test_requests_at_the_edges_of_every_range_are_accepted(
    prompt: Prompt, fields: dict[str, Any]
) -> None:
    request = request_make(prompt, **fields)

    stored = GenerationRequest.objects.get(pk=request.pk)
    assert len(stored.seeds) == stored.count


def test_a_stored_request_refuses_any_update_even_an_unchanged_save(prompt: Prompt) -> None:
    request = request_make(prompt)

    with pytest.raises(IntegrityError, match="stored as submitted"), transaction.atomic():
        request.save()
    with pytest.raises(IntegrityError, match="stored as submitted"), transaction.atomic():
        GenerationRequest.objects.filter(pk=request.pk).update(count=1)


def test_a_request_is_deleted_with_its_project(prompt: Prompt) -> None:
    request = request_make(prompt)
    image_make(request)

    prompt.project.delete()

    assert not GenerationRequest.objects.filter(pk=request.pk).exists()
    assert not Image.objects.exists()


def test_a_request_can_be_deleted_on_its_own(prompt: Prompt) -> None:
    request = request_make(prompt)

    request.delete()

    assert not GenerationRequest.objects.exists()


# --- images --------------------------------------------------------------------------


def test_a_request_has_at_most_one_image_per_index(prompt: Prompt) -> None:
    request = request_make(prompt, count=2)
    image_make(request, index=0)
    image_make(request, index=1)

    with pytest.raises(IntegrityError, match="image_once_per_index"), transaction.atomic():
        image_make(request, index=1)


@pytest.mark.parametrize(
    "sha256",
    ["", "0" * 63, "A" * 64, "g" * 64, " " + "0" * 63, "0" * 63 + "\n"],
    ids=["empty", "63-chars", "upper-case", "not-hex", "leading-space", "newline"],
)
def test_an_image_sha256_is_64_lower_case_hex_digits(prompt: Prompt, sha256: str) -> None:
    request = request_make(prompt)

    with pytest.raises(IntegrityError, match="image_sha256_hex"), transaction.atomic():
        image_make(request, sha256=sha256)


def test_an_image_sha256_longer_than_64_characters_does_not_fit(prompt: Prompt) -> None:
    request = request_make(prompt)

    with pytest.raises(DataError, match="too long"), transaction.atomic():
        image_make(request, sha256="0" * 65)


@pytest.mark.parametrize("status", ["", "approved", "PENDING"])
def test_an_image_review_status_is_one_of_the_known_ones(prompt: Prompt, status: str) -> None:
    with pytest.raises(IntegrityError, match="image_review_status_valid"), transaction.atomic():
        image_make(request_make(prompt), review_status=status)


@pytest.mark.parametrize("key", ["object_key", "thumbnail_key"])
def test_two_images_never_share_an_object_key(image: Image, key: str) -> None:
    request = request_make(Prompt.objects.get(pk=image.prompt_id))

    with pytest.raises(IntegrityError, match=key), transaction.atomic():
        image_make(request, **{key: getattr(image, key)})


# --- Critic reviews ------------------------------------------------------------------


@pytest.mark.parametrize("field", SCORE_FIELDS)
def test_every_critic_score_is_at_most_10(image: Image, field: str) -> None:
    with pytest.raises(IntegrityError, match="review_scores_0_to_10"), transaction.atomic():
        review_make(image, **{field: 11})


@pytest.mark.parametrize("field", SCORE_FIELDS)
def test_no_critic_score_is_negative(image: Image, field: str) -> None:
    with pytest.raises(IntegrityError, match=f"{field}_check"), transaction.atomic():
        review_make(image, **{field: -1})


def test_scores_of_0_and_10_are_accepted(image: Image) -> None:
    review_make(image, **dict.fromkeys(SCORE_FIELDS, 0))
    review_make(image, **dict.fromkeys(SCORE_FIELDS, 10))

    assert image.reviews.count() == 2


@pytest.mark.parametrize("verdict", ["", "maybe", "APPROVE"])
def test_a_critic_verdict_is_approve_or_reject(image: Image, verdict: str) -> None:
    with pytest.raises(IntegrityError, match="review_verdict_valid"), transaction.atomic():
        review_make(image, verdict=verdict)


# --- human decisions -----------------------------------------------------------------


def test_a_user_has_one_current_decision_per_image(image: Image) -> None:
    user = user_make()
    decision_make(image, user)

    with (
        pytest.raises(IntegrityError, match="decision_one_current_per_user"),
        transaction.atomic(),
    ):
        decision_make(image, user, verdict="reject")


def test_earlier_decisions_are_kept_as_history_beside_the_current_one(image: Image) -> None:
    user = user_make()
    first = decision_make(image, user)
    first.is_current = False
    first.save(update_fields=["is_current"])

    decision_make(image, user, verdict="reject")
    decision_make(image, user, verdict="approve", is_current=False)

    assert image.decisions.filter(user=user).count() == 3
    assert image.decisions.get(user=user, is_current=True).verdict == "reject"


def test_different_users_each_have_their_own_current_decision(image: Image) -> None:
    decision_make(image, user_make())
    decision_make(image, user_make(), verdict="reject")

    assert image.decisions.filter(is_current=True).count() == 2


@pytest.mark.parametrize("verdict", ["", "approved", "veto"])
def test_a_human_verdict_is_approve_or_reject(image: Image, verdict: str) -> None:
    with pytest.raises(IntegrityError, match="decision_verdict_valid"), transaction.atomic():
        decision_make(image, user_make(), verdict=verdict)


def test_a_decision_note_is_at_most_1000_characters(image: Image) -> None:
    decision_make(image, user_make(), note="n" * 1000)

    with pytest.raises(IntegrityError, match="decision_note_bounded"), transaction.atomic():
        decision_make(image, user_make(), note="n" * 1001)


def test_a_user_who_authored_requests_can_be_deleted(prompt: Prompt) -> None:
    author = user_make()
    request_make(prompt_make(prompt.project, author))

    with transaction.atomic():
        author.delete()

    assert GenerationRequest.objects.get().author is None
