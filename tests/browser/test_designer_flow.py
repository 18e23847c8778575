"""A designer signs in, starts a project, composes a request, and reviews the gallery."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from artcritic.studio.models import GenerationRequest, HumanDecision, Image, ReviewStatus
from tests.browser.conftest import screenshots, server_user_make
from tests.factories import PASSWORD, profile_load
from tests.factories_media import images_stored, review_make

pytestmark = pytest.mark.browser


def test_a_designer_composes_a_request_and_reviews_the_gallery(
    page: Page, output_dir: Path
) -> None:
    profile_load()
    server_user_make("dana")

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    screenshots(page, output_dir, "login")
    page.get_by_label("Username").fill("dana")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Projects", exact=True)).to_be_visible()
    expect(page.locator(".chip--sim")).to_have_text("SIMULATED")

    page.get_by_label("Name").fill("Desk lamps")
    page.get_by_label("Brief").fill("Warm task lights for small flats. <script>alert(1)</script>")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", name="Desk lamps", exact=True)).to_be_visible()
    expect(page.locator(".prose").first).to_contain_text("<script>alert(1)</script>")

    tabs = page.get_by_role("navigation", name="Project")
    tabs.get_by_role("link", name="Compose").click()
    prompt = "a brushed aluminium desk lamp with a linen shade, studio light"
    page.get_by_role("textbox", name="Prompt", exact=True).fill(prompt)
    page.get_by_label("Width").fill("1001")
    page.get_by_label("Images").fill("3")
    page.get_by_role("button", name="Queue request").click()

    error = page.locator(".field--error", has=page.get_by_label("Width"))
    expect(error).to_contain_text("width 1001 is not a multiple of 8.")
    expect(page.get_by_label("Width")).to_have_value("1001")
    expect(page.get_by_role("textbox", name="Prompt", exact=True)).to_have_value(prompt)
    expect(page.get_by_label("Images")).to_have_value("3")
    expect(page.get_by_label("Seed", exact=True)).to_be_disabled()  # random policy: drawn for us
    screenshots(page, output_dir, "composer-error")
    assert not GenerationRequest.objects.exists()

    page.get_by_label("LoRA", exact=True).select_option("product-render")
    page.get_by_label("Model").select_option("sdxl")
    expect(page.get_by_label("Steps")).to_have_value("25")  # the SDXL default
    # The FLUX-only LoRA stays chosen (never silently dropped) and is flagged.
    expect(page.get_by_label("LoRA", exact=True)).to_have_value("product-render")
    expect(page.locator("[data-lora-note]")).to_contain_text("does not work with SDXL base 1.0")
    page.get_by_label("Width").fill("1024")
    page.get_by_role("button", name="Queue request").click()
    lora_error = page.locator(".field--error", has=page.get_by_label("LoRA", exact=True))
    expect(lora_error).to_contain_text("works with FLUX models only")
    assert not GenerationRequest.objects.exists()

    page.get_by_label("LoRA", exact=True).select_option("clay-sketch")
    expect(page.locator("[data-lora-note]")).to_be_hidden()
    # FLUX bf16 can never fit a 32 GB card: offered disabled, with the reason.
    admission = page.locator("[data-admission]")
    bf16 = page.locator('option[value="flux-dev-bf16"]')
    expect(bf16).to_be_disabled()
    expect(bf16).to_contain_text("can never fit: needs ≈")
    expect(bf16).to_contain_text("allows 30.5 GB")
    # The live check names the fields it is about, and they are highlighted.
    page.get_by_label("Width").fill("1001")
    expect(admission).to_have_attribute("data-state", "invalid")
    expect(page.locator('[data-field="width"]')).to_have_class(re.compile("field--flagged"))
    page.get_by_label("Width").fill("1024")
    screenshots(page, output_dir, "composer-check")
    page.get_by_label("Model").select_option("sdxl")
    page.get_by_label("LoRA", exact=True).select_option("clay-sketch")
    expect(admission).to_have_attribute("data-state", "fits")
    expect(admission).to_contain_text("Fits on sim-32gb")
    page.get_by_role("button", name="Queue request").click()

    expect(page.locator(".message--success")).to_contain_text(
        "Request queued: 3 images with SDXL base 1.0"
    )
    job = page.locator("#queue-panel .qjob").first
    # Admission answered at once: the request fits the profile and waits for the GPU.
    expect(job.locator(".badge")).to_have_text("Admitted")
    expect(job).to_contain_text(prompt)
    expect(job).to_contain_text("SDXL base 1.0 · 1024×1024 · 3 images · 25 steps")
    expect(page.locator("#job-list")).not_to_contain_text(prompt)  # listed once, above
    screenshots(page, output_dir, "project")

    request = GenerationRequest.objects.get()
    first, *_ = images_stored(request)
    Image.objects.filter(pk=first.pk).update(review_status=ReviewStatus.REVIEWED)
    review_make(first, simulated=True)

    tabs.get_by_role("link", name="Gallery").click()
    tiles = page.locator(".tile")
    expect(tiles).to_have_count(3)
    for tile in tiles.all():
        # Every thumbnail really loaded from S3 through its presigned URL.
        expect(tile.locator("img")).to_have_js_property("complete", True)
        assert tile.locator("img").evaluate("img => img.naturalWidth") > 0
    tile = page.locator(f'[data-image="{first.pk}"]')
    tile.get_by_role("button", name="Approve").click()
    expect(tile.get_by_role("button", name="Approve")).to_have_attribute("aria-pressed", "true")
    expect(tile).to_have_class(re.compile(r"tile--approve"))
    screenshots(page, output_dir, "gallery")
    assert HumanDecision.objects.get().verdict == "approve"

    tile.locator("a.tile__link").click()  # the lightbox; its "Image page" link goes on
    page.locator("#lightbox").get_by_role("link", name="Image page").click()
    expect(page.get_by_role("heading", name="Critic review")).to_be_visible()
    expect(page.locator(".history li")).to_have_count(1)
    screenshots(page, output_dir, "image")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Projects").click()
    card = page.locator(".project-card")
    expect(card).to_contain_text("Desk lamps")
    expect(card).to_contain_text("3 images")
    expect(card).to_contain_text("1 active job")
    screenshots(page, output_dir, "projects")
