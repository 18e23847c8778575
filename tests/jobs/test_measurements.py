"""What a job used and cost: NVML energy over claim → finish, peak VRAM, GPU and swap seconds."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from artcritic.gpu.profiles import Economics
from artcritic.jobs import lifecycle
from artcritic.jobs.meter import JobMeter, energy_delta
from artcritic.jobs.models import Job, JobPhase, JobStatus, Phase
from artcritic.sim.gpu import SimGpu
from artcritic.sim.nvml import SimNvmlProbe
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import image_make, job_make

GB = 1_000_000_000
FLAT = Economics.model_validate(
    {
        "currency": "EUR",
        "price_per_kwh": 0.30,
        "timezone": "UTC",
        "card_price": 2628.0,
        "amortisation_hours": 26280.0,
        "host_idle_watts": 100.0,
    }
)


@pytest.fixture
def gpu(tmp_path: Path) -> SimGpu:
    simulated = SimGpu("meter0", root=tmp_path)
    simulated.reset(32 * GB)
    return simulated


def test_energy_is_the_counters_difference_and_never_made_up() -> None:
    assert energy_delta(1000.0, 1450.5) == 450.5
    assert energy_delta(None, 1450.5) is None
    assert energy_delta(1000.0, None) is None
    assert energy_delta(1000.0, 10.0) is None  # the counter restarted: unknown, not negative


def test_a_meter_reads_the_energy_a_busy_gpu_used_and_the_peak_vram(
    gpu: SimGpu, tmp_path: Path
) -> None:
    meter = JobMeter(SimNvmlProbe("meter0", sim_dir=tmp_path), interval=0.05).start()
    gpu.allocate("runtime", "weights", 12 * GB, runtime="comfyui")
    gpu.set_busy("runtime", True)
    time.sleep(0.4)
    gpu.set_busy("runtime", False)
    gpu.release("runtime")
    usage = meter.stop()
    # Busy with 12 GB of 32: 30 + 40 × 12.3/32 + 450 ≈ 495 W for ~0.4 s, idle otherwise.
    assert usage.energy_joules is not None
    assert 150 < usage.energy_joules < 400
    assert usage.vram_peak_bytes is not None
    assert usage.vram_peak_bytes >= 12 * GB  # the weights were seen while resident


def test_a_card_without_an_energy_counter_reports_none_not_zero(
    gpu: SimGpu, tmp_path: Path
) -> None:
    gpu.energy_counter_set(False)
    meter = JobMeter(SimNvmlProbe("meter0", sim_dir=tmp_path), interval=0.05).start()
    time.sleep(0.1)
    usage = meter.stop()
    assert usage.energy_joules is None
    assert usage.vram_peak_bytes is not None  # memory is still read


@pytest.mark.django_db
def test_finishing_a_job_records_gpu_and_swap_seconds_energy_and_its_cost() -> None:
    profile_load("sim-32gb")
    project = project_make(owner=user_make())
    image = image_make(request_make(prompt_make(project)))
    now = timezone.now()
    claimed = now - timedelta(seconds=10)
    job = job_make(
        image=image,
        status=JobStatus.RUNNING,
        phase=Phase.REVIEWING,
        phase_started_at=now - timedelta(seconds=4),
        claimed_at=claimed,
    )
    for phase, runtime, ago in (
        (Phase.WAITING_FOR_GPU, "", 10),
        (Phase.RELEASING, "comfyui", 9),
        (Phase.VERIFYING_VRAM, "critic", 7),
        (Phase.STARTING, "critic", 6.5),
        (Phase.REVIEWING, "critic", 4),
    ):
        JobPhase.objects.create(
            job=job,
            status=JobStatus.RUNNING,
            phase=phase,
            runtime=runtime,
            started_at=now - timedelta(seconds=ago),
        )
    done = lifecycle.job_done(
        job.pk,
        measured=lifecycle.Measured(energy_joules=3600.0, vram_peak_bytes=17 * GB, economics=FLAT),
    )
    # Swap: releasing → reviewing = 5 s; its own work: the other ~5 s of the ~10 s since claim.
    assert done.swap_seconds == pytest.approx(5.0, abs=0.01)
    assert done.gpu_seconds == pytest.approx(5.0, abs=0.5)
    assert done.energy_joules == 3600.0
    assert done.vram_peak_bytes == 17 * GB
    # Electricity: (3600 J + 100 W × ~10 s) / 3.6e6 × 0.30; card: ~10 s × 0.1 per hour.
    wall = done.gpu_seconds + done.swap_seconds
    expected = (3600 + 100 * wall) / 3.6e6 * 0.30 + wall / 3600 * 0.1
    assert done.cost == pytest.approx(expected, rel=1e-6)
    assert done.cost_currency == "EUR"
    assert Job.objects.get(pk=job.pk).cost == pytest.approx(expected, rel=1e-6)


@pytest.mark.django_db
def test_a_failure_keeps_its_kind_for_counting_by_reason() -> None:
    profile_load("sim-32gb")
    project = project_make(owner=user_make())
    job = job_make(request_make(prompt_make(project)), status=JobStatus.RUNNING)
    failed = lifecycle.job_fail(
        job.pk,
        reason="ComfyUI ran out of memory.",
        next_action="Re-run smaller.",
        code="runtime_out_of_memory",
    )
    assert failed.error_code == "runtime_out_of_memory"
    assert failed.gpu_seconds is None  # nothing measured: the job never had a meter
