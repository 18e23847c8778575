"""The Costs panel, cost lines on jobs and images, and the GPU page's measurements, by hand."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from artcritic.gpu.models import HardwareProfile
from artcritic.jobs.models import Job, JobStatus
from artcritic.jobs.waits import Interval, convoys
from artcritic.studio.models import Image, Project
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import decision_make, image_make, job_make, review_make

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def profile() -> None:
    profile_load("sim-32gb")


@pytest.fixture
def olive() -> AbstractUser:
    return user_make("olive")


@pytest.fixture
def chairs(olive: AbstractUser) -> Project:
    return project_make(owner=olive, name="Chairs")


def signed_in(user: AbstractUser) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text(html: str, key: str) -> str:
    """The text of the element marked data-cost="key", tags stripped."""
    found = re.search(rf'data-cost="{key}">(.*?)</dd>', html, re.S)
    assert found, f"no data-cost={key!r} in the page"
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


def priced_generation(project: Project, images: int, cost: float, **fields: Any) -> Job:
    """A done generation of ``images`` images that cost ``cost``, finished just now."""
    request = request_make(prompt_make(project), count=images)
    now = timezone.now()
    values: dict[str, Any] = {
        "status": JobStatus.DONE,
        "finished_at": now,
        "claimed_at": now - timedelta(seconds=60),
        "admitted_at": now - timedelta(seconds=90),
        "started_at": now - timedelta(seconds=60),
        "output_count": images,
        "gpu_seconds": 50.0,
        "swap_seconds": 10.0,
        "energy_joules": 18_000.0,
        "cost": cost,
        "cost_electricity": cost / 2,
        "cost_kwh": 0.0075,
        "cost_currency": "EUR",
    }
    values.update(fields)
    job = job_make(request, **values)
    for index in range(images):
        image_make(request, index, job=job)
    return job


# --- the Costs panel ------------------------------------------------------------------------


def test_the_costs_panel_shows_the_months_images_energy_cost_and_cost_per_approved_image(
    chairs: Project, olive: AbstractUser
) -> None:
    colleague = user_make("colleague")
    first = priced_generation(chairs, 3, 0.03)
    priced_generation(chairs, 1, 0.01)
    images = list(Image.objects.filter(project=chairs).order_by("pk"))
    job_make(image=images[0], status=JobStatus.DONE, finished_at=timezone.now(), cost=0.002,
             cost_kwh=0.001, cost_currency="EUR", gpu_seconds=4.0, energy_joules=900.0)  # fmt: skip
    decision_make(images[0], olive)  # approved
    decision_make(images[1], olive)  # approved by one, rejected by another: not approved
    decision_make(images[1], colleague, verdict="reject")
    assert first.output_count == 3

    html = signed_in(olive).get(reverse("live:project_costs", args=[chairs.pk])).content.decode()

    # Jobs: 0.03 + 0.01 + 0.002 = 0.042 over 4 images; one approved image.
    assert text(html, "images") == "4"
    assert text(html, "approved") == "1"
    assert text(html, "kwh") == "0.016 kWh"  # 0.0075 + 0.0075 + 0.001
    assert text(html, "total") == "€0.0420"
    assert text(html, "per-image") == "€0.0105"
    assert text(html, "per-approved") == "€0.0420"
    # The duty cycle: 120 s + 4 s of this month so far, on the only GPU.
    assert "busy" in html
    assert "of the month" in html
    assert "SIMULATED" not in html
    assert "Simulated GPU" in html


def test_jobs_without_a_gpu_energy_reading_make_the_cost_a_floor_and_say_so(
    chairs: Project, olive: AbstractUser
) -> None:
    priced_generation(chairs, 2, 0.01, energy_joules=None)
    html = signed_in(olive).get(reverse("live:project_costs", args=[chairs.pk])).content.decode()
    assert "not reported by this GPU for 1 job" in html
    assert "the total is a floor" in html


def test_a_profile_without_economics_says_costs_are_not_configured_and_what_to_do(
    chairs: Project, olive: AbstractUser
) -> None:
    row = HardwareProfile.objects.get(name="sim-32gb")
    row.data = {key: value for key, value in row.data.items() if key != "economics"}
    row.save()
    html = signed_in(olive).get(reverse("live:project_costs", args=[chairs.pk])).content.decode()
    assert "Costs are not configured for profile sim-32gb" in html
    assert "Next:" in html
    assert text(html, "total") == "–"


def test_nobody_outside_the_project_sees_its_costs(chairs: Project) -> None:
    stranger = signed_in(user_make("stranger"))
    assert stranger.get(reverse("live:project_costs", args=[chairs.pk])).status_code == 404
    assert Client().get(reverse("live:project_costs", args=[chairs.pk])).status_code == 302
    response = signed_in(chairs.memberships.first().user).post(  # type: ignore[union-attr]
        reverse("live:project_costs", args=[chairs.pk])
    )
    assert response.status_code == 405


def test_the_costs_fragment_runs_the_same_queries_for_few_and_many_jobs(
    chairs: Project, olive: AbstractUser, django_assert_num_queries: Any
) -> None:
    client = signed_in(olive)
    url = reverse("live:project_costs", args=[chairs.pk])
    priced_generation(chairs, 1, 0.01)
    # session, user, project access, GPUs with profiles, duty cycles, the month's jobs, images
    with django_assert_num_queries(7):
        client.get(url)
    for _ in range(6):
        priced_generation(chairs, 2, 0.01)
    with django_assert_num_queries(7):
        client.get(url)


def test_the_project_page_paints_the_costs_panel_on_first_load(
    chairs: Project, olive: AbstractUser
) -> None:
    priced_generation(chairs, 2, 0.02)
    html = signed_in(olive).get(reverse("studio:project_detail", args=[chairs.pk])).content.decode()
    assert 'id="costs-panel"' in html
    assert text(html, "per-image") == "€0.0100"


# --- a finished job, an image -----------------------------------------------------------


def history(olive: AbstractUser, project: Project) -> str:
    """The project's request history as the dashboard loads it (finished requests)."""
    return signed_in(olive).get(reverse("studio:project_jobs", args=[project.pk])).content.decode()


def test_a_finished_job_says_what_it_cost_and_used(chairs: Project, olive: AbstractUser) -> None:
    priced_generation(chairs, 2, 0.02, vram_peak_bytes=17_300_000_000)
    html = history(olive, chairs)
    line = re.search(r"data-job-measures>(.*?)</p>", html, re.S)
    assert line is not None
    words = " ".join(re.sub(r"<[^>]+>", "", line.group(1)).split())
    assert words == (
        "Cost €0.0200 (€0.0100 per image) · GPU 50 s + swap 10 s · energy 18.0 kJ · "
        "peak VRAM 17.3 GB"
    )


def test_a_requests_finished_reviews_say_their_cost_per_thousand_critic_tokens(
    chairs: Project, olive: AbstractUser
) -> None:
    generation = priced_generation(chairs, 1, 0.01)
    image = Image.objects.get(job=generation)
    review_job = job_make(
        image=image, status=JobStatus.DONE, cost=0.003, cost_currency="EUR",
        gpu_seconds=3.0, energy_joules=700.0,
    )  # fmt: skip
    review_make(image, job=review_job, prompt_tokens=1200, completion_tokens=300)
    html = history(olive, chairs)
    # Reviews are folded into their request's row: 0.003 over 1.5 thousand tokens.
    assert "Critic reviews <strong>€0.0030</strong> (€0.0020 per 1k Critic tokens)" in html


def test_a_job_on_a_card_without_energy_says_not_reported_never_zero(
    chairs: Project, olive: AbstractUser
) -> None:
    priced_generation(chairs, 1, 0.01, energy_joules=None)
    html = history(olive, chairs)
    assert "energy not reported by this GPU" in html
    assert "energy 0" not in html


def test_the_image_page_shows_its_share_its_review_and_the_review_per_thousand_tokens(
    chairs: Project, olive: AbstractUser
) -> None:
    priced_generation(chairs, 4, 0.04)
    image = Image.objects.filter(project=chairs).order_by("pk").first()
    assert image is not None
    review_job = job_make(image=image, status=JobStatus.DONE, cost=0.003, cost_currency="EUR",
                          gpu_seconds=3.0, energy_joules=700.0)  # fmt: skip
    review_make(image, job=review_job, prompt_tokens=1200, completion_tokens=300)
    html = signed_in(olive).get(reverse("studio:image_detail", args=[image.pk])).content.decode()
    # 0.04 over 4 images; the review 0.003 over 1.5 thousand tokens = 0.002 per 1k.
    assert text(html, "image").startswith("€0.0100")
    assert text(html, "review") == "€0.0030"
    assert text(html, "per-1k-tokens").startswith("€0.0020")
    assert "1500 tokens" in html


# --- the GPU page -------------------------------------------------------------------------


def test_the_gpu_page_shows_eta_accuracy_tail_latency_and_a_convoy(
    chairs: Project, olive: AbstractUser
) -> None:
    now = timezone.now()
    # A long generation ran 10 minutes; a review waited 6 of them behind it.
    long_job = priced_generation(
        chairs, 1, 0.05,
        admitted_at=now - timedelta(minutes=12), started_at=now - timedelta(minutes=11),
        claimed_at=now - timedelta(minutes=11), finished_at=now - timedelta(minutes=1),
        predicted_finish_at=now - timedelta(minutes=2),
    )  # fmt: skip
    image = Image.objects.get(job=long_job)
    job_make(
        image=image, status=JobStatus.DONE,
        admitted_at=now - timedelta(minutes=7), started_at=now - timedelta(minutes=1),
        claimed_at=now - timedelta(minutes=1), finished_at=now,
        predicted_finish_at=now - timedelta(seconds=30), predicted_samples=5,
    )  # fmt: skip
    html = signed_in(olive).get(reverse("live:gpu_detail", args=["sim0"])).content.decode()
    accuracy = re.search(r"data-eta-accuracy>(.*?)</dd>", html, re.S)
    assert accuracy is not None
    words = " ".join(re.sub(r"<[^>]+>", "", accuracy.group(1)).split())
    # Errors: 60 s of 11 min (9.1 %) and 30 s of 7 min (7.1 %): median 30 s, p90 60 s.
    assert words == (
        "median 30 s (7.1 %), p90 1 m (9.1 %) over the last 2 jobs; 1 predicted from measured runs"
    )
    assert 'data-convoys="1"' in html
    assert "waited mostly behind one long job (longest: a generation that ran 10 m)" in html
    assert "Wait to start" in html
    assert "First image" in html
    assert "To review" in html
    assert "staff" not in html.split('id="gpu-measures"')[1].split("</section>")[0]


def test_a_convoy_is_a_long_wait_mostly_behind_one_job() -> None:
    runs = [Interval(1, "generate", 0, 600), Interval(2, "review", 600, 610)]
    behind_one = Interval(3, "review", 100, 605)  # 500 of 505 s behind job 1
    short = Interval(4, "review", 590, 605)  # 15 s: too short to count
    many = Interval(5, "review", 0, 1000)
    assert [c.waiting.job_id for c in convoys([behind_one, short], runs)] == [3]
    assert convoys([many], [Interval(n, "review", n * 100, n * 100 + 100) for n in range(10)]) == []
