"""The review screen shows what the Critic was shown: k, m, tokens and each example's picture."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from artcritic.critic.models import ShownContext
from artcritic.studio.models import Image, ReviewStatus
from tests.browser.conftest import element_shot, screenshots, server_user_make, sign_in
from tests.factories import profile_load, project_make, prompt_make, request_make
from tests.factories_media import decision_make, images_stored, review_make

pytestmark = pytest.mark.browser


def test_the_review_screen_shows_the_examples_and_thumbnails_the_critic_saw(
    page: Page, app_server: str, output_dir: Path
) -> None:
    profile_load()
    dana = server_user_make("dana")
    eli = server_user_make("eli")
    project = project_make(eli, owner=dana, name="Desk lamps")
    lamp = "a brushed aluminium desk lamp with a linen shade"
    near, split, liked = images_stored(
        request_make(prompt_make(project, dana, text=lamp + ", chrome"), count=3, seed=5)
    )
    rejected = decision_make(near, eli, verdict="reject", note="chrome <b>glare</b> again")
    split_votes = [
        decision_make(split, dana, verdict="approve", note="good proportions"),
        decision_make(split, eli, verdict="reject", note="shade too tall"),
    ]
    approved = decision_make(liked, dana, verdict="approve")
    [target] = images_stored(request_make(prompt_make(project, dana, text=lamp), seed=40))
    review = review_make(
        target,
        verdict="reject",
        score_consistency=3,
        prompt_tokens=2411,
        completion_tokens=240,
        simulated=True,
        rationale={
            "taste": "Calm, but the chrome glare the team rejected is back.",
            "manufacturability": "Simple shells.",
            "prompt_intent": "Linen shade as asked.",
            "consistency": "Close to image rejected for chrome glare.",
        },
    )
    review.shown_decisions.set([rejected, *split_votes, approved])
    ShownContext.objects.create(
        review=review,
        decisions_limit=6,
        thumbnails_limit=2,
        examples=[
            {"image": near.pk, "kind": "reject", "similarity": 0.91, "thumbnail": True,
             "decisions": [rejected.pk]},
            {"image": split.pk, "kind": "conflict", "similarity": 0.88, "thumbnail": True,
             "decisions": [d.pk for d in split_votes]},
            {"image": liked.pk, "kind": "approve", "similarity": 0.88, "thumbnail": False,
             "decisions": [approved.pk]},
        ],
        prompt_tokens=2411,
        image_tokens=1371 + 2 * 66,
        count_method="tokenizer",
        max_model_len=8192,
    )  # fmt: skip
    Image.objects.filter(pk=target.pk).update(review_status=ReviewStatus.REVIEWED)

    sign_in(page, "dana")
    page.goto(f"/projects/{project.pk}/review/?filter=all&image={target.pk}")
    critic = page.locator("#review-critic")
    expect(critic.locator("[data-shown-context]")).to_have_text(
        "Up to 6 decisions (k), 2 as thumbnails (m); prompt 2411 tokens, 1503 of them image, "
        "counted by the Critic's tokenizer; the Critic's context is 8192 tokens."
    )
    items = critic.locator("[data-shown-example]")
    expect(items).to_have_count(3)
    expect(items.nth(0)).to_have_attribute("data-kind", "reject")
    expect(items.nth(0)).to_contain_text("picture sent")
    expect(items.nth(0)).to_contain_text("chrome <b>glare</b> again")  # escaped, as typed
    expect(items.nth(1).locator(".badge--conflict")).to_have_text("Conflict")
    expect(items.nth(1)).to_contain_text("dana: approve — good proportions")
    expect(items.nth(1)).to_contain_text("eli: reject — shade too tall")
    expect(items.nth(2)).to_contain_text("text only")
    expect(critic.locator(".review-shown__thumb--sent")).to_have_count(2)
    for n in range(3):
        image = items.nth(n).locator("img")
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("i => i.naturalWidth") > 0
    element_shot(critic, output_dir / "review-critic-context.png")
    page.evaluate("window.scrollTo(0, 0)")  # the element shot scrolled; the page starts on top
    screenshots(page, output_dir, "review-critic-context-page")
