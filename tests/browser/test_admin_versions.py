"""Staff see which runtime versions a job, a review and each runtime ran on, in the admin."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from artcritic.gpu.models import Gpu, RuntimeState
from artcritic.jobs.models import Job
from tests.browser.conftest import server_user_make, sign_in
from tests.factories import profile_load, project_make, prompt_make, request_make
from tests.factories_media import image_make, job_make, review_make

pytestmark = pytest.mark.browser


def test_the_admin_shows_runtime_versions_on_jobs_reviews_and_runtime_states(
    page: Page, output_dir: Path
) -> None:
    profile_load()
    staff = server_user_make("ops")
    staff.is_staff = staff.is_superuser = True
    staff.save(update_fields=["is_staff", "is_superuser"])
    project = project_make(owner=staff, name="Desk lamps")
    request = request_make(prompt_make(project, staff), count=1)
    job = job_make(request, progress_total=1)
    Job.objects.filter(pk=job.pk).update(runtime_version="ComfyUI 0.3.64")
    review_make(image_make(request, job=job), runtime_version="vLLM 0.34.0")
    gpu = Gpu.objects.get(name="sim0")
    for runtime, version in (("comfyui", "ComfyUI 0.3.64"), ("critic", "vLLM 0.34.0")):
        RuntimeState.objects.update_or_create(
            gpu=gpu,
            runtime=runtime,
            defaults={"status": "ready", "status_since": timezone.now(), "version": version},
        )

    sign_in(page, "ops")
    page.goto(f"/admin/jobs/job/{job.pk}/change/")
    field = page.locator(".fieldBox.field-runtime_version")
    expect(field).to_contain_text("Runtime version")
    expect(field).to_contain_text("ComfyUI 0.3.64")
    page.screenshot(path=output_dir / "admin-job-runtime-version.png", full_page=True)

    page.goto("/admin/gpu/runtimestate/")
    expect(page.locator("#result_list")).to_contain_text("vLLM 0.34.0")
    expect(page.locator("#result_list")).to_contain_text("ComfyUI 0.3.64")
    page.screenshot(path=output_dir / "admin-runtime-state-versions.png", full_page=True)

    page.goto("/admin/studio/criticreview/")
    expect(page.locator("#result_list")).to_contain_text("vLLM 0.34.0")
