"""The staff what-if page in Chromium, at desktop and phone widths."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshots, server_user_make, session_cookie
from tests.factories import profile_load, project_make, user_make
from tests.jobs.test_whatif import hand_history

pytestmark = pytest.mark.browser


def test_staff_replay_the_history_on_two_dedicated_gpus(page: Page, output_dir: Path) -> None:
    profile_load("sim-32gb")
    profile_load("rtx-pro-6000-96gb", gpu="spare")
    staff = server_user_make("stella")
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    project = project_make(owner=user_make("maker"), name="Chairs")
    for hours in (5, 3, 1):
        hand_history(project, timezone.now() - timedelta(hours=hours))
    page.goto("/login/")
    session_cookie(page.context, page.url.split("/login/")[0], staff)
    page.goto("/staff/measurements/")
    page.get_by_role("link", name="What if…").click()
    expect(page.get_by_role("heading", name="What if", exact=True)).to_be_visible()

    # A bad scenario is refused on its field, nothing replayed.
    page.get_by_label("GPUs").fill("1")
    page.get_by_label("Roles").select_option("dedicated")
    page.get_by_role("button", name="Replay").click()
    expect(page.locator('[data-field="gpus"] .field__errors')).to_contain_text(
        "Dedicated roles need at least 2 GPUs"
    )
    expect(page.locator("[data-whatif]")).to_have_count(0)

    page.get_by_label("GPUs").fill("2")
    page.get_by_role("button", name="Replay").click()
    table = page.locator("[data-whatif]")
    expect(table).to_be_visible()
    expect(table.locator('[data-figure="runtime swaps"] td').nth(0)).to_have_text("3")
    expect(table.locator('[data-figure="runtime swaps"] td').nth(1)).to_have_text("0")
    expect(page.get_by_text("Jobs per GPU in the replay")).to_contain_text("gpu0 3, gpu1 3")
    screenshots(page, output_dir, "whatif-dedicated")

    # The roomy card: both runtimes resident on one GPU, no swap either.
    page.get_by_label("Hardware profile").select_option("rtx-pro-6000-96gb")
    page.get_by_label("GPUs").fill("1")
    page.get_by_label("Roles").select_option("shared")
    page.get_by_role("button", name="Replay").click()
    expect(table.locator('[data-figure="runtime swaps"] td').nth(1)).to_have_text("0")
    expect(table).to_contain_text("rtx-pro-6000-96gb")
    screenshots(page, output_dir, "whatif-rtx-pro-6000")
