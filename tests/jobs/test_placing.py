"""Jobs placed on GPUs from the database: live workers, fit and roles, queues, residency."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import AbstractUser
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from artcritic.gpu.models import Gpu, RuntimeStatus
from artcritic.gpu.profiles import ProfileError, profile_parse
from artcritic.gpu.runtime_state import runtime_state_set
from artcritic.jobs.models import Job, JobKind, JobStatus
from artcritic.jobs.placing import WORKER_FRESH_S, NewJob, gpu_choose
from artcritic.jobs.runner import review_job_submit
from artcritic.jobs.services import job_submit_generation, review_again
from artcritic.studio.models import Project
from tests.factories import (
    ROOT,
    profile_load,
    project_make,
    prompt_make,
    request_make,
    sign_in,
    user_make,
)
from tests.factories_media import image_make, job_make

pytestmark = pytest.mark.django_db


def alive(*names: str, ago_s: float = 1.0) -> None:
    """The named GPUs' workers reported ``ago_s`` seconds ago."""
    Gpu.objects.filter(name__in=names).update(reading_at=timezone.now() - timedelta(seconds=ago_s))


@pytest.fixture
def olive() -> AbstractUser:
    return user_make("olive")


@pytest.fixture
def project(olive: AbstractUser) -> Project:
    return project_make(owner=olive, name="Kettles")


def test_dedicated_roles_send_generations_to_the_artist_and_reviews_to_the_critic(
    project: Project, olive: AbstractUser
) -> None:
    profile_load(gpu="art", role="artist")
    profile_load(gpu="crit", role="critic")
    alive("art", "crit")
    request = request_make(prompt_make(project, olive))
    job = job_submit_generation(request, user=olive)
    assert (job.gpu, job.status) == ("art", JobStatus.ADMITTED)
    assert job.placement_reason.startswith("art: the only GPU that can run it (crit: ")
    assert "Critic-only" in job.placement_reason
    admitted = job.phases.get(status=JobStatus.ADMITTED)
    assert "placed on art: the only GPU" in admitted.detail

    image = image_make(request, job=job)
    review = review_job_submit(image, submitted_by=olive.pk)
    assert review.gpu == "crit"
    assert review.profile_name == "sim-32gb-critic"
    assert "Artist-only" in review.placement_reason
    again = review_again(image_make(request, job=job, index=1), user=olive)
    assert again.gpu == "crit"


def test_a_gpu_whose_worker_went_quiet_gets_no_new_work(
    project: Project, olive: AbstractUser
) -> None:
    profile_load(gpu="gpu0")
    profile_load(gpu="gpu1")
    alive("gpu0", ago_s=1)
    alive("gpu1", ago_s=WORKER_FRESH_S + 5)
    job = job_submit_generation(request_make(prompt_make(project, olive)), user=olive)
    assert job.gpu == "gpu0"
    assert job.placement_reason == ""  # one live GPU: nothing was weighed


def test_no_live_worker_falls_back_to_the_default_gpu(
    project: Project, olive: AbstractUser, settings: object
) -> None:
    profile_load(gpu="gpu0")
    profile_load(gpu="sim0")
    job = job_submit_generation(request_make(prompt_make(project, olive)), user=olive)
    assert job.gpu == "sim0"  # settings.ARTCRITIC_GPU in the tests


def test_a_busy_queue_sends_a_generation_to_the_idle_gpu(
    project: Project, olive: AbstractUser
) -> None:
    profile_load(gpu="gpu0")
    profile_load(gpu="gpu1")
    alive("gpu0", "gpu1")
    prompt = prompt_make(project, olive)
    for _ in range(3):
        job_make(request_make(prompt, count=4), gpu="gpu0", status=JobStatus.ADMITTED)
    # Not a single (count 1), which would jump gpu0's queue as an interactive job.
    job = job_submit_generation(request_make(prompt, count=2), user=olive)
    assert job.gpu == "gpu1"
    assert job.placement_reason.startswith("gpu1: idle, done ~")
    assert job.placement_reason.endswith("s sooner than on gpu0")
    # The predicted finish was stored from gpu1's own (empty) queue.
    job.refresh_from_db()
    assert job.predicted_finish_at is not None


def test_affinity_sends_a_review_to_the_gpu_with_the_critic_resident(
    project: Project, olive: AbstractUser
) -> None:
    profile_load(gpu="gpu0")
    profile_load(gpu="gpu1")
    alive("gpu0", "gpu1")
    gpu0, gpu1 = Gpu.objects.get(name="gpu0"), Gpu.objects.get(name="gpu1")
    runtime_state_set(gpu0, "comfyui", RuntimeStatus.READY)
    runtime_state_set(gpu1, "critic", RuntimeStatus.READY)
    request = request_make(prompt_make(project, olive))
    job = review_again(image_make(request), user=olive)
    assert job.gpu == "gpu1"
    assert job.placement_reason.startswith("gpu1: Critic already resident, done ~")
    assert job.placement_reason.endswith("sooner than on gpu0")
    # And the same GPU for a generation goes the other way.
    generation = job_submit_generation(request_make(prompt_make(project, olive)), user=olive)
    assert generation.gpu == "gpu0"
    assert generation.placement_reason.startswith("gpu0: Artist already resident")


def test_nothing_fits_blocks_with_every_gpus_reason(project: Project, olive: AbstractUser) -> None:
    profile_load(gpu="sim0", role="critic")
    profile_load(gpu="gpu1", role="critic")
    alive("sim0", "gpu1")
    job = job_submit_generation(request_make(prompt_make(project, olive)), user=olive)
    assert job.status == JobStatus.BLOCKED
    assert job.gpu == "sim0"
    assert job.error_reason.startswith("No GPU can run this job (gpu1: profile sim-32gb-critic")
    assert "sim0: profile sim-32gb-critic makes it Critic-only" in job.error_reason
    assert "whose role runs the Artist" in job.next_action


def test_an_oversized_request_is_blocked_with_admissions_numbers(
    project: Project, olive: AbstractUser
) -> None:
    profile_load(gpu="sim0")
    profile_load(gpu="gpu1")
    alive("sim0", "gpu1")
    request = request_make(prompt_make(project, olive), width=8192, height=8192)
    job = job_submit_generation(request, user=olive)
    assert job.status == JobStatus.BLOCKED
    assert "8192" in job.error_reason
    assert job.next_action


def test_a_review_waits_for_the_critic_gpu_whose_worker_is_away(
    project: Project, olive: AbstractUser
) -> None:
    profile_load(gpu="art", role="artist")
    profile_load(gpu="crit", role="critic")
    alive("art")
    choice = gpu_choose(NewJob(kind=JobKind.REVIEW, runtime="critic", project_id=project.pk))
    assert choice.gpu == "crit"
    assert choice.admission.ok
    assert "waits for it to come back" in choice.reason


def test_role_is_validated_when_a_profile_loads() -> None:
    text = (ROOT / "profiles" / "sim-32gb.toml").read_text()
    anchor = 'exclusive = [["comfyui", "critic"]]'

    def with_role(value: str) -> str:
        return text.replace(anchor, f"{anchor}\nrole = {value}")

    for bad in ('"both"', "1", '"critic; DROP TABLE"', '""'):
        with pytest.raises(ProfileError, match="role"):
            profile_parse(with_role(bad), source="sim-bad.toml")
    profile = profile_parse(with_role('"critic"'), source="sim.toml")
    assert (profile.runs("critic"), profile.runs("comfyui")) == (True, False)
    assert profile_parse(text, source="sim.toml").role == "shared"


def test_the_designer_sees_where_and_why(
    client: Client, project: Project, olive: AbstractUser
) -> None:
    profile_load(gpu="gpu0")
    profile_load(gpu="gpu1")
    alive("gpu0", "gpu1")
    prompt = prompt_make(project, olive)
    for _ in range(2):
        job_make(request_make(prompt, count=4), gpu="gpu0", status=JobStatus.ADMITTED)
    job = job_submit_generation(request_make(prompt, count=2), user=olive)
    sign_in(client, "olive")
    page = client.get(reverse("studio:project_detail", args=[project.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert f"Placed on {job.placement_reason}" in text
    assert Job.objects.get(pk=job.pk).gpu == "gpu1"


def test_a_retry_is_placed_like_a_new_job_not_tied_to_the_gpu_that_failed_it(
    project: Project, olive: AbstractUser
) -> None:
    from artcritic.jobs.services import job_retry

    profile_load(gpu="gpu0")
    profile_load(gpu="gpu1")
    alive("gpu1", ago_s=1)
    alive("gpu0", ago_s=WORKER_FRESH_S + 30)  # its worker went quiet after failing the job
    failed = job_make(
        request_make(prompt_make(project, olive)),
        gpu="gpu0",
        status=JobStatus.FAILED,
        error_reason="ComfyUI stopped answering (connection refused)",
        next_action="Check the runtime, then retry.",
    )
    retry = job_retry(failed, user=user_make("stella", is_staff=True))
    assert (retry.gpu, retry.status) == ("gpu1", JobStatus.ADMITTED)
    assert retry.placement_reason.startswith("gpu1")
    failed.refresh_from_db()
    assert failed.gpu == "gpu0"  # the record of what happened stays as it was


def test_with_no_worker_reporting_a_retry_stays_on_its_gpu(
    project: Project, olive: AbstractUser
) -> None:
    from artcritic.jobs.services import job_retry

    profile_load(gpu="gpu0")
    profile_load(gpu="gpu1")
    failed = job_make(
        request_make(prompt_make(project, olive)),
        gpu="gpu1",
        status=JobStatus.FAILED,
        error_reason="out of memory in node 8",
        next_action="Retry.",
    )
    retry = job_retry(failed, user=user_make("stella", is_staff=True))
    assert (retry.gpu, retry.placement_reason) == ("gpu1", "")
