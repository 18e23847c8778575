"""The Costs panel and the break-even chart in Chromium, at desktop and phone widths."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from artcritic.jobs.models import JobStatus
from artcritic.studio.models import Image, Project
from tests.browser.conftest import element_shot, server_user_make, session_cookie
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import decision_make, image_make, job_make

pytestmark = pytest.mark.browser

WIDE = {"width": 1440, "height": 900}
PHONE = {"width": 375, "height": 812}


def month_of_work(project: Project) -> None:
    """Three batches and their reviews, priced; two images approved."""
    now = timezone.now()
    owner = project.memberships.first().user  # type: ignore[union-attr]
    for images, cost, hours_ago in ((4, 0.052, 30), (3, 0.041, 20), (2, 0.027, 2)):
        request = request_make(prompt_make(project), count=images)
        finished = now - timedelta(hours=hours_ago)
        job = job_make(
            request, status=JobStatus.DONE, finished_at=finished, admitted_at=finished,
            claimed_at=finished - timedelta(seconds=70), output_count=images,
            gpu_seconds=60.0, swap_seconds=9.0, energy_joules=26_000.0, cost=cost,
            cost_electricity=cost * 0.6, cost_kwh=0.009, cost_currency="EUR",
        )  # fmt: skip
        for index in range(images):
            image = image_make(request, index, job=job)
            job_make(
                image=image, status=JobStatus.DONE, finished_at=finished, gpu_seconds=4.0,
                swap_seconds=0.0, energy_joules=1500.0, cost=0.0012, cost_electricity=0.0005,
                cost_kwh=0.0004, cost_currency="EUR",
            )  # fmt: skip
    for image in Image.objects.filter(project=project).order_by("pk")[:2]:
        decision_make(image, owner)


def shoot(page: Page, output_dir: Path, name: str, selector: str) -> None:
    """The element at 1440×900 and at 375×812; fail if the phone layout overflows."""
    for label, size in (("desktop", WIDE), ("375", PHONE)):
        page.set_viewport_size(size)  # type: ignore[arg-type]
        element_shot(page.locator(selector), output_dir / f"{name}-{label}.png")
        page.screenshot(path=output_dir / f"{name}-page-{label}.png", full_page=True)
        if label == "375":
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{name} is {width}px wide at 375 px"
    page.set_viewport_size(WIDE)  # type: ignore[arg-type]


def test_the_costs_panel_shows_the_month_and_the_cost_per_approved_image(
    page: Page, output_dir: Path
) -> None:
    profile_load("sim-32gb")
    owner = server_user_make("lena")
    project = project_make(owner=owner, name="Desk lamps")
    month_of_work(project)
    page.goto("/login/")
    session_cookie(page.context, page.url.split("/login/")[0], owner)
    page.goto(f"/projects/{project.pk}/")
    panel = page.locator("#costs-panel")
    expect(panel.get_by_role("heading", name="Costs this month")).to_be_visible()
    # 0.052 + 0.041 + 0.027 + 9 reviews × 0.0012 = 0.1308 over 9 images, 2 approved.
    expect(panel.locator('[data-cost="images"]')).to_have_text("9")
    expect(panel.locator('[data-cost="approved"]')).to_have_text("2")
    expect(panel.locator('[data-cost="total"]')).to_have_text("€0.1308")
    expect(panel.locator('[data-cost="per-image"]')).to_have_text("€0.0145")
    expect(panel.locator('[data-cost="per-approved"]')).to_have_text("€0.0654")
    expect(panel.get_by_role("meter", name="Duty cycle of sim0")).to_be_visible()
    shoot(page, output_dir, "costs-panel", "#costs-panel")


def test_staff_compare_a_cloud_price_on_the_break_even_chart(page: Page, output_dir: Path) -> None:
    profile_load("sim-32gb")
    staff = server_user_make("stella")
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    month_of_work(project_make(owner=user_make("maker"), name="Chairs"))
    page.goto("/login/")
    session_cookie(page.context, page.url.split("/login/")[0], staff)
    page.goto("/staff/measurements/")
    expect(page.get_by_role("heading", name="Measurements")).to_be_visible()
    page.get_by_label("Cloud price per image").fill("-1")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator(".field__errors")).to_contain_text("greater than or equal to")
    page.get_by_label("Cloud price per image").fill("0.04")
    page.get_by_role("button", name="Compare").click()
    chart = page.locator(".break-even__svg--wide")
    expect(chart).to_be_visible()
    expect(page.locator(".break-even__svg--narrow")).to_be_hidden()
    expect(chart.locator("polyline.local")).to_have_count(1)
    expect(chart.locator("line.cloud")).to_have_count(1)
    expect(page.locator("[data-measured-duty]")).to_contain_text("%")
    expect(page.get_by_text("They cross at a duty cycle of")).to_be_visible()
    shoot(page, output_dir, "break-even", ".break-even")
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    expect(page.locator(".break-even__svg--narrow")).to_be_visible()  # labels stay legible
    expect(chart).to_be_hidden()
