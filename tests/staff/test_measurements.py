"""Staff's measurements page: ETA accuracy per GPU and the break-even chart, by hand."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from artcritic.gpu.costs import break_even
from artcritic.gpu.models import HardwareProfile
from artcritic.gpu.profiles import Economics
from artcritic.jobs.models import JobStatus
from artcritic.staff.charts import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, break_even_chart
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import job_make

pytestmark = pytest.mark.django_db

# Card 2628 over 26 280 h = 0.1 per hour; host 100 W at a flat 0.25 per kWh = 0.025 per hour.
CLEAN = {
    "currency": "EUR",
    "price_per_kwh": 0.25,
    "timezone": "UTC",
    "card_price": 2628.0,
    "amortisation_hours": 26280.0,
    "host_idle_watts": 100.0,
    "time_of_use": [],
}
URL = reverse("staff:measurements")


@pytest.fixture(autouse=True)
def clean_economics() -> None:
    row = profile_load("sim-32gb")
    row.data = {**row.data, "economics": CLEAN}
    row.save()


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(user_make("stella", is_staff=True))
    return client


def generations(total_images: int = 5) -> None:
    """Two done generations: 5 images, electricity 0.005, busy 180 s → 0.001 and 36 s each."""
    project = project_make(owner=user_make())
    now = timezone.now()
    for images, electricity, own, swap in ((2, 0.002, 60.0, 12.0), (3, 0.003, 100.0, 8.0)):
        job_make(
            request_make(prompt_make(project), count=images),
            status=JobStatus.DONE,
            finished_at=now - timedelta(hours=1),
            output_count=images,
            cost=electricity * 2,
            cost_electricity=electricity,
            cost_currency="EUR",
            gpu_seconds=own,
            swap_seconds=swap,
            energy_joules=1000.0,
        )
    assert total_images == 5


def test_only_staff_see_the_page(staff: Client) -> None:
    designer = Client()
    designer.force_login(user_make("dora"))
    assert designer.get(URL).status_code == 404
    assert Client().get(URL).status_code == 302  # to sign in
    assert staff.get(URL).status_code == 200
    assert staff.post(URL).status_code == 405


def test_the_break_even_view_finds_the_crossover_duty_cycle_by_hand(staff: Client) -> None:
    generations()
    html = staff.get(URL, {"gpu": "sim0", "days": "30", "cloud_price": "0.00325"}).content.decode()
    # v = 0.001, t = 36 s = 0.01 h, A = 0.1, H = 0.025:
    # d* = 0.01 × 0.125 / (0.00325 − 0.001 + 0.01 × 0.025) = 0.00125 / 0.0025 = 50 %.
    assert re.search(r"data-crossover>50 %<", html)
    assert "<svg" in html
    assert "<polyline" in html
    # Measured: 180 s busy in 30 days = 0.0069 %: local cost at that duty cycle, by hand.
    duty = 180 / (30 * 86_400)
    local = 0.001 + 0.01 * 0.1 / duty + 0.01 * 0.025 * (1 - duty) / duty
    shown = re.search(r"data-local-now>€([\d,.]+)<", html)
    assert shown is not None
    assert float(shown.group(1).replace(",", "")) == pytest.approx(local, rel=1e-3)
    assert "http://" not in html.split("<svg")[1].split("</svg>")[0].replace(
        "http://www.w3.org", ""
    )


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"gpu": "sim0", "days": "30", "cloud_price": "-1"}, "greater than or equal to 0.000001"),
        ({"gpu": "sim0", "days": "30", "cloud_price": "abc"}, "Enter a number"),
        ({"gpu": "sim0", "days": "30", "cloud_price": "1e9"}, "less than or equal to 1000"),
        ({"gpu": "nope", "days": "30", "cloud_price": "0.04"}, "Select a valid choice"),
        ({"gpu": "sim0", "days": "3", "cloud_price": "0.04"}, "Select a valid choice"),
        ({"gpu": "sim0", "days": "30", "cloud_price": "<script>x</script>"}, "Enter a number"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error_and_no_chart(
    staff: Client, params: dict[str, str], error: str
) -> None:
    generations()
    html = staff.get(URL, params).content.decode()
    assert error in html
    assert "<svg" not in html
    assert "<script>x</script>" not in html


def test_nothing_measured_yet_says_so_and_what_to_do(staff: Client) -> None:
    html = staff.get(URL, {"gpu": "sim0", "days": "7", "cloud_price": "0.04"}).content.decode()
    assert "No priced image was made on sim0 in the last 7 days" in html
    assert "Next:" in html


def test_a_profile_without_economics_cannot_break_even(staff: Client) -> None:
    row = HardwareProfile.objects.get(name="sim-32gb")
    row.data = {key: value for key, value in row.data.items() if key != "economics"}
    row.save()
    html = staff.get(URL, {"gpu": "sim0", "days": "30", "cloud_price": "0.04"}).content.decode()
    assert "has no [economics] section" in html


def test_the_chart_puts_the_curve_the_cloud_and_the_crossover_where_the_numbers_say() -> None:
    figures = break_even(
        Economics.model_validate(CLEAN),
        electricity_per_image=0.001,
        busy_seconds_per_image=36.0,
        cloud_per_image=0.00325,
    )
    chart = break_even_chart(figures, 0.25, currency="EUR")
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    # y axis up to 3 × max(cloud 0.00325, local(1) 0.002) = 0.00975.
    assert chart.y_max == pytest.approx(0.00975)
    assert chart.cloud_y == pytest.approx(TOP + plot_h * (1 - 0.00325 / 0.00975))
    assert chart.crossover_x == pytest.approx(LEFT + 0.5 * plot_w)
    # The curve ends at 100 % with local(1) = 0.002.
    last_x, last_y = (float(v) for v in chart.local_points.split()[-1].split(","))
    assert last_x == pytest.approx(LEFT + plot_w, abs=0.1)
    assert last_y == pytest.approx(TOP + plot_h * (1 - 0.002 / 0.00975), abs=0.1)
    # At 25 %: 0.001 + 0.01×0.1/0.25 + 0.01×0.025×0.75/0.25 = 0.00575, inside the chart.
    assert chart.measured_y == pytest.approx(TOP + plot_h * (1 - 0.00575 / 0.00975))
    assert not chart.measured_off_chart
    assert [t.label for t in chart.x_ticks] == ["0 %", "25 %", "50 %", "75 %", "100 %"]


def test_the_page_lists_each_gpus_eta_accuracy(staff: Client) -> None:
    project = project_make(owner=user_make())
    now = timezone.now()
    job_make(
        request_make(prompt_make(project)),
        status=JobStatus.DONE,
        admitted_at=now - timedelta(seconds=100),
        finished_at=now,
        predicted_finish_at=now - timedelta(seconds=10),
        predicted_samples=12,
    )
    html = staff.get(URL).content.decode()
    row = re.search(r'<tr data-gpu="sim0">(.*?)</tr>', html, re.S)
    assert row is not None
    cells = [
        re.sub(r"<[^>]+>", "", c).strip()
        for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row.group(1), re.S)
    ]
    assert cells[:5] == ["sim0", "1", "10 s (10 %)", "10 s (10 %)", "1 of 1"]
