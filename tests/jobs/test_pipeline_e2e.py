"""End to end on the simulated GPU: a real Celery GPU worker, real PostgreSQL, Redis and S3,
simulated ComfyUI and Critic started by the worker's process driver over real sockets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from artcritic.gpu.models import Gpu
from artcritic.gpu.profiles import Profile
from artcritic.jobs.models import Job, JobKind, JobPhase, JobStatus
from artcritic.jobs.services import job_cancel, request_submit
from artcritic.runtimes.drivers.factory import driver_for
from artcritic.sim.gpu import SimGpu
from artcritic.studio import storage
from artcritic.studio.models import CriticReview, Image, SeedPolicy
from artcritic.studio.services import RequestDraft
from tests.factories import project_make, user_make
from tests.workerproc import (
    WorkerProcess,
    gpu_install,
    sim_profile,
    start_gpu_worker,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# A gigabyte: what a sleeping vLLM keeps (CUDA context) is not "resident".
RESIDENT_BYTES = 2**30


@dataclass
class Stack:
    gpu: Gpu
    profile: Profile
    sim_dir: Path
    worker: WorkerProcess

    def restart_worker(self, *, time_scale: float) -> None:
        self.worker = start_gpu_worker(self.gpu.name, self.sim_dir, time_scale=time_scale)

    def log(self) -> str:
        return self.worker.log()


def _stack(tmp_path: Path, settings_fixture: object, *, time_scale: float) -> Iterator[Stack]:
    name = f"e2e{uuid.uuid4().hex[:6]}"
    profile = sim_profile()
    gpu = gpu_install(name, profile)
    settings_fixture.ARTCRITIC_GPU = name  # type: ignore[attr-defined]
    sim_dir = tmp_path / "sim"
    stack = Stack(gpu, profile, sim_dir, start_gpu_worker(name, sim_dir, time_scale=time_scale))
    try:
        yield stack
    finally:
        stack.worker.stop()
        for runtime in ("comfyui", "critic"):
            driver_for(runtime, profile, gpu=name, env={"ARTCRITIC_SIM_DIR": str(sim_dir)}).stop()


@pytest.fixture
def stack(tmp_path: Path, settings: object, s3_bucket: str) -> Iterator[Stack]:
    yield from _stack(tmp_path, settings, time_scale=0.01)


@pytest.fixture
def slow_stack(tmp_path: Path, settings: object, s3_bucket: str) -> Iterator[Stack]:
    yield from _stack(tmp_path, settings, time_scale=0.15)


def draft(**changes: object) -> RequestDraft:
    values: dict[str, object] = {
        "profile_name": "sim-32gb",
        "text": "a brushed aluminium desk lamp, studio light",
        "negative_text": "blurry",
        "model_mode": "flux-dev-fp8",
        "width": 1024,
        "height": 1024,
        "steps": 8,
        "cfg": 1.0,
        "sampler": "euler",
        "scheduler": "simple",
        "lora_name": "",
        "lora_strength": 1.0,
        "seed_policy": SeedPolicy.FIXED,
        "seed": 7,
        "count": 4,
    }
    values.update(changes)
    return RequestDraft(**values)  # type: ignore[arg-type]


def submit(**changes: object) -> Job:
    owner = user_make()
    project = project_make(
        owner=owner,
        name="Lamp concepts",
        taste_notes="Quiet, honest materials.",
        manufacturability="Sheet aluminium, max two bends.",
    )
    request = request_submit(project=project, user=owner, data=draft(**changes))
    return Job.objects.get(request=request, kind=JobKind.GENERATE)


def finished(job_id: int) -> Job | None:
    job = Job.objects.get(pk=job_id)
    return (
        job
        if job.status in (JobStatus.DONE, JobStatus.FAILED, JobStatus.BLOCKED, JobStatus.CANCELLED)
        else None
    )


def phases(job: Job) -> list[tuple[str, str, str]]:
    return list(
        JobPhase.objects.filter(job=job)
        .order_by("started_at", "id")
        .values_list("status", "phase", "runtime")
    )


def in_order(history: list[tuple[str, str, str]], expected: list[tuple[str, str]]) -> bool:
    """Whether ``expected`` (phase, runtime) pairs appear in this order in the history."""
    remaining = iter((phase, runtime) for _status, phase, runtime in history)
    return all(any(item == want for item in remaining) for want in expected)


def test_four_images_are_generated_stored_and_reviewed_with_one_runtime_at_a_time(
    stack: Stack,
) -> None:
    job = submit(count=4)
    assert job.status == JobStatus.ADMITTED

    done = wait_until(lambda: finished(job.pk), 90, what="the generate job", log=stack.log)
    assert done.status == JobStatus.DONE, (done.error_reason, stack.log()[-4000:])
    images = list(Image.objects.filter(request=job.request).order_by("index"))
    assert [image.index for image in images] == [0, 1, 2, 3]
    for image in images:
        data = storage.image_read(image.object_key)
        assert data.startswith(b"\x89PNG")
        assert len(data) == image.byte_size
        assert (image.width, image.height, image.simulated) == (1024, 1024, True)

    reviews = wait_until(
        lambda: (
            Job.objects.filter(
                kind=JobKind.REVIEW, project=job.project, status=JobStatus.DONE
            ).count()
            == 4
            or None
        ),
        90,
        what="four reviews",
        log=stack.log,
    )
    assert reviews
    assert CriticReview.objects.filter(image__in=images).count() == 4
    assert set(
        Image.objects.filter(request=job.request).values_list("review_status", flat=True)
    ) == {"reviewed"}

    generate_history = phases(done)
    assert in_order(
        generate_history,
        [
            ("starting", "comfyui"),
            ("loading", "comfyui"),
            ("warming", "comfyui"),
            ("generating", "comfyui"),
            ("uploading", "comfyui"),
        ],
    ), generate_history
    # Reviews run together up to max-num-seqs: exactly one of them readies the Critic (the
    # one the scheduler picked first, whatever its id); the others wait for it, then review.
    histories = [
        phases(review)
        for review in Job.objects.filter(kind=JobKind.REVIEW, project=job.project).order_by("id")
    ]
    readied = [h for h in histories if ("releasing", "comfyui") in [(p, r) for _s, p, r in h]]
    assert len(readied) == 1, histories
    review_history = readied[0]
    assert in_order(
        review_history,
        [
            ("releasing", "comfyui"),
            ("verifying_vram", "critic"),
            ("starting", "critic"),
            ("loading", "critic"),
            ("warming", "critic"),
            ("reviewing", "critic"),
        ],
    ), review_history

    for event in SimGpu(stack.gpu.name, root=stack.sim_dir).events():
        resident = [rt for rt, used in event.get("by_runtime", {}).items() if used > RESIDENT_BYTES]
        assert len(resident) <= 1, f"both runtimes resident: {event}"


def test_an_over_budget_request_is_blocked_with_the_arithmetic_and_never_reaches_the_worker(
    stack: Stack,
) -> None:
    job = submit(model_mode="flux-dev-bf16", count=4)

    assert job.status == JobStatus.BLOCKED
    assert "needs ≈ 36.2 GB" in job.error_reason
    assert "30.5 GB" in job.error_reason
    assert "will not change" in job.next_action
    assert [(status, phase) for status, phase, _ in phases(job)] == [
        ("queued", ""),
        ("blocked", ""),
    ]
    assert job.lease_owner == ""
    assert job.started_at is None
    assert not stack.gpu.runtimes.exclude(status="stopped").exists()


def test_an_out_of_memory_in_comfyui_fails_the_job_with_the_node_and_nothing_smaller_is_tried(
    stack: Stack,
) -> None:
    first = submit(count=1, steps=2)
    assert (
        wait_until(lambda: finished(first.pk), 90, what="a first job", log=stack.log).status
        == JobStatus.DONE
    )
    response = requests.post(
        f"{stack.profile.runtimes.comfyui.url}/_sim/fault",
        json={"name": "oom", "on": True},
        timeout=5,
    )
    assert response.status_code == 200

    job = submit(count=2, steps=4)
    failed = wait_until(lambda: finished(job.pk), 90, what="the OOM job", log=stack.log)

    assert failed.status == JobStatus.FAILED
    assert "out of GPU memory" in failed.error_reason
    assert "KSampler" in failed.error_reason
    assert "Nothing was retried at lower settings" in failed.next_action
    assert failed.attempt == 1
    assert Job.objects.filter(kind=JobKind.GENERATE, request=job.request).count() == 1
    assert not Image.objects.filter(request=job.request).exists()


def test_a_killed_worker_leaves_an_interrupted_job_that_a_new_worker_runs_cleanly(
    slow_stack: Stack,
) -> None:
    job = submit(
        count=2,
        steps=40,
        seed_policy=SeedPolicy.INCREMENT,
        model_mode="sdxl",
        width=1024,
        height=1024,
    )
    wait_until(
        lambda: Job.objects.filter(pk=job.pk, phase="generating").exists(),
        120,
        what="generation to start",
        log=slow_stack.log,
    )

    slow_stack.worker.kill()
    slow_stack.restart_worker(time_scale=0.15)
    done = wait_until(lambda: finished(job.pk), 180, what="the re-run", log=slow_stack.log)

    assert done.status == JobStatus.DONE, done.error_reason
    assert done.attempt == 2
    statuses = [status for status, _phase, _runtime in phases(done)]
    assert "interrupted" in statuses
    interrupted = JobPhase.objects.get(job=done, status="interrupted")
    assert "put back in the queue (attempt 2 of 2)" in interrupted.detail
    assert Image.objects.filter(request=job.request).count() == 2


def test_cancelling_a_running_generation_interrupts_comfyui_and_stores_nothing_more(
    slow_stack: Stack,
) -> None:
    job = submit(count=1, steps=60, model_mode="sdxl")
    wait_until(
        lambda: Job.objects.filter(pk=job.pk, phase="generating").exists(),
        120,
        what="generation to start",
        log=slow_stack.log,
    )

    job_cancel(Job.objects.get(pk=job.pk), user=job.submitted_by)
    ended = wait_until(lambda: finished(job.pk), 60, what="the cancellation", log=slow_stack.log)

    assert ended.status == JobStatus.CANCELLED
    assert not Image.objects.filter(request=job.request).exists()
    assert "interrupted" in phases_detail(ended)[-1]


def test_cancelling_a_waiting_job_takes_effect_at_once_and_the_worker_skips_it(
    stack: Stack,
) -> None:
    # A job ahead keeps the GPU busy (a cold start and 60 steps), so the next one waits:
    # an idle worker would claim it before the cancel arrives, and then it is not waiting.
    ahead = submit(count=1, steps=60)
    wait_until(
        lambda: Job.objects.filter(pk=ahead.pk, status=JobStatus.RUNNING).exists(),
        30,
        what="the job ahead to start",
        log=stack.log,
    )
    owner_job = submit(count=1, steps=2)
    job_cancel(owner_job, user=owner_job.submitted_by)

    assert Job.objects.get(pk=owner_job.pk).status == JobStatus.CANCELLED
    follow_up = submit(count=1, steps=2)
    assert (
        wait_until(lambda: finished(follow_up.pk), 90, what="the next job", log=stack.log).status
        == JobStatus.DONE
    )
    assert Job.objects.get(pk=owner_job.pk).status == JobStatus.CANCELLED
    assert not Image.objects.filter(request=owner_job.request).exists()


def phases_detail(job: Job) -> list[str]:
    return list(
        JobPhase.objects.filter(job=job)
        .order_by("started_at", "id")
        .values_list("detail", flat=True)
    )
