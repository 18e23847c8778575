"""A broker outage at submit: the request is saved once, the page answers, the job runs later."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from artcritic.jobs.models import Job, JobStatus
from artcritic.runtimes.drivers.factory import driver_for
from artcritic.studio.models import GenerationRequest
from tests.factories import composer_data, project_make, user_make
from tests.faults.conftest import FaultTable, PrivateRedis
from tests.workerproc import WorkerProcess, gpu_install, sim_profile, start_gpu_worker, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

OUTAGE_S = 5.0


@pytest.fixture
def worker_on_private_broker(
    tmp_path: Path, settings: object, s3_bucket: str, private_redis: PrivateRedis, broker_at: str
) -> Iterator[WorkerProcess]:
    name = f"brk{uuid.uuid4().hex[:6]}"
    profile = sim_profile()
    gpu_install(name, profile)
    settings.ARTCRITIC_GPU = name  # type: ignore[attr-defined]
    sim_dir = tmp_path / "sim"
    worker = start_gpu_worker(
        name, sim_dir, env={"CELERY_BROKER_URL": broker_at}, time_scale=0.01
    )
    try:
        yield worker
    finally:
        worker.stop()
        for runtime in ("comfyui", "critic"):
            driver_for(runtime, profile, gpu=name, env={"ARTCRITIC_SIM_DIR": str(sim_dir)}).stop()


def test_a_submission_while_the_broker_is_down_is_saved_once_and_runs_when_it_returns(
    worker_on_private_broker: WorkerProcess,
    private_redis: PrivateRedis,
    fault_table: FaultTable,
) -> None:
    owner = user_make()
    project = project_make(owner=owner)
    client = Client()
    client.force_login(owner)
    private_redis.kill()

    response = client.post(
        reverse("studio:composer", args=[project.pk]), composer_data(count="1", steps="4")
    )

    # Never a 500 (users would resubmit): the page says the queue is reconnecting.
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "The GPU queue is reconnecting" in page
    assert "no need to submit it again" in page
    assert GenerationRequest.objects.filter(project=project).count() == 1
    job = Job.objects.get(project=project)
    assert job.status == JobStatus.ADMITTED

    # The outage lasts a while (the worker keeps trying to reconnect), then the broker
    # returns, empty; nobody submits anything else. The worker's sweeper finds the row.
    time.sleep(OUTAGE_S)
    private_redis.start()
    done = wait_until(
        lambda: Job.objects.filter(pk=job.pk, status=JobStatus.DONE).first(),
        90,
        what="the job to run after the broker returned",
        log=worker_on_private_broker.log,
    )
    assert done.output_count == 1
    assert "sweeper found waiting work" in worker_on_private_broker.log()
    generate_jobs = Job.objects.filter(project=project, request__isnull=False)
    fault_table.record(
        f"broker (Redis) down {OUTAGE_S:.0f} s around a submit",
        submitted=1,
        done=generate_jobs.filter(status=JobStatus.DONE).count(),
        lost=1 - generate_jobs.count(),
        duplicated=max(0, GenerationRequest.objects.filter(project=project).count() - 1),
        stuck=generate_jobs.exclude(status=JobStatus.DONE).count(),
    )
