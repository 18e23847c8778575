"""A GPU worker killed mid-batch: the batch resumes, keeps what it stored, makes the rest."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from artcritic.jobs.models import Job, JobKind, JobPhase, JobStatus
from artcritic.jobs.services import request_submit
from artcritic.runtimes.drivers.factory import driver_for
from artcritic.studio.models import Image, SeedPolicy
from tests.factories import project_make, user_make
from tests.faults.conftest import FaultTable
from tests.jobs.test_pipeline_e2e import draft
from tests.workerproc import WorkerProcess, gpu_install, sim_profile, start_gpu_worker, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TIME_SCALE = 0.1


class Worker:
    """The GPU worker of one simulated GPU, which the test kills and starts again."""

    def __init__(self, name: str, sim_dir: Path) -> None:
        self.name, self.sim_dir = name, sim_dir
        self.process: WorkerProcess = start_gpu_worker(name, sim_dir, time_scale=TIME_SCALE)
        self.logs: list[str] = []

    def kill_and_restart(self) -> None:
        self.process.kill()
        self.logs.append(self.process.log())
        self.process = start_gpu_worker(self.name, self.sim_dir, time_scale=TIME_SCALE)

    def log(self) -> str:
        return "\n".join([*self.logs, self.process.log()])


@pytest.fixture
def worker(tmp_path: Path, settings: object, s3_bucket: str) -> Iterator[Worker]:
    name = f"kill{uuid.uuid4().hex[:6]}"
    profile = sim_profile()
    gpu_install(name, profile)
    settings.ARTCRITIC_GPU = name  # type: ignore[attr-defined]
    sim_dir = tmp_path / "sim"
    worker = Worker(name, sim_dir)
    try:
        yield worker
    finally:
        worker.process.stop()
        for runtime in ("comfyui", "critic"):
            driver_for(runtime, profile, gpu=name, env={"ARTCRITIC_SIM_DIR": str(sim_dir)}).stop()


def test_a_worker_killed_after_image_1_of_2_resumes_with_the_missing_image_only(
    worker: Worker, fault_table: FaultTable
) -> None:
    owner = user_make()
    project = project_make(owner=owner)
    request = request_submit(
        project=project,
        user=owner,
        data=draft(count=2, steps=40, seed_policy=SeedPolicy.INCREMENT, seed=1000,
                   model_mode="sdxl"),
    )
    job = Job.objects.get(request=request, kind=JobKind.GENERATE)
    first = wait_until(
        lambda: Image.objects.filter(request=request).first(),
        180,
        what="the first image to be stored",
        log=worker.log,
    )
    # Kill -9 while image 2 is being generated (its steps are well under way).
    wait_until(
        lambda: Job.objects.filter(pk=job.pk, progress_current__gte=45).exists(),
        120,
        what="image 2's sampling",
        log=worker.log,
    )
    worker.kill_and_restart()

    done = wait_until(
        lambda: Job.objects.filter(pk=job.pk, status=JobStatus.DONE).first(),
        240,
        what="the resumed batch",
        log=worker.log,
    )
    images = list(Image.objects.filter(request=request).order_by("index"))
    assert [(i.index, i.seed) for i in images] == [(0, 1000), (1, 1001)]
    kept = images[0]
    assert (kept.pk, kept.object_key, kept.sha256) == (first.pk, first.object_key, first.sha256)
    assert done.attempt == 2
    assert done.output_count == 2
    interrupted = JobPhase.objects.get(job=done, status=JobStatus.INTERRUPTED)
    assert "after saving 1 of 2 image(s)" in interrupted.detail
    assert "the missing ones will be made with their recorded seeds" in interrupted.detail
    assert "during generating" in interrupted.detail
    fault_table.record(
        "GPU worker kill -9 after image 1 of 2",
        submitted=2,
        done=len(images),
        lost=2 - len(images),
        duplicated=Image.objects.filter(request=request).count() - len({i.index for i in images}),
        stuck=Job.objects.filter(request=request).exclude(status=JobStatus.DONE).count(),
    )
