"""The staff what-if page: staff only, every field validated, the comparison by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from artcritic.gpu.models import HardwareProfile
from tests.factories import profile_load, project_make, sign_in, user_make
from tests.jobs.test_whatif import GEN, REVIEW, hand_history

pytestmark = pytest.mark.django_db

URL = reverse("staff:whatif")
VALID = {"days": "1", "profile": "sim-32gb", "gpus": "1", "roles": "shared"}


@pytest.fixture
def staff(client: Client) -> Client:
    profile_load()
    user_make("stella", is_staff=True)
    sign_in(client, "stella")
    return client


def test_only_signed_in_staff_see_it(client: Client) -> None:
    assert client.get(URL).status_code == 302  # to the login page
    user_make("dana")
    sign_in(client, "dana")
    assert client.get(URL).status_code == 404  # like the admin: no hint to designers


def test_it_is_read_only(staff: Client) -> None:
    assert staff.post(URL, VALID).status_code == 405


def test_the_form_alone_replays_nothing(staff: Client) -> None:
    page = staff.get(URL)
    assert page.status_code == 200
    assert b"data-whatif" not in page.content
    assert b"sim-32gb" in page.content  # a profile to choose


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"days": "0"}, "greater than or equal to 1"),
        ({"days": "91"}, "less than or equal to 90"),
        ({"days": "seven"}, "Enter a whole number"),
        ({"days": "1" * 400}, "less than or equal to 90"),
        ({"gpus": "17"}, "less than or equal to 16"),
        ({"gpus": "-1"}, "greater than or equal to 1"),
        ({"profile": "<script>alert(1)</script>"}, "Select a valid choice"),
        ({"roles": "both"}, "Select a valid choice"),
        ({"roles": "dedicated", "gpus": "1"}, "Dedicated roles need at least 2 GPUs"),
    ],
)
def test_bad_input_is_refused_field_by_field(
    staff: Client, change: dict[str, str], error: str
) -> None:
    page = staff.get(URL, {**VALID, **change})
    assert page.status_code == 200
    text = page.content.decode()
    assert error in text
    assert "data-whatif" not in text
    assert "<script>alert(1)</script>" not in text


def test_the_comparison_of_a_hand_made_history(staff: Client) -> None:
    hand_history(project_make(), timezone.now() - timedelta(hours=2))
    page = staff.get(URL, VALID)
    text = page.content.decode()
    assert "data-whatif" in text
    swaps = '<th scope="row">Runtime swaps</th><td>1</td><td><strong>1</strong></td>'
    assert swaps in text
    assert '<tr data-figure="makespan"><th scope="row">Makespan</th><td>70 s</td>' in text
    assert f"<strong>{31 + GEN + 62 + REVIEW:.0f} s</strong>" in text
    # Two dedicated GPUs: no swap at all, each GPU runs one job.
    page = staff.get(URL, {**VALID, "gpus": "2", "roles": "dedicated"})
    text = page.content.decode()
    assert '<td>1</td><td><strong>0</strong></td></tr>' in text
    assert "<code>gpu0</code> 1, <code>gpu1</code> 1" in text


def test_a_history_the_scenario_cannot_run_says_why(staff: Client) -> None:
    hand_history(project_make(), timezone.now() - timedelta(hours=2))
    # A profile without SDXL, which the history used.
    row = HardwareProfile.objects.get(name="sim-32gb")
    data = {**row.data, "name": "sim-flux-only"}
    data["models"] = {k: v for k, v in data["models"].items() if k != "sdxl"}
    data["limits"] = {**data["limits"], "model_modes": ["flux-dev-fp8", "flux-dev-bf16"]}
    HardwareProfile.objects.create(name="sim-flux-only", data=data, simulated=True)
    page = staff.get(URL, {**VALID, "profile": "sim-flux-only"})
    text = page.content.decode()
    assert "data-whatif-problem" in text
    assert "used model mode &#x27;sdxl&#x27;, which profile sim-flux-only does not have" in text
    assert "data-whatif>" not in text
