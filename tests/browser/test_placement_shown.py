"""The designer sees which GPU a request went to and why, on the dashboard, in Chromium."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from artcritic.gpu.models import Gpu
from artcritic.jobs.models import JobStatus
from artcritic.jobs.services import job_submit_generation
from tests.browser.conftest import element_shot, screenshots, server_user_make, session_cookie
from tests.factories import profile_load, project_make, prompt_make, request_make
from tests.factories_media import job_make

pytestmark = pytest.mark.browser


def test_a_request_placed_on_the_idle_gpu_says_so(
    page: Page, app_server: str, output_dir: Path
) -> None:
    profile_load(gpu="sim0")
    profile_load(gpu="sim1")
    # Both workers reported a moment ago; sim0 has two four-image batches waiting.
    Gpu.objects.update(reading_at=timezone.now() - timedelta(seconds=1))
    dana = server_user_make("dana")
    project = project_make(owner=dana, name="Lamp concepts", brief="Warm task lights.")
    prompt = prompt_make(project, dana, text="a walnut desk lamp with a linen shade")
    for _ in range(2):
        job_make(request_make(prompt, count=4), gpu="sim0", status=JobStatus.ADMITTED)
    job = job_submit_generation(request_make(prompt, count=2), user=dana)
    assert job.gpu == "sim1"

    session_cookie(page.context, app_server, dana)
    page.goto(f"/projects/{project.pk}/")
    row = page.locator(f'li.qjob[data-job="{job.pk}"]')
    expect(row).to_be_visible()
    placed = row.locator("[data-placement]")
    expect(placed).to_have_text(f"Placed on {job.placement_reason}")
    expect(placed).to_contain_text("sim1: idle, done ~")
    expect(placed).to_contain_text("sooner than on sim0")
    element_shot(row, output_dir / "placement-row-desktop.png")
    screenshots(page, output_dir, "placement-dashboard")
