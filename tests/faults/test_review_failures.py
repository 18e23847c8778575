"""A review that cannot finish leaves its image "review failed" with the reason, never stuck."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import transaction

from artcritic.gpu.profiles import Profile
from artcritic.jobs.kick import gpu_kick
from artcritic.jobs.models import Job, JobKind, JobStatus
from artcritic.jobs.runner import review_job_submit
from artcritic.runtimes.drivers.factory import driver_for
from artcritic.studio.models import CriticReview, Image, ReviewStatus
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import image_make, image_stored, job_make
from tests.faults.conftest import FaultTable
from tests.workerproc import WorkerProcess, gpu_install, sim_profile, start_gpu_worker, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ENDED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.BLOCKED)


def critic_with(*flags: str, request_timeout_s: float | None = None) -> Profile:
    """sim-32gb whose simulated Critic starts with these command-line fault switches."""
    data = sim_profile().model_dump(mode="json")
    data["runtimes"]["critic"]["command"] = [*data["runtimes"]["critic"]["command"], *flags]
    if request_timeout_s is not None:
        data["runtimes"]["critic"]["request_timeout_s"] = request_timeout_s
    return Profile.model_validate(data)


def image_in_s3(gpu: str) -> Image:
    project = project_make(owner=user_make())
    request = request_make(prompt_make(project, project.created_by), count=1)
    made = job_make(request, gpu=gpu, status=JobStatus.DONE, output_count=1)
    image = image_stored(request, 0)
    Image.objects.filter(pk=image.pk).update(job=made)
    image.refresh_from_db()
    return image


def image_gone_from_s3(gpu: str) -> Image:
    image = image_in_s3(gpu)
    # A row whose object was deleted from the bucket (an S3 read that cannot succeed).
    request = image.request
    assert request is not None
    return image_make(request, index=1, job=image.job)




@pytest.fixture
def worker_for(
    tmp_path: Path, settings: object, s3_bucket: str
) -> Iterator[Callable[[Profile], WorkerProcess]]:
    started: list[tuple[str, Profile, Path, WorkerProcess]] = []

    def start(profile: Profile) -> WorkerProcess:
        name = f"rev{uuid.uuid4().hex[:6]}"
        gpu_install(name, profile)
        settings.ARTCRITIC_GPU = name  # type: ignore[attr-defined]
        sim_dir = tmp_path / "sim"
        worker = start_gpu_worker(name, sim_dir, time_scale=0.01)
        started.append((name, profile, sim_dir, worker))
        return worker

    yield start
    for name, profile, sim_dir, worker in started:
        worker.stop()
        for runtime in ("comfyui", "critic"):
            driver_for(runtime, profile, gpu=name, env={"ARTCRITIC_SIM_DIR": str(sim_dir)}).stop()


@dataclass(frozen=True)
class Case:
    fault: str
    flags: tuple[str, ...]
    subject: Callable[[str], Image]
    reason: str
    timeout: float | None = None


CASES = [
    Case("Critic crashes mid-review", ("--fault", "crash_mid_run"), image_in_s3, "Critic"),
    Case("Critic hangs (request timeout)", ("--fault", "hang"), image_in_s3, "Critic", 3.0),
    Case("image unreadable in S3 at review", (), image_gone_from_s3, "does not exist"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.fault for case in CASES])
def test_a_review_that_cannot_finish_fails_its_image_visibly(
    worker_for: Callable[[Profile], WorkerProcess], fault_table: FaultTable, case: Case
) -> None:
    profile_load()
    worker = worker_for(critic_with(*case.flags, request_timeout_s=case.timeout))
    image = case.subject(worker.gpu)
    with transaction.atomic():
        job = review_job_submit(image, submitted_by=None)
        gpu_kick(worker.gpu)

    ended = wait_until(
        lambda: Job.objects.filter(pk=job.pk, status__in=ENDED).first(),
        120,
        what="the review to end",
        log=worker.log,
    )
    image.refresh_from_db()
    assert ended.status == JobStatus.FAILED
    assert case.reason in ended.error_reason
    assert ended.next_action
    assert image.review_status == ReviewStatus.FAILED
    assert not CriticReview.objects.filter(image=image).exists()
    fault_table.record(
        case.fault,
        submitted=1,
        done=0,
        failed=1,
        lost=0,
        duplicated=0,
        stuck=Image.objects.filter(
            pk=image.pk, review_status__in=[ReviewStatus.REVIEWING, ReviewStatus.PENDING]
        ).count()
        + Job.objects.filter(image=image, kind=JobKind.REVIEW).exclude(status__in=ENDED).count(),
    )
