"""Which earlier decisions the Critic is shown: similar prompts first, balanced, conflicts kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import AbstractUser
from django.utils import timezone

from artcritic.critic.selection import CONFLICT, Candidate, balance, examples_for
from artcritic.studio.models import HumanDecision, Image, Project
from tests.factories import project_make, prompt_make, request_make, user_make
from tests.factories_media import decision_make, image_make

pytestmark = pytest.mark.django_db

LAMP = "a brushed aluminium desk lamp with a walnut base, studio light"


@pytest.fixture
def project() -> Project:
    return project_make()


@pytest.fixture
def eli() -> AbstractUser:
    return user_make()


@pytest.fixture
def ana() -> AbstractUser:
    return user_make()


def decided(
    project: Project,
    text: str,
    *votes: tuple[AbstractUser, str],
    mode: str = "flux-dev-fp8",
    lora: str = "",
    ago_s: int = 0,
    note: str = "",
) -> Image:
    """An image of ``text`` with one current decision per (member, verdict)."""
    request = request_make(prompt_make(project, text=text), model_mode=mode, lora_name=lora)
    image = image_make(request)
    for user, verdict in votes:
        decision = decision_make(image, user, verdict=verdict, note=note)
        if ago_s:
            HumanDecision.objects.filter(pk=decision.pk).update(
                created_at=timezone.now() - timedelta(seconds=ago_s)
            )
    return image


def subject(project: Project, text: str = LAMP, **fields: str) -> Image:
    return image_make(request_make(prompt_make(project, text=text), **fields))


def test_a_rejected_near_duplicate_is_chosen_before_an_unrelated_approval(
    project: Project, eli: AbstractUser
) -> None:
    unrelated = decided(project, "a red wool armchair in a sunny loft", (eli, "approve"))
    near = decided(project, LAMP.replace("walnut", "oak"), (eli, "reject"), ago_s=3600)
    shown = examples_for(subject(project), 1)
    assert [(e.image_id, e.kind) for e in shown] == [(near.pk, "reject")]
    assert unrelated.pk not in {e.image_id for e in examples_for(subject(project), 1)}
    assert shown[0].similarity > 0.5


def test_similarity_ranks_every_kind_and_the_unrelated_come_last(
    project: Project, eli: AbstractUser
) -> None:
    far = decided(project, "a red wool armchair in a sunny loft", (eli, "approve"))
    near = decided(project, LAMP + ", matte finish", (eli, "approve"))
    shown = examples_for(subject(project), 6)
    assert [e.image_id for e in shown] == [near.pk, far.pk]
    assert shown[0].similarity > shown[1].similarity


def test_approvals_and_rejections_are_balanced_even_when_one_side_is_more_similar(
    project: Project, eli: AbstractUser
) -> None:
    rejects = [decided(project, LAMP + f", variant {n}", (eli, "reject")) for n in range(4)]
    approvals = [decided(project, f"a ceramic vase number {n}", (eli, "approve")) for n in range(3)]
    shown = examples_for(subject(project), 4)
    kinds = [e.kind for e in shown]
    assert kinds.count("reject") == 2
    assert kinds.count("approve") == 2
    assert {e.image_id for e in shown if e.kind == "reject"} <= {i.pk for i in rejects}
    assert {e.image_id for e in shown if e.kind == "approve"} <= {i.pk for i in approvals}


def test_places_one_side_cannot_fill_go_to_the_other(project: Project, eli: AbstractUser) -> None:
    rejects = [decided(project, LAMP + f", variant {n}", (eli, "reject")) for n in range(4)]
    approval = decided(project, "a ceramic vase", (eli, "approve"))
    shown = examples_for(subject(project), 4)
    assert len(shown) == 4
    assert approval.pk in {e.image_id for e in shown}
    assert sum(e.kind == "reject" for e in shown) == 3
    assert {e.image_id for e in shown} - {approval.pk} <= {i.pk for i in rejects}


def test_two_members_disagreeing_on_one_image_are_one_conflict_not_an_average(
    project: Project, eli: AbstractUser, ana: AbstractUser
) -> None:
    split = decided(project, LAMP, (eli, "approve"), (ana, "reject"))
    shown = examples_for(subject(project), 3)
    assert [(e.image_id, e.kind) for e in shown] == [(split.pk, CONFLICT)]
    assert sorted(d.verdict for d in shown[0].decisions) == ["approve", "reject"]


def test_agreeing_members_make_one_example_with_both_decisions(
    project: Project, eli: AbstractUser, ana: AbstractUser
) -> None:
    both = decided(project, LAMP, (eli, "reject"), (ana, "reject"))
    shown = examples_for(subject(project), 3)
    assert [(e.image_id, e.kind, len(e.decisions)) for e in shown] == [(both.pk, "reject", 2)]


def test_same_model_mode_then_same_lora_then_the_newest_break_ties(
    project: Project, eli: AbstractUser
) -> None:
    other_mode = decided(project, LAMP, (eli, "approve"), mode="sdxl-base")
    same_mode_old = decided(project, LAMP, (eli, "approve"), ago_s=7200)
    same_mode_new = decided(project, LAMP, (eli, "approve"), ago_s=60)
    same_lora = decided(project, LAMP, (eli, "approve"), lora="walnut.safetensors", ago_s=9000)
    target = subject(project, lora_name="walnut.safetensors")
    order = [e.image_id for e in examples_for(target, 8)]
    assert order == [same_lora.pk, same_mode_new.pk, same_mode_old.pk, other_mode.pk]


def test_the_image_itself_other_projects_and_undecided_images_are_never_shown(
    project: Project, eli: AbstractUser
) -> None:
    target = subject(project)
    decision_make(target, eli, verdict="reject")
    decided(project_make(), LAMP, (eli, "reject"))
    image_make(request_make(prompt_make(project, text=LAMP)))
    assert examples_for(target, 8) == []


def test_limits_zero_shows_nothing_and_out_of_range_is_refused(
    project: Project, eli: AbstractUser
) -> None:
    decided(project, LAMP, (eli, "approve"))
    target = subject(project)
    assert examples_for(target, 0) == []
    for bad in (-1, 33):
        with pytest.raises(ValueError, match=r"0\.\.32"):
            examples_for(target, bad)


def test_a_hostile_prompt_is_data_to_the_similarity_query(
    project: Project, eli: AbstractUser
) -> None:
    hostile = "'); DROP TABLE studio_image; -- %_\\ 灯 💡"
    kept = decided(project, hostile, (eli, "reject"))
    shown = examples_for(subject(project, text=hostile), 2)
    assert [e.image_id for e in shown] == [kept.pk]
    assert Image.objects.filter(pk=kept.pk).exists()


def test_selection_takes_three_queries_however_many_decisions(
    project: Project, eli: AbstractUser, django_assert_num_queries: object
) -> None:
    for n in range(12):
        decided(project, LAMP + f" {n}", (eli, "approve" if n % 2 else "reject"))
    target = Image.objects.select_related("prompt", "request").get(pk=subject(project).pk)
    with django_assert_num_queries(3):  # type: ignore[operator]
        shown = examples_for(target, 6)
    assert len(shown) == 6


# ---- the balance rule on plain values ----


def _c(n: int, kind: str) -> Candidate:
    return Candidate(image_id=n, kind=kind, similarity=1 - n / 100, same_mode=True, same_lora=True)


@pytest.mark.parametrize(
    ("kinds", "limit", "expected"),
    [
        ("RRRRA", 2, [0, 4]),
        ("RRRRA", 1, [0]),
        ("AAAA", 3, [0, 1, 2]),
        ("RCRCA", 3, [0, 1, 2]),
        ("RRRACC", 4, [0, 1, 3, 4]),
        ("", 4, []),
        ("RA", 0, []),
    ],
)
def test_balance_keeps_rank_order_within_each_kinds_share(
    kinds: str, limit: int, expected: list[int]
) -> None:
    names = {"R": "reject", "A": "approve", "C": CONFLICT}
    ranked = [_c(n, names[k]) for n, k in enumerate(kinds)]
    assert [c.image_id for c in balance(ranked, limit)] == expected
