"""The Feedback page in Chromium: the agreement chart, matrix, distributions, calibration,
disagreements, and the decisions download."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from artcritic.critic.models import TasteProposal
from artcritic.studio.models import CriticReview
from tests.browser.conftest import screenshots, server_user_make, sign_in
from tests.factories import profile_load, project_make, prompt_make, request_make
from tests.factories_media import decision_make, images_stored, review_make

pytestmark = pytest.mark.browser

# A prompt a spreadsheet would run as a formula: the CSV must hand it over as text.
FORMULA = '=HYPERLINK("http://example.test","walnut lamp")'
START = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def test_the_feedback_page_charts_agreement_and_downloads_the_decisions(
    page: Page, output_dir: Path
) -> None:
    profile_load()
    dana = server_user_make("dana")
    eli = server_user_make("eli")
    project = project_make(eli, owner=dana, name="Desk lamps")
    prompt = prompt_make(project, dana, text="a brushed aluminium desk lamp, studio light")
    images = images_stored(request_make(prompt, count=8, seed=100)) + images_stored(
        request_make(prompt_make(project, dana, text=FORMULA), count=8, seed=500)
    )
    # 16 images reviewed over six days; the team approves taste ≥ 6. The Critic approves
    # taste ≥ 4 for three days, then taste ≥ 6 like the team.
    disagreeing = 0
    for i, image in enumerate(images):
        taste = (i * 7) % 11
        day = i % 6
        critic_approves = taste >= (4 if day < 3 else 6)
        review = review_make(
            image,
            verdict="approve" if critic_approves else "reject",
            score_taste=taste,
            score_manufacturability=(i * 3) % 11,
            score_intent=(i * 5) % 11,
            score_consistency=5,
        )
        CriticReview.objects.filter(pk=review.pk).update(created_at=START + dt.timedelta(days=day))
        team = "approve" if taste >= 6 else "reject"
        disagreeing += critic_approves != (team == "approve")
        decision_make(image, dana, verdict=team, note=f"taste {taste}")
        if i % 4 == 0:
            decision_make(image, eli, verdict=team)

    waiting = TasteProposal.objects.create(
        project=project, text="Prefer a taste score of 6 or more", why="dana's notes say so"
    )
    TasteProposal.objects.create(project=project, text="Chrome everywhere", why="one note")

    sign_in(page, "dana")
    page.goto(f"/projects/{project.pk}/review/")
    page.get_by_role("link", name="Feedback").click()
    expect(page.get_by_role("heading", name="Agreement over time")).to_be_visible()
    assert page.locator(".feedback-chart__svg--wide circle.dot").count() == 6
    expect(page.locator(".feedback-chart__svg--wide line.calibrated")).to_have_count(1)
    assert disagreeing > 0  # the case below needs one
    expect(page.locator('[data-figure="calibrated"] .feedback-figure__value')).to_have_text(
        re.compile(r"^\d+\.\d %$")
    )
    expect(page.locator('[data-figure="raw"] .muted')).to_have_text(
        f"{16 - disagreeing} of 16 decided images"
    )
    expect(page.locator('[data-cell="approve-reject"]')).to_have_text(str(disagreeing))
    expect(page.locator(".distribution")).to_have_count(4)
    expect(page.locator(".disagreement")).to_have_count(disagreeing)
    thumbs_loaded = page.locator(".disagreement img").evaluate_all(
        "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)"
    )
    assert thumbs_loaded
    screenshots(page, output_dir, "feedback")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download decisions (CSV)").click()
    download = download_info.value
    assert download.suggested_filename.startswith(f"desk-lamps-{project.pk}-decisions-")
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert len(rows) == 16 + 4  # one line per decision: dana on 16, eli on 4
    assert sum(r["prompt"] == "'" + FORMULA for r in rows) == 8 + 2
    assert {r["calibrated_verdict"] for r in rows} == {"approve", "reject"}

    # A member edits a proposal's words, then accepts; discards the other.
    card = page.locator(f'[data-proposal="{waiting.pk}"]')
    card.locator("textarea").fill("Approve only a taste of 6 or more")
    card.get_by_role("button", name="Accept").click()
    expect(page.locator(".message--success")).to_contain_text(
        "Added to the taste notes: “Approve only a taste of 6 or more”"
    )
    page.locator(".proposal").get_by_role("button", name="Discard").click()
    expect(page.locator(".message--success")).to_contain_text("the taste notes are unchanged")
    expect(page.locator(".proposal")).to_have_count(0)
    project.refresh_from_db()
    assert project.taste_notes.endswith("- Approve only a taste of 6 or more")
    page.locator("#taste summary").click()
    screenshots(page, output_dir, "feedback-taste")

    # The review screen: the calibrated verdict beside the Critic's own.
    page.goto(f"/projects/{project.pk}/review/?filter=all&image={images[7].pk}")
    expect(page.locator("#review-calibrated [data-calibrated]")).to_be_visible()
    expect(page.locator("#review-critic-heading + .badge")).to_be_visible()
    screenshots(page, output_dir, "review-calibrated")
