"""The Content Security Policy holds on every page: no inline script, nothing blocked."""

from __future__ import annotations

import pytest
from playwright.sync_api import ConsoleMessage, Page

from tests.browser.conftest import server_user_make, sign_in
from tests.factories import profile_load, project_make, prompt_make, request_make
from tests.factories_media import images_stored, job_make, phase_make, review_make

pytestmark = pytest.mark.browser


def test_designer_and_staff_pages_load_under_the_policy_without_a_violation(
    page: Page, s3_bucket: str
) -> None:
    profile_load()
    designer = server_user_make("dana")
    designer.is_staff = designer.is_superuser = True
    designer.save(update_fields=["is_staff", "is_superuser"])
    project = project_make(owner=designer, name="Desk lamps")
    request = request_make(prompt_make(project, designer), count=2)
    image = images_stored(request)[0]
    review_make(image)
    job = job_make(request)
    phase_make(job)

    violations: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            violations.append(f"{page.url}: {message.text}")

    page.on("console", watch)
    page.on("pageerror", lambda error: violations.append(f"{page.url}: {error}"))
    sign_in(page, "dana")
    paths = [
        "/",
        f"/projects/{project.pk}/",
        f"/projects/{project.pk}/compose/",
        f"/projects/{project.pk}/images/",
        f"/projects/{project.pk}/review/",
        f"/images/{image.pk}/",
        "/gpus/",
        "/gpus/sim0/",
        "/account/password/",
        "/admin/",
        "/admin/jobs/job/",
        f"/admin/jobs/job/{job.pk}/change/",
        "/admin/gpu/gpu/",
    ]
    for path in paths:
        response = page.goto(path)
        assert response is not None
        assert response.status == 200, path
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy, path
        assert "unsafe-inline" not in policy.split("script-src", 1)[1].split(";", 1)[0]
        page.wait_for_load_state("networkidle")
    # Presigned thumbnails from the S3 endpoint are allowed, and were shown.
    page.goto(f"/projects/{project.pk}/images/")
    page.wait_for_load_state("networkidle")
    shown = page.evaluate(
        "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"
    )
    assert shown >= 2
    assert violations == []
