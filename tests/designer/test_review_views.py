"""The review screen: who sees it, what it shows, its filters, deciding, undoing, query counts."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser
from django.test import Client
from django.urls import reverse

from artcritic.designer.selectors import Agreement, agreement_rate, review_counts, review_filtered
from artcritic.jobs.models import JobStatus
from artcritic.studio.models import HumanDecision, Image, Membership, Project, ReviewStatus
from artcritic.studio.services import decision_record, decision_undo
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import decision_make, image_make, job_make, review_make

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"


def images_make(project: Project, author: AbstractUser, count: int, **prompt: Any) -> list[Image]:
    """``count`` images of one request, returned newest first (the screen's order)."""
    request = request_make(prompt_make(project, author, **prompt), count=count)
    return [image_make(request, index) for index in range(count)][::-1]


def signed_in(user: AbstractUser) -> Client:
    client = Client()
    client.force_login(user)
    return client


def screen_url(project: Project, **query: Any) -> str:
    url = reverse("studio:review", args=[project.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def decide_url(project: Project) -> str:
    return reverse("studio:review_decide", args=[project.pk])


def undo_url(project: Project) -> str:
    return reverse("studio:review_undo", args=[project.pk])


def shown_ids(client: Client, project: Project, filter_name: str) -> list[int]:
    """The images a filter holds for the signed-in user, walked with Next from the first."""
    ids = []
    response = client.get(screen_url(project, filter=filter_name))
    while response.context["image"] is not None:
        ids.append(response.context["image"].pk)
        following = response.context["screen"].neighbours.next_id
        if following is None:
            break
        response = client.get(screen_url(project, filter=filter_name, image=following))
    return ids


@pytest.fixture(autouse=True)
def profile() -> None:
    profile_load()


@pytest.fixture
def olive() -> AbstractUser:
    return user_make("olive")


@pytest.fixture
def bo() -> AbstractUser:
    return user_make("bo")


@pytest.fixture
def project(olive: AbstractUser, bo: AbstractUser) -> Project:
    return project_make(bo, owner=olive, name="Desk lamps")


@pytest.fixture
def images(project: Project, olive: AbstractUser) -> list[Image]:
    return images_make(project, olive, 4, negative_text="text, watermark")


@pytest.fixture
def client(olive: AbstractUser) -> Client:
    return signed_in(olive)


# ---- Who may see and act ----


def test_a_non_member_gets_404_for_the_screen_and_cannot_decide_or_undo(
    project: Project, images: list[Image], olive: AbstractUser
) -> None:
    decision_record(image=images[0], user=olive, verdict="approve")
    outsider = signed_in(user_make("mallory"))
    assert outsider.get(screen_url(project)).status_code == 404
    assert outsider.get(screen_url(project, image=images[0].pk)).status_code == 404
    response = outsider.post(decide_url(project), {"image": images[1].pk, "verdict": "reject"})
    assert response.status_code == 404
    assert outsider.post(undo_url(project), {}).status_code == 404
    assert list(HumanDecision.objects.values_list("verdict", "is_current")) == [("approve", True)]


def test_staff_who_are_not_members_get_404_too(project: Project) -> None:
    staff = signed_in(user_make("root", is_staff=True, is_superuser=True))
    assert staff.get(screen_url(project)).status_code == 404


def test_an_anonymous_visitor_is_sent_to_sign_in(project: Project) -> None:
    response = Client().get(screen_url(project))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_an_image_of_another_project_is_not_found_here(
    project: Project, olive: AbstractUser, client: Client
) -> None:
    other = images_make(project_make(owner=olive), olive, 1)[0]
    assert client.get(screen_url(project, image=other.pk)).status_code == 404
    response = client.post(decide_url(project), {"image": other.pk, "verdict": "approve"})
    assert response.status_code == 404
    assert not HumanDecision.objects.exists()


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "٣", "9" * 40])
def test_a_malformed_image_id_is_not_found(
    project: Project, images: list[Image], client: Client, value: str
) -> None:
    assert client.get(screen_url(project, image=value)).status_code == 404
    response = client.post(decide_url(project), {"image": value, "verdict": "approve"})
    assert response.status_code == 404
    assert not HumanDecision.objects.exists()


def test_each_url_refuses_the_wrong_method(
    project: Project, images: list[Image], client: Client
) -> None:
    assert client.post(screen_url(project)).status_code == 405
    form = {"image": images[0].pk, "verdict": "approve"}
    assert client.get(decide_url(project), form).status_code == 405
    assert client.get(undo_url(project)).status_code == 405
    assert not HumanDecision.objects.exists()


def test_deciding_and_undoing_need_a_csrf_token(
    project: Project, images: list[Image], olive: AbstractUser
) -> None:
    decision_record(image=images[1], user=olive, verdict="reject")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(olive)
    response = strict.post(decide_url(project), {"image": images[0].pk, "verdict": "approve"})
    assert response.status_code == 403
    assert strict.post(undo_url(project), {}).status_code == 403
    assert list(HumanDecision.objects.values_list("verdict", "is_current")) == [("reject", True)]


# ---- What the screen shows ----


def test_the_image_is_shown_large_through_a_presigned_url_with_its_prompt_and_settings(
    project: Project, images: list[Image], client: Client
) -> None:
    image = images[0]
    page = client.get(screen_url(project, image=image.pk)).content.decode()
    source = re.search(r'<img src="([^"]+)" alt="a brushed aluminium', page)
    assert source is not None
    assert image.object_key in source.group(1)
    assert "X-Amz-Signature=" in source.group(1)
    assert "a brushed aluminium desk lamp, studio light" in page
    assert "text, watermark" in page
    assert f"seed <code>{image.seed}</code>" in page  # once, in the title
    assert f"<span>seed {image.seed}</span>" not in page
    for fact in ("FLUX.1-dev fp8", "1024×1024", "20 steps", "CFG 1.0", "euler / simple", "no LoRA"):
        assert fact in page


def test_the_critics_latest_review_shows_scores_rationale_verdict_model_tokens_and_latency(
    project: Project, images: list[Image], client: Client
) -> None:
    image = images[0]
    review_make(image, verdict="approve", model_id="old-model")
    review_make(
        image,
        verdict="reject",
        model_id="Qwen/Qwen2.5-VL-7B-Instruct",
        score_taste=9,
        score_manufacturability=2,
        score_intent=5,
        score_consistency=0,
        rationale={
            "taste": "Calm proportions.",
            "manufacturability": "The arm cannot be die-cast.",
            "prompt_intent": "Linen shade missing.",
            "consistency": "Unlike what the team approved.",
        },
        prompt_tokens=1234,
        completion_tokens=56,
        latency_ms=2345,
    )
    response = client.get(screen_url(project, image=image.pk))
    critic = response.context["screen"]
    assert [(c.label, c.score, c.band) for c in critic.criteria] == [
        ("Taste", 9, "high"),
        ("Manufacturability", 2, "low"),
        ("Prompt intent", 5, "mid"),
        ("Consistency with prior decisions", 0, "low"),
    ]
    page = response.content.decode()
    assert "Recommends reject" in page
    assert "old-model" not in page
    assert "This is the latest of 2 reviews" in page
    for text in (
        "Calm proportions.",
        "The arm cannot be die-cast.",
        "Linen shade missing.",
        "Unlike what the team approved.",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "1234 in · 56 out",
        "2345 ms",
        'style="width: 90%"',
        'style="width: 20%"',
    ):
        assert text in page


def test_the_review_names_each_decision_the_critic_was_shown(
    project: Project, images: list[Image], bo: AbstractUser, client: Client
) -> None:
    shown = decision_make(images[1], bo, verdict="reject", note=HOSTILE)
    changed = decision_make(images[2], bo, verdict="approve", is_current=False)
    decision_make(images[2], bo, verdict="reject")
    review = review_make(images[0])
    review.shown_decisions.set([shown, changed])
    page = client.get(screen_url(project, image=images[0].pk)).content.decode()
    section = page.split('id="review-critic"')[1].split("</section>")[0]
    assert images[1].thumbnail_key in section
    assert f"image {images[1].pk} by bo" in section
    assert f"image {images[2].pk} by bo <span" in section
    assert "(since changed)" in section
    assert "<script>alert(1)" not in page
    assert ESCAPED in section


def test_a_review_that_has_not_happened_yet_is_called_pending_with_its_job_state(
    project: Project, images: list[Image], client: Client
) -> None:
    job_make(image=images[0], status=JobStatus.QUEUED)
    page = client.get(screen_url(project, image=images[0].pk)).content.decode()
    assert "Critic review pending</strong> — waiting for the GPU." in page
    page = client.get(screen_url(project, image=images[1].pk)).content.decode()
    assert "Critic review pending</strong> — no review was asked for yet." in page


def test_a_failed_review_shows_the_reason_and_the_next_step(
    project: Project, images: list[Image], client: Client
) -> None:
    Image.objects.filter(pk=images[0].pk).update(review_status=ReviewStatus.FAILED)
    job_make(
        image=images[0],
        status=JobStatus.FAILED,
        error_reason="The Critic's answer was rejected: scores.taste is 11, above 10.",
        next_action="Re-run the review.",
    )
    page = client.get(screen_url(project, image=images[0].pk)).content.decode()
    assert "review failed:</strong> The Critic&#x27;s answer was rejected: scores.taste" in page
    assert "<strong>Next:</strong> Re-run the review." in page
    assert "Critic review pending" not in page


def test_team_decisions_list_every_member_with_the_current_ones_and_the_full_history(
    project: Project, images: list[Image], olive: AbstractUser, bo: AbstractUser, client: Client
) -> None:
    image = images[0]
    decision_record(image=image, user=bo, verdict="approve", note="first look")
    decision_record(image=image, user=bo, verdict="reject", note=HOSTILE)
    decision_record(image=image, user=olive, verdict="approve")
    decision_undo(user=olive, project=project)
    decision_record(image=image, user=olive, verdict="reject")
    response = client.get(screen_url(project, filter="all", image=image.pk))
    members = [
        (m.membership.user.username, m.decision.verdict if m.decision else None)
        for m in response.context["screen"].members
    ]
    assert members == [("olive", "reject"), ("bo", "reject")]
    page = response.content.decode()
    team = page.split('id="review-decisions"')[1].split("</section>")[0]
    assert 'data-my-verdict="reject"' in page
    assert "0 approve · 2 reject" in team
    assert "History: 4 decisions, newest first" in team
    assert team.count(">current</span>") == 2
    assert team.count("superseded") == 1
    assert team.count("undone <time") == 1
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in team


# ---- Filters and moving between images ----


def test_each_filter_holds_what_its_tab_says_and_the_counts_match(
    project: Project, images: list[Image], olive: AbstractUser, bo: AbstractUser, client: Client
) -> None:
    approved, rejected, theirs, untouched = images
    decision_record(image=approved, user=olive, verdict="approve")
    decision_record(image=rejected, user=olive, verdict="reject")
    decision_record(image=theirs, user=bo, verdict="reject")
    review_make(theirs, verdict="approve")  # the Critic disagrees with bo, the only vote
    assert shown_ids(client, project, "awaiting") == [theirs.pk, untouched.pk]
    assert shown_ids(client, project, "approved") == [approved.pk]
    assert shown_ids(client, project, "rejected") == [rejected.pk]
    assert shown_ids(client, project, "disagree") == [theirs.pk]
    assert shown_ids(client, project, "all") == [i.pk for i in images]
    assert review_counts(project, olive) == {
        "awaiting": 2,
        "approved": 1,
        "rejected": 1,
        "disagree": 1,
        "all": 4,
    }
    page = client.get(screen_url(project)).content.decode()
    tabs = dict(re.findall(r'id="review-tab-(\w+)".*?class="review-tabs__count">(\d+)<', page))
    assert tabs == {"awaiting": "2", "approved": "1", "rejected": "1", "disagree": "1", "all": "4"}
    assert re.search(r'id="review-tab-awaiting"[^>]*aria-current="true"', page)


def test_critic_disagrees_compares_its_latest_verdict_with_the_strict_human_majority(
    project: Project, olive: AbstractUser, bo: AbstractUser
) -> None:
    cy = user_make("cy")
    Membership.objects.create(project=project, user=cy)
    majority_against, tie, nobody, changed_mind, agrees = images_make(project, olive, 5)
    for user, verdict in ((olive, "reject"), (bo, "reject"), (cy, "approve")):
        decision_make(majority_against, user, verdict=verdict)
    decision_make(tie, olive, verdict="reject")
    decision_make(tie, bo, verdict="approve")
    decision_make(changed_mind, olive, verdict="approve")
    decision_make(agrees, olive, verdict="approve")
    for image in (majority_against, tie, nobody):
        review_make(image, verdict="approve")
    review_make(changed_mind, verdict="approve")
    review_make(changed_mind, verdict="reject")  # the latest review is the one that counts
    review_make(agrees, verdict="approve")
    disagreeing = list(review_filtered(project, olive, "disagree"))
    assert [i.pk for i in disagreeing] == [majority_against.pk, changed_mind.pk]


def test_next_and_previous_move_within_the_filter_and_say_where_we_are(
    project: Project, images: list[Image], olive: AbstractUser, client: Client
) -> None:
    decision_record(image=images[1], user=olive, verdict="approve")  # leaves "awaiting"
    response = client.get(screen_url(project, filter="awaiting", image=images[2].pk))
    neighbours = response.context["screen"].neighbours
    assert (neighbours.previous_id, neighbours.next_id) == (images[0].pk, images[3].pk)
    assert (neighbours.position, neighbours.total) == (2, 3)
    page = response.content.decode()
    assert '2 of 3 <span class="muted">in “Awaiting me”' in page
    assert f'href="/projects/{project.pk}/review/?filter=awaiting&amp;image={images[3].pk}"' in page
    first = client.get(screen_url(project, filter="awaiting")).context["screen"].neighbours
    assert (first.previous_id, first.position) == (None, 1)
    outside = client.get(screen_url(project, filter="awaiting", image=images[1].pk))
    assert outside.context["screen"].neighbours.position is None
    assert "Not in “Awaiting me” any more · 3 left" in outside.content.decode()


def test_an_unknown_filter_shows_what_awaits_me(
    project: Project, images: list[Image], client: Client
) -> None:
    response = client.get(screen_url(project, filter="<b>everything</b>"))
    assert response.context["screen"].filter == "awaiting"
    assert "<b>everything</b>" not in response.content.decode()


def test_an_empty_filter_says_so_and_still_offers_undo(
    project: Project, images: list[Image], olive: AbstractUser, client: Client
) -> None:
    for image in images:
        decision_record(image=image, user=olive, verdict="approve")
    page = client.get(screen_url(project, filter="awaiting")).content.decode()
    assert "Nothing is awaiting your decision" in page
    assert "Your last decision:" in page
    page = client.get(screen_url(project, filter="rejected")).content.decode()
    assert "No images in “Rejected by me”" in page


# ---- Agreement ----


def test_agreement_counts_reviewed_images_with_a_human_majority_only(
    project: Project, olive: AbstractUser, bo: AbstractUser, client: Client
) -> None:
    assert agreement_rate(project) == Agreement(agreeing=0, compared=0)
    assert agreement_rate(project).rate is None
    agree_1, agree_2, disagree, tie, unreviewed, undecided = images_make(project, olive, 6)
    for image, critic, humans in (
        (agree_1, "approve", ["approve"]),
        (agree_2, "reject", ["reject", "reject"]),
        (disagree, "approve", ["reject"]),
        (tie, "approve", ["approve", "reject"]),
        (undecided, "reject", []),
    ):
        review_make(image, verdict=critic)
        for user, verdict in zip((olive, bo), humans, strict=False):
            decision_make(image, user, verdict=verdict)
    decision_make(unreviewed, olive, verdict="approve")
    agreement = agreement_rate(project)
    assert agreement == Agreement(agreeing=2, compared=3)
    assert agreement.percent == 67
    page = client.get(screen_url(project)).content.decode()
    assert '<strong class="review-agreement__value">67%</strong>' in page
    assert "2 of 3 images" in page


def test_agreement_follows_undo_and_superseded_decisions(
    project: Project, images: list[Image], olive: AbstractUser
) -> None:
    review_make(images[0], verdict="approve")
    decision_record(image=images[0], user=olive, verdict="approve")
    assert agreement_rate(project) == Agreement(agreeing=1, compared=1)
    decision_record(image=images[0], user=olive, verdict="reject")
    assert agreement_rate(project) == Agreement(agreeing=0, compared=1)
    decision_undo(user=olive, project=project)
    assert agreement_rate(project) == Agreement(agreeing=1, compared=1)
    decision_undo(user=olive, project=project)
    assert agreement_rate(project) == Agreement(agreeing=0, compared=0)


# ---- Deciding ----


def test_deciding_in_awaiting_moves_on_to_the_next_image(
    project: Project, images: list[Image], olive: AbstractUser, client: Client
) -> None:
    response = client.post(
        decide_url(project),
        {"image": images[1].pk, "verdict": "approve", "note": "keep", "filter": "awaiting"},
    )
    assert response["Location"] == screen_url(project, filter="awaiting", image=images[2].pk)
    decision = HumanDecision.objects.get(user=olive)
    assert (decision.image_id, decision.verdict, decision.note) == (images[1].pk, "approve", "keep")
    page = client.get(response["Location"]).content.decode()
    assert f"Approved image {images[1].pk}." in page


def test_deciding_the_oldest_awaiting_image_wraps_to_the_newest_left_then_says_all_done(
    project: Project, images: list[Image], olive: AbstractUser, client: Client
) -> None:
    for image in images[1:3]:
        decision_record(image=image, user=olive, verdict="reject")
    response = client.post(decide_url(project), {"image": images[3].pk, "verdict": "reject"})
    assert response["Location"] == screen_url(project, filter="awaiting", image=images[0].pk)
    response = client.post(decide_url(project), {"image": images[0].pk, "verdict": "approve"})
    assert response["Location"] == screen_url(project, filter="awaiting")
    page = client.get(response["Location"]).content.decode()
    assert "Nothing else is awaiting your decision." in page
    assert "Nothing is awaiting your decision" in page


def test_deciding_in_another_filter_stays_on_the_image(
    project: Project, images: list[Image], olive: AbstractUser, client: Client
) -> None:
    decision_record(image=images[2], user=olive, verdict="approve")
    response = client.post(
        decide_url(project), {"image": images[2].pk, "verdict": "reject", "filter": "approved"}
    )
    assert response["Location"] == screen_url(project, filter="approved", image=images[2].pk)
    assert HumanDecision.objects.get(user=olive, is_current=True).verdict == "reject"


def test_the_same_decision_sent_twice_is_one_decision_and_lands_on_the_same_image(
    project: Project, images: list[Image], client: Client
) -> None:
    form = {"image": images[0].pk, "verdict": "reject", "filter": "awaiting"}
    first = client.post(decide_url(project), form)
    second = client.post(decide_url(project), form)
    assert first["Location"] == second["Location"]
    assert HumanDecision.objects.count() == 1
    page = client.get(second["Location"]).content.decode()
    assert f"Rejected image {images[0].pk}. (It already was.)" in page


def test_a_script_gets_the_next_screen_as_a_fragment_with_its_address(
    project: Project, images: list[Image], client: Client
) -> None:
    response = client.post(
        decide_url(project),
        {"image": images[0].pk, "verdict": "approve", "filter": "awaiting"},
        headers={"X-Fragment": "review"},
    )
    content = response.content.decode()
    assert response.status_code == 200
    assert content.lstrip().startswith('<div id="review-root"')
    assert "<html" not in content
    assert f'data-image="{images[1].pk}"' in content
    assert f'data-notice="Approved image {images[0].pk}."' in content
    assert response["X-Review-Url"] == screen_url(project, filter="awaiting", image=images[1].pk)
    assert "X-Fragment" in response["Vary"]


def test_a_note_over_1000_characters_or_an_unknown_verdict_records_nothing(
    project: Project, images: list[Image], client: Client
) -> None:
    long_note = {"image": images[0].pk, "verdict": "approve", "note": "n" * 1001}
    response = client.post(decide_url(project), long_note, follow=True)
    assert "Decision not recorded: Ensure this value has at most 1000 characters" in (
        response.content.decode()
    )
    assert response.context["image"].pk == images[0].pk
    fragment = client.post(
        decide_url(project),
        {"image": images[0].pk, "verdict": "maybe"},
        headers={"X-Fragment": "review"},
    )
    assert fragment.status_code == 400
    assert "maybe is not one of the available choices" in fragment.content.decode()
    assert not HumanDecision.objects.exists()


def test_a_hostile_note_is_stored_as_typed_and_shown_escaped(
    project: Project, images: list[Image], olive: AbstractUser, client: Client
) -> None:
    client.post(decide_url(project), {"image": images[0].pk, "verdict": "reject", "note": HOSTILE})
    assert HumanDecision.objects.get().note == HOSTILE
    page = client.get(screen_url(project, filter="all", image=images[0].pk)).content.decode()
    assert HOSTILE not in page
    assert ESCAPED in page


# ---- Undoing ----


def test_undo_shows_the_image_again_and_says_what_is_current_now(
    project: Project, images: list[Image], olive: AbstractUser, client: Client
) -> None:
    client.post(decide_url(project), {"image": images[0].pk, "verdict": "approve"})
    client.post(decide_url(project), {"image": images[1].pk, "verdict": "reject"})
    response = client.post(undo_url(project), {"filter": "awaiting", "image": images[2].pk})
    assert response["Location"] == screen_url(project, filter="awaiting", image=images[1].pk)
    page = client.get(response["Location"]).content.decode()
    assert f"Undid your reject of image {images[1].pk}; you have no decision on it now." in page
    assert list(HumanDecision.objects.filter(is_current=True).values_list("image", flat=True)) == [
        images[0].pk
    ]


def test_undo_of_a_change_of_mind_says_the_earlier_verdict_is_back(
    project: Project, images: list[Image], olive: AbstractUser, client: Client
) -> None:
    decision_record(image=images[0], user=olive, verdict="approve")
    decision_record(image=images[0], user=olive, verdict="reject")
    response = client.post(undo_url(project), {}, headers={"X-Fragment": "review"})
    assert (
        f"Undid your reject of image {images[0].pk}; your earlier approve is current again."
        in response.content.decode()
    )
    pressed = 'decision__approve" aria-keyshortcuts="A" aria-pressed="true"'
    assert pressed in response.content.decode()


def test_undo_with_nothing_to_undo_says_so(
    project: Project, images: list[Image], client: Client
) -> None:
    response = client.post(undo_url(project), {"image": images[1].pk}, follow=True)
    assert "Nothing to undo: you have no decisions left to undo in this project." in (
        response.content.decode()
    )
    assert response.context["image"].pk == images[1].pk


def test_the_same_undo_sent_twice_undoes_one_decision(
    project: Project, images: list[Image], olive: AbstractUser, client: Client
) -> None:
    first, _ = decision_record(image=images[0], user=olive, verdict="approve")
    latest, _ = decision_record(image=images[1], user=olive, verdict="approve")
    client.post(undo_url(project), {"decision": latest.pk})
    response = client.post(undo_url(project), {"decision": latest.pk}, follow=True)
    assert "Nothing undone: that decision was already undone or is no longer your latest." in (
        response.content.decode()
    )
    assert HumanDecision.objects.get(pk=first.pk).is_current


def test_i_cannot_undo_another_members_decision_even_by_naming_it(
    project: Project, images: list[Image], olive: AbstractUser, bo: AbstractUser
) -> None:
    theirs, _ = decision_record(image=images[0], user=olive, verdict="approve")
    response = signed_in(bo).post(undo_url(project), {"decision": theirs.pk}, follow=True)
    assert "Nothing undone" in response.content.decode()
    assert HumanDecision.objects.get(pk=theirs.pk).is_current


def test_undo_with_a_malformed_decision_id_is_a_bad_request(
    project: Project, images: list[Image], olive: AbstractUser, client: Client
) -> None:
    decision_record(image=images[0], user=olive, verdict="approve")
    response = client.post(undo_url(project), {"decision": "1 OR 1=1"})
    assert response.status_code == 400
    assert HumanDecision.objects.get().is_current


# ---- The live fragment ----


def test_the_live_fragment_holds_only_the_regions_other_people_can_change(
    project: Project, images: list[Image], bo: AbstractUser, client: Client
) -> None:
    decision_record(image=images[0], user=bo, verdict="reject", note="too shiny")
    response = client.get(
        screen_url(project, filter="all", image=images[0].pk), headers={"X-Fragment": "live"}
    )
    content = response.content.decode()
    assert re.findall(r'<(?:nav|p|section|div) id="(review-[a-z]+)"', content) == [
        "review-tabs",
        "review-agreement",
        "review-nav",
        "review-critic",
        "review-decisions",
        "review-undo",
    ]
    assert "too shiny" in content
    assert "<html" not in content
    assert "<textarea" not in content  # a note being typed is never replaced


# ---- Query counts ----


def test_the_review_screen_runs_the_same_queries_for_few_and_many_images_and_decisions(
    project: Project, olive: AbstractUser, bo: AbstractUser, django_assert_num_queries: Any
) -> None:
    client = signed_in(olive)
    few = images_make(project, olive, 2)
    review_make(few[0])
    # session, user, project access, image, counts, my decisions' counts, undoable,
    # neighbours (3), reviews, shown decisions, the stored calibration, decisions, members,
    # review job, header badge, model labels
    with django_assert_num_queries(18):
        assert client.get(screen_url(project, image=few[0].pk)).status_code == 200
    many = images_make(project, olive, 12)
    for image in many:
        decision_make(image, bo, verdict="reject", note="no")
        decision_make(image, olive, verdict="approve")
        review = review_make(image, verdict="approve")
        review.shown_decisions.set(HumanDecision.objects.filter(image=few[1]) or [])
    for image in many[:3]:
        review.shown_decisions.add(decision_make(image, user_make(), verdict="reject"))
    with django_assert_num_queries(18):
        response = client.get(screen_url(project, filter="all", image=many[-1].pk))
    assert len(response.context["screen"].review.shown_decisions.all()) == 3
    assert response.context["screen"].counts["all"] == 14


def test_deciding_by_script_runs_a_fixed_number_of_queries(
    project: Project, olive: AbstractUser, django_assert_num_queries: Any
) -> None:
    client = signed_in(olive)
    images = images_make(project, olive, 10)
    # session, user, project, image; savepoint, membership lock, current row, insert, audit,
    # release; the next image; then the next screen: image, counts, agreement, undoable,
    # reviews (none, so no shown decisions), decisions, members, neighbours (3), review job
    # and the model labels (a fragment has no header badge)
    with django_assert_num_queries(23):
        response = client.post(
            decide_url(project),
            {"image": images[0].pk, "verdict": "approve"},
            headers={"X-Fragment": "review"},
        )
    assert response.status_code == 200
