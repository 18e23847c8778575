"""Two designers review the same project: keyboard decisions, undo, and each other's live."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import AbstractUser
from playwright.sync_api import Browser, Locator, Page, expect

from artcritic.studio.models import HumanDecision, Image, Project, ReviewStatus
from tests.browser.conftest import DESKTOP, screenshots, server_user_make, sign_in
from tests.factories import profile_load, project_make, prompt_make, request_make
from tests.factories_media import decision_make, images_stored, review_make

pytestmark = pytest.mark.browser

NOTE = 'seams show at the hinge <b>"bold"</b>'


def heading(page: Page) -> Locator:
    return page.locator("#review-image-heading")


def decisions_of(user: AbstractUser, image: Image) -> list[tuple[str, str, bool, bool]]:
    """(verdict, note, current, undone) of the user's decisions on the image, oldest first."""
    return [
        (d.verdict, d.note, d.is_current, d.undone_at is not None)
        for d in HumanDecision.objects.filter(image=image, user=user).order_by("id")
    ]


@pytest.fixture
def studio(app_server: str) -> tuple[Project, AbstractUser, AbstractUser, list[Image], Image]:
    """dana and eli in one project: three new images (newest first) and one both decided."""
    profile_load()
    dana = server_user_make("dana")
    eli = server_user_make("eli")
    project = project_make(eli, owner=dana, name="Desk lamps")
    walnut = prompt_make(project, dana, text="a walnut desk lamp")
    old = images_stored(request_make(walnut, seed=7))[0]
    decision_make(old, dana, verdict="approve")
    eli_said = decision_make(old, eli, verdict="reject", note="too heavy <i>for a desk</i>")
    prompt = prompt_make(
        project,
        dana,
        text="a brushed aluminium desk lamp with a linen shade, studio light",
        negative_text="text, watermark",
    )
    third, second, first = images_stored(request_make(prompt, count=3, seed=1000))
    review = review_make(
        first,
        verdict="approve",
        score_taste=8,
        score_manufacturability=4,
        score_intent=9,
        score_consistency=2,
        rationale={
            "taste": "Calm proportions and a warm shade.",
            "manufacturability": "The thin arm needs a steel core to survive die-casting.",
            "prompt_intent": "Aluminium and linen, as asked.",
            "consistency": "Close to the walnut lamp the team rejected as too heavy.",
        },
        prompt_tokens=1843,
        completion_tokens=212,
        latency_ms=2380,
        simulated=True,
    )
    review.shown_decisions.set([eli_said])
    review_make(second, verdict="approve", simulated=True)
    Image.objects.filter(pk__in=[first.pk, second.pk]).update(review_status=ReviewStatus.REVIEWED)
    return project, dana, eli, [first, second, third], old


def test_a_designer_decides_by_keyboard_and_a_colleague_sees_it_live(
    browser: Browser,
    page: Page,
    app_server: str,
    output_dir: Path,
    studio: tuple[Project, AbstractUser, AbstractUser, list[Image], Image],
) -> None:
    project, dana, eli, (first, second, third), old = studio
    review_url = f"/projects/{project.pk}/review/"

    # eli watches the first image in "All" from another browser.
    other = browser.new_context(base_url=app_server, viewport=DESKTOP)  # type: ignore[arg-type]
    other.set_default_timeout(15_000)
    colleague = other.new_page()
    try:
        sign_in(colleague, "eli")
        colleague.goto(f"{review_url}?filter=all&image={first.pk}")
        expect(colleague.locator("[data-live-status]")).to_have_attribute("data-state", "live")
        colleague.evaluate("window.notReloaded = true")
        eli_team = colleague.locator("#review-decisions")
        expect(eli_team.locator(".team__member", has_text="dana")).to_contain_text("not decided")
        disagree_tab = colleague.locator("#review-tab-disagree .review-tabs__count")
        expect(disagree_tab).to_have_text("0")

        # dana opens the review screen: the newest image awaiting her, with its review.
        sign_in(page, "dana")
        page.goto(review_url)
        expect(heading(page)).to_contain_text(f"Image {first.pk}")
        expect(page.locator("#review-tab-awaiting .review-tabs__count")).to_have_text("3")
        expect(page.locator(".review-figure__frame img")).to_have_js_property("complete", True)
        assert page.locator(".review-figure__frame img").evaluate("i => i.naturalWidth") == 512
        critic = page.locator("#review-critic")
        expect(critic).to_contain_text("Recommends approve")
        expect(critic).to_contain_text("The thin arm needs a steel core")
        expect(critic.locator(".scorebar")).to_have_count(4)
        expect(critic.locator(".review-shown__item")).to_contain_text(f"image {old.pk} by eli")
        expect(critic.locator(".review-shown__item")).to_contain_text("too heavy <i>for a desk</i>")
        assert critic.locator(".review-shown__thumb img").evaluate("i => i.naturalWidth") > 0
        expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live")

        # A approves and moves on to the next image awaiting her.
        page.keyboard.press("a")
        expect(heading(page)).to_contain_text(f"Image {second.pk}")
        expect(heading(page)).to_be_focused()  # keyboard and screen-reader users start here
        expect(page.locator("#review-announcer")).to_contain_text(f"Approved image {first.pk}.")
        assert decisions_of(dana, first) == [("approve", "", True, False)]
        expect(page.locator("#review-tab-awaiting .review-tabs__count")).to_have_text("2")
        # eli sees it without reloading.
        expect(eli_team.locator(".team__member", has_text="dana")).to_contain_text("Approve")
        assert colleague.evaluate("window.notReloaded") is True

        # R rejects the second; the Critic approved it, so eli's "Critic disagrees" counts it.
        page.keyboard.press("r")
        expect(heading(page)).to_contain_text(f"Image {third.pk}")
        assert decisions_of(dana, second) == [("reject", "", True, False)]
        expect(disagree_tab).to_have_text("1")
        expect(colleague.locator("#review-agreement")).to_contain_text("50%")

        # U undoes the reject and shows that image again; the history keeps the undone row.
        page.keyboard.press("u")
        expect(heading(page)).to_contain_text(f"Image {second.pk}")
        expect(page.locator(".review-notice")).to_contain_text(
            f"Undid your reject of image {second.pk}; you have no decision on it now."
        )
        assert decisions_of(dana, second) == [("reject", "", False, True)]
        expect(disagree_tab).to_have_text("0")
        page.locator("#review-history summary").click()
        expect(page.locator("#review-history")).to_contain_text("undone")

        # N focuses the note; letters typed there are text, not shortcuts. Esc leaves it.
        page.keyboard.press("n")
        expect(page.locator("#review-note")).to_be_focused()
        page.keyboard.type(NOTE)
        expect(page.locator("#review-note")).to_have_value(NOTE)
        assert decisions_of(dana, second) == [("reject", "", False, True)]
        page.keyboard.press("Escape")
        expect(heading(page)).to_be_focused()
        page.keyboard.press("r")
        expect(heading(page)).to_contain_text(f"Image {third.pk}")
        assert decisions_of(dana, second) == [
            ("reject", "", False, True),
            ("reject", NOTE, True, False),
        ]

        # J/K and the arrows move within the filter; ? shows the shortcuts.
        page.goto(f"{review_url}?filter=all&image={first.pk}")
        page.keyboard.press("j")
        expect(heading(page)).to_contain_text(f"Image {second.pk}")
        expect(page).to_have_url(re.compile(rf"filter=all&image={second.pk}$"))
        page.keyboard.press("ArrowRight")
        expect(heading(page)).to_contain_text(f"Image {third.pk}")
        page.keyboard.press("k")
        expect(heading(page)).to_contain_text(f"Image {second.pk}")
        page.keyboard.press("ArrowLeft")
        expect(heading(page)).to_contain_text(f"Image {first.pk}")
        page.go_back()
        expect(heading(page)).to_contain_text(f"Image {second.pk}")
        page.keyboard.press("?")
        expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_hidden()

        # Outside "awaiting" a decision stays on the image; a double press is one decision.
        page.goto(f"{review_url}?filter=all&image={third.pk}")
        page.keyboard.press("a")
        page.keyboard.press("a")
        expect(page.locator(".decision__approve")).to_have_attribute("aria-pressed", "true")
        expect(heading(page)).to_contain_text(f"Image {third.pk}")
        assert decisions_of(dana, third) == [("approve", "", True, False)]

        # Ctrl+Z in the note is the note's own undo; outside it, it undoes the decision.
        page.keyboard.press("n")
        page.keyboard.type("x")
        page.keyboard.press("Control+z")
        expect(page.locator("#review-note")).to_have_value("")
        assert decisions_of(dana, third) == [("approve", "", True, False)]
        page.keyboard.press("Escape")
        page.keyboard.press("Control+z")
        expect(page.locator(".review-notice")).to_contain_text(
            f"Undid your approve of image {third.pk}"
        )
        expect(page.locator(".decision__approve")).to_have_attribute("aria-pressed", "false")
        assert decisions_of(dana, third) == [("approve", "", False, True)]

        # The note is shown escaped to the colleague, live.
        colleague.goto(f"{review_url}?filter=all&image={second.pk}")
        expect(colleague.locator("#review-decisions")).to_contain_text(NOTE)
        assert colleague.locator("#review-decisions b").count() == 0

        # The screen as a designer sees it, at desktop and phone width.
        page.goto(f"{review_url}?filter=all&image={first.pk}")
        expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live")
        expect(page.locator(".review-figure__frame img")).to_have_js_property("complete", True)
        screenshots(page, output_dir, "review")
        # Nothing dana did touched eli's own decisions.
        assert decisions_of(eli, old) == [("reject", "too heavy <i>for a desk</i>", True, False)]
    finally:
        other.close()
