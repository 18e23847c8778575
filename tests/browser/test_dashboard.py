"""A designer watches the project dashboard while the GPU works; it all changes without a reload."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import Page, expect

from artcritic.events import event_publish, group_for_project, sequences_read
from artcritic.gpu.models import Gpu, RuntimeState, RuntimeStatus
from artcritic.gpu.profiles import GB
from artcritic.gpu.readings import reading_store
from artcritic.gpu.runtime_state import runtime_state_set
from artcritic.jobs.eta import duration_words
from artcritic.jobs.lifecycle import job_phase_enter, job_progress
from artcritic.jobs.models import Job, JobStatus, Phase
from artcritic.live.panels import clock_words
from artcritic.studio.models import Project
from tests.browser.conftest import in_thread, screenshots, server_user_make, session_cookie
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import image_stored, job_make, review_make

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _server_on_this_runs_channel_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """daphne (app_server copies os.environ) must listen where this test process publishes."""
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    monkeypatch.setenv("ARTCRITIC_CHANNEL_PREFIX", prefix)


def a_reading(used_gb: float, holder: str) -> dict[str, Any]:
    """A simulated NVML reading with ``holder``'s process taking all but the baseline."""
    process = {"pid": 7000 + len(holder), "used_bytes": round((used_gb - 0.3) * GB)}
    return {
        "ok": True,
        "device": "Simulated GPU sim0",
        "simulated": True,
        "total_bytes": 32 * GB,
        "used_bytes": round(used_gb * GB),
        "free_bytes": round((32 - used_gb) * GB),
        "utilization_pct": None,
        "power_watts": 31.0 + used_gb,
        "energy_joules": 48_200.0,
        "processes": [{**process, "name": f"sim-{holder}"}],
    }


def gap_on(stream: str) -> None:
    """A message that skips sequence numbers, as after a lost event: the page must resync."""
    seq = sequences_read([stream])[stream] + 5
    event = {"type": "job.status", "project": None, "at": timezone.now().isoformat()}
    message = {"type": "live.event", "stream": stream, "seq": seq, "event": event}
    async_to_sync(get_channel_layer().group_send)(stream, message)  # type: ignore[union-attr]


def the_gpu_at_work(project: Project) -> dict[str, Any]:
    """sim0 with the Critic resident, a job of this project starting, one waiting, history."""
    now = timezone.now()
    gpu = Gpu.objects.get(name="sim0")
    for runtime, status, detail, ago in [
        ("comfyui", RuntimeStatus.SLEEPING, "models unloaded with /free", 400),
        ("critic", RuntimeStatus.READY, "healthy", 180),
    ]:
        RuntimeState.objects.create(
            gpu=gpu,
            runtime=runtime,
            status=status,
            status_since=now - timedelta(seconds=ago),
            detail=detail,
            simulated=True,
            profile_name="sim-32gb",
        )
    reading_store("sim0", a_reading(21.3, "critic"), publish=False)
    lamp = request_make(
        prompt_make(project, text="a brushed aluminium desk lamp with a linen shade"),
        count=2,
        steps=28,
    )
    running = job_make(
        lamp,
        status=JobStatus.RUNNING,
        phase=Phase.RELEASING,
        phase_runtime="critic",
        phase_started_at=now,
        started_at=now,
        progress_total=2,
        lease_owner="browser-test:0",
        lease_expires_at=now + timedelta(hours=1),
    )
    other = project_make(owner=user_make("sam"), name="Secret tables")
    job_make(
        request_make(prompt_make(other, text="a walnut side table")), status=JobStatus.ADMITTED
    )
    waiting = job_make(
        request_make(prompt_make(project, text="a pleated paper pendant lamp")),
        status=JobStatus.ADMITTED,
        phase=Phase.WAITING_FOR_GPU,
        phase_started_at=now,
        progress_total=1,
    )
    job_make(
        request_make(
            prompt_make(project, text="a cast iron floor lamp"), model_mode="flux-dev-bf16"
        ),
        status=JobStatus.FAILED,
        error_reason="ComfyUI ran out of GPU memory in KSampler (node 3) at 1024×1024 × 4. "
        "Nothing was retried at lower settings.",
        next_action="Re-run with a batch of 1, or ask an admin to raise the profile's reserve.",
        finished_at=now,
    )
    images = [image_stored(lamp, 0)]
    review_make(images[0], verdict="approve", simulated=True)
    return {"gpu": gpu, "running": running, "waiting": waiting, "lamp": lamp, "images": images}


def test_the_dashboard_follows_the_gpu_live_without_a_reload(
    page: Page, app_server: str, output_dir: Path
) -> None:
    profile_load()
    dana = server_user_make("dana")
    project = project_make(
        owner=dana, name="Lamp concepts", brief="Warm task lights for small flats."
    )
    world = the_gpu_at_work(project)
    gpu, running, waiting = world["gpu"], world["running"], world["waiting"]
    session_cookie(page.context, app_server, dana)

    page.goto(f"/projects/{project.pk}/")
    status = page.locator("[data-live-status]")
    expect(status).to_have_attribute("data-live-status", "live")
    expect(status).to_have_text(re.compile("Live"))
    page.evaluate("window.stillTheSamePage = true")

    comfy = page.locator('#gpu-panel-sim0 [data-runtime="comfyui"]')
    critic = page.locator('#gpu-panel-sim0 [data-runtime="critic"]')
    mine = page.locator(f'#queue-panel [data-job="{running.pk}"]')
    queued = page.locator(f'#queue-panel [data-job="{waiting.pk}"]')
    expect(page.locator("#gpu-panel-sim0 .sim-badge")).to_have_text("SIMULATED")
    expect(critic).to_contain_text("Ready for 3 m")
    expect(mine).to_contain_text("Releasing · Critic (vLLM)")
    expect(queued).to_contain_text("place 2 in the sim0 queue")
    expect(queued).to_contain_text(
        "Behind the running generation for Lamp concepts and 1 job of another project."
    )
    expect(page.locator("#queue-panel")).not_to_contain_text("Secret tables")
    # A failed request says why once, in the request history, not again in the queue.
    expect(page.locator(".hrow--trouble")).to_contain_text("ComfyUI ran out of GPU memory")
    expect(page.locator(".hrow--trouble")).to_contain_text("Next: Re-run with a batch of 1")
    expect(page.get_by_text("ComfyUI ran out of GPU memory")).to_have_count(1)

    # The worker releases the Critic and loads ComfyUI: the GPU panel says so as it happens.
    in_thread(
        lambda: runtime_state_set(
            gpu, "critic", RuntimeStatus.RELEASING, detail="vLLM sleep level 1"
        )
    )
    expect(critic).to_contain_text(re.compile(r"Releasing VRAM\s+—\s+\d+ s so far, usually 1 s"))
    in_thread(
        lambda: runtime_state_set(
            gpu, "critic", RuntimeStatus.SLEEPING, detail="vLLM sleep level 1"
        )
    )
    in_thread(
        lambda: runtime_state_set(gpu, "comfyui", RuntimeStatus.LOADING, detail="loading weights")
    )
    in_thread(
        lambda: job_phase_enter(
            running.pk, Phase.LOADING, runtime="comfyui", detail="loading UNETLoader (node 1)"
        )
    )
    expect(critic).to_contain_text("Sleeping for")
    expect(comfy).to_contain_text(re.compile(r"Loading weights\s+—\s+\d+ s so far, usually 20 s"))
    expect(mine).to_contain_text("Loading weights · ComfyUI (Artist)")
    expect(mine).not_to_contain_text("UNETLoader")  # the worker's words are for staff

    # NVML readings move the VRAM bar in place.
    in_thread(lambda: reading_store("sim0", a_reading(12.4, "comfyui"), publish=True))
    meter = page.locator("#gpu-panel-sim0").get_by_role("meter")
    expect(page.locator("#gpu-panel-sim0 [data-reading-used]")).to_have_text("12.4")
    expect(meter).to_have_attribute("aria-valuenow", "39")
    expect(page.locator("#gpu-panel-sim0")).not_to_contain_text("sim-comfyui")  # staff only
    in_thread(lambda: reading_store("sim0", a_reading(14.0, "comfyui"), publish=True))
    expect(page.locator("#gpu-panel-sim0 [data-reading-used]")).to_have_text("14.0")
    expect(meter).to_have_attribute("aria-valuetext", "14.0 of 32.0 GB used")

    # Sampling: step progress patches the bar and its label, from absolute numbers.
    in_thread(
        lambda: runtime_state_set(gpu, "comfyui", RuntimeStatus.BUSY, detail=f"job {running.pk}")
    )
    in_thread(
        lambda: job_phase_enter(
            running.pk, Phase.GENERATING, runtime="comfyui",
            detail="generating image 1/2, step 1/28", progress=(1, 56),
        )
    )  # fmt: skip
    bar = mine.get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-valuemax", "56")
    in_thread(lambda: job_progress(running.pk, 12, 56, detail="generating image 1/2, step 12/28"))
    expect(bar).to_have_attribute("aria-valuenow", "12")
    expect(mine.locator("[data-progress-label]")).to_have_text("generating image 1/2, step 12/28")
    elapsed = mine.locator(".qjob__phase [data-since]")
    expect(elapsed).not_to_have_text(elapsed.inner_text())  # the clock ticks in the page

    # Cancelling the waiting job: asked first, then at once, in place; the history says so.
    queued.get_by_role("button", name=re.compile("^Cancel")).click()
    page.locator("dialog.confirm").get_by_role("button", name="Cancel the generation").click()
    expect(queued).to_have_count(0)
    expect(page.locator(f'#job-list [data-job="{waiting.pk}"] .badge')).to_have_text("Cancelled")
    assert Job.objects.get(pk=waiting.pk).status == JobStatus.CANCELLED

    # A change nobody announced (a lost event) shows once the page notices the gap.
    silent = job_make(
        request_make(prompt_make(project, text="a green banker's lamp")),
        status=JobStatus.ADMITTED,
        phase=Phase.WAITING_FOR_GPU,
        phase_started_at=timezone.now(),
    )
    in_thread(lambda: gap_on(group_for_project(project.pk)))
    expect(page.locator(f'#queue-panel [data-job="{silent.pk}"]')).to_contain_text("a green banker")

    # The Artist stores image 2 and the Critic reviews it: the strip receives both.
    second = image_stored(world["lamp"], 1)
    in_thread(
        lambda: event_publish(
            "image.created",
            project=project.pk,
            gpu="sim0",
            job=running.pk,
            detail={"image": second.pk},
        )
    )
    tile = page.locator(f'#gallery-strip [data-image="{second.pk}"]')
    expect(tile).to_contain_text("awaiting review")
    expect(tile.locator("img")).to_have_js_property("complete", True)
    review_make(second, verdict="reject", simulated=True)
    in_thread(
        lambda: event_publish(
            "review.created",
            project=project.pk,
            gpu="sim0",
            detail={"image": second.pk, "verdict": "reject"},
        )
    )
    expect(tile).to_contain_text("the Critic recommends reject")

    # The page ticks its clocks with the server's words for the same numbers.
    seconds = [0, 59, 60, 100, 3599, 3600, 3725, 7200]
    in_page = page.evaluate(
        """async (seconds) => {
            const words = await import("/static/js/dashboard.js");
            return seconds.map((s) => [words.clockWords(s), words.durationWords(s)]);
        }""",
        seconds,
    )
    assert in_page == [[clock_words(s), duration_words(s)] for s in seconds]

    assert page.evaluate("window.stillTheSamePage") is True
    expect(status).to_have_attribute("data-live-status", "live")
    screenshots(page, output_dir, "dashboard")

    # The GPU's own page: the whole queue, other projects' work redacted.
    page.goto("/gpus/sim0/")
    expect(page.locator("#gpu-queue")).to_contain_text("A generation for another project")
    expect(page.locator("#gpu-queue")).to_contain_text("Lamp concepts")
    expect(page.locator("#gpu-queue")).not_to_contain_text("Secret tables")
    expect(page.locator("[data-live-status]")).to_have_attribute("data-live-status", "live")
    screenshots(page, output_dir, "gpu")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="GPUs").click()
    expect(page.locator("#gpu-panel-sim0")).to_contain_text("1 running · 2 waiting")
