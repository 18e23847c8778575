"""Runtime faults through a real worker: out of memory, a bad image, a bad Critic answer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.db import transaction

from artcritic.gpu.profiles import Profile
from artcritic.jobs.kick import gpu_kick
from artcritic.jobs.models import Job, JobKind, JobStatus
from artcritic.jobs.runner import review_job_submit
from artcritic.jobs.services import request_submit
from artcritic.runtimes.drivers.factory import driver_for
from artcritic.studio.models import CriticReview, Image, ReviewStatus
from tests.factories import project_make, user_make
from tests.faults.conftest import FaultTable
from tests.faults.test_review_failures import critic_with, image_in_s3
from tests.jobs.test_pipeline_e2e import draft
from tests.workerproc import WorkerProcess, gpu_install, sim_profile, start_gpu_worker, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ENDED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.BLOCKED)


class Stack:
    def __init__(self, name: str, profile: Profile, worker: WorkerProcess) -> None:
        self.name, self.profile, self.worker = name, profile, worker

    def comfy_fault(self, name: str) -> None:
        url = self.profile.runtimes.comfyui.url
        assert requests.post(f"{url}/_sim/fault", json={"name": name}, timeout=10).ok

    def generate(self, **changes: object) -> Job:
        owner = user_make()
        request = request_submit(
            project=project_make(owner=owner),
            user=owner,
            data=draft(**{"count": 1, "steps": 4, "width": 512, "height": 512,
                          "model_mode": "sdxl", **changes}),
        )
        return Job.objects.get(request=request, kind=JobKind.GENERATE)

    def ended(self, job: Job) -> Job:
        return wait_until(
            lambda: Job.objects.filter(pk=job.pk, status__in=ENDED).first(),
            120,
            what=f"job {job.pk} to end",
            log=self.worker.log,
        )


@pytest.fixture
def stack_with(tmp_path: Path, settings: object, s3_bucket: str) -> Iterator[object]:
    made: list[tuple[Stack, Path]] = []

    def make(profile: Profile) -> Stack:
        name = f"rt{uuid.uuid4().hex[:6]}"
        gpu_install(name, profile)
        settings.ARTCRITIC_GPU = name  # type: ignore[attr-defined]
        sim_dir = tmp_path / name
        stack = Stack(name, profile, start_gpu_worker(name, sim_dir, time_scale=0.01))
        made.append((stack, sim_dir))
        return stack

    yield make
    for stack, sim_dir in made:
        stack.worker.stop()
        for runtime in ("comfyui", "critic"):
            env = {"ARTCRITIC_SIM_DIR": str(sim_dir)}
            driver_for(runtime, stack.profile, gpu=stack.name, env=env).stop()


def test_comfyui_out_of_memory_and_a_bad_image_fail_visibly_and_the_next_job_runs(
    stack_with: object, fault_table: FaultTable
) -> None:
    stack: Stack = stack_with(sim_profile())  # type: ignore[operator]
    warm = stack.ended(stack.generate(seed=1))  # starts the simulated ComfyUI
    assert warm.status == JobStatus.DONE

    stack.comfy_fault("oom")  # one shot: the next sampling runs out of memory
    oom = stack.ended(stack.generate(seed=2))
    assert oom.status == JobStatus.FAILED
    assert "out of GPU memory" in oom.error_reason
    assert "Nothing was retried at lower settings" in oom.next_action
    assert oom.attempt == 1
    fault_table.record(
        "ComfyUI out of memory", submitted=1, done=0, failed=1, lost=0, duplicated=0, stuck=0
    )

    stack.comfy_fault("garbage_output")  # SaveImage writes bytes that are not a PNG
    bad = stack.ended(stack.generate(seed=3))
    assert bad.status == JobStatus.FAILED
    assert "PNG" in bad.error_reason
    assert "Internal error" not in bad.error_reason
    assert not Image.objects.filter(job=bad).exists()
    fault_table.record(
        "ComfyUI writes a non-PNG image", submitted=1, done=0, failed=1, lost=0,
        duplicated=0, stuck=0,
    )


def test_an_answer_that_is_not_the_verdict_schema_fails_the_review_visibly(
    stack_with: object, fault_table: FaultTable
) -> None:
    stack: Stack = stack_with(critic_with("--fault", "invalid_json_schema"))  # type: ignore[operator]
    image = image_in_s3(stack.name)
    with transaction.atomic():
        job = review_job_submit(image, submitted_by=None)
        gpu_kick(stack.name)
    ended = stack.ended(job)
    image.refresh_from_db()
    assert ended.status == JobStatus.FAILED
    assert "Critic" in ended.error_reason
    assert not CriticReview.objects.filter(image=image).exists()  # never a default score
    assert image.review_status == ReviewStatus.FAILED
    fault_table.record(
        "Critic answer not the verdict schema", submitted=1, done=0, failed=1, lost=0,
        duplicated=0, stuck=0,
    )
