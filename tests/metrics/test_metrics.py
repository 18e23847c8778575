"""/metrics: refused without the bearer token; with it, figures that match the database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from artcritic.events import redis_client
from artcritic.gpu.models import Gpu, RuntimeStatus
from artcritic.gpu.readings import reading_store
from artcritic.gpu.runtime_state import runtime_state_set
from artcritic.jobs.models import JobPhase, JobStatus, Phase
from artcritic.live import socket_stats
from artcritic.live.stats import LiveCounters, process_key, resyncs_key
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import image_make, job_make, review_make

pytestmark = pytest.mark.django_db

TOKEN = "a-metrics-token-0123456789"
GB = 1_000_000_000


@pytest.fixture(autouse=True)
def token(settings: Any) -> None:
    settings.ARTCRITIC_METRICS_TOKEN = TOKEN
    profile_load("sim-32gb")


def scrape(token: str | None = TOKEN) -> Any:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return Client().get("/metrics", **headers)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


# --- refused without the token ------------------------------------------------------------


def test_a_scrape_without_the_token_is_refused() -> None:
    response = scrape(None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"artcritic_" not in response.content


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong-token-0123456789", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer", ""],
)
def test_a_scrape_with_a_wrong_token_is_refused(authorization: str) -> None:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=authorization)
    assert response.status_code == 401
    assert b"artcritic_" not in response.content


def test_with_no_token_configured_metrics_are_off_and_say_how_to_turn_them_on(
    settings: Any,
) -> None:
    settings.ARTCRITIC_METRICS_TOKEN = ""
    response = scrape("")
    assert response.status_code == 403
    assert b"ARTCRITIC_METRICS_TOKEN" in response.content
    assert b"Next:" in response.content


def test_only_reads_are_allowed() -> None:
    assert Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


def test_a_session_is_not_a_credential() -> None:
    client = Client()
    client.force_login(user_make("staffer", is_staff=True, is_superuser=True))
    assert client.get("/metrics").status_code == 401


# --- what it says ---------------------------------------------------------------------------


def test_the_figures_match_the_database() -> None:
    gpu = Gpu.objects.get(name="sim0")
    reading_store(
        "sim0",
        {
            "ok": True, "device": "Simulated GPU sim0", "simulated": True,
            "total_bytes": 32 * GB, "used_bytes": 20 * GB, "free_bytes": 12 * GB,
            "utilization_pct": None, "power_watts": 350.0, "energy_joules": 123_456.0,
            "processes": [],
        },
        publish=False,
    )  # fmt: skip
    runtime_state_set(gpu, "comfyui", RuntimeStatus.BUSY, detail="job")
    runtime_state_set(gpu, "critic", RuntimeStatus.SLEEPING, detail="sleep 1")
    project = project_make(owner=user_make())
    now = timezone.now()
    done = job_make(
        request_make(prompt_make(project), count=2),
        status=JobStatus.DONE,
        finished_at=now,
        admitted_at=now - timedelta(seconds=100),
        predicted_finish_at=now - timedelta(seconds=10),
        gpu_seconds=40.0,
        swap_seconds=5.0,
        cost=0.02,
        cost_kwh=0.01,
        cost_currency="EUR",
        energy_joules=30_000.0,
        output_count=2,
    )
    for index in range(2):
        image = image_make(done.request, index, job=done)  # type: ignore[arg-type]
        review_job = job_make(image=image, status=JobStatus.DONE, finished_at=now, gpu_seconds=3.0)
        review_make(
            image, job=review_job, verdict="approve" if index else "reject",
            completion_tokens=200, latency_ms=4000,
        )  # fmt: skip
    job_make(request_make(prompt_make(project)), status=JobStatus.ADMITTED)
    job_make(request_make(prompt_make(project)), status=JobStatus.RUNNING)
    job_make(
        request_make(prompt_make(project)), status=JobStatus.FAILED, error_reason="OOM",
        next_action="smaller", error_code="runtime_out_of_memory",
    )  # fmt: skip
    start = now - timedelta(seconds=45)
    for phase, runtime, at in (
        (Phase.WAITING_FOR_GPU, "", 0.0),
        (Phase.RELEASING, "critic", 0.5),
        (Phase.LOADING, "comfyui", 2.5),
        (Phase.GENERATING, "comfyui", 5.0),
    ):
        JobPhase.objects.create(
            job=done, status=JobStatus.RUNNING, phase=phase, runtime=runtime,
            started_at=start + timedelta(seconds=at),
        )  # fmt: skip
    JobPhase.objects.create(
        job=done, status=JobStatus.DONE, started_at=start + timedelta(seconds=45)
    )

    response = scrape()
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    found = samples(response.content.decode())

    assert value(found, "artcritic_gpu_memory_used_bytes", gpu="sim0") == 20 * GB
    assert value(found, "artcritic_gpu_memory_total_bytes", gpu="sim0") == 32 * GB
    # sim-32gb: 32 GB − 1.5 GB reserve = 30.5 GB usable, 20 GB in use.
    assert value(found, "artcritic_gpu_memory_headroom_bytes", gpu="sim0") == 10.5 * GB
    assert value(found, "artcritic_gpu_power_watts", gpu="sim0") == 350.0
    assert value(found, "artcritic_gpu_energy_joules_total", gpu="sim0") == 123_456.0
    assert ("artcritic_gpu_utilization_ratio", (("gpu", "sim0"),)) not in found  # not reported
    assert value(found, "artcritic_runtime_state", gpu="sim0", runtime="comfyui", state="busy") == 1
    assert (
        value(found, "artcritic_runtime_state", gpu="sim0", runtime="comfyui", state="ready") == 0
    )
    assert (
        value(found, "artcritic_runtime_state", gpu="sim0", runtime="critic", state="sleeping") == 1
    )
    assert (
        value(found, "artcritic_queue_depth", gpu="sim0", runtime="comfyui", status="admitted") == 1
    )
    assert (
        value(found, "artcritic_queue_depth", gpu="sim0", runtime="comfyui", status="running") == 1
    )
    assert value(found, "artcritic_queue_depth", gpu="sim0", runtime="critic", status="queued") == 0
    # The phases: releasing 2 s, loading 2.5 s, generating 40 s (waiting_for_gpu 0.5 s).
    assert value(found, "artcritic_phase_duration_seconds_count", gpu="sim0", runtime="comfyui",
                 phase="generating") == 1  # fmt: skip
    assert value(found, "artcritic_phase_duration_seconds_sum", gpu="sim0", runtime="comfyui",
                 phase="generating") == pytest.approx(40.0)  # fmt: skip
    assert value(found, "artcritic_phase_duration_seconds_bucket", gpu="sim0", runtime="critic",
                 phase="releasing", le="2.5") == 1  # fmt: skip
    assert value(found, "artcritic_phase_duration_seconds_bucket", gpu="sim0", runtime="critic",
                 phase="releasing", le="1.0") == 0  # fmt: skip
    assert value(found, "artcritic_swaps_total", gpu="sim0", runtime="critic") == 1
    assert value(found, "artcritic_swap_seconds_total", gpu="sim0") == 5.0
    assert value(found, "artcritic_gpu_busy_seconds_total", gpu="sim0") == 45.0 + 6.0
    assert value(found, "artcritic_cost_total", gpu="sim0", currency="EUR") == pytest.approx(0.02)
    assert value(found, "artcritic_images_total", gpu="sim0") == 2
    assert value(found, "artcritic_reviews_total", gpu="sim0", verdict="approve") == 1
    assert value(found, "artcritic_reviews_total", gpu="sim0", verdict="reject") == 1
    assert value(found, "artcritic_job_failures_total", gpu="sim0", kind="generate",
                 status="failed", reason="runtime_out_of_memory") == 1  # fmt: skip
    assert value(found, "artcritic_jobs_finished_total", gpu="sim0", kind="review",
                 status="done") == 2  # fmt: skip
    # 400 completion tokens over 8 s of reviews.
    assert value(found, "artcritic_critic_tokens_per_second", gpu="sim0") == 50.0
    # One prediction, 10 s late over 100 s.
    assert value(found, "artcritic_eta_error_seconds", gpu="sim0", quantile="0.5") == 10.0
    assert value(found, "artcritic_eta_error_ratio", gpu="sim0", quantile="0.9") == pytest.approx(
        0.1
    )


def test_live_event_latency_is_this_processs_and_sockets_the_instances() -> None:
    before = socket_stats.stats()
    socket_stats.event_delivered((timezone.now() - timedelta(milliseconds=30)).isoformat())
    socket_stats.event_delivered("not a time")  # not timed, not an error
    # A web process of this instance with three sockets, as live.stats writes it.
    counters = LiveCounters(sockets=3, frames=40, dropped=2, resyncs=1, resyncs_unsent=1)
    counters.write()
    try:
        found = samples(scrape().content.decode())
        assert value(found, "artcritic_live_connected_sockets") == 3
        assert value(found, "artcritic_live_frames_total") == 40
        assert value(found, "artcritic_live_frames_dropped_total") == 2
        assert value(found, "artcritic_live_resyncs_total") == 1
        assert value(found, "artcritic_live_event_latency_seconds_count") == before.count + 1
        assert (
            value(found, "artcritic_live_event_latency_seconds_bucket", le="0.025")
            == (before.buckets[2][1])
        )
        assert value(found, "artcritic_live_event_latency_seconds_bucket", le="0.05") == (
            before.buckets[3][1] + 1
        )
    finally:
        redis_client().delete(process_key(), resyncs_key())
