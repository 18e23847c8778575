"""A hung ComfyUI: the job fails with the evidence, and the next job gets a fresh ComfyUI."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from artcritic.gpu.models import RuntimeState, RuntimeStatus
from artcritic.gpu.profiles import Profile
from artcritic.jobs.models import Job, JobKind, JobPhase, JobStatus
from artcritic.jobs.services import request_submit
from artcritic.runtimes.drivers.factory import driver_for
from artcritic.studio.models import Image
from tests.factories import project_make, user_make
from tests.faults.conftest import FaultTable
from tests.jobs.test_pipeline_e2e import draft
from tests.workerproc import WorkerProcess, gpu_install, sim_profile, start_gpu_worker, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ENDED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.BLOCKED)


def quick_deadline_profile() -> Profile:
    """sim-32gb whose run deadline is seconds, not minutes: a hang shows up quickly."""
    profile = sim_profile(comfyui_load=0.1, comfyui_warm=0.1)
    data = profile.model_dump(mode="json")
    data["runtimes"]["comfyui"]["run_grace_s"] = 2
    return Profile.model_validate(data)


@pytest.fixture
def stack(
    tmp_path: Path, settings: object, s3_bucket: str
) -> Iterator[tuple[Profile, WorkerProcess]]:
    name = f"hang{uuid.uuid4().hex[:6]}"
    profile = quick_deadline_profile()
    gpu_install(name, profile)
    settings.ARTCRITIC_GPU = name  # type: ignore[attr-defined]
    sim_dir = tmp_path / "sim"
    worker = start_gpu_worker(name, sim_dir, time_scale=0.01)
    try:
        yield profile, worker
    finally:
        worker.stop()
        for runtime in ("comfyui", "critic"):
            driver_for(runtime, profile, gpu=name, env={"ARTCRITIC_SIM_DIR": str(sim_dir)}).stop()


def ended(job_id: int) -> Job | None:
    return Job.objects.filter(pk=job_id, status__in=ENDED).first()


def test_a_hung_comfyui_fails_its_job_with_evidence_and_is_recreated_for_the_next(
    stack: tuple[Profile, WorkerProcess], fault_table: FaultTable
) -> None:
    profile, worker = stack
    owner = user_make()
    project = project_make(owner=owner)

    def generate(seed: int) -> Job:
        request = request_submit(
            project=project,
            user=owner,
            data=draft(count=1, steps=4, width=512, height=512, model_mode="sdxl", seed=seed),
        )
        return Job.objects.get(request=request, kind=JobKind.GENERATE)

    first = generate(1)
    wait_until(lambda: ended(first.pk), 120, what="the warm-up job", log=worker.log)
    # ComfyUI now hangs in the middle of its next run, as a stuck CUDA kernel would.
    comfy = profile.runtimes.comfyui.url
    assert requests.post(f"{comfy}/_sim/fault", json={"name": "hang"}, timeout=10).ok

    hung = generate(2)
    failed = wait_until(lambda: ended(hung.pk), 120, what="the hung job to end", log=worker.log)
    assert failed.status == JobStatus.FAILED
    assert "ComfyUI is hung" in failed.error_reason
    assert "still runs" in failed.error_reason
    assert "restarted before the next job" in failed.next_action
    state = RuntimeState.objects.get(gpu__name=worker.gpu, runtime="comfyui")
    assert state.status == RuntimeStatus.UNHEALTHY

    after = generate(3)
    done = wait_until(lambda: ended(after.pk), 120, what="the next job", log=worker.log)
    assert done.status == JobStatus.DONE, done.error_reason
    details = list(JobPhase.objects.filter(job=done).values_list("detail", flat=True))
    assert any("recreating comfyui" in d and "unhealthy" in d for d in details), details
    assert any(d.startswith("starting comfyui") for d in details), details
    jobs = [first, hung, after]
    fault_table.record(
        "ComfyUI hangs mid-run (interrupt ignored)",
        submitted=3,
        done=Job.objects.filter(pk__in=[j.pk for j in jobs], status=JobStatus.DONE).count(),
        failed=Job.objects.filter(pk__in=[j.pk for j in jobs], status=JobStatus.FAILED).count(),
        lost=0 if Image.objects.filter(job=after).count() == 1 else 1,
        duplicated=Image.objects.filter(project=project).count()
        - Image.objects.filter(project=project).values("request").distinct().count(),
        stuck=Job.objects.filter(pk__in=[j.pk for j in jobs]).exclude(status__in=ENDED).count(),
    )
